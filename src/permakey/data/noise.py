"""Noisy Atari: a bar of one colour over every frame, at a fresh random position each time.

The distractor of the paper: a horizontal bar, a vertical bar, or both, ``width`` pixels
thick and spanning the frame, drawn on the fly when frames are read. A frame's bars are an
int64 pair (top row of the horizontal bar, left column of the vertical bar), -1 where absent;
the same pair paints the bars (`paint_bars`) and gives their masks (`bar_mask`) for
evaluation. `frame_bars` draws them from (seed, epoch, frame index) alone, so validation and
test noise is reproducible and training noise is fresh every epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

NoiseKind = Literal["none", "horizontal", "vertical", "both"]
NOISE_KINDS = ("none", "horizontal", "vertical", "both")


@dataclass(frozen=True)
class NoiseConfig:
    """Which bars to draw, how thick, in which colour.

    Attributes:
        kind: "none", "horizontal", "vertical" or "both".
        width: bar thickness in pixels of the stored frame (5 at 84 x 84 in the paper).
        colour: RGB colour of the bars, each 0-255.
    """

    kind: NoiseKind = "none"
    width: int = 5
    colour: tuple[int, int, int] = (128, 0, 255)

    def __post_init__(self):
        if self.kind not in NOISE_KINDS:
            raise ValueError(
                f"unknown noise kind {self.kind!r}; choose from {', '.join(NOISE_KINDS)}"
            )
        if self.width < 1:
            raise ValueError(f"bar width must be >= 1 pixel, got {self.width}")
        if len(self.colour) != 3 or not all(0 <= c <= 255 for c in self.colour):
            raise ValueError(f"bar colour must be three values in 0-255, got {self.colour!r}")

    @property
    def horizontal(self) -> bool:
        return self.kind in ("horizontal", "both")

    @property
    def vertical(self) -> bool:
        return self.kind in ("vertical", "both")


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
        (n, 2) int64: top row of the horizontal bar in [0, height - cfg.width], left column
        of the vertical bar in [0, width - cfg.width]; -1 where the kind has no such bar.
    """
    if cfg.width > min(height, width):
        raise ValueError(f"bar width {cfg.width} does not fit a {height} x {width} frame")
    bars = np.full((n, 2), -1, dtype=np.int64)
    # Both columns are always drawn, so a frame's horizontal bar does not depend on the kind.
    rows = rng.integers(0, height - cfg.width + 1, size=n)
    cols = rng.integers(0, width - cfg.width + 1, size=n)
    if cfg.horizontal:
        bars[:, 0] = rows
    if cfg.vertical:
        bars[:, 1] = cols
    return bars


def frame_bars(
    seed: int, epoch: int, indices, height: int, width: int, cfg: NoiseConfig
) -> np.ndarray:
    """The bars of given frames, determined by (seed, epoch, frame index) alone.

    Args:
        seed: the noise seed (>= 0).
        epoch: the epoch (>= 0); keep it fixed (e.g. 0) for validation and test.
        indices: frame indices (>= 0), an int or a sequence.
        height: frame height in pixels.
        width: frame width in pixels.
        cfg: the noise configuration.

    Returns:
        (n, 2) int64 bars as in `draw_bars`, one row per index.
    """
    indices = np.atleast_1d(np.asarray(indices, dtype=np.int64))
    bars = np.full((len(indices), 2), -1, dtype=np.int64)
    if cfg.kind == "none":
        return bars
    for row, index in enumerate(indices):
        rng = np.random.default_rng([seed, epoch, int(index)])
        bars[row] = draw_bars(rng, 1, height, width, cfg)[0]
    return bars


def bar_mask(
    bars: np.ndarray, height: int, width: int, cfg: NoiseConfig, margin: int = 0
) -> np.ndarray:
    """The pixels covered by each frame's bars, optionally grown by a margin.

    Args:
        bars: (N, 2) int64 as from `draw_bars`.
        height: frame height in pixels.
        width: frame width in pixels.
        cfg: the noise configuration (gives the bar width).
        margin: pixels to grow each bar by on both sides (>= 0).

    Returns:
        (N, H, W) bool.
    """
    bars = np.asarray(bars, dtype=np.int64).reshape(-1, 2)
    rows = np.arange(height)
    cols = np.arange(width)
    top, left = bars[:, :1], bars[:, 1:]  # (N, 1)
    in_rows = (top >= 0) & (rows >= top - margin) & (rows < top + cfg.width + margin)  # (N, H)
    in_cols = (left >= 0) & (cols >= left - margin) & (cols < left + cfg.width + margin)  # (N, W)
    return in_rows[:, :, None] | in_cols[:, None, :]


def paint_bars(frames: np.ndarray, bars: np.ndarray, cfg: NoiseConfig) -> np.ndarray:
    """Paints bars over frames.

    Args:
        frames: (N, H, W, 3) uint8.
        bars: (N, 2) int64 as from `draw_bars`.
        cfg: the noise configuration.

    Returns:
        A new (N, H, W, 3) uint8 array; ``frames`` is unchanged.
    """
    painted = np.array(frames, dtype=np.uint8, copy=True)
    mask = bar_mask(bars, painted.shape[1], painted.shape[2], cfg)
    painted[mask] = np.asarray(cfg.colour, dtype=np.uint8)
    return painted
