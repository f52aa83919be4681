"""A trained run as a thing of its own: its folder's read side and one loaded-model interface.

`load(RUN)` gives a `TrainedModel`, which evaluation, figures, the Gymnasium wrappers and the
collection policies all use; loading imports models and data code only, never training code.
"""

from permakey.runs.trained import FrameKeypoints, FrameSpec, TrainedModel, load, pool_features

__all__ = ["FrameKeypoints", "FrameSpec", "TrainedModel", "load", "pool_features"]
