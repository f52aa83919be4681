"""Controls: what trivial keypoint methods score on the same frames as the models.

All controls return keypoints in pixels, ``(N, K, 2)`` float ``(row, col)`` with the
conventions of `permakey.evaluation.metrics`, so that they go through exactly the same
metrics as the models. Motion statistics are `permakey.evaluation.metrics.motion`.
"""

from __future__ import annotations

import heapq

import numpy as np
import torch

from permakey.evaluation import metrics
from permakey.keypoints import PEAK_SEPARATION_PX, error_peaks


def random_keypoints(
    num_frames: int, num_keypoints: int, height: int, width: int, seed: int
) -> np.ndarray:
    """K points per frame, uniform over the frame's area.

    Args:
        num_frames: N.
        num_keypoints: K.
        height: frame height H.
        width: frame width W.
        seed: seed of the generator; the same seed gives the same points.

    Returns:
        (N, K, 2) float64, (row, col) in [-0.5, H - 0.5) x [-0.5, W - 0.5) (pixel-centre
        coordinates of points uniform over the frame's area, whose chance of falling in a
        region is its area fraction).
    """
    rng = np.random.default_rng(seed)
    uniform = rng.random((num_frames, num_keypoints, 2))
    return uniform * np.array([height, width], dtype=np.float64) - 0.5


def static_template(keypoints: np.ndarray) -> np.ndarray:
    """Each keypoint's mean position over the frames, used in every frame.

    Args:
        keypoints: (N, K, 2) float, (row, col) pixels.

    Returns:
        (N, K, 2) float64, every frame equal to the per-keypoint mean.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    return np.broadcast_to(keypoints.mean(axis=0), keypoints.shape).copy()


def _ranks(frame: np.ndarray, category: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(M,) rank of each object among those of its frame and category, by row, then column."""
    order = np.lexsort((centres[:, 1], centres[:, 0], category, frame))  # (M,)
    group = frame[order] * (category.max(initial=0) + 1) + category[order]  # (M,)
    first = np.r_[True, group[1:] != group[:-1]]  # where a (frame, category) group starts
    start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - start
    return rank


def _lanes(frame: np.ndarray, category: np.ndarray, track: np.ndarray) -> np.ndarray:
    """(M,) lane of each object: in each category, a track takes the lowest lane that is free
    in its first frame and holds it to its last frame (gaps included), so that one lane is
    one object at a time."""
    tracks, track = np.unique(track, return_inverse=True)
    track = track.reshape(-1)
    first = np.full(len(tracks), np.iinfo(np.int64).max)
    last = np.full(len(tracks), -1)
    np.minimum.at(first, track, frame)
    np.maximum.at(last, track, frame)
    category_of_track = np.zeros(len(tracks), dtype=np.int64)
    category_of_track[track] = category
    lane = np.empty(len(tracks), dtype=np.int64)
    for c in np.unique(category_of_track):
        busy: list[tuple[int, int]] = []  # (last frame, lane) of the tracks holding a lane
        free: list[int] = []
        members = np.flatnonzero(category_of_track == c)
        for t in members[np.lexsort((members, first[members]))]:  # by first frame
            while busy and busy[0][0] < first[t]:
                heapq.heappush(free, heapq.heappop(busy)[1])
            lane[t] = heapq.heappop(free) if free else len(busy)
            heapq.heappush(busy, (int(last[t]), int(lane[t])))
    return lane[track]


def object_tracker(
    offsets: np.ndarray,
    category: np.ndarray,
    boxes: np.ndarray,
    max_keypoints: int,
    track: np.ndarray | None = None,
) -> np.ndarray:
    """A perfect tracker: one keypoint per object slot, on the object's box centre.

    Not a method but a reference: what following every object perfectly adds over a static
    template on given ground truth (compare `static_template` of its output), and how many
    objects K keypoints can keep. An object's slot is its category and, with tracks, its
    track's lane: in each category a track takes the lowest lane free when it first appears
    and keeps it to its end, so a keypoint follows one object at a time, each for the whole
    of its track. Without tracks, the slot is the object's rank among the objects of its
    category in its frame, by row, then column (the topmost Alien is slot 0 of Alien), which
    passes from one object to another when they cross.
    The ``max_keypoints`` slots present in most frames are kept (ties: by category index, then
    lane or rank); in a frame without its object a keypoint waits at its slot's mean centre.

    Args:
        offsets: (N + 1,) int, objects of frame n are ``offsets[n]:offsets[n + 1]``.
        category: (M,) int category index of each object.
        boxes: (M, 4) float, (x, y, w, h) edge coordinates.
        max_keypoints: K, the most keypoints to place (fewer when there are fewer slots).
        track: (M,) int track of each object (`permakey.evaluation.metrics.track_index`),
            or None.

    Returns:
        (N, S, 2) float64, (row, col) pixels, S = min(K, number of slots), slots in the
        order kept.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    category = np.asarray(category, dtype=np.int64)
    boxes = np.asarray(boxes, dtype=np.float64)
    num_frames = len(offsets) - 1
    centres = np.stack(
        [boxes[:, 1] + boxes[:, 3] / 2 - 0.5, boxes[:, 0] + boxes[:, 2] / 2 - 0.5], axis=1
    )  # (M, 2) (row, col) pixel centres; edge coordinate e is pixel coordinate e - 0.5
    frame = metrics.frame_of_object(offsets)  # (M,)
    within = (
        _ranks(frame, category, centres)
        if track is None
        else _lanes(frame, category, np.asarray(track))
    )
    slots, slot_of_object, count = np.unique(
        np.stack([category, within], axis=1), axis=0, return_inverse=True, return_counts=True
    )  # slots (S_all, 2) sorted by (category, rank or lane)
    slot_of_object = slot_of_object.reshape(-1)
    kept = np.argsort(-count, kind="stable")[:max_keypoints]  # (S,)
    keypoints = np.empty((num_frames, len(kept), 2))
    for j, slot in enumerate(kept):
        members = slot_of_object == slot
        keypoints[:, j] = centres[members].mean(axis=0)
        keypoints[frame[members], j] = centres[members]
    return keypoints


def error_map_peaks(
    error_stack: torch.Tensor, num_keypoints: int, separation: int = PEAK_SEPARATION_PX
) -> np.ndarray:
    """The K strongest separated maxima of each frame's error maps (`keypoints.error_peaks`).

    Args:
        error_stack: (B, L, H, W) float, normalised error maps, values in [0, 1].
        num_keypoints: K.
        separation: minimum Chebyshev distance in pixels between two peaks.

    Returns:
        (B, K, 2) float64, (row, col) pixels, strongest peak first.
    """
    return error_peaks(error_stack, num_keypoints, separation).double().cpu().numpy()
