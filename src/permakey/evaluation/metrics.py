"""Keypoint quality metrics: pure functions, arrays in, numbers out.

Conventions (shared by every function here):

- **Keypoints** are given in pixels of the ``H x W`` frame, as `permakey.keypoints.to_pixels`
  returns them: ``(..., 2)`` float ``(row, col)``, where ``row = i`` is the *centre* of pixel
  row ``i`` (so a model's keypoints lie in ``[0, H - 1]``).
- **Boxes** are ``(x, y, w, h)`` float in *edge* coordinates of the stored frame: pixel
  column ``j`` spans ``[j, j + 1)``, so a box covers columns ``[x, x + w]`` and rows
  ``[y, y + h]``. This is what scaling OCAtari's integer boxes of the 160 x 210 frame by
  ``84 / 160`` and ``84 / 210`` gives, and it matches an area resize of the frame.
- **Inside a box grown by r**: a keypoint at ``(row, col)`` sits at edge coordinates
  ``(row + 0.5, col + 0.5)``; it is inside when ``y - r <= row + 0.5 <= y + h + r`` and
  ``x - r <= col + 0.5 <= x + w + r`` (closed on both sides). So with r = 0 a keypoint on the
  centre of any pixel that the box overlaps by at least half a pixel counts, and one a hair
  beyond ``y + h + r`` does not.
- **Bars** (Noisy Atari): ``(N, 2)``, the top row of the horizontal bar and the left
  column of the vertical bar, -1 where absent (int; float for bars drawn before the resize);
  a bar of width ``b`` covers rows (columns) ``[top, top + b]`` in edge coordinates, and is
  grown by r exactly like a box.
- **Aggregation over frames is micro**: recall is the number of found objects over the number
  of objects of all frames of the split; precision, distractor share and border share are
  counts of keypoints over all keypoints of all frames. Frames without any counted object
  stay in precision (their keypoints are on no object). Per-frame values are available from
  `per_frame_scores`.
- **Identity** (does keypoint k keep its object?): objects carry a track, the pair (episode,
  id) of `permakey.data.identity` made dense by `track_index`. In each frame a keypoint sits
  on the track of the nearest object (box centre) whose box grown by r holds it
  (`keypoint_tracks`); its *purity* is the share of its on-object frames spent on its most
  frequent track (`purity`). A track is *kept* when one keypoint, the same in every frame,
  sits inside its grown box in at least `KEPT_SHARE` of the frames the track is in
  (`kept_tracks`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

RADII = (0, 2, 4)
HEADLINE_RADIUS = 2
BORDER_PX = 2
# A track is kept when one keypoint sits on it in at least this share of its frames.
KEPT_SHARE = 0.8


def _edge(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., 2) (row, col) pixel centres -> edge-coordinate rows and columns (...,)."""
    points = np.asarray(points, dtype=np.float64)
    return points[..., 0] + 0.5, points[..., 1] + 0.5


def frame_of_object(offsets: np.ndarray) -> np.ndarray:
    """(N + 1,) ragged offsets -> (M,) int64 frame index of every object."""
    offsets = np.asarray(offsets, dtype=np.int64)
    return np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))


def segment_sum(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Sums ``values`` (M, ...) over the objects of each frame -> (N, ...); 0 for empty frames."""
    values = np.asarray(values, dtype=np.int64)
    cumulative = np.concatenate([np.zeros_like(values[:1]), np.cumsum(values, axis=0)])
    offsets = np.asarray(offsets, dtype=np.int64)
    return cumulative[offsets[1:]] - cumulative[offsets[:-1]]


def points_in_boxes(points: np.ndarray, boxes: np.ndarray, r: float) -> np.ndarray:
    """Whether points lie inside boxes grown by ``r`` (see the module's conventions).

    Args:
        points: (..., 2) float, (row, col) pixel centres.
        boxes: (..., 4) float, (x, y, w, h) edge coordinates; broadcast against ``points``.
        r: margin in pixels, >= 0.

    Returns:
        (...) bool, the broadcast shape.
    """
    rows, cols = _edge(points)
    boxes = np.asarray(boxes, dtype=np.float64)
    x, y, w, h = (boxes[..., i] for i in range(4))
    return (rows >= y - r) & (rows <= y + h + r) & (cols >= x - r) & (cols <= x + w + r)


def hit_matrix(
    keypoints: np.ndarray, offsets: np.ndarray, boxes: np.ndarray, r: float
) -> np.ndarray:
    """For every object, which keypoints of its frame lie inside its box grown by ``r``.

    Args:
        keypoints: (N, K, 2) float, (row, col) pixels.
        offsets: (N + 1,) int, objects of frame n are ``offsets[n]:offsets[n + 1]``.
        boxes: (M, 4) float, (x, y, w, h) edge coordinates, M = offsets[-1].

    Returns:
        (M, K) bool.
    """
    frames = frame_of_object(offsets)
    return points_in_boxes(keypoints[frames], np.asarray(boxes)[:, None, :], r)  # (M, K)


def object_hits(
    keypoints: np.ndarray, offsets: np.ndarray, boxes: np.ndarray, r: float
) -> np.ndarray:
    """(M,) bool: whether each object's box grown by ``r`` holds a keypoint of its frame."""
    return hit_matrix(keypoints, offsets, boxes, r).any(axis=1)


def keypoint_hits(
    keypoints: np.ndarray, offsets: np.ndarray, boxes: np.ndarray, r: float
) -> np.ndarray:
    """(N, K) bool: whether each keypoint lies inside some box of its frame grown by ``r``."""
    return segment_sum(hit_matrix(keypoints, offsets, boxes, r), offsets) > 0


def fraction(hits: np.ndarray) -> float | None:
    """Mean of a bool array as a float; None when it is empty (nothing to measure)."""
    hits = np.asarray(hits)
    return float(hits.mean()) if hits.size else None


def f1(precision: float | None, recall: float | None) -> float | None:
    """Harmonic mean of precision and recall; 0 when both are 0, None when either is None."""
    if precision is None or recall is None:
        return None
    total = precision + recall
    return 2.0 * precision * recall / total if total > 0 else 0.0


def recall_bound(offsets: np.ndarray, num_keypoints: int) -> float | None:
    """Highest recall that ``K`` keypoints can reach: sum_n min(K, n_objects) / sum_n n_objects.

    Args:
        offsets: (N + 1,) int ragged offsets of the counted objects.
        num_keypoints: K.

    Returns:
        The bound in [0, 1]; None when there are no objects.
    """
    counts = np.diff(np.asarray(offsets, dtype=np.int64))
    total = counts.sum()
    return float(np.minimum(counts, num_keypoints).sum() / total) if total else None


def per_category(
    values: np.ndarray, category: np.ndarray, names: Sequence[str]
) -> dict[str, tuple[float, int]]:
    """Mean of a per-object value per category present.

    Args:
        values: (M,) bool or float, one value per object (e.g. `object_hits`).
        category: (M,) int, index into ``names``.
        names: category names.

    Returns:
        {name: (mean value, number of objects)} for every category with at least one object.
    """
    values = np.asarray(values, dtype=np.float64)
    category = np.asarray(category)
    out = {}
    for index, name in enumerate(names):
        members = category == index
        if members.any():
            out[name] = (float(values[members].mean()), int(members.sum()))
    return out


def per_frame_scores(
    keypoints: np.ndarray, offsets: np.ndarray, boxes: np.ndarray, r: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame object recall and keypoint precision at margin ``r``.

    Returns:
        recall (N,) float, NaN in frames without objects; precision (N,) float.
    """
    counts = np.diff(np.asarray(offsets, dtype=np.int64))
    found = segment_sum(object_hits(keypoints, offsets, boxes, r), offsets)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(counts > 0, found / counts, np.nan)
    precision = keypoint_hits(keypoints, offsets, boxes, r).mean(axis=1)
    return recall, precision


def _band_hits(coordinate: np.ndarray, start: np.ndarray, width: float, r: float) -> np.ndarray:
    """Edge coordinate inside the band [start - r, start + width + r]; never where start < 0."""
    return (start >= 0) & (coordinate >= start - r) & (coordinate <= start + width + r)


def bar_hits(keypoints: np.ndarray, bars: np.ndarray, bar_width: float, r: float) -> np.ndarray:
    """(N, K) bool: whether each keypoint lies inside a bar of its frame grown by ``r``.

    Args:
        keypoints: (N, K, 2) float, (row, col) pixels.
        bars: (N, 2) int or float, top row of the horizontal bar and left column of the
            vertical bar, -1 where absent.
        bar_width: bar width in pixels.
        r: margin in pixels.
    """
    rows, cols = _edge(keypoints)  # (N, K) each
    bars = np.asarray(bars)
    on_horizontal = _band_hits(rows, bars[:, :1], bar_width, r)
    on_vertical = _band_hits(cols, bars[:, 1:], bar_width, r)
    return on_horizontal | on_vertical


def _band_length(start: np.ndarray, width: float, r: float, size: int) -> np.ndarray:
    """Length of [start - r, start + width + r] inside [0, size]; 0 where start < 0."""
    length = np.clip(start + width + r, 0, size) - np.clip(start - r, 0, size)
    return np.where(start >= 0, length, 0.0)


def bar_area_fraction(
    bars: np.ndarray, bar_width: float, r: float, height: int, width: int
) -> np.ndarray:
    """(N,) float: fraction of each frame's area covered by its bars grown by ``r``.

    This is the chance level of the distractor share: the probability that a point uniform
    over the frame's area lies inside a grown bar (the union of both bars, clipped to the
    frame).
    """
    bars = np.asarray(bars, dtype=np.float64)
    rows = _band_length(bars[:, 0], bar_width, r, height)
    cols = _band_length(bars[:, 1], bar_width, r, width)
    return (rows * width + cols * height - rows * cols) / (height * width)


def border_hits(
    keypoints: np.ndarray, height: int, width: int, band: float = BORDER_PX
) -> np.ndarray:
    """(...,) bool: whether each keypoint lies within ``band`` pixels of the frame's edge.

    In edge coordinates: ``row + 0.5 <= band`` or ``row + 0.5 >= height - band`` (likewise for
    columns), i.e. on the outer ``band`` rings of pixels.
    """
    rows, cols = _edge(keypoints)
    return (rows <= band) | (rows >= height - band) | (cols <= band) | (cols >= width - band)


def border_area_fraction(height: int, width: int, band: float = BORDER_PX) -> float:
    """Chance level of the border share: the area fraction of the outer ``band`` pixel rings."""
    return 1.0 - (height - 2 * band) * (width - 2 * band) / (height * width)


def matched_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance between two keypoint sets after matching them one to one.

    A keypoint is the same entity in every frame, so the matching is made once for the whole
    split: keypoint i of ``a`` and j of ``b`` cost their distance averaged over the frames,
    and the Hungarian algorithm minimises the total cost. With different K, the
    min(K_a, K_b) best matches count.

    Args:
        a: (N, K_a, 2) float, (row, col) pixels.
        b: (N, K_b, 2) float, same frames.

    Returns:
        Mean matched distance in pixels, >= 0.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"keypoints of {a.shape[0]} and {b.shape[0]} frames cannot be matched")
    distance = np.linalg.norm(a[:, :, None, :] - b[:, None, :, :], axis=-1)  # (N, K_a, K_b)
    cost = distance.mean(axis=0)  # (K_a, K_b)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


def seed_stability(keypoints: Sequence[np.ndarray]) -> float | None:
    """`matched_distance` averaged over all pairs of runs; None for fewer than two runs.

    Args:
        keypoints: one (N, K, 2) array of pixels per run (seed), on the same frames.
    """
    pairs = list(itertools.combinations(keypoints, 2))
    if not pairs:
        return None
    return float(np.mean([matched_distance(a, b) for a, b in pairs]))


def consecutive_pairs(episode: np.ndarray, step: np.ndarray) -> np.ndarray:
    """(P,) int64 indices i such that frame i + 1 is the next step of frame i's episode."""
    episode = np.asarray(episode)
    step = np.asarray(step)
    return np.flatnonzero((episode[1:] == episode[:-1]) & (step[1:] == step[:-1] + 1))


def motion(keypoints: np.ndarray, episode: np.ndarray, step: np.ndarray) -> dict[str, float | None]:
    """How much keypoints move, in pixels.

    Args:
        keypoints: (N, K, 2) float, (row, col) pixels.
        episode: (N,) int episode of each frame.
        step: (N,) int step of each frame within its episode.

    Returns:
        ``from_mean_px``: mean distance of each keypoint from its own mean position over the
        frames; ``per_step_px``: mean distance a keypoint moves between consecutive frames of
        one episode (None when there are no consecutive frames).
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    from_mean = np.linalg.norm(keypoints - keypoints.mean(axis=0), axis=-1).mean()
    pairs = consecutive_pairs(episode, step)
    per_step = (
        float(np.linalg.norm(keypoints[pairs + 1] - keypoints[pairs], axis=-1).mean())
        if len(pairs)
        else None
    )
    return {"from_mean_px": float(from_mean), "per_step_px": per_step}


def track_index(episode: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense track numbers of objects whose identity is (episode, id).

    Args:
        episode: (M,) int episode of each object's frame.
        ids: (M,) int identity of each object, unique within its episode.

    Returns:
        (M,) int64 track of each object in [0, T), and T.
    """
    pairs = np.stack([np.asarray(episode, np.int64), np.asarray(ids, np.int64)], axis=1)
    if not len(pairs):
        return np.zeros(0, np.int64), 0
    unique, track = np.unique(pairs, axis=0, return_inverse=True)
    return track.reshape(-1), len(unique)


def keypoint_tracks(
    keypoints: np.ndarray, offsets: np.ndarray, boxes: np.ndarray, track: np.ndarray, r: float
) -> np.ndarray:
    """The track each keypoint sits on in each frame: of the objects whose box grown by ``r``
    holds it, the one whose box centre is nearest.

    Args:
        keypoints: (N, K, 2) float, (row, col) pixels.
        offsets: (N + 1,) int ragged offsets of the objects.
        boxes: (M, 4) float, (x, y, w, h) edge coordinates.
        track: (M,) int track of each object (`track_index`).
        r: margin in pixels.

    Returns:
        (N, K) int64 track, -1 where the keypoint is on no object.
    """
    num_frames, num_keypoints = keypoints.shape[:2]
    owner = np.full(num_frames * num_keypoints, -1, dtype=np.int64)
    frames = frame_of_object(offsets)
    objects, points = np.nonzero(hit_matrix(keypoints, offsets, boxes, r))  # (P,) each
    if not len(objects):
        return owner.reshape(num_frames, num_keypoints)
    rows, cols = _edge(keypoints[frames[objects], points])  # (P,) each
    box = np.asarray(boxes, dtype=np.float64)[objects]
    distance = np.hypot(rows - box[:, 1] - box[:, 3] / 2, cols - box[:, 0] - box[:, 2] / 2)
    cell = frames[objects] * num_keypoints + points  # (P,) which (frame, keypoint)
    order = np.lexsort((distance, cell))  # by cell, nearest first
    nearest = order[np.r_[True, cell[order][1:] != cell[order][:-1]]]
    owner[cell[nearest]] = np.asarray(track)[objects[nearest]]
    return owner.reshape(num_frames, num_keypoints)


def purity(owner: np.ndarray, num_tracks: int) -> np.ndarray:
    """Per keypoint, the share of its on-object frames spent on its most frequent track.

    Args:
        owner: (N, K) int track each keypoint sits on, -1 for none (`keypoint_tracks`).
        num_tracks: T.

    Returns:
        (K,) float in (0, 1], NaN for a keypoint on no object in any frame. A keypoint that
        follows one object scores 1; one that alternates between two scores 0.5.
    """
    num_keypoints = owner.shape[1]
    keypoint = np.broadcast_to(np.arange(num_keypoints), owner.shape)
    on = owner >= 0
    counts = np.bincount(
        keypoint[on] * num_tracks + owner[on], minlength=num_keypoints * num_tracks
    ).reshape(num_keypoints, num_tracks)
    total = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, counts.max(axis=1, initial=0) / total, np.nan)


def kept_tracks(
    keypoints: np.ndarray,
    offsets: np.ndarray,
    boxes: np.ndarray,
    track: np.ndarray,
    num_tracks: int,
    r: float,
    share: float,
) -> np.ndarray:
    """Whether one keypoint sits on each track in at least ``share`` of the frames it is in.

    Args:
        keypoints: (N, K, 2) float, (row, col) pixels.
        offsets: (N + 1,) int ragged offsets of the objects.
        boxes: (M, 4) float, (x, y, w, h) edge coordinates.
        track: (M,) int track of each object in [0, T) (`track_index`).
        num_tracks: T.
        r: margin in pixels: the keypoint lies inside the object's box grown by r.
        share: the least share of the track's frames, in (0, 1].

    Returns:
        (T,) bool, False for a track with no object.
    """
    num_keypoints = keypoints.shape[1]
    objects, points = np.nonzero(hit_matrix(keypoints, offsets, boxes, r))
    track = np.asarray(track, dtype=np.int64)
    on = np.bincount(
        track[objects] * num_keypoints + points, minlength=num_tracks * num_keypoints
    ).reshape(num_tracks, num_keypoints)  # (T, K) frames keypoint k sits on track t
    visible = np.bincount(track, minlength=num_tracks)  # (T,) frames the track is in
    return (visible > 0) & (on.max(axis=1, initial=0) >= share * visible)


def category_motion(
    offsets: np.ndarray,
    category: np.ndarray,
    boxes: np.ndarray,
    track: np.ndarray,
    num_categories: int,
) -> np.ndarray:
    """Mean distance, in pixels, that the objects of each category move in one step.

    Args:
        offsets: (N + 1,) int ragged offsets of the objects; consecutive frames are steps.
        category: (M,) int category index of each object, in [0, C).
        boxes: (M, 4) float, (x, y, w, h) edge coordinates.
        track: (M,) int track of each object (`track_index`).
        num_categories: C.

    Returns:
        (C,) float: the mean over every object also in its track's previous frame of how
        far its box centre moved; NaN for a category with no such object.
    """
    frames = frame_of_object(offsets)
    boxes = np.asarray(boxes, dtype=np.float64)
    centres = boxes[:, :2] + boxes[:, 2:] / 2  # (M, 2)
    order = np.lexsort((frames, np.asarray(track)))  # by track, then frame
    track, frames = np.asarray(track)[order], frames[order]
    follows = (track[1:] == track[:-1]) & (frames[1:] == frames[:-1] + 1)  # (M - 1,)
    moved = np.linalg.norm(np.diff(centres[order], axis=0), axis=-1)[follows]
    which = np.asarray(category)[order][1:][follows]
    total = np.bincount(which, weights=moved, minlength=num_categories)
    count = np.bincount(which, minlength=num_categories)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)
