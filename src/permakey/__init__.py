"""permakey: unsupervised object keypoints from local spatial predictability."""

__version__ = "0.1.0"
