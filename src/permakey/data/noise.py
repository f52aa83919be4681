"""Noisy Atari: a bar of one colour over every frame, at a fresh random position each time.

The distractor of the paper: a horizontal bar, a vertical bar, or both, ``width`` pixels
thick and spanning the frame, drawn on the fly when frames are read. A frame's bars are a
pair (top row of the horizontal bar, left column of the vertical bar) in pixels of the stored
frame, -1 where absent; the same pair paints the bars (`paint_bars`) and gives their masks
(`bar_mask`) for evaluation. `frame_bars` draws them from (seed, epoch, frame index) alone, so
validation and test noise is reproducible and training noise is fresh every epoch.

The authors' code paints the bars on the frame after its resize to 84 x 84, in (128, 0, 255),
on every frame; so do the defaults here. Options that are not the paper's (for the controlled
runs of Noisy Atari):

- ``random_colour``: each frame's bars get their own colour, uniform over the RGB cube. It is
  drawn from the frame's bar positions, so the pair above still fixes everything painted and
  every reader of the bars (training, evaluation, figures) paints the same colour.
- ``before_resize``: the bars as if painted on the raw 210 x 160 frame before its resize with
  the dataset's method. Raw positions are uniform over the raw rows (columns) that keep the bar
  inside, the bar round(width x 210 / 84) raw rows (round(width x 160 / 84) raw columns)
  thick, about ``width`` stored pixels; the pair holds them in stored pixels, a multiple of
  0.4 (of 0.525), so its edges fall between stored pixels. Painting starts from the stored
  frame (datasets keep no raw frames by default): each stored pixel becomes its share of
  bar, by the resize's own weights (`permakey.data.frames.resize_weights`), blended with its
  stored value. That is exactly what "nearest" gives; with "area" and "authors" a
  partly covered pixel blends the bar with the mean of its whole footprint rather than of the
  raw pixels the bar leaves uncovered, the same wherever those are uniform (background).
- a share of noisy frames below 1 (`frame_bars`'s ``share``, the datasets' ``noise_share``):
  the other frames are clean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from permakey.data.frames import RAW_SHAPE, RESIZE_METHODS, resize_weights

NoiseKind = Literal["none", "horizontal", "vertical", "both"]
NOISE_KINDS = ("none", "horizontal", "vertical", "both")
# The first word of the seed of a frame's random colour (its bar positions follow).
_COLOUR_SEED = 17


@dataclass(frozen=True)
class NoiseConfig:
    """Which bars to draw, how thick, in which colour, at which stage.

    Attributes:
        kind: "none", "horizontal", "vertical" or "both".
        width: bar thickness in pixels of the stored frame (5 at 84 x 84 in the paper).
        colour: RGB colour of the bars, each 0-255 (unused with ``random_colour``).
        random_colour: a fresh colour per frame instead of ``colour`` (not in the paper).
        before_resize: None: painted on the stored frame (the paper's); a resize method of
            `permakey.data.frames.RESIZE_METHODS`, the dataset's: painted as if on the raw
            frame before that resize (not in the paper).
    """

    kind: NoiseKind = "none"
    width: int = 5
    colour: tuple[int, int, int] = (128, 0, 255)
    random_colour: bool = False
    before_resize: str | None = None

    def __post_init__(self):
        if self.kind not in NOISE_KINDS:
            raise ValueError(
                f"unknown noise kind {self.kind!r}; choose from {', '.join(NOISE_KINDS)}"
            )
        if self.width < 1:
            raise ValueError(f"bar width must be >= 1 pixel, got {self.width}")
        if len(self.colour) != 3 or not all(0 <= c <= 255 for c in self.colour):
            raise ValueError(f"bar colour must be three values in 0-255, got {self.colour!r}")
        if self.before_resize is not None and self.before_resize not in RESIZE_METHODS:
            raise ValueError(
                f"before_resize must be None or a resize method of {RESIZE_METHODS}, got "
                f"{self.before_resize!r}"
            )

    @property
    def horizontal(self) -> bool:
        return self.kind in ("horizontal", "both")

    @property
    def vertical(self) -> bool:
        return self.kind in ("vertical", "both")


def _raw_thickness(width: int, stored: int, raw: int) -> int:
    """Raw pixels of a bar ``width`` stored pixels thick along an axis of ``stored`` pixels."""
    return max(1, round(width * raw / stored))


def draw_bars(
    rng: np.random.Generator, n: int, height: int, width: int, cfg: NoiseConfig
) -> np.ndarray:
    """Draws bar positions for n frames, uniformly so that each bar lies fully inside.

    Args:
        rng: the generator to draw from.
        n: number of frames.
        height: frame height in pixels.
        width: frame width in pixels.
        cfg: the noise configuration.

    Returns:
        (n, 2): top row of the horizontal bar in [0, height - cfg.width], left column of the
        vertical bar in [0, width - cfg.width]; -1 where the kind has no such bar. int64; with
        ``cfg.before_resize`` float64, raw positions in stored pixels (see the module).
    """
    if cfg.width > min(height, width):
        raise ValueError(f"bar width {cfg.width} does not fit a {height} x {width} frame")
    if cfg.before_resize is None:
        shape, thickness = (height, width), (cfg.width, cfg.width)
    else:
        shape = RAW_SHAPE[:2]
        thickness = tuple(
            _raw_thickness(cfg.width, s, r) for s, r in zip((height, width), shape, strict=True)
        )
    # Both columns are always drawn, so a frame's horizontal bar does not depend on the kind.
    rows = rng.integers(0, shape[0] - thickness[0] + 1, size=n)
    cols = rng.integers(0, shape[1] - thickness[1] + 1, size=n)
    if cfg.before_resize is None:
        bars = np.full((n, 2), -1, dtype=np.int64)
    else:
        bars = np.full((n, 2), -1.0)
        rows, cols = rows * (height / shape[0]), cols * (width / shape[1])
    if cfg.horizontal:
        bars[:, 0] = rows
    if cfg.vertical:
        bars[:, 1] = cols
    return bars


def frame_bars(
    seed: int,
    epoch: int,
    indices,
    height: int,
    width: int,
    cfg: NoiseConfig,
    share: float = 1.0,
) -> np.ndarray:
    """The bars of given frames, determined by (seed, epoch, frame index) alone.

    Args:
        seed: the noise seed (>= 0).
        epoch: the epoch (>= 0); keep it fixed (e.g. 0) for validation and test.
        indices: frame indices (>= 0), an int or a sequence.
        height: frame height in pixels.
        width: frame width in pixels.
        cfg: the noise configuration.
        share: the probability in [0, 1] that a frame has bars (1: every frame, the paper's).
            A frame's bars, where it has them, are the same whatever the share, and the frames
            with bars at a share are among those at any higher share.

    Returns:
        (n, 2) bars as in `draw_bars`, one row per index; -1 in both columns for a clean frame.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"noise share must be in [0, 1], got {share}")
    indices = np.atleast_1d(np.asarray(indices, dtype=np.int64))
    dtype = np.int64 if cfg.before_resize is None else np.float64
    bars = np.full((len(indices), 2), -1, dtype=dtype)
    if cfg.kind == "none":
        return bars
    for row, index in enumerate(indices):
        rng = np.random.default_rng([seed, epoch, int(index)])
        bars[row] = draw_bars(rng, 1, height, width, cfg)[0]
        # Drawn after the position, and only below 1, so that share 1 leaves the bars as they were.
        if share < 1.0 and rng.random() >= share:
            bars[row] = -1
    return bars


def bar_bands(
    bars: np.ndarray, height: int, width: int, cfg: NoiseConfig, margin: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The rows of each frame's horizontal bar and the columns of its vertical bar, optionally
    grown by a margin: the two bands whose union is `bar_mask`.

    A row (column) is in its band where its centre lies in [start - margin, start + width +
    margin): for whole-pixel bars, exactly the rows (columns) painted; for bars drawn before the
    resize (float starts), the rows (columns) whose centre the bar covers, as many.

    Args:
        bars: (N, 2) as from `draw_bars` (int, or float for bars drawn before the resize).
        height: frame height in pixels.
        width: frame width in pixels.
        cfg: the noise configuration (gives the bar width).
        margin: pixels to grow each bar by on both sides (>= 0).

    Returns:
        (N, H) bool rows of the horizontal bar and (N, W) bool columns of the vertical bar;
        all False where the frame has no such bar.
    """
    bars = np.asarray(bars).reshape(-1, 2)
    rows = np.arange(height) + 0.5
    cols = np.arange(width) + 0.5
    top, left = bars[:, :1], bars[:, 1:]  # (N, 1)
    in_rows = (top >= 0) & (rows >= top - margin) & (rows < top + cfg.width + margin)  # (N, H)
    in_cols = (left >= 0) & (cols >= left - margin) & (cols < left + cfg.width + margin)  # (N, W)
    return in_rows, in_cols


def bar_mask(
    bars: np.ndarray, height: int, width: int, cfg: NoiseConfig, margin: int = 0
) -> np.ndarray:
    """The pixels covered by each frame's bars, optionally grown by a margin: the pixels in the
    row band or the column band of `bar_bands`.

    Args:
        bars: (N, 2) as from `draw_bars` (int, or float for bars drawn before the resize).
        height: frame height in pixels.
        width: frame width in pixels.
        cfg: the noise configuration (gives the bar width).
        margin: pixels to grow each bar by on both sides (>= 0).

    Returns:
        (N, H, W) bool.
    """
    in_rows, in_cols = bar_bands(bars, height, width, cfg, margin)
    return in_rows[:, :, None] | in_cols[:, None, :]


def bar_colours(bars: np.ndarray, cfg: NoiseConfig) -> np.ndarray:
    """The colour of each frame's bars: ``cfg.colour``, or with ``cfg.random_colour`` one drawn
    uniformly from the RGB cube by a generator seeded with the frame's bar positions.

    Args:
        bars: (N, 2) as from `draw_bars`.
        cfg: the noise configuration.

    Returns:
        (N, 3) uint8.
    """
    bars = np.asarray(bars).reshape(-1, 2)
    if not cfg.random_colour:
        return np.tile(np.asarray(cfg.colour, dtype=np.uint8), (len(bars), 1))
    # Whole numbers for every position (those before the resize are multiples of 0.4 or 0.525
    # stored pixels), >= 0 as seeds must be: an absent bar (-1) is 0.
    keys = np.rint((np.asarray(bars, np.float64) + 1.0) * 1000).astype(np.int64)
    colours = np.zeros((len(bars), 3), dtype=np.uint8)
    for i, key in enumerate(keys):
        colours[i] = np.random.default_rng([_COLOUR_SEED, *map(int, key)]).integers(0, 256, 3)
    return colours


def _coverage(bars: np.ndarray, height: int, width: int, cfg: NoiseConfig) -> np.ndarray:
    """(N, H, W) float in [0, 1]: each stored pixel's share of bar when the bars are painted on
    the raw frame and resized with ``cfg.before_resize``."""
    raw_shape = RAW_SHAPE[:2]
    shares = []
    for axis, stored in ((0, height), (1, width)):
        raw = raw_shape[axis]
        thick = _raw_thickness(cfg.width, stored, raw)
        start = np.rint(bars[:, axis] * raw / stored).astype(np.int64)  # (N,) raw pixels
        pixels = np.arange(raw)
        on = (
            (bars[:, axis : axis + 1] >= 0)
            & (pixels >= start[:, None])
            & (pixels < start[:, None] + thick)
        )
        shares.append(on.astype(np.float64) @ resize_weights(cfg.before_resize, raw, stored).T)
    rows, cols = shares  # (N, H), (N, W)
    return 1.0 - (1.0 - rows[:, :, None]) * (1.0 - cols[:, None, :])


def paint_bars(frames: np.ndarray, bars: np.ndarray, cfg: NoiseConfig) -> np.ndarray:
    """Paints bars over frames.

    Args:
        frames: (N, H, W, 3) uint8, stored frames.
        bars: (N, 2) as from `draw_bars`.
        cfg: the noise configuration.

    Returns:
        A new (N, H, W, 3) uint8 array; ``frames`` is unchanged.
    """
    frames = np.asarray(frames, dtype=np.uint8)
    bars = np.asarray(bars).reshape(-1, 2)
    height, width = frames.shape[1:3]
    colours = bar_colours(bars, cfg)[:, None, None, :]  # (N, 1, 1, 3)
    if cfg.before_resize is None:
        mask = bar_mask(bars, height, width, cfg)[..., None]
        return np.where(mask, colours, frames)
    share = _coverage(bars, height, width, cfg)[..., None]  # (N, H, W, 1)
    blended = share * colours + (1.0 - share) * frames
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)
