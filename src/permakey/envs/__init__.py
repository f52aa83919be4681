"""Gymnasium wrappers that turn frames into keypoint observations for agents."""

from permakey.envs.observation import (
    KeypointEncoder,
    KeypointObservation,
    VectorKeypointObservation,
    check_rgb_space,
)

__all__ = [
    "KeypointEncoder",
    "KeypointObservation",
    "VectorKeypointObservation",
    "check_rgb_space",
]
