"""Drawing keypoints, Gaussian windows and error maps onto frames.

Everything here is numpy plus Pillow: no matplotlib. Pillow draws the same pixels on every
machine for the same input (matplotlib's output depends on its backend, fonts and rc
settings), imports in milliseconds, and is already a dependency. Frames are upscaled by an
integer factor with nearest-neighbour sampling first, so that 84 x 84 Atari pixels stay sharp
and markers are legible.

Pixel positions come only from `permakey.keypoints.to_pixels` (and `from_pixels` back). A frame pixel ``(row, col)``
covers ``scale x scale`` canvas pixels whose centre is ``((row + 0.5) * scale - 0.5,
(col + 0.5) * scale - 0.5)``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from permakey.keypoints import from_pixels, to_pixels
from permakey.visualisation.colours import MARKERS, outline_colour, palette

#: Default integer upscaling of 84 x 84 frames in figures.
DEFAULT_SCALE = 4

# Samples of matplotlib's "inferno" colour map at 0, 1/7, ..., 1: perceptually ordered and
# readable in grey print; linear interpolation between them is close to the original.
_HEAT_ANCHORS = np.array(
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    np.float64,
)


def _check_frame(frame: np.ndarray) -> None:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(
            f"expected a (H, W, 3) uint8 frame, got {frame.dtype} array of shape {frame.shape}"
        )


def upscale(frame: np.ndarray, scale: int = DEFAULT_SCALE) -> np.ndarray:
    """Nearest-neighbour integer upscaling.

    Args:
        frame: (H, W, C) array of any dtype.
        scale: integer factor >= 1.

    Returns:
        (H * scale, W * scale, C) array of the same dtype.
    """
    if scale < 1:
        raise ValueError(f"scale must be an integer >= 1, got {scale}")
    return np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)


def centres_to_pixels(centres, height: int, width: int) -> np.ndarray:
    """Keypoint centres to frame pixels, through the package's one convention.

    Args:
        centres: (..., 2) float array or tensor, (y, x) in [-1, 1].
        height: frame height H.
        width: frame width W.

    Returns:
        (..., 2) float64 numpy array, (row, col) in [0, H - 1] x [0, W - 1].
    """
    tensor = torch.as_tensor(np.asarray(centres, dtype=np.float64))
    return to_pixels(tensor, height, width).numpy()


def _marker_outline(shape: str, cy: float, cx: float, r: float) -> list[tuple[float, float]]:
    """Polygon vertices (x, y) of the polygonal markers."""
    if shape == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    # Triangle pointing up, centred on its centroid so the keypoint sits inside it.
    return [(cx, cy - r), (cx + r, cy + 0.6 * r), (cx - r, cy + 0.6 * r)]


def draw_marker(
    draw: ImageDraw.ImageDraw,
    shape: str,
    cy: float,
    cx: float,
    r: float,
    colour: tuple[int, int, int],
) -> None:
    edge = outline_colour(colour)
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=colour, outline=edge, width=1)
    elif shape == "square":
        draw.rectangle(box, fill=colour, outline=edge, width=1)
    elif shape in ("diamond", "triangle"):
        draw.polygon(_marker_outline(shape, cy, cx, r), fill=colour, outline=edge, width=1)
    elif shape == "cross":
        thick = max(2, round(r / 2))
        for width, col in ((thick + 2, edge), (thick, colour)):
            draw.line((cx - r, cy - r, cx + r, cy + r), fill=col, width=width)
            draw.line((cx - r, cy + r, cx + r, cy - r), fill=col, width=width)
    else:
        raise ValueError(f"unknown marker {shape!r}; choose from {', '.join(MARKERS)}")


def draw_markers(
    canvas: np.ndarray,
    centres,
    scale: int,
    colours: np.ndarray | None = None,
    marker: str = "circle",
    radius: float | None = None,
) -> np.ndarray:
    """Draws keypoint markers onto an already upscaled frame.

    Args:
        canvas: (H * scale, W * scale, 3) uint8, e.g. from `upscale`.
        centres: (K, 2) float array or tensor, (y, x) in [-1, 1] of the original H x W frame.
        scale: the factor by which the canvas was upscaled.
        colours: (K, 3) uint8; default the keypoint palette (colour per keypoint index).
        marker: one of `colours.MARKERS`.
        radius: marker radius in canvas pixels; default 1.25 * scale.

    Returns:
        (H * scale, W * scale, 3) uint8, a new array; the marker of keypoint k is filled with
        colours[k] at its centre.
    """
    _check_frame(canvas)
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    k = len(centres)
    colours = palette(k) if colours is None else np.asarray(colours, np.uint8).reshape(-1, 3)
    if len(colours) != k:
        raise ValueError(f"got {len(colours)} colours for {k} keypoints")
    height, width = canvas.shape[0] // scale, canvas.shape[1] // scale
    pixels = centres_to_pixels(centres, height, width)  # (K, 2) (row, col) in frame pixels
    centre_on_canvas = (pixels + 0.5) * scale - 0.5  # (K, 2)
    r = 1.25 * scale if radius is None else radius
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for (cy, cx), colour in zip(centre_on_canvas, colours, strict=True):
        draw_marker(draw, marker, float(cy), float(cx), r, tuple(int(c) for c in colour))
    return np.asarray(image).copy()


def draw_keypoints(
    frame: np.ndarray,
    centres,
    scale: int = DEFAULT_SCALE,
    colours: np.ndarray | None = None,
    marker: str = "circle",
) -> np.ndarray:
    """Upscales a frame and draws its keypoints in their palette colours.

    Args:
        frame: (H, W, 3) uint8.
        centres: (K, 2) float, (y, x) in [-1, 1].
        scale: integer upscaling factor.
        colours: (K, 3) uint8; default the keypoint palette.
        marker: one of `colours.MARKERS`.

    Returns:
        (H * scale, W * scale, 3) uint8.
    """
    _check_frame(frame)
    return draw_markers(upscale(frame, scale), centres, scale, colours, marker)


def resize_windows(windows, height: int, width: int, scale: int = 1) -> np.ndarray:
    """Bilinear resampling of Gaussian windows from the model's grid onto (upscaled) pixels.

    Each output pixel samples the windows at its own centre in keypoint coordinates, so that a
    window's peak lands where `draw_markers` puts its keypoint. The map grid has -1 and +1 on
    its first and last cells' centres, as ``grid_sample(align_corners=True)`` expects.

    Args:
        windows: (K, h, w) float array or tensor in [0, 1].
        height: frame height H.
        width: frame width W.
        scale: integer upscaling factor of the output.

    Returns:
        (K, H * scale, W * scale) float32 numpy array in [0, 1].
    """
    tensor = torch.as_tensor(np.asarray(windows, dtype=np.float32))
    if tensor.ndim != 3:
        raise ValueError(f"expected (K, h, w) windows, got shape {tuple(tensor.shape)}")
    rows = (torch.arange(height * scale, dtype=torch.float64) + 0.5) / scale - 0.5  # frame rows
    cols = (torch.arange(width * scale, dtype=torch.float64) + 0.5) / scale - 0.5
    ys = from_pixels(torch.stack([rows, rows], -1), height, width)[:, 0]  # (H * s,)
    xs = from_pixels(torch.stack([cols, cols], -1), height, width)[:, 1]  # (W * s,)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (H * s, W * s, 2) (x, y)
    sampled = F.grid_sample(
        tensor.unsqueeze(0),
        grid.unsqueeze(0).float(),
        mode="bilinear",
        padding_mode="border",
        align_corners=True,
    )  # (1, K, H * s, W * s)
    return sampled[0].clamp(0.0, 1.0).numpy()


def draw_windows(
    frame: np.ndarray,
    windows,
    scale: int = DEFAULT_SCALE,
    colours: np.ndarray | None = None,
    alpha: float = 0.7,
) -> np.ndarray:
    """Overlays Gaussian windows on an upscaled frame, each in its keypoint's colour.

    Each canvas pixel takes the colour of the window that is strongest there, blended over the
    frame in proportion to that window's value.

    Args:
        frame: (H, W, 3) uint8.
        windows: (K, h, w) float in [0, 1] on any grid of the keypoint convention.
        scale: integer upscaling factor.
        colours: (K, 3) uint8; default the keypoint palette.
        alpha: opacity of a window's colour where the window is 1.

    Returns:
        (H * scale, W * scale, 3) uint8.
    """
    _check_frame(frame)
    canvas = upscale(frame, scale).astype(np.float32)
    maps = resize_windows(windows, frame.shape[0], frame.shape[1], scale)  # (K, Hs, Ws)
    colours = palette(len(maps)) if colours is None else np.asarray(colours, np.uint8)
    strongest = maps.argmax(axis=0)  # (Hs, Ws)
    strength = alpha * maps.max(axis=0)[..., None]  # (Hs, Ws, 1)
    tint = colours[strongest].astype(np.float32)  # (Hs, Ws, 3)
    return np.rint(canvas * (1.0 - strength) + tint * strength).astype(np.uint8)


def normalise(values: np.ndarray) -> np.ndarray:
    """Min-max normalisation to [0, 1]; a constant map becomes all zeros."""
    values = np.asarray(values, dtype=np.float64)
    low, high = values.min(), values.max()
    if high <= low:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def heat_map(values, height: int, width: int) -> np.ndarray:
    """A min-max normalised map as an RGB heat map (dark = low, yellow-white = high).

    The map is resized with nearest-neighbour sampling, as PermaKey resizes its error maps, so
    each prediction cell stays a visible block.

    Args:
        values: (h, w) float array or tensor (e.g. one layer's error map).
        height: output height in pixels.
        width: output width in pixels.

    Returns:
        (height, width, 3) uint8.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"expected an (h, w) map, got shape {values.shape}")
    h, w = values.shape
    rows = np.arange(height) * h // height  # (height,) source row of each output row
    cols = np.arange(width) * w // width  # (width,)
    level = normalise(values)[rows[:, None], cols[None, :]]  # (height, width) in [0, 1]
    stops = np.linspace(0.0, 1.0, len(_HEAT_ANCHORS))
    rgb = [np.interp(level, stops, _HEAT_ANCHORS[:, c]) for c in range(3)]
    return np.rint(np.stack(rgb, axis=-1)).astype(np.uint8)
