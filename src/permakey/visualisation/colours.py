"""The one colour scheme of every figure, GIF and report: a fixed colour per keypoint index.

Keypoint ``k`` has the colour ``keypoint_colour(k)`` in every frame, figure and animation, so a
reader can follow one keypoint across pictures. The first 20 colours are Sasha Trubetskoy's
"20 simple, distinct colours"; indices beyond them continue with golden-ratio hue steps, so any
K gets colours without a lookup failing. Where several runs are drawn on the same frames
(Figure 3 style), the colour stands for the run (seed) instead, and the marker shape tells the
runs apart a second way; such figures say so in their legend.
"""

from __future__ import annotations

import colorsys

import numpy as np

#: (20, 3) uint8: the hand-picked head of the palette, in index order.
BASE_PALETTE = np.array(
    [
        (230, 25, 75),  # red
        (60, 180, 75),  # green
        (255, 225, 25),  # yellow
        (67, 99, 216),  # blue
        (245, 130, 49),  # orange
        (66, 212, 244),  # cyan
        (240, 50, 230),  # magenta
        (191, 239, 69),  # lime
        (250, 190, 212),  # pink
        (70, 153, 144),  # teal
        (220, 190, 255),  # lavender
        (154, 99, 36),  # brown
        (255, 250, 200),  # beige
        (128, 0, 0),  # maroon
        (170, 255, 195),  # mint
        (128, 128, 0),  # olive
        (255, 216, 177),  # apricot
        (0, 0, 117),  # navy
        (169, 169, 169),  # grey
        (255, 255, 255),  # white
    ],
    np.uint8,
)

#: Marker shapes, one per run where several runs share a picture.
MARKERS = ("circle", "square", "diamond", "triangle", "cross")

_GOLDEN = 0.618033988749895


def keypoint_colour(index: int) -> tuple[int, int, int]:
    """The RGB colour (0..255 each) of keypoint ``index`` in every picture."""
    if index < 0:
        raise ValueError(f"keypoint index must be >= 0, got {index}")
    if index < len(BASE_PALETTE):
        r, g, b = BASE_PALETTE[index]
        return int(r), int(g), int(b)
    # Hues spaced by the golden ratio never repeat and stay far apart for neighbouring
    # indices; alternating brightness separates colours whose hues happen to be close.
    step = index - len(BASE_PALETTE)
    hue = (step * _GOLDEN) % 1.0
    value = 1.0 if step % 2 == 0 else 0.75
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, value)
    return round(r * 255), round(g * 255), round(b * 255)


def palette(count: int) -> np.ndarray:
    """Colours of keypoints ``0 .. count - 1``.

    Returns:
        (count, 3) uint8 RGB.
    """
    return np.array([keypoint_colour(k) for k in range(count)], np.uint8).reshape(count, 3)


def run_style(index: int) -> tuple[tuple[int, int, int], str]:
    """Colour and marker shape of the ``index``-th run when several share a picture."""
    return keypoint_colour(index), MARKERS[index % len(MARKERS)]


def outline_colour(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever contrasts more with ``colour`` (Rec. 601 luma)."""
    r, g, b = colour
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 110 else (255, 255, 255)
