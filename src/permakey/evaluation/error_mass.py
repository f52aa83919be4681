"""How much of a model's error-map mass lies on the Noisy Atari bars, and on which part of them.

The paper's claim about Noisy Atari is a claim about the error maps: the bars are predictable
from their neighbourhood, so the local spatial prediction (LSP) networks should make little
error on them, and the keypoints placed on the errors should not go there. This module
measures the maps directly, before any PointNet.

**Which map.** The normalised error stack, (N, L, H, W) in [0, 1] at frame size: each LSP
layer's map resized to the frame by nearest neighbour and min-max normalised per frame and
layer (`permakey.models.permakey.normalised_error_stack`). It is what the PointNet is trained
to explain, so it is what the keypoints can follow. Channel l is LSP layer l (per-layer
values); the summed map is the sum over the channels, the map the error-map peaks control
ranks (`permakey.evaluation.controls.error_map_peaks`). The raw per-layer maps, at their
cells' resolution (42 x 42 and 21 x 21 in the paper), are not used: a bar grown by 2 px does
not fall on whole cells, and their scale, which changes between layers and frames, is what
the normalisation removes before the PointNet sees them.

**Parts of the grown bars** (`PARTS`, `bar_parts`): every pixel of the bars grown by
`MARGIN` px (the pixels of `permakey.data.noise.bar_mask` with that margin) lies in exactly
one part, the first of these that holds it:

1. ``crossing``: on both grown bars (bars "both" only): the square where they cross.
2. ``ends``: within `END_PX` of the frame's border along a bar's length, where the bar meets
   the border (a horizontal bar's first and last columns, a vertical bar's first and last
   rows).
3. ``sprites``: on a game object: inside a ground-truth box (`box_pixels`: the objects the
   evaluation counts, without the scenery and pills it excludes) when the frames have
   objects, otherwise where the clean frame differs from the background (`foreground`:
   the per-pixel most frequent colour of the evaluated frames, `background_mode`).
4. ``edges``: the bar's first and last row (column) across its width and the grown margin
   outside it: where the bar's long sides are, and a cell of the error maps sees both bar
   and game.
5. ``interior``: the rest of the bar: pixels whose neighbours across the bar are bar too.

The rest of the frame is label `OUTSIDE`.

**Aggregation over frames: the mean of per-frame shares.** In each frame the share is the
map's mass in a part over the map's mass in the whole frame; the result is the mean of these
shares over the frames. Each frame then weighs the same, as in the keypoints' distractor share
(K keypoints per frame) and in its chance level (the mean of the bars' per-frame area share),
so a map blind to the bars scores exactly that chance level whatever its mass in each frame,
and a frame whose map is flat (large total mass everywhere) does not outweigh a frame whose
map has one sharp peak, as it would in a ratio of sums. A frame whose map has no mass (a
constant map normalises to zeros) has no share and is left out of the mean.
"""

from __future__ import annotations

import numpy as np

from permakey.data.noise import NoiseConfig, bar_bands
from permakey.evaluation.results import BarErrorMass, PartShare

PARTS = ("crossing", "ends", "sprites", "edges", "interior")
# The label of the pixels outside the grown bars (the parts are labels 0 to OUTSIDE - 1).
OUTSIDE = len(PARTS)
# Pixels the bars are grown by, as the distractor share's headline radius.
MARGIN = 2
# How far from the frame's border a bar's end reaches: one cell of the paper's coarsest LSP
# layer (21 x 21 at 84 x 84), the cells whose context runs past the border.
END_PX = 4
# The background of `background_mode` is taken from at most this many frames.
BACKGROUND_FRAMES = 1000
# `BarErrorMass.sprites`: how the sprite pixels were found.
SPRITES_FROM_BOXES = "object boxes"
SPRITES_FROM_BACKGROUND = "differs from the background mode"


def _interior(band: np.ndarray) -> np.ndarray:
    """(N, S) bool: the positions of a (N, S) bool bar band whose neighbours on both sides
    are in the band too (the bar's first and last row or column, and the frame's border, are
    not)."""
    inside = np.zeros_like(band)
    inside[:, 1:-1] = band[:, :-2] & band[:, 1:-1] & band[:, 2:]
    return inside


def bar_parts(
    bars: np.ndarray,
    noise: NoiseConfig,
    height: int,
    width: int,
    sprites: np.ndarray,
    margin: int = MARGIN,
    end_px: int = END_PX,
) -> np.ndarray:
    """The part of the grown bars each pixel lies in (see the module's docstring).

    The grown bars and the bars' interior come from the bands of
    `permakey.data.noise.bar_bands` (the pixels whose centre a bar, grown or not, covers),
    for whole-pixel bars and for the float positions of bars drawn before the resize alike:
    the parts hold exactly the pixels of `bar_mask` for the same bars, none off by a pixel.

    Args:
        bars: (N, 2) top row of the horizontal bar and left column of the vertical bar in
            stored pixels, -1 where absent (`permakey.data.noise.draw_bars`: int, or float
            for bars drawn before the resize).
        noise: the noise configuration (gives the bar width).
        height: frame height H.
        width: frame width W.
        sprites: (N, H, W) bool, the pixels on game objects (`box_pixels`, `foreground`).
        margin: pixels the bars are grown by, >= 0.
        end_px: how far from the border a bar's end reaches, in pixels, >= 0.

    Returns:
        (N, H, W) int8 label: the index of the pixel's part in `PARTS`, `OUTSIDE` off the
        grown bars. The labels below `OUTSIDE` are exactly ``bar_mask(bars, H, W, noise,
        margin)``.
    """
    grown_rows, grown_cols = bar_bands(bars, height, width, noise, margin)  # (N, H), (N, W)
    painted_rows, painted_cols = bar_bands(bars, height, width, noise)
    on_horizontal = np.broadcast_to(grown_rows[:, :, None], (len(grown_rows), height, width))
    on_vertical = np.broadcast_to(grown_cols[:, None, :], on_horizontal.shape)
    on_bars = on_horizontal | on_vertical  # (N, H, W)
    interior = (
        _interior(painted_rows)[:, :, None]  # (N, H, 1)
        | _interior(painted_cols)[:, None, :]  # (N, 1, W)
    )
    end_cols = (np.arange(width) < end_px) | (np.arange(width) >= width - end_px)  # (W,)
    end_rows = (np.arange(height) < end_px) | (np.arange(height) >= height - end_px)  # (H,)
    labels = np.full(on_bars.shape, OUTSIDE, dtype=np.int8)
    # From the last part to the first, so that an earlier part overwrites a later one.
    labels[on_bars] = PARTS.index("edges")
    labels[on_bars & interior] = PARTS.index("interior")
    labels[on_bars & sprites] = PARTS.index("sprites")
    ends = (on_horizontal & end_cols[None, None, :]) | (on_vertical & end_rows[None, :, None])
    labels[ends] = PARTS.index("ends")
    labels[on_horizontal & on_vertical] = PARTS.index("crossing")
    return labels


def box_pixels(offsets: np.ndarray, boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """The pixels whose centre lies inside a box of their frame.

    Args:
        offsets: (N + 1,) int, the boxes of frame n are ``offsets[n]:offsets[n + 1]``
            (``offsets[0]`` may be above 0: the boxes are indexed from it).
        boxes: (M, 4) float, (x, y, w, h) edge coordinates (`permakey.evaluation.metrics`):
            pixel (i, j) is inside when ``y <= i + 0.5 <= y + h`` and ``x <= j + 0.5 <= x + w``.
        height: frame height H.
        width: frame width W.

    Returns:
        (N, H, W) bool.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    boxes = np.asarray(boxes, dtype=np.float64)
    x, y, w, h = (boxes[:, i, None] for i in range(4))  # (M, 1) each
    rows = np.arange(height) + 0.5
    cols = np.arange(width) + 0.5
    in_rows = ((rows >= y) & (rows <= y + h)).astype(np.float32)  # (M, H)
    in_cols = ((cols >= x) & (cols <= x + w)).astype(np.float32)  # (M, W)
    pixels = np.zeros((len(offsets) - 1, height, width), dtype=bool)
    for frame, (start, stop) in enumerate(zip(offsets[:-1], offsets[1:], strict=True)):
        start, stop = start - offsets[0], stop - offsets[0]
        # (H, M_f) @ (M_f, W): how many of the frame's boxes hold each pixel.
        pixels[frame] = in_rows[start:stop].T @ in_cols[start:stop] > 0
    return pixels


def background_mode(frames: np.ndarray) -> np.ndarray:
    """The most frequent colour of each pixel over frames: the game's still background.

    Args:
        frames: (N, H, W, 3) uint8, N >= 1.

    Returns:
        (H, W, 3) uint8; ties go to the colour with the smallest code (R, G, B read as one
        24-bit number).
    """
    frames = np.asarray(frames, dtype=np.uint8)
    n, height, width = frames.shape[:3]
    codes = frames.astype(np.int32)
    codes = (codes[..., 0] << 16) | (codes[..., 1] << 8) | codes[..., 2]  # (N, H, W)
    codes = np.sort(codes.reshape(n, -1), axis=0)  # (N, P), P = H * W
    index = np.arange(n, dtype=np.int32)[:, None]  # (N, 1)
    new_run = np.ones(codes.shape, dtype=bool)
    new_run[1:] = codes[1:] != codes[:-1]
    run_start = np.maximum.accumulate(np.where(new_run, index, 0), axis=0)  # (N, P)
    # The first longest run in sorted order is the smallest of the most frequent codes.
    longest_end = (index - run_start).argmax(axis=0)  # (P,)
    mode = codes[longest_end, np.arange(codes.shape[1])].reshape(height, width)
    return np.stack([(mode >> 16) & 255, (mode >> 8) & 255, mode & 255], -1).astype(np.uint8)


def foreground(frames: np.ndarray, background: np.ndarray) -> np.ndarray:
    """(N, H, W) bool: the pixels of (N, H, W, 3) uint8 clean frames whose colour differs
    from the (H, W, 3) uint8 background (`background_mode`) in any channel."""
    return (np.asarray(frames) != np.asarray(background)[None]).any(axis=-1)


def part_masses(stack: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The error maps' mass in each part of each frame.

    Args:
        stack: (N, L, H, W) float >= 0, the normalised error stack.
        labels: (N, H, W) int in [0, OUTSIDE] (`bar_parts`).

    Returns:
        (N, L, OUTSIDE + 1) float64: the sum of layer l's map over the pixels of part p
        (p = `OUTSIDE`: off the grown bars); summed over p, the map's mass in the frame.
    """
    stack = np.asarray(stack)
    n, num_layers = stack.shape[:2]
    if stack.shape[2:] != labels.shape[1:]:
        raise ValueError(f"error maps {stack.shape[2:]} and bar labels {labels.shape[1:]} differ")
    bins = OUTSIDE + 1
    # (N, H * W) bin of each pixel: its frame's block of bins, then its part.
    index = (np.arange(n)[:, None] * bins + labels.reshape(n, -1)).reshape(-1)
    masses = np.empty((n, num_layers, bins))
    for layer in range(num_layers):
        weights = stack[:, layer].reshape(-1)
        masses[:, layer] = np.bincount(index, weights, minlength=n * bins).reshape(n, bins)
    return masses


def part_areas(labels: np.ndarray) -> np.ndarray:
    """(N, OUTSIDE + 1) float64: the share of each frame's area in each part (`bar_parts`'
    (N, H, W) labels); each row sums to 1."""
    n = len(labels)
    bins = OUTSIDE + 1
    index = (np.arange(n)[:, None] * bins + labels.reshape(n, -1)).reshape(-1)  # (N * H * W,)
    counts = np.bincount(index, minlength=n * bins).reshape(n, bins)
    return counts / labels[0].size


def mean_shares(masses: np.ndarray) -> np.ndarray:
    """The mean over frames of each bin's share of the frame's mass (the module's docstring).

    Args:
        masses: (N, ..., B) float >= 0, e.g. `part_masses` (N, L, B).

    Returns:
        (..., B) float64 in [0, 1]: the mean of ``masses[n] / masses[n].sum(-1)`` over the
        frames n whose mass is positive; NaN where no frame has mass.
    """
    masses = np.asarray(masses, dtype=np.float64)
    total = masses.sum(axis=-1, keepdims=True)  # (N, ..., 1)
    shares = np.divide(masses, total, out=np.zeros_like(masses), where=total > 0)
    counted = (total > 0).sum(axis=0)  # (..., 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return shares.sum(axis=0) / counted


def _value(share: float) -> float | None:
    return None if np.isnan(share) else float(share)


def bar_error_mass(
    masses: np.ndarray, areas: np.ndarray, layers, sprites: str, margin: int = MARGIN
) -> BarErrorMass:
    """The bar error mass of one model and its parts, from its per-frame masses.

    Args:
        masses: (N, L, OUTSIDE + 1) float, `part_masses` of the model's normalised error
            stack on the evaluated frames.
        areas: (N, OUTSIDE + 1) float, `part_areas` of the same frames' labels.
        layers: the encoder layer of each of the L stack channels (the model's
            ``error_layers``).
        sprites: how the sprite pixels were found (`SPRITES_FROM_BOXES`,
            `SPRITES_FROM_BACKGROUND`).
        margin: the pixels the bars were grown by.

    Returns:
        The shares, each a mean of per-frame shares: of the summed map (`mean_shares` of the
        masses summed over layers) and per layer, on the grown bars (the sum of their parts)
        and on each part, next to the grown bars' and each part's share of the frame's area.
    """
    per_layer = mean_shares(masses)  # (L, OUTSIDE + 1)
    summed = mean_shares(masses.sum(axis=1))  # (OUTSIDE + 1,)
    mean_area = areas.mean(axis=0)  # (OUTSIDE + 1,)
    parts = {
        name: PartShare(
            area=float(mean_area[p]),
            summed=_value(summed[p]),
            per_layer=tuple(_value(s) for s in per_layer[:, p]),
        )
        for p, name in enumerate(PARTS)
    }
    return BarErrorMass(
        margin=margin,
        layers=tuple(int(layer) for layer in layers),
        summed=_value(summed[:OUTSIDE].sum()),
        per_layer=tuple(_value(s) for s in per_layer[:, :OUTSIDE].sum(axis=1)),
        chance=float(mean_area[:OUTSIDE].sum()),
        sprites=sprites,
        parts=parts,
    )
