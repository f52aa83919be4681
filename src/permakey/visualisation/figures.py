"""The paper's figures, built from arrays: frames, keypoint centres, windows and error maps.

Every function takes numpy arrays (or tensors) and returns a PIL image (or a list of them for an
animation); nothing here reads a model or a dataset, and nothing writes a file except
`save_png` and `save_gif`, which write atomically.

- `keypoint_figure`: Figure 2 style. Rows: the frames, each model's keypoints, PermaKey's error
  map per layer; columns: a few test frames. Call it once on clean and once on noisy frames.
- `window_figure`: Figure 4 style. Keypoint centres with their Gaussian windows.
- `seed_figure`: Figure 3 style. Several runs (seeds) on the same frames, colour per run.
- `keypoint_animation` / `save_gif`: keypoints following a test episode.
- `curve_figure`: measures against training steps, a line chart per panel (the Noisy Atari
  curve).

Keypoint ``k`` has the same colour everywhere (`colours.keypoint_colour`), except in
`seed_figure`, where the colour stands for the run, as its legend says.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from permakey.fileio import atomic_path
from permakey.visualisation.colours import palette, run_style
from permakey.visualisation.draw import (
    DEFAULT_SCALE,
    draw_keypoints,
    draw_marker,
    draw_markers,
    draw_windows,
    heat_map,
    upscale,
)

_BACKGROUND = (255, 255, 255)
_INK = (20, 20, 20)
_PAD = 4
_MARGIN = 10


@dataclass(frozen=True)
class LegendEntry:
    """One legend item: a marker of ``colour`` and ``marker`` shape, followed by ``text``."""

    colour: tuple[int, int, int]
    text: str
    marker: str = "circle"


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    # Pillow >= 10.1 bundles a FreeType font; without FreeType it has only a fixed bitmap font.
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _text_size(text: str, font) -> tuple[int, int]:
    if not text:
        return 0, 0
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).multiline_textbbox(
        (0, 0), text, font=font
    )
    return right - min(left, 0), bottom - min(top, 0)


def _legend_layout(
    entries: Sequence[LegendEntry], title: str, width: int, font
) -> tuple[list[tuple[int, int, LegendEntry]], int]:
    """Positions (x, y, entry) of legend items flowed left to right within ``width``."""
    swatch = 14
    x, y = _text_size(title, font)[0] + (12 if title else 0), 0
    line = max(swatch, _text_size("Ag", font)[1]) + 4
    placed = []
    for entry in entries:
        item_width = swatch + 4 + _text_size(entry.text, font)[0] + 12
        if x + item_width > width and x > 0:
            x, y = 0, y + line
        placed.append((x, y, entry))
        x += item_width
    return placed, (y + line if entries else 0)


def compose(
    cells: Sequence[Sequence[np.ndarray]],
    row_labels: Sequence[str],
    column_labels: Sequence[str] | None = None,
    title: str = "",
    legend: Sequence[LegendEntry] = (),
    legend_title: str = "",
    label_width: int | None = None,
) -> Image.Image:
    """Lays images out in a labelled grid on a white page.

    Args:
        cells: rows of (h, w, 3) uint8 images, all of one size.
        row_labels: one label per row, drawn left of it.
        column_labels: one label per column, drawn above the first row.
        title: drawn at the top.
        legend: items drawn below the grid.
        legend_title: text in front of the legend items.
        label_width: width in pixels of the row-label column; default the widest label.

    Returns:
        An RGB image.
    """
    if not cells or not cells[0]:
        raise ValueError("compose needs at least one row with one cell")
    if len(row_labels) != len(cells):
        raise ValueError(f"got {len(row_labels)} row labels for {len(cells)} rows")
    columns = len(cells[0])
    shapes = {np.asarray(c).shape for row in cells for c in row}
    if len(shapes) != 1 or any(len(row) != columns for row in cells):
        raise ValueError(f"all cells must share one shape and rows one length, got {shapes}")
    cell_h, cell_w, _ = shapes.pop()
    if column_labels is not None and len(column_labels) != columns:
        raise ValueError(f"got {len(column_labels)} column labels for {columns} columns")

    font, title_font = _font(12), _font(16)
    if label_width is None:
        label_width = max(_text_size(label, font)[0] for label in row_labels)
    label_w = label_width + 2 * _PAD
    title_h = _text_size(title, title_font)[1] + 2 * _PAD if title else 0
    header_h = max((_text_size(c, font)[1] for c in column_labels or ()), default=0)
    header_h += _PAD if column_labels else 0
    grid_w = label_w + columns * (cell_w + _PAD)
    grid_h = len(cells) * (cell_h + _PAD)
    placed, legend_h = _legend_layout(legend, legend_title, grid_w, font)
    width = 2 * _MARGIN + grid_w
    height = 2 * _MARGIN + title_h + header_h + grid_h + (legend_h + _PAD if legend else 0)

    page = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(page)
    if title:
        draw.text((_MARGIN, _MARGIN), title, fill=_INK, font=title_font)
    top = _MARGIN + title_h
    for c, label in enumerate(column_labels or ()):
        draw.text((_MARGIN + label_w + c * (cell_w + _PAD), top), label, fill=_INK, font=font)
    top += header_h
    for r, (row, label) in enumerate(zip(cells, row_labels, strict=True)):
        y = top + r * (cell_h + _PAD)
        text_h = _text_size(label, font)[1]
        draw.multiline_text((_MARGIN, y + (cell_h - text_h) // 2), label, fill=_INK, font=font)
        for c, cell in enumerate(row):
            page.paste(
                Image.fromarray(np.asarray(cell)), (_MARGIN + label_w + c * (cell_w + _PAD), y)
            )
    if legend:
        y0 = top + grid_h + _PAD
        if legend_title:
            draw.text((_MARGIN, y0), legend_title, fill=_INK, font=font)
        for x, y, entry in placed:
            cx, cy = _MARGIN + x + 7, y0 + y + 7
            draw_marker(draw, entry.marker, cy, cx, 6, entry.colour)
            draw.text((cx + 11, y0 + y), entry.text, fill=_INK, font=font)
    return page


def as_frames(images) -> np.ndarray:
    """Float images to frames for drawing.

    Args:
        images: (N, 3, H, W) float tensor in [0, 1], on any device.

    Returns:
        (N, H, W, 3) uint8.
    """
    pixels = images.detach().float().clamp(0, 1).mul(255).round().byte()  # (N, 3, H, W)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


def _frames_array(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) uint8 frames, got {frames.dtype} {frames.shape}")
    return frames


def _per_frame(name: str, values, n: int) -> np.ndarray:
    values = np.asarray(values)
    if len(values) != n:
        raise ValueError(f"{name}: got {len(values)} entries for {n} frames")
    return values


def keypoint_legend(count: int) -> list[LegendEntry]:
    """Legend items naming the colour of keypoints ``0 .. count - 1``."""
    return [LegendEntry(tuple(int(v) for v in c), str(k)) for k, c in enumerate(palette(count))]


def keypoint_figure(
    frames,
    keypoints: Mapping[str, np.ndarray],
    error_maps: Mapping[str, np.ndarray] | None = None,
    title: str = "",
    column_labels: Sequence[str] | None = None,
    scale: int = DEFAULT_SCALE,
) -> Image.Image:
    """Figure 2 style: frames, each model's keypoints, and error maps, one column per frame.

    Args:
        frames: (N, H, W, 3) uint8, the frames the keypoints were computed on.
        keypoints: model name -> (N, K, 2) float centres, (y, x) in [-1, 1].
        error_maps: row label (e.g. "PermaKey error map, layer 0") -> (N, h, w) float maps;
            each is shown min-max normalised as a heat map.
        title: figure title (say whether the frames are clean or Noisy Atari).
        column_labels: one label per frame (e.g. "ep 3, step 120").
        scale: integer upscaling factor of each cell.

    Returns:
        An RGB image of (1 + len(keypoints) + len(error_maps)) rows and N columns of
        (H * scale, W * scale) cells, with a legend of the keypoint colours.
    """
    frames = _frames_array(frames)
    n, h, w, _ = frames.shape
    rows = [[upscale(f, scale) for f in frames]]
    labels = ["image"]
    k_max = 0
    for name, centres in keypoints.items():
        centres = _per_frame(name, centres, n)
        k_max = max(k_max, centres.shape[1])
        rows.append([draw_keypoints(f, c, scale) for f, c in zip(frames, centres, strict=True)])
        labels.append(f"{name}\nkeypoints")
    for name, maps in (error_maps or {}).items():
        maps = _per_frame(name, maps, n)
        rows.append([heat_map(m, h * scale, w * scale) for m in maps])
        labels.append(name.replace(", ", ",\n"))
    return compose(
        rows,
        labels,
        column_labels,
        title,
        keypoint_legend(k_max),
        "colour = keypoint index:",
    )


def training_pictures(
    frames: torch.Tensor,
    name: str,
    centres: torch.Tensor,
    reconstruction: torch.Tensor,
    error_maps: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, np.ndarray]:
    """The TensorBoard pictures of a validation batch, for every method alike.

    Args:
        frames: (N, 3, H, W) uint8, the frames the keypoints were computed on.
        name: the method, the keypoints' row label.
        centres: (N, K, 2) float, (y, x) in [-1, 1].
        reconstruction: (N, 3, H, W) float in [0, 1], the model's reconstruction of the frames.
        error_maps: row label -> (N, h, w) float maps, for methods that have them.

    Returns:
        "val/keypoints" (frames, keypoints, error maps) and "val/reconstruction", each an
        (H', W', 3) uint8 picture.
    """
    shown = frames.permute(0, 2, 3, 1).numpy()  # (N, H, W, 3)
    maps = {label: m.cpu() for label, m in (error_maps or {}).items()}
    return {
        "val/keypoints": np.asarray(keypoint_figure(shown, {name: centres.cpu()}, maps, scale=2)),
        "val/reconstruction": np.asarray(keypoint_figure(as_frames(reconstruction), {}, scale=2)),
    }


def window_figure(
    frames,
    models: Mapping[str, tuple[np.ndarray, np.ndarray]],
    title: str = "",
    column_labels: Sequence[str] | None = None,
    scale: int = DEFAULT_SCALE,
) -> Image.Image:
    """Figure 4 style: keypoint centres and their Gaussian windows.

    Args:
        frames: (N, H, W, 3) uint8.
        models: model name -> (centres (N, K, 2) float in [-1, 1], windows (N, K, h, w) float
            in [0, 1] on the model's map grid).
        title: figure title.
        column_labels: one label per frame.
        scale: integer upscaling factor.

    Returns:
        An RGB image: a row of frames, then one row per model with each window tinted in its
        keypoint's colour and the centre marked on top.
    """
    frames = _frames_array(frames)
    n = len(frames)
    rows = [[upscale(f, scale) for f in frames]]
    labels = ["image"]
    k_max = 0
    for name, (centres, windows) in models.items():
        centres = _per_frame(name, centres, n)
        windows = _per_frame(name, windows, n)
        k_max = max(k_max, centres.shape[1])
        row = []
        for frame, c, win in zip(frames, centres, windows, strict=True):
            tinted = draw_windows(frame, win, scale)
            row.append(draw_markers(tinted, c, scale, radius=0.6 * scale))
        rows.append(row)
        labels.append(f"{name}\ncentres + windows")
    return compose(
        rows, labels, column_labels, title, keypoint_legend(k_max), "colour = keypoint index:"
    )


def seed_figure(
    frames,
    runs: Mapping[str, np.ndarray],
    title: str = "",
    column_labels: Sequence[str] | None = None,
    scale: int = DEFAULT_SCALE,
) -> Image.Image:
    """Figure 3 style: the keypoints of several runs (seeds) on the same frames.

    Here colour and marker shape identify the run, not the keypoint index; the legend says so.

    Args:
        frames: (N, H, W, 3) uint8.
        runs: run label (e.g. "seed 1") -> (N, K, 2) float centres in [-1, 1].
        title: figure title.
        column_labels: one label per frame.
        scale: integer upscaling factor.

    Returns:
        An RGB image: a row of frames and a row with every run's keypoints overlaid.
    """
    frames = _frames_array(frames)
    n = len(frames)
    overlay = [upscale(f, scale) for f in frames]
    legend = []
    for i, (name, centres) in enumerate(runs.items()):
        centres = _per_frame(name, centres, n)
        colour, marker = run_style(i)
        colours = np.tile(np.array(colour, np.uint8), (centres.shape[1], 1))  # (K, 3)
        overlay = [
            draw_markers(canvas, c, scale, colours, marker)
            for canvas, c in zip(overlay, centres, strict=True)
        ]
        legend.append(LegendEntry(colour, name, marker))
    rows = [[upscale(f, scale) for f in frames], overlay]
    return compose(
        rows, ["image", "all runs"], column_labels, title, legend, "colour and shape = run:"
    )


def keypoint_animation(
    frames,
    keypoints: Mapping[str, np.ndarray],
    title: str = "",
    frame_labels: Sequence[str] | None = None,
    scale: int = DEFAULT_SCALE,
) -> list[Image.Image]:
    """Frames of an animation of keypoints following an episode, one panel per model.

    Args:
        frames: (T, H, W, 3) uint8, consecutive frames of one episode.
        keypoints: model name -> (T, K, 2) float centres in [-1, 1].
        title: drawn on every frame.
        frame_labels: one label per frame (default "frame t"); drawn left of the panels, so
            consecutive animation frames always differ and none is merged away by the GIF writer.
        scale: integer upscaling factor.

    Returns:
        T RGB images of one size.
    """
    frames = _frames_array(frames)
    t = len(frames)
    per_model = {name: _per_frame(name, c, t) for name, c in keypoints.items()}
    labels = list(frame_labels) if frame_labels is not None else [f"frame {i}" for i in range(t)]
    if len(labels) != t:
        raise ValueError(f"got {len(labels)} frame labels for {t} frames")
    # One label width for all frames, so that the panels do not shift during the animation.
    label_width = max(_text_size(label, _font(12))[0] for label in labels)
    images = []
    for i, frame in enumerate(frames):
        panels = [draw_keypoints(frame, c[i], scale) for c in per_model.values()]
        images.append(
            compose([panels], [labels[i]], list(per_model), title, label_width=label_width)
        )
    return images


@dataclass(frozen=True)
class Series:
    """One line of a chart: a value (or None where not measured) at each x position."""

    label: str
    values: tuple[float | None, ...]
    colour: tuple[int, int, int]
    marker: str = "circle"
    dashed: bool = False


_CHART_SIZE = (170, 240)  # (h, w) of one chart in pixels
_GRID = (225, 225, 225)


def line_chart(
    series: Sequence[Series],
    x_labels: Sequence[str],
    y_range: tuple[float, float] = (0.0, 1.0),
    size: tuple[int, int] = _CHART_SIZE,
) -> np.ndarray:
    """A line chart: x positions evenly spaced, labelled below; y ticks at both ends and the middle.

    Args:
        series: the lines; each has one value per x position (None leaves a gap).
        x_labels: one label per x position.
        y_range: (low, high) of the y axis; values beyond it are clipped to its edge.
        size: (h, w) of the chart in pixels.

    Returns:
        (h, w, 3) uint8.
    """
    low, high = y_range
    if not high > low:
        raise ValueError(f"y_range must rise, got {y_range}")
    for line in series:
        if len(line.values) != len(x_labels):
            raise ValueError(
                f"series {line.label!r} has {len(line.values)} values for {len(x_labels)} x labels"
            )
    h, w = size
    font = _font(11)
    ticks = (low, (low + high) / 2, high)
    left = max(_text_size(f"{t:.2f}", font)[0] for t in ticks) + 8
    bottom = _text_size("Ag", font)[1] + 8
    top, right = 8, 12
    image = Image.new("RGB", (w, h), _BACKGROUND)
    draw = ImageDraw.Draw(image)

    def to_y(value: float) -> float:
        share = (min(max(value, low), high) - low) / (high - low)
        return top + (1 - share) * (h - top - bottom)

    n = len(x_labels)
    xs = [left + (i + 0.5) * (w - left - right) / n for i in range(n)]
    for tick in ticks:
        y = to_y(tick)
        draw.line((left, y, w - right, y), fill=_GRID)
        label = f"{tick:.2f}"
        draw.text((left - 4 - _text_size(label, font)[0], y - 6), label, fill=_INK, font=font)
    for x, label in zip(xs, x_labels, strict=True):
        draw.text((x - _text_size(label, font)[0] / 2, h - bottom + 4), label, fill=_INK, font=font)
    draw.rectangle((left, top, w - right, h - bottom), outline=_INK)
    for line in series:
        points = [None if v is None else (x, to_y(v)) for x, v in zip(xs, line.values, strict=True)]
        for start, end in zip(points, points[1:], strict=False):
            if start is None or end is None:
                continue  # a value not measured breaks the line
            if line.dashed:
                _dashed_line(draw, start, end, line.colour)
            else:
                draw.line((*start, *end), fill=line.colour, width=2)
        if not line.dashed:
            for x, y in filter(None, points):
                draw_marker(draw, line.marker, y, x, 4, line.colour)
    return np.asarray(image)


def _dashed_line(draw: ImageDraw.ImageDraw, start, end, colour, dash: float = 5.0) -> None:
    (x0, y0), (x1, y1) = start, end
    length = max(((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5, 1e-9)
    pieces = int(length // dash)
    for i in range(0, pieces + 1, 2):
        a, b = i * dash / length, min((i + 1) * dash / length, 1.0)
        draw.line((x0 + a * (x1 - x0), y0 + a * (y1 - y0), x0 + b * (x1 - x0), y0 + b * (y1 - y0)),
                  fill=colour, width=2)  # fmt: skip


def curve_figure(
    charts: Sequence[Sequence[Sequence[Series]]],
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    x_labels: Sequence[str],
    title: str = "",
    y_ranges: Sequence[tuple[float, float]] | None = None,
) -> Image.Image:
    """Line charts in a grid, one measure per row and one setting (a game) per column.

    Args:
        charts: rows of charts, each chart a list of `Series` over ``x_labels``.
        row_labels: what each row measures.
        column_labels: what each column shows.
        x_labels: the x positions' labels, shared by every chart.
        title: drawn at the top.
        y_ranges: per row, the y axis; default (0, 1).

    Returns:
        An RGB image with a legend of every series label (dashed lines say "dashed").
    """
    ranges = list(y_ranges) if y_ranges is not None else [(0.0, 1.0)] * len(charts)
    if len(ranges) != len(charts):
        raise ValueError(f"got {len(ranges)} y ranges for {len(charts)} rows")
    cells = [
        [line_chart(chart, x_labels, y_range) for chart in row]
        for row, y_range in zip(charts, ranges, strict=True)
    ]
    legend: dict[str, LegendEntry] = {}
    for row in charts:
        for chart in row:
            for line in chart:
                text = f"{line.label} (dashed)" if line.dashed else line.label
                legend.setdefault(text, LegendEntry(line.colour, text, line.marker))
    return compose(cells, row_labels, column_labels, title, list(legend.values()))


def _as_image(image) -> Image.Image:
    return image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))


def save_png(image, path: str | os.PathLike) -> None:
    """Writes an image (PIL or (H, W, 3) uint8 array) as PNG, atomically."""
    with atomic_path(path) as tmp:
        _as_image(image).save(tmp, format="PNG")


def _reserved_colours() -> np.ndarray:
    """(R, 3) uint8: colours a GIF must keep exactly: keypoint colours, black and white."""
    colours = np.concatenate([palette(32), [[0, 0, 0], [255, 255, 255]]]).astype(np.uint8)
    return np.unique(colours, axis=0)  # (R, 3); white is in the palette already


def _pack(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> (...,) uint32 codes 0xRRGGBB."""
    rgb = rgb.astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _shared_palette(images: Sequence[Image.Image]) -> Image.Image:
    """One 256-colour palette for every frame of an animation.

    A palette per frame would shift colours from frame to frame; here the reserved colours
    come first, and the rest is a median cut of a sample of frames.
    """
    reserved = _reserved_colours()
    sample = images[:: max(1, len(images) // 8)]
    montage = np.concatenate([np.asarray(im) for im in sample], axis=0)
    free = 256 - len(reserved)
    cut = Image.fromarray(montage).quantize(
        colors=free, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
    )
    colours = reserved.flatten().tolist() + cut.getpalette()[: 3 * free]
    holder = Image.new("P", (1, 1))
    holder.putpalette(colours + [0] * (768 - len(colours)))
    return holder


def _index_frame(image: Image.Image, shared: Image.Image) -> Image.Image:
    """Maps an RGB frame onto the shared palette, reserved colours exactly.

    Pillow matches colours through a reduced-precision cache, which can send a reserved colour
    to a near neighbour; pixels of exactly a reserved colour get its index instead.
    """
    indexed = image.quantize(palette=shared, dither=Image.Dither.NONE)
    codes = _pack(np.asarray(image))  # (H, W)
    reserved = _pack(_reserved_colours())  # (R,), palette indices 0 .. R - 1
    order = np.argsort(reserved)
    slot = np.searchsorted(reserved[order], codes).clip(0, len(reserved) - 1)  # (H, W)
    hit = reserved[order][slot] == codes
    index = np.asarray(indexed).copy()
    index[hit] = order[slot[hit]]
    exact = Image.frombytes("P", image.size, np.ascontiguousarray(index).tobytes())
    exact.putpalette(shared.getpalette())
    return exact


def save_gif(images: Sequence, path: str | os.PathLike, fps: float = 8.0) -> None:
    """Writes frames as a looping animated GIF with one shared palette, atomically.

    Args:
        images: PIL images or (H, W, 3) uint8 arrays, all of one size.
        path: output file.
        fps: frames per second.
    """
    if not images:
        raise ValueError("save_gif needs at least one frame")
    rgb = [_as_image(im).convert("RGB") for im in images]
    shared = _shared_palette(rgb)
    indexed = [_index_frame(im, shared) for im in rgb]
    with atomic_path(path) as tmp:
        indexed[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=indexed[1:],
            duration=round(1000 / fps),
            loop=0,
            optimize=False,
        )
