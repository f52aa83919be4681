"""The `evaluate` report: every metric for several models and the controls on the same frames.

`evaluate_models` is the core: it reads the frames of a split once, paints the same Noisy
Atari bars (drawn once from a fixed seed) for every model, runs each `TrainedModel`, builds
the controls (random points, each model's static template, the error-map peaks of models
that have error maps, and with ground truth the perfect object tracker) and scores every
column with the same metrics
(`permakey.evaluation.metrics`) into a `permakey.evaluation.results.EvaluationResult`. On
noisy frames, the error maps of each model that has them are measured on the bars from the
same forward pass (`permakey.evaluation.error_mass`).
`evaluate_runs` loads trained runs and calls it. `format_table` turns the result into a
side-by-side markdown table; `write_result` and `read_result` write and read the JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from permakey.data.identity import link_objects
from permakey.errors import UserError
from permakey.evaluation import controls, error_mass, metrics
from permakey.evaluation.categories import (
    HEADLINE,
    MOVING_PX,
    SMALL,
    CategorySelection,
    select_categories,
)
from permakey.evaluation.results import (
    NO_GROUND_TRUTH,
    CategoryScores,
    Column,
    ColumnMetrics,
    DatasetInfo,
    EvaluationResult,
    IdentityScores,
    Motion,
    Noise,
    SeedStability,
    TrackCounts,
    peaks_name,
    random_name,
    template_name,
    tracker_name,
)
from permakey.fileio import write_json_atomic
from permakey.keypoints import to_pixels
from permakey.runs import TrainedModel
from permakey.runs.folder import code_version
from permakey.runs.trained import load_runs

# `EvaluationResult.identities` of a dataset collected without identities.
LINKED_NOW = "linked at evaluation"


@dataclass
class GroundTruth:
    """The objects of the evaluated frames, split into the selection's groups.

    Attributes:
        names: every category name of the dataset.
        selection: which categories count and how.
        offsets: (N + 1,) int64, ragged offsets of the objects kept (any group but excluded).
        category: (M,) int64 category index of each object.
        boxes: (M, 4) float, (x, y, w, h) edge coordinates in the stored frame.
        track: (M,) int64 track of each object (`permakey.evaluation.metrics.track_index`).
        identities: how the tracks were made (`EvaluationResult.identities`).
    """

    names: list[str]
    selection: CategorySelection
    offsets: np.ndarray
    category: np.ndarray
    boxes: np.ndarray
    track: np.ndarray
    identities: str

    def _members(self, group_names: Sequence[str]) -> np.ndarray:
        return np.isin(self.category, [self.names.index(name) for name in group_names])

    def subset(self, group_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(offsets, category, boxes) of the objects whose category is in ``group_names``."""
        keep = self._members(group_names)
        return select_objects(self.offsets, keep), self.category[keep], self.boxes[keep]

    def headline_tracks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        """(offsets, category, boxes, track in [0, T), T) of the headline objects."""
        keep = self._members(self.selection.headline)
        unique, track = np.unique(self.track[keep], return_inverse=True)
        offsets = select_objects(self.offsets, keep)
        return offsets, self.category[keep], self.boxes[keep], track.reshape(-1), len(unique)


def select_objects(offsets: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Ragged offsets (N + 1,) of the objects with ``keep`` (M,) bool true, frames unchanged."""
    per_frame = metrics.segment_sum(keep, offsets)  # (N,)
    return np.concatenate([[0], np.cumsum(per_frame)]).astype(np.int64)


def inside_frame(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(M,) bool: boxes with positive area that overlap the frame (hygiene: others drop)."""
    x, y, w, h = (np.asarray(boxes, dtype=np.float64)[:, i] for i in range(4))
    return (w > 0) & (h > 0) & (x < width) & (x + w > 0) & (y < height) & (y + h > 0)


def ground_truth(split, num_frames: int, selection: CategorySelection, height: int, width: int):
    """The `GroundTruth` of the first ``num_frames`` frames of a split; None without objects.

    The tracks are the split's stored identities, or for a dataset collected without them,
    its boxes linked between consecutive frames now (`permakey.data.identity.link_objects`).
    """
    if not split.has_objects:
        return None
    offsets, category, boxes = split.object_table()
    offsets = np.asarray(offsets[: num_frames + 1], dtype=np.int64)
    end = offsets[-1]
    category = np.asarray(category[:end], dtype=np.int64)
    boxes = np.asarray(boxes[:end], dtype=np.float64)
    names = list(split.categories)
    counted = [names.index(c) for c in selection.headline + selection.small]
    keep = inside_frame(boxes, height, width) & np.isin(category, counted)
    offsets, category, boxes = select_objects(offsets, keep), category[keep], boxes[keep]
    episode = np.asarray(split.episode[:num_frames])
    ids = split.object_ids()
    if ids is None:  # linked per category: leaving other categories out changes no link
        step = np.asarray(split.step[:num_frames])
        ids, identities = link_objects(offsets, category, boxes, episode, step), LINKED_NOW
    else:
        ids, identities = ids[:end][keep], split.identity_method
    track, _ = metrics.track_index(episode[metrics.frame_of_object(offsets)], ids)
    return GroundTruth(names, selection, offsets, category, boxes, track, identities)


def _detection_scores(keypoints, truth: GroundTruth, num_keypoints: int, radii) -> dict:
    """The object metrics of `ColumnMetrics`, by field name."""
    headline = truth.subset(truth.selection.headline)
    small = truth.subset(truth.selection.small)
    counted = (truth.offsets, truth.category, truth.boxes)
    recall, precision, small_recall, found = {}, {}, {}, {}
    for r in radii:
        recall[r] = metrics.fraction(metrics.object_hits(keypoints, headline[0], headline[2], r))
        precision[r] = metrics.fraction(metrics.keypoint_hits(keypoints, counted[0], counted[2], r))
        small_recall[r] = metrics.fraction(metrics.object_hits(keypoints, small[0], small[2], r))
        found[r] = metrics.object_hits(keypoints, truth.offsets, truth.boxes, r)
    per_category = {}
    for name in truth.selection.headline + truth.selection.small:
        index = truth.names.index(name)
        members = truth.category == index
        if not members.any():
            continue
        offsets = select_objects(truth.offsets, members)
        per_category[name] = CategoryScores(
            group=truth.selection.group(name),
            objects=int(members.sum()),
            recall={r: float(found[r][members].mean()) for r in radii},
            recall_bound=metrics.recall_bound(offsets, num_keypoints),
        )
    return {
        "recall": recall,
        "precision": precision,
        "f1": {r: metrics.f1(precision[r], recall[r]) for r in radii},
        "recall_bound": metrics.recall_bound(headline[0], num_keypoints),
        "small_recall": small_recall if len(small[1]) else None,
        "per_category": per_category,
    }


def _identity_scores(keypoints, truth: GroundTruth, r: int) -> IdentityScores:
    """Purity and kept tracks of one column, on the headline objects (as recall is)."""
    offsets, category, boxes, track, num_tracks = truth.headline_tracks()
    owner = metrics.keypoint_tracks(keypoints, offsets, boxes, track, r)
    purity = metrics.purity(owner, num_tracks)  # (K,), NaN: never on an object
    kept = metrics.kept_tracks(
        keypoints, offsets, boxes, track, num_tracks, r, metrics.KEPT_SHARE
    )  # (T,)
    category_of_track = np.zeros(num_tracks, dtype=np.int64)
    category_of_track[track] = category
    moving_index = [truth.names.index(name) for name in truth.selection.moving or ()]
    moving = np.isin(category_of_track, moving_index)

    def counts(members: np.ndarray) -> TrackCounts:
        return TrackCounts(int(members.sum()), int(kept[members].sum()))

    per_category = {}
    for name in truth.selection.headline:
        members = category_of_track == truth.names.index(name)
        if members.any():
            per_category[name] = counts(members)
    on_objects = purity[~np.isnan(purity)]
    return IdentityScores(
        radius=r,
        kept_share=metrics.KEPT_SHARE,
        purity=tuple(None if np.isnan(p) else float(p) for p in purity),
        mean_purity=float(on_objects.mean()) if len(on_objects) else None,
        kept=counts(np.ones(num_tracks, dtype=bool)),
        moving=counts(moving),
        static=counts(~moving),
        per_category=per_category,
    )


def measured_moving(truth: GroundTruth) -> CategorySelection:
    """The selection with its moving categories measured on the tracks (a game not in the
    table of `permakey.evaluation.categories`)."""
    motion = metrics.category_motion(
        truth.offsets, truth.category, truth.boxes, truth.track, len(truth.names)
    )
    counted = truth.selection.headline + truth.selection.small
    moving = tuple(
        name for name in counted if motion[truth.names.index(name)] > MOVING_PX
    )  # NaN (never seen twice in a row) compares False: static
    return replace(
        truth.selection,
        moving=moving,
        moving_source=f"measured: more than {MOVING_PX} px per step on these frames",
    )


def score_keypoints(
    keypoints: np.ndarray,
    truth: GroundTruth | None,
    bars: np.ndarray | None,
    bar_width: float,
    episode: np.ndarray,
    step: np.ndarray,
    height: int,
    width: int,
    radii: Sequence[int] = metrics.RADII,
) -> ColumnMetrics:
    """Every metric of one column (a model or a control).

    Args:
        keypoints: (N, K, 2) float, (row, col) pixels.
        truth: the objects of the N frames; None when the dataset has none.
        bars: (N, 2) bar positions in stored pixels (`permakey.data.noise.draw_bars`: int, or
            float for bars drawn before the resize), or None for clean frames.
        bar_width: bar width in pixels (unused without bars).
        episode: (N,) int episode of each frame.
        step: (N,) int step within the episode.
        height: frame height H.
        width: frame width W.
        radii: margins r in pixels.

    Returns:
        The metrics, per-radius values keyed by r. ``recall`` counts the headline objects,
        ``small_recall`` the small ones (None when there are none), and ``precision`` counts
        a keypoint inside any headline or small box (a keypoint on a bullet is on an
        object). ``per_category`` holds recall and recall bound of every headline and small
        category present, ``identity`` purity and kept tracks at the headline radius.
        Object metrics are None when ``truth`` is None; distractor metrics are None without
        bars.
    """
    num_keypoints = keypoints.shape[1]
    if truth is None:
        objects = dict.fromkeys(
            ["recall", "precision", "f1", "recall_bound", "small_recall", "per_category"]
        )
        identity = None
    else:
        objects = _detection_scores(keypoints, truth, num_keypoints, radii)
        identity = _identity_scores(keypoints, truth, metrics.HEADLINE_RADIUS)
    share = chance = None
    if bars is not None:
        share = {
            r: metrics.fraction(metrics.bar_hits(keypoints, bars, bar_width, r)) for r in radii
        }
        chance = {
            r: float(metrics.bar_area_fraction(bars, bar_width, r, height, width).mean())
            for r in radii
        }
    return ColumnMetrics(
        **objects,
        distractor_share=share,
        distractor_chance=chance,
        border_share=metrics.fraction(metrics.border_hits(keypoints, height, width)),
        border_chance=metrics.border_area_fraction(height, width),
        motion=Motion(**metrics.motion(keypoints, episode, step)),
        keypoints=num_keypoints,
        identity=identity,
    )


@dataclass
class _ModelOutputs:
    """What one model gives on the evaluated frames.

    Attributes:
        keypoints: (N, K, 2) float64, (row, col) pixels.
        peaks: (N, K, 2) float64 error-map peaks; None for a model without error maps.
        part_masses: (N, L, OUTSIDE + 1) float64, the error stack's mass in each part of the
            grown bars (`error_mass.part_masses`); None without error maps or bars.
    """

    keypoints: np.ndarray
    peaks: np.ndarray | None
    part_masses: np.ndarray | None


def _sprite_pixels(truth: GroundTruth | None, background, start: int, stop: int, clean):
    """(B, H, W) bool: the pixels on game objects of frames ``start:stop``, whose clean
    frames are (B, H, W, 3) uint8 ``clean``: inside the counted objects' boxes, or without
    ground truth, off the (H, W, 3) ``background``."""
    if truth is None:
        return error_mass.foreground(clean, background)
    height, width = clean.shape[1:3]
    offsets = truth.offsets[start : stop + 1]
    return error_mass.box_pixels(offsets, truth.boxes[offsets[0] : offsets[-1]], height, width)


def _run_models(models, split, num_frames, bars, noise, batch_size, truth, background):
    """Keypoints, error-map peaks and bar part masses of every model on the same frames.

    Returns:
        One `_ModelOutputs` per model, and the (N, OUTSIDE + 1) area shares of the bar parts
        (`error_mass.part_areas`); None when no part was measured (clean frames, or no model
        with error maps).
    """
    outputs = [{"keypoints": [], "peaks": [], "part_masses": []} for _ in models]
    areas = []
    measure_parts = bars is not None and any(model.error_layers for model in models)
    for start in range(0, num_frames, batch_size):
        stop = min(start + batch_size, num_frames)
        frames = split.read_frames(slice(start, stop))  # (B, H, W, 3) uint8
        height, width = frames.shape[1:3]
        labels = None
        if bars is not None:
            from permakey.data.noise import paint_bars

            if measure_parts:
                sprites = _sprite_pixels(truth, background, start, stop, frames)
                labels = error_mass.bar_parts(bars[start:stop], noise, height, width, sprites)
                areas.append(error_mass.part_areas(labels))
            frames = paint_bars(frames, bars[start:stop], noise)
        for model, out in zip(models, outputs, strict=True):
            # One pass of the encoder and LSP networks serves the keypoints, the peaks and
            # the bar masses.
            found = model.keypoints(frames, windows=False, error_maps=True)
            out["keypoints"].append(to_pixels(found.centres, height, width).numpy())
            if found.error_stack is not None:  # (B, L, H, W)
                out["peaks"].append(
                    controls.error_map_peaks(found.error_stack, model.num_keypoints)
                )
                if labels is not None:
                    stack = found.error_stack.numpy()
                    out["part_masses"].append(error_mass.part_masses(stack, labels))
    joined = []
    for out in outputs:
        peaks, masses = out["peaks"], out["part_masses"]
        joined.append(
            _ModelOutputs(
                np.concatenate(out["keypoints"]).astype(np.float64),
                np.concatenate(peaks) if peaks else None,
                np.concatenate(masses) if masses else None,
            )
        )
    return joined, np.concatenate(areas) if areas else None


def evaluate_models(
    models: Sequence[TrainedModel],
    split,
    selection: CategorySelection | None,
    noise=None,
    noise_seed: int = 0,
    max_frames: int | None = None,
    batch_size: int = 64,
    control_seed: int = 0,
    radii: Sequence[int] = metrics.RADII,
) -> EvaluationResult:
    """Scores several models and the controls on the same frames of one split.

    Args:
        models: the models, in column order, named by their ``name``; runs that differ only
            in their seed (`TrainedModel.seed_group`) get their seed stability reported.
        split: a `permakey.data.store.Split` (len, read_frames, episode, step, has_objects,
            object_table, categories).
        selection: which categories count; required when the split has objects.
        noise: a `permakey.data.noise.NoiseConfig`; None means kind "none": clean frames.
        noise_seed: seed of the bar positions, drawn once and shared by every model.
        max_frames: evaluate only the first this many frames (whole episodes first, so that
            consecutive frames stay consecutive).
        batch_size: frames read (and painted) at a time; each model splits them into its
            own forward passes (`TrainedModel.keypoints`).
        control_seed: seed of the random control.
        radii: margins r in pixels.

    Returns:
        The result, without ``dataset`` and ``code`` (`evaluate_runs` adds them).
    """
    if not models:
        raise ValueError("no models to evaluate")
    num_frames = len(split) if max_frames is None else min(len(split), max_frames)
    if num_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if split.has_objects and selection is None:
        raise ValueError("the split has objects: a CategorySelection is required")
    setting = Noise.from_config(noise, noise_seed)
    height, width = split.read_frames(slice(0, 1)).shape[1:3]
    truth = ground_truth(split, num_frames, selection, height, width) if selection else None
    if truth is not None and truth.selection.moving is None:
        truth = replace(truth, selection=measured_moving(truth))
    bars = background = None
    if setting.noisy:
        from permakey.data.noise import draw_bars

        bars = draw_bars(np.random.default_rng(noise_seed), num_frames, height, width, noise)
        if truth is None and any(model.error_layers for model in models):
            count = min(num_frames, error_mass.BACKGROUND_FRAMES)
            spread = np.unique(np.linspace(0, num_frames - 1, count).round().astype(np.int64))
            background = error_mass.background_mode(split.read_frames(spread))
    outputs, areas = _run_models(
        models, split, num_frames, bars, noise, batch_size, truth, background
    )
    sprites = error_mass.SPRITES_FROM_BACKGROUND if truth is None else error_mass.SPRITES_FROM_BOXES
    episode = np.asarray(split.episode[:num_frames])
    step = np.asarray(split.step[:num_frames])

    def score(points):
        return score_keypoints(
            points, truth, bars, setting.width or 0, episode, step, height, width, radii
        )

    columns = []
    for model, out in zip(models, outputs, strict=True):
        scores = score(out.keypoints)
        if out.part_masses is not None:
            mass = error_mass.bar_error_mass(out.part_masses, areas, model.error_layers, sprites)
            scores = replace(scores, bar_error_mass=mass)
        columns.append(Column(model.name, "model", scores, identity=model.identity()))
        template = score(controls.static_template(out.keypoints))
        columns.append(Column(template_name(model.name), "control", template, of=model.name))
        if out.peaks is not None:
            columns.append(
                Column(peaks_name(model.name), "control", score(out.peaks), of=model.name)
            )
    keypoints = [out.keypoints for out in outputs]
    counts = sorted({points.shape[1] for points in keypoints})
    for k in counts:
        random_points = controls.random_keypoints(num_frames, k, height, width, control_seed)
        columns.append(Column(random_name(k), "control", score(random_points)))
    if truth is not None and len(truth.category):
        for k in counts:  # the ceiling: every object followed, K at a time
            tracker = controls.object_tracker(
                truth.offsets, truth.category, truth.boxes, k, truth.track
            )
            columns.append(Column(tracker_name(k), "control", score(tracker)))

    groups: dict[str, list[int]] = {}
    for i, model in enumerate(models):
        if model.seed_group() is not None:
            groups.setdefault(model.seed_group(), []).append(i)
    stability = [
        SeedStability(
            runs=tuple(models[i].name for i in members),
            mean_matched_distance_px=metrics.seed_stability([keypoints[i] for i in members]),
        )
        for members in groups.values()
        if len(members) > 1
    ]
    return EvaluationResult(
        frames=num_frames,
        frame_size=(int(height), int(width)),
        radii=tuple(radii),
        headline_radius=metrics.HEADLINE_RADIUS,
        ground_truth=truth is not None,
        categories=truth.selection if truth is not None else selection,
        noise=setting,
        control_seed=control_seed,
        columns=tuple(columns),
        seed_stability=tuple(stability),
        identities=truth.identities if truth is not None else None,
    )


def evaluate_runs(
    runs: Sequence[str | Path],
    data: str | Path,
    split: str = "test",
    noise=None,
    noise_seed: int = 0,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    max_frames: int | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    control_seed: int = 0,
    weights: str = "best",
) -> EvaluationResult:
    """Evaluates trained runs on a dataset split: `evaluate_models` plus identities.

    Args:
        runs: run folders written by ``permakey train``.
        data: dataset folder written by ``permakey collect``.
        split: "train", "val" or "test".
        noise: `permakey.data.noise.NoiseConfig`; None means kind "none": clean frames.
        noise_seed: seed of the bar positions.
        include: ``--categories``: headline categories (default: the game's table).
        exclude: ``--exclude``: categories to leave out.
        max_frames: evaluate only the first this many frames.
        batch_size: frames read (and painted) at a time; each model splits them into its
            own forward passes (`TrainedModel.keypoints`).
        device: "cpu", "cuda", "mps" or "auto" (the best available).
        control_seed: seed of the random control.
        weights: "best" or "last" weights of every run (in each column's identity).

    Returns:
        The `evaluate_models` result with its ``dataset`` and ``code``.
    """
    from permakey.data.store import open_split

    data_split = open_split(data, split)
    selection = None
    if data_split.has_objects:
        game = str(data_split.meta.get("game", ""))
        try:
            selection = select_categories(game, list(data_split.categories), include, exclude)
        except ValueError as err:
            raise UserError(str(err)) from None
    models = load_runs(list(runs), weights, device=device)
    result = evaluate_models(
        models,
        data_split,
        selection,
        noise=noise,
        noise_seed=noise_seed,
        max_frames=max_frames,
        batch_size=batch_size,
        control_seed=control_seed,
    )
    dataset = DatasetInfo(str(data), split, data_split.identity(), data_split.meta)
    return replace(result, dataset=dataset, code=code_version())


def write_result(path: str | Path, result: EvaluationResult) -> None:
    """Writes an evaluation result as JSON (`EvaluationResult.to_json`), atomically."""
    write_json_atomic(path, result.to_json())


def read_result(path: str | Path) -> EvaluationResult:
    """The evaluation result of a JSON file that `write_result` wrote.

    Raises:
        UserError: the file is missing, or holds no evaluation result that this version reads.
    """
    try:
        return EvaluationResult.from_json(json.loads(Path(path).read_text()))
    except FileNotFoundError:
        raise UserError(f"{path}: no such evaluation result") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        reason = f"missing entry {err}" if isinstance(err, KeyError) else str(err)
        raise UserError(f"{path}: not a readable evaluation result ({reason})") from None


def _number(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}"


def table_rows(result: EvaluationResult) -> list[tuple[str, list[str]]]:
    """The rows of `format_table`: (metric label, one formatted value per column)."""
    columns = [column.metrics for column in result.columns]
    rows = []

    def per_radius(field: str, label: str):
        for r in result.radii:
            values = [_object_metric(result, getattr(m, field), r) for m in columns]
            rows.append((f"{label}@{r}", values))

    per_radius("f1", "F1")
    per_radius("recall", "object recall")
    bound = [_object_metric(result, m.recall_bound) for m in columns]
    rows.append(("recall bound K/n", bound))
    per_radius("precision", "keypoint precision")
    if any(m.small_recall is not None for m in columns):
        per_radius("small_recall", "small-object recall")
    headline = result.headline_radius
    selection = result.categories
    groups = [] if selection is None else [(HEADLINE, selection.headline), (SMALL, selection.small)]
    for group, names in groups:
        for name in names:
            values = []
            present = False
            for m in columns:
                if m.per_category is None:
                    values.append(NO_GROUND_TRUTH)
                elif name in m.per_category:
                    present = True
                    values.append(_number(m.per_category[name].recall[headline]))
                else:
                    values.append("n/a")
            if present:
                rows.append((f"recall@{headline} {name} ({group})", values))
    rows += identity_rows(result)
    if columns[0].distractor_share is not None:
        for r in result.radii:
            chance = columns[0].distractor_chance[r]
            rows.append(
                (
                    f"distractor share@{r} (chance {chance:.3f})",
                    [_number(m.distractor_share[r]) for m in columns],
                )
            )
    rows += bar_mass_rows(result)
    chance = columns[0].border_chance
    rows.append((f"border share (chance {chance:.3f})", [_number(m.border_share) for m in columns]))
    rows.append(("motion from mean (px)", [_number(m.motion.from_mean_px, 2) for m in columns]))
    rows.append(("motion per step (px)", [_number(m.motion.per_step_px, 2) for m in columns]))
    rows.append(("keypoints K", [str(m.keypoints) for m in columns]))
    return rows


def bar_mass_rows(result: EvaluationResult) -> list[tuple[str, list[str]]]:
    """The bar error mass rows of `format_table`: the share of the summed error map's mass on
    the grown bars, per LSP layer, and per part of the grown bars (each with its area share,
    the chance level); none where no column has it (clean frames, no model with error maps,
    files from before it)."""
    masses = [column.metrics.bar_error_mass for column in result.columns]
    first = next((m for m in masses if m is not None), None)
    if first is None:
        return []
    r = first.margin
    rows = [
        (
            f"bar error mass@{r} (chance {first.chance:.3f})",
            [_number(m and m.summed) for m in masses],
        )
    ]
    for layer in sorted({layer for m in masses if m is not None for layer in m.layers}):
        values = [
            _number(m.per_layer[m.layers.index(layer)])
            if m is not None and layer in m.layers
            else "n/a"
            for m in masses
        ]
        rows.append((f"bar error mass@{r} layer {layer}", values))
    for name, part in first.parts.items():
        label = f"bar error mass@{r} {name} (area {part.area:.3f})"
        rows.append((label, [_number(m and m.parts[name].summed) for m in masses]))
    return rows


def _kept(counts: TrackCounts | None) -> str:
    if counts is None:
        return "n/a"
    share = counts.share
    return f"{counts.kept}" + ("" if share is None else f" ({share:.2f})")


def identity_rows(result: EvaluationResult) -> list[tuple[str, list[str]]]:
    """The identity rows of `format_table`: mean purity and tracks kept (all, moving, static,
    per moving category); none for a file written before identities were measured."""
    scores = [column.metrics.identity for column in result.columns]
    r = result.headline_radius
    if not result.ground_truth:
        labels = [f"mean purity@{r}", f"objects kept@{r}"]
        return [(label, [NO_GROUND_TRUTH] * len(scores)) for label in labels]
    first = next((s for s in scores if s is not None), None)
    if first is None:
        return []
    rows = [(f"mean purity@{r}", [_number(s and s.mean_purity) for s in scores])]
    for label, pick in [
        ("objects kept", lambda s: s.kept),
        ("moving kept", lambda s: s.moving),
        ("static kept", lambda s: s.static),
    ]:
        label = f"{label}@{r} (of {pick(first).tracks} tracks)"
        rows.append((label, [_kept(None if s is None else pick(s)) for s in scores]))
    for name in result.categories.moving or ():
        if name in first.per_category:
            label = f"kept@{r} {name} (of {first.per_category[name].tracks})"
            rows.append((label, [_kept(s and s.per_category.get(name)) for s in scores]))
    return rows


def _object_metric(result: EvaluationResult, value, radius: int | None = None) -> str:
    """An object metric's cell: `NO_GROUND_TRUTH` without objects, "n/a" where None."""
    if not result.ground_truth:
        return NO_GROUND_TRUTH
    if radius is not None and value is not None:
        value = value[radius]
    return _number(value)


def format_table(result: EvaluationResult) -> str:
    """The result as a side-by-side markdown table: one column per model and control.

    Object metrics read "no ground truth" for a dataset without objects, "n/a" where a value
    does not apply; seed stability follows the table, one line per group of seeds. Kept
    tracks read "count (share)".
    """
    header = ["metric"] + [column.name for column in result.columns]
    rows = [header, ["---"] * len(header)] + [
        [label, *values] for label, values in table_rows(result)
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(width) if row is not rows[1] else "-" * width
            for cell, width in zip(row, widths, strict=True)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    for group in result.seed_stability:
        lines.append(
            f"\nseed stability ({', '.join(group.runs)}): "
            f"mean matched distance {group.mean_matched_distance_px:.2f} px"
        )
    lines.append(
        f"\n{result.frames} frames, noise {result.noise.describe()}"
        + (f"; categories: {result.categories.source}" if result.categories else "")
        + (f"; tracks: {result.identities}" if result.identities else "")
        + (
            f"; moving: {', '.join(result.categories.moving) or 'none'} "
            f"({result.categories.moving_source})"
            if result.categories and result.categories.moving is not None
            else ""
        )
    )
    return "\n".join(lines)
