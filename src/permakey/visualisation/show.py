"""What `permakey show` draws: trained models on a dataset split, turned into the paper's figures.

`build_figures` picks test frames, paints the same Noisy Atari bars for every model, runs each
`permakey.runs.TrainedModel` on them (keypoints, windows and, for models that have them, the
error maps per layer) and assembles the figures of `permakey.visualisation.figures` by file
name; `write_figures` writes them into one folder atomically. `show_runs` does all of it for
run folders on a dataset split: what `permakey show` calls.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from permakey.errors import UserError
from permakey.fileio import atomic_dir
from permakey.runs import FrameKeypoints, TrainedModel
from permakey.visualisation import figures

# Frames per forward pass of a figure's model calls.
BATCH_SIZE = 32


def infer(model: TrainedModel, frames: np.ndarray, error_maps: bool = True) -> FrameKeypoints:
    """A model's keypoints, windows and (where it has them) error maps on (N, H, W, 3) uint8
    frames, in batches of `BATCH_SIZE`."""
    return model.keypoints(frames, BATCH_SIZE, windows=True, error_maps=error_maps)


def spread_indices(count: int, n: int) -> np.ndarray:
    """``n`` indices spread evenly over ``range(count)`` (all of them when ``n >= count``)."""
    if count < 1:
        raise ValueError("the split has no frames")
    return np.unique(np.linspace(0, count - 1, min(n, count)).round().astype(np.int64))


def episode_indices(episode: np.ndarray, step: np.ndarray, n: int) -> np.ndarray:
    """Indices of the first ``n`` steps of the longest episode, in step order."""
    episode, step = np.asarray(episode), np.asarray(step)
    ids, counts = np.unique(episode, return_counts=True)
    members = np.flatnonzero(episode == ids[counts.argmax()])
    return members[np.argsort(step[members], kind="stable")][:n]


def _frame_labels(split, index: np.ndarray) -> list[str]:
    episode, step = np.asarray(split.episode), np.asarray(split.step)
    return [f"episode {episode[i]}, step {step[i]}" for i in index]


def _paint(frames: np.ndarray, noise, seed: int) -> np.ndarray:
    """The frames with Noisy Atari bars, drawn from ``seed`` (so every model sees the same)."""
    from permakey.data.noise import draw_bars, paint_bars

    n, h, w, _ = frames.shape
    bars = draw_bars(np.random.default_rng(seed), n, h, w, noise)
    return paint_bars(frames, bars, noise)


def _keypoint_figure(models, inferred, frames, labels, title) -> Image.Image:
    error_maps = {}
    for model, result in zip(models, inferred, strict=True):
        for layer, maps in zip(model.error_layers, result.error_maps or [], strict=True):
            error_maps[f"{model.name} error map, layer {layer}"] = maps
    return figures.keypoint_figure(
        frames,
        {m.name: r.centres for m, r in zip(models, inferred, strict=True)},
        error_maps,
        title,
        labels,
    )


def seed_groups(models: Sequence[TrainedModel], all_seeds: bool = False) -> list[list[int]]:
    """Groups of two or more models that differ only in their seed (indices into ``models``).

    Args:
        models: the models.
        all_seeds: treat every model as a seed of one group (``--seeds``).
    """
    if all_seeds:
        return [list(range(len(models)))] if len(models) > 1 else []
    groups: dict[str, list[int]] = {}
    for i, model in enumerate(models):
        if model.seed_group() is not None:
            groups.setdefault(model.seed_group(), []).append(i)
    return [members for members in groups.values() if len(members) > 1]


def build_figures(
    models: Sequence[TrainedModel],
    split,
    game: str = "",
    num_frames: int = 4,
    noise=None,
    noise_seed: int = 0,
    episode_frames: int = 48,
    all_seeds: bool = False,
) -> dict[str, Image.Image | list[Image.Image]]:
    """Every figure of `permakey show`, by file name.

    Args:
        models: the models, in row order, labelled by their ``name``.
        split: a `permakey.data.store.Split` (read_frames, episode, step, len).
        game: game name for the titles.
        num_frames: frames (columns) of the still figures, spread over the split.
        noise: a `permakey.data.noise.NoiseConfig` for the Noisy Atari variants; None or kind
            "none" for clean frames only.
        noise_seed: seed of the bar positions.
        episode_frames: frames of the animation (the first steps of the longest episode).
        all_seeds: draw every model in the Figure 3 style figure, seeds or not.

    Returns:
        "figure2_clean.png", "figure4_windows.png", "episode_clean.gif" always;
        "figure2_noisy.png" and "episode_noisy.gif" with noise; "figure3_seeds.png" (or
        "figure3_seeds_<i>.png" for several groups) for models that differ only in seed.
        PNG entries are images, GIF entries lists of frames.
    """
    if not models:
        raise ValueError("no models to show")
    noisy = noise is not None and noise.kind != "none"
    prefix = f"{game}: " if game else ""
    still = spread_indices(len(split), num_frames)
    clean = split.read_frames(still)
    labels = _frame_labels(split, still)
    variants = {"clean": clean}
    if noisy:
        variants["noisy"] = _paint(clean, noise, noise_seed)
    out: dict[str, Image.Image | list[Image.Image]] = {}
    for variant, frames in variants.items():
        inferred = [infer(m, frames) for m in models]
        what = "clean frames" if variant == "clean" else f"Noisy Atari ({noise.kind} bars)"
        out[f"figure2_{variant}.png"] = _keypoint_figure(
            models, inferred, frames, labels, f"{prefix}keypoints and error maps, {what}"
        )
        if variant == "clean":
            out["figure4_windows.png"] = figures.window_figure(
                frames,
                {m.name: (r.centres, r.windows) for m, r in zip(models, inferred, strict=True)},
                f"{prefix}keypoint centres and Gaussian windows, clean frames",
                labels,
            )
            groups = seed_groups(models, all_seeds)
            for g, members in enumerate(groups):
                name = "figure3_seeds.png" if len(groups) == 1 else f"figure3_seeds_{g}.png"
                runs = {_seed_label(models[i]): inferred[i].centres for i in members}
                out[name] = figures.seed_figure(
                    frames, runs, f"{prefix}keypoints of {len(members)} seeds", labels
                )

    if episode_frames > 0:
        index = episode_indices(split.episode, split.step, episode_frames)
        frames = split.read_frames(index)
        step = np.asarray(split.step)[index]
        episode = np.asarray(split.episode)[index[0]]
        for variant in variants:
            shown_frames = frames if variant == "clean" else _paint(frames, noise, noise_seed + 1)
            keypoints = {m.name: infer(m, shown_frames, error_maps=False).centres for m in models}
            out[f"episode_{variant}.gif"] = figures.keypoint_animation(
                shown_frames,
                keypoints,
                f"{prefix}episode {episode}, {variant}",
                [f"step {s}" for s in step],
            )
    return out


def _seed_label(model: TrainedModel) -> str:
    return model.name if model.seed is None else f"seed {model.seed} ({model.name})"


def write_figures(
    out_dir: str | os.PathLike,
    built: dict[str, Image.Image | list[Image.Image]],
    overwrite: bool = False,
    fps: float = 8.0,
) -> list[Path]:
    """Writes figures from `build_figures` into a new folder; all or nothing.

    Args:
        out_dir: the folder; it must not exist unless ``overwrite``.
        built: file name -> image (PNG) or list of frames (GIF).
        overwrite: replace an existing folder (only once the new one is complete).
        fps: frame rate of the GIFs.

    Returns:
        The written paths under ``out_dir``.

    Raises:
        FileExistsError: ``out_dir`` exists and ``overwrite`` is False.
    """
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        for name, item in built.items():
            if name.endswith(".gif"):
                figures.save_gif(item, tmp / name, fps)
            else:
                figures.save_png(item, tmp / name)
    return [out_dir / name for name in built]


def show_runs(
    runs: Sequence[str | os.PathLike],
    data: str | os.PathLike,
    out: str | os.PathLike,
    split: str = "test",
    frames: int = 4,
    noise: str = "both",
    noise_seed: int = 0,
    episode_frames: int = 48,
    seeds: bool = False,
    fps: float = 8.0,
    device: str = "auto",
    overwrite: bool = False,
    weights: str = "best",
    noise_width: int | None = None,
    noise_colour: Sequence[int] | None = None,
    noise_random_colour: bool | None = None,
    noise_before_resize: bool | None = None,
) -> list[Path]:
    """Draws every figure of `build_figures` for trained runs into the folder ``out``.

    Args:
        runs: run folders written by `permakey train`, in row order (named by their folders).
        data: dataset folder written by `permakey collect`.
        out: the figures folder; written whole, once complete.
        split: "train", "val" or "test".
        frames: frames (columns) per still figure, >= 1.
        noise: Noisy Atari kind of the noisy variants ("horizontal", "vertical", "both"), or
            "none" for clean frames only.
        noise_seed: seed of the bar positions.
        episode_frames: frames of the GIFs, from the longest episode of the split; 0: no GIF.
        seeds: draw all runs together as seeds (Figure 3 style) even if they differ in more
            than their seed.
        fps: frame rate of the GIFs, > 0.
        device: "cpu", "cuda", "mps", or "auto" (the best available).
        overwrite: replace an existing ``out``.
        weights: "best", "last" or "step-N" weights of every run.
        noise_width: bar thickness in stored pixels; None: as the runs trained.
        noise_colour: bar RGB colour, each 0-255; None: as the runs trained.
        noise_random_colour: a fresh bar colour per frame; None: as the runs trained.
        noise_before_resize: bars as if painted before the dataset's resize; None: as the
            runs trained. The bars of these four and ``noise`` are `permakey evaluate`'s for
            the same values (`permakey.runs.bars.noise_for_runs`).

    Returns:
        The written files, in `build_figures`' order.

    Raises:
        UserError: ``out`` exists without ``overwrite`` (checked before any model runs), a
            missing dataset or run, bad bar options or runs trained on bars that differ in
            an option left None.
    """
    from permakey.data.store import open_split
    from permakey.runs.bars import noise_for_runs
    from permakey.runs.trained import load_runs

    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"{out} already exists (overwrite to replace it)")
    data_split = open_split(data, split)
    bars = noise_for_runs(
        runs, data, noise, noise_width, noise_colour, noise_random_colour, noise_before_resize
    )
    built = build_figures(
        load_runs(runs, weights, device=device),
        data_split,
        game=str(data_split.meta.get("game", "")),
        num_frames=frames,
        noise=bars,
        noise_seed=noise_seed,
        episode_frames=episode_frames,
        all_seeds=seeds,
    )
    return write_figures(out, built, overwrite=overwrite, fps=fps)
