"""permakey: unsupervised object keypoints from local spatial predictability."""

__version__ = "0.1.0"


def load(run, which: str = "best", device: str = "cpu", precision: str = "fp32"):
    """Loads a trained PermaKey or Transporter model from its run folder.

    Imports torch on first use only, so that ``import permakey`` stays light.
    See `permakey.runs.load` for the arguments; returns a `permakey.runs.TrainedModel` whose
    ``keypoints(frames)`` gives keypoints of uint8 frames (N, 84, 84, 3) or (N, 3, 84, 84).
    """
    from permakey.runs import load as _load

    return _load(run, which=which, device=device, precision=precision)
