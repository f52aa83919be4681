"""The `evaluate` report: every metric for several models and the controls on the same frames.

`evaluate_models` is the core: it reads the frames of a split once, paints the same Noisy
Atari bars (drawn once from a fixed seed) for every model, runs each `TrainedModel`, builds
the controls (random points, each model's static template, the error-map peaks of models
that have error maps) and scores every column with the same metrics
(`permakey.evaluation.metrics`). `evaluate_runs` loads trained runs and calls it. `format_table` turns the result into a side-by-side
markdown table; `write_result` writes the JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from permakey.errors import UserError
from permakey.evaluation import controls, metrics
from permakey.evaluation.categories import HEADLINE, SMALL, CategorySelection, select_categories
from permakey.fileio import write_json_atomic
from permakey.keypoints import to_pixels
from permakey.runs import TrainedModel
from permakey.runs.folder import code_version
from permakey.runs.trained import load_runs

NO_GROUND_TRUTH = "no ground truth"
FORMAT = "permakey-evaluation"
FORMAT_VERSION = 1


@dataclass
class GroundTruth:
    """The objects of the evaluated frames, split into the selection's groups.

    Attributes:
        names: every category name of the dataset.
        selection: which categories count and how.
        offsets: (N + 1,) int64, ragged offsets of the objects kept (any group but excluded).
        category: (M,) int64 category index of each object.
        boxes: (M, 4) float, (x, y, w, h) edge coordinates in the stored frame.
    """

    names: list[str]
    selection: CategorySelection
    offsets: np.ndarray
    category: np.ndarray
    boxes: np.ndarray

    def subset(self, group_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(offsets, category, boxes) of the objects whose category is in ``group_names``."""
        wanted = [self.names.index(name) for name in group_names]
        keep = np.isin(self.category, wanted)
        return select_objects(self.offsets, keep), self.category[keep], self.boxes[keep]


def select_objects(offsets: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Ragged offsets (N + 1,) of the objects with ``keep`` (M,) bool true, frames unchanged."""
    per_frame = metrics.segment_sum(keep, offsets)  # (N,)
    return np.concatenate([[0], np.cumsum(per_frame)]).astype(np.int64)


def inside_frame(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(M,) bool: boxes with positive area that overlap the frame (hygiene: others drop)."""
    x, y, w, h = (np.asarray(boxes, dtype=np.float64)[:, i] for i in range(4))
    return (w > 0) & (h > 0) & (x < width) & (x + w > 0) & (y < height) & (y + h > 0)


def ground_truth(split, num_frames: int, selection: CategorySelection, height: int, width: int):
    """The `GroundTruth` of the first ``num_frames`` frames of a split; None without objects."""
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
    return GroundTruth(names, selection, select_objects(offsets, keep), category[keep], boxes[keep])


def _by_radius(values: dict[int, Any]) -> dict[str, Any]:
    return {str(r): v for r, v in values.items()}


def _detection_scores(keypoints, truth: GroundTruth, num_keypoints: int, radii) -> dict:
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
        per_category[name] = {
            "group": truth.selection.group(name),
            "objects": int(members.sum()),
            "recall": _by_radius({r: float(found[r][members].mean()) for r in radii}),
            "recall_bound": metrics.recall_bound(offsets, num_keypoints),
        }
    return {
        "recall": _by_radius(recall),
        "precision": _by_radius(precision),
        "f1": _by_radius({r: metrics.f1(precision[r], recall[r]) for r in radii}),
        "recall_bound": metrics.recall_bound(headline[0], num_keypoints),
        "small_recall": _by_radius(small_recall) if len(small[1]) else None,
        "per_category": per_category,
    }


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
) -> dict:
    """Every metric of one column (a model or a control).

    Args:
        keypoints: (N, K, 2) float, (row, col) pixels.
        truth: the objects of the N frames; None when the dataset has none.
        bars: (N, 2) int bar positions, or None for clean frames.
        bar_width: bar width in pixels (unused without bars).
        episode: (N,) int episode of each frame.
        step: (N,) int step within the episode.
        height: frame height H.
        width: frame width W.
        radii: margins r in pixels.

    Returns:
        A JSON-ready dict; per-radius values are keyed by str(r). ``recall`` counts the
        headline objects, ``small_recall`` the small ones (None when there are none), and
        ``precision`` counts a keypoint inside any headline or small box (a keypoint on a
        bullet is on an object). ``per_category`` holds recall and recall bound of every
        headline and small category present. Object metrics are the string
        `NO_GROUND_TRUTH` when ``truth`` is None; distractor metrics are None without bars.
    """
    num_keypoints = keypoints.shape[1]
    if truth is None:
        scores = dict.fromkeys(
            ["recall", "precision", "f1", "recall_bound", "small_recall", "per_category"],
            NO_GROUND_TRUTH,
        )
    else:
        scores = _detection_scores(keypoints, truth, num_keypoints, radii)
    if bars is None:
        scores["distractor_share"] = scores["distractor_chance"] = None
    else:
        scores["distractor_share"] = _by_radius(
            {r: metrics.fraction(metrics.bar_hits(keypoints, bars, bar_width, r)) for r in radii}
        )
        scores["distractor_chance"] = _by_radius(
            {
                r: float(metrics.bar_area_fraction(bars, bar_width, r, height, width).mean())
                for r in radii
            }
        )
    scores["border_share"] = metrics.fraction(metrics.border_hits(keypoints, height, width))
    scores["border_chance"] = metrics.border_area_fraction(height, width)
    scores["motion"] = metrics.motion(keypoints, episode, step)
    scores["keypoints"] = num_keypoints
    return scores


def _run_models(models: Sequence[TrainedModel], split, num_frames, bars, noise, batch_size):
    """Keypoints (pixels) and error-map peaks of every model on the same (noisy) frames."""
    keypoints = [[] for _ in models]
    peaks = [[] for _ in models]
    height = width = None
    for start in range(0, num_frames, batch_size):
        stop = min(start + batch_size, num_frames)
        frames = split.read_frames(slice(start, stop))  # (B, H, W, 3) uint8
        if bars is not None:
            from permakey.data.noise import paint_bars

            frames = paint_bars(frames, bars[start:stop], noise)
        height, width = frames.shape[1:3]
        for i, model in enumerate(models):
            # One pass of the encoder and LSP networks serves the keypoints and the peaks.
            found = model.keypoints(frames, len(frames), windows=False, error_maps=True)
            keypoints[i].append(to_pixels(found.centres, height, width).numpy())
            if found.error_stack is not None:  # (B, L, H, W)
                peaks[i].append(controls.error_map_peaks(found.error_stack, model.num_keypoints))
    keypoints = [np.concatenate(k).astype(np.float64) for k in keypoints]
    peaks = [np.concatenate(p) if p else None for p in peaks]
    return keypoints, peaks, height, width


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
) -> dict:
    """Scores several models and the controls on the same frames of one split.

    Args:
        models: the models, in column order, named by their ``name``; runs that differ only
            in their seed (`TrainedModel.seed_group`) get their seed stability reported.
        split: a `permakey.data.store.Split` (len, read_frames, episode, step, has_objects,
            object_table, categories).
        selection: which categories count; required when the split has objects.
        noise: a `permakey.data.noise.NoiseConfig`; None or kind "none" for clean frames.
        noise_seed: seed of the bar positions, drawn once and shared by every model.
        max_frames: evaluate only the first this many frames (whole episodes first, so that
            consecutive frames stay consecutive).
        batch_size: frames per forward pass.
        control_seed: seed of the random control.
        radii: margins r in pixels.

    Returns:
        JSON-ready dict: ``frames``, ``radii``, ``noise``, ``categories``, ``columns`` (a list
        of {name, kind ("model" or "control"), of (the model a control belongs to), identity,
        metrics}) and ``seed_stability`` (a list of {runs, mean_matched_distance_px}).
    """
    if not models:
        raise ValueError("no models to evaluate")
    num_frames = len(split) if max_frames is None else min(len(split), max_frames)
    if num_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    noisy = noise is not None and noise.kind != "none"
    bars = None
    if noisy:
        from permakey.data.noise import draw_bars

        height, width = split.read_frames(slice(0, 1)).shape[1:3]
        bars = draw_bars(np.random.default_rng(noise_seed), num_frames, height, width, noise)
    keypoints, peaks, height, width = _run_models(
        models, split, num_frames, bars, noise, batch_size
    )
    if split.has_objects and selection is None:
        raise ValueError("the split has objects: a CategorySelection is required")
    truth = ground_truth(split, num_frames, selection, height, width) if selection else None
    episode = np.asarray(split.episode[:num_frames])
    step = np.asarray(split.step[:num_frames])

    def score(points):
        return score_keypoints(
            points, truth, bars, noise.width if noisy else 0, episode, step, height, width, radii
        )

    columns = []
    for model, points, model_peaks in zip(models, keypoints, peaks, strict=True):
        columns.append(
            {"name": model.name, "kind": "model", "of": None, "identity": model.identity()}
        )
        columns[-1]["metrics"] = score(points)
        columns.append({"name": f"template: {model.name}", "kind": "control", "of": model.name})
        columns[-1]["metrics"] = score(controls.static_template(points))
        if model_peaks is not None:
            columns.append({"name": f"peaks: {model.name}", "kind": "control", "of": model.name})
            columns[-1]["metrics"] = score(model_peaks)
    for k in sorted({points.shape[1] for points in keypoints}):
        random_points = controls.random_keypoints(num_frames, k, height, width, control_seed)
        columns.append({"name": f"random K={k}", "kind": "control", "of": None})
        columns[-1]["metrics"] = score(random_points)

    groups: dict[str, list[int]] = {}
    for i, model in enumerate(models):
        if model.seed_group() is not None:
            groups.setdefault(model.seed_group(), []).append(i)
    stability = [
        {
            "runs": [models[i].name for i in members],
            "mean_matched_distance_px": metrics.seed_stability([keypoints[i] for i in members]),
        }
        for members in groups.values()
        if len(members) > 1
    ]
    return {
        "frames": num_frames,
        "frame_size": [int(height), int(width)],
        "radii": list(radii),
        "headline_radius": metrics.HEADLINE_RADIUS,
        "ground_truth": truth is not None,
        "categories": selection.to_json() if selection else None,
        "noise": {
            "kind": noise.kind if noisy else "none",
            "width": noise.width if noisy else None,
            "colour": list(noise.colour) if noisy else None,
            "seed": noise_seed if noisy else None,
        },
        "control_seed": control_seed,
        "columns": columns,
        "seed_stability": stability,
    }


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
) -> dict:
    """Evaluates trained runs on a dataset split: `evaluate_models` plus identities.

    Args:
        runs: run folders written by ``permakey train``.
        data: dataset folder written by ``permakey collect``.
        split: "train", "val" or "test".
        noise: `permakey.data.noise.NoiseConfig`, or None for clean frames.
        noise_seed: seed of the bar positions.
        include: ``--categories``: headline categories (default: the game's table).
        exclude: ``--exclude``: categories to leave out.
        max_frames: evaluate only the first this many frames.
        batch_size: frames per forward pass.
        device: "cpu", "cuda", "mps" or "auto" (the best available).
        control_seed: seed of the random control.
        weights: "best" or "last" weights of every run (in each column's identity).

    Returns:
        The `evaluate_models` dict plus ``format``, ``code`` and ``dataset`` identity.
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
    result["dataset"] = {
        "path": str(data),
        "split": split,
        "identity": data_split.identity(),
        "meta": data_split.meta,
    }
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "code": code_version(), **result}


def write_result(path: str | Path, result: dict) -> None:
    """Writes an evaluation result as JSON, atomically."""
    write_json_atomic(path, result)


def _number(value, digits: int = 3) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}"


def table_rows(result: dict) -> list[tuple[str, list[str]]]:
    """The rows of `format_table`: (metric label, one formatted value per column)."""
    columns = [column["metrics"] for column in result["columns"]]
    radii = [str(r) for r in result["radii"]]
    rows = []

    def per_radius(key: str, label: str):
        for r in radii:
            rows.append((f"{label}@{r}", [_number(_get(m[key], r)) for m in columns]))

    per_radius("f1", "F1")
    per_radius("recall", "object recall")
    rows.append(("recall bound K/n", [_number(m["recall_bound"]) for m in columns]))
    per_radius("precision", "keypoint precision")
    if any(isinstance(m["small_recall"], dict) for m in columns):
        per_radius("small_recall", "small-object recall")
    headline = str(result["headline_radius"])
    categories = result["categories"] or {}
    for group in (HEADLINE, SMALL):
        for name in categories.get(group, []):
            values = []
            present = False
            for m in columns:
                entry = m["per_category"]
                if isinstance(entry, str):
                    values.append(entry)
                elif name in entry:
                    present = True
                    values.append(_number(entry[name]["recall"][headline]))
                else:
                    values.append("n/a")
            if present:
                rows.append((f"recall@{headline} {name} ({group})", values))
    if columns[0]["distractor_share"] is not None:
        for r in radii:
            chance = columns[0]["distractor_chance"][r]
            rows.append(
                (
                    f"distractor share@{r} (chance {chance:.3f})",
                    [_number(m["distractor_share"][r]) for m in columns],
                )
            )
    chance = columns[0]["border_chance"]
    rows.append(
        (f"border share (chance {chance:.3f})", [_number(m["border_share"]) for m in columns])
    )
    rows.append(
        ("motion from mean (px)", [_number(m["motion"]["from_mean_px"], 2) for m in columns])
    )
    rows.append(("motion per step (px)", [_number(m["motion"]["per_step_px"], 2) for m in columns]))
    rows.append(("keypoints K", [str(m["keypoints"]) for m in columns]))
    return rows


def _get(value, key: str):
    return value if isinstance(value, str) or value is None else value[key]


def format_table(result: dict) -> str:
    """The result as a side-by-side markdown table: one column per model and control.

    Object metrics read "no ground truth" for a dataset without objects, "n/a" where a value
    does not apply; seed stability follows the table, one line per group of seeds.
    """
    header = ["metric"] + [column["name"] for column in result["columns"]]
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
    for group in result["seed_stability"]:
        lines.append(
            f"\nseed stability ({', '.join(group['runs'])}): "
            f"mean matched distance {group['mean_matched_distance_px']:.2f} px"
        )
    noise = result["noise"]
    lines.append(
        f"\n{result['frames']} frames, noise {noise['kind']}"
        + (f" (seed {noise['seed']})" if noise["seed"] is not None else "")
        + (f"; categories: {result['categories']['source']}" if result["categories"] else "")
    )
    return "\n".join(lines)
