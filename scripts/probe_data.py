"""The clean test frames of a dataset and their ground truth, as the probe scripts read them
(`scripts/snap_probe.py`, `scripts/miss_probe.py`): the first frames of the test split, the
objects `permakey evaluate` counts, with its moving categories."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from permakey.data.store import open_split
from permakey.evaluation.categories import select_categories
from permakey.evaluation.evaluate import GroundTruth, ground_truth, measured_moving


@dataclass
class TestFrames:
    """game: the dataset's game; frames: (N, H, W, 3) uint8; truth: their objects;
    episode, step: (N,) int, each frame's episode and step in it."""

    game: str
    frames: np.ndarray
    truth: GroundTruth
    episode: np.ndarray
    step: np.ndarray


def test_frames(data: str, count: int = 500) -> TestFrames:
    """The first ``count`` test frames of the dataset folder ``data`` with their ground truth."""
    split = open_split(data, "test")
    frames = split.read_frames(slice(0, count))
    height, width = frames.shape[1:3]
    game = str(split.meta.get("game", ""))
    selection = select_categories(game, list(split.categories), None, None)
    truth = ground_truth(split, len(frames), selection, height, width)
    if truth.selection.moving is None:  # as `permakey evaluate`: moving as measured
        truth = replace(truth, selection=measured_moving(truth))
    episode = np.asarray(split.episode[: len(frames)])
    step = np.asarray(split.step[: len(frames)])
    return TestFrames(game, frames, truth, episode, step)
