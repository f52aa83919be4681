"""Figures: keypoint colours land where the keypoints are, the same colour in every picture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from permakey.keypoints import from_pixels, gaussian_windows
from permakey.visualisation import figures
from permakey.visualisation.colours import keypoint_colour, palette, run_style
from permakey.visualisation.draw import (
    draw_keypoints,
    draw_windows,
    heat_map,
    resize_windows,
    upscale,
)

SCALE = 4


def _centres_at(pixels) -> np.ndarray:
    """(K, 2) centres in [-1, 1] of the given (row, col) pixels of an 84 x 84 frame."""
    return from_pixels(torch.tensor(pixels, dtype=torch.float64), 84, 84).numpy()


def _black(n: int = 1) -> np.ndarray:
    return np.zeros((n, 84, 84, 3), np.uint8)


def _mask(image, colour) -> np.ndarray:
    return np.all(np.asarray(image)[..., :3] == np.array(colour, np.uint8), axis=-1)


def _centroid(image, colour) -> np.ndarray:
    ys, xs = np.nonzero(_mask(image, colour))
    assert len(ys), f"colour {colour} is nowhere in the image"
    return np.array([ys.mean(), xs.mean()])


def _canvas_centre(row: float, col: float) -> np.ndarray:
    """Where frame pixel (row, col) is centred on a canvas upscaled by SCALE."""
    return (np.array([row, col]) + 0.5) * SCALE - 0.5


def test_palette_is_fixed_distinct_and_indexable_beyond_its_head():
    colours = palette(40)
    assert colours.shape == (40, 3) and colours.dtype == np.uint8
    assert len({tuple(c) for c in colours}) == 40
    assert tuple(colours[0]) == keypoint_colour(0) == (0xE6, 0x19, 0x4B)
    assert [keypoint_colour(k) for k in range(40)] == [tuple(int(v) for v in c) for c in colours]
    assert run_style(1) == (keypoint_colour(1), "square")
    with pytest.raises(ValueError):
        keypoint_colour(-1)


def test_upscale_is_nearest_neighbour():
    frame = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    big = upscale(frame, 3)
    assert big.shape == (6, 6, 3)
    assert (big[:3, :3] == frame[0, 0]).all() and (big[3:, 3:] == frame[1, 1]).all()


def test_keypoint_colour_appears_at_its_pixel():
    pixels = [(20, 30), (70, 10), (0, 0), (83, 83)]
    canvas = draw_keypoints(_black()[0], _centres_at(pixels), SCALE)
    assert canvas.shape == (84 * SCALE, 84 * SCALE, 3)
    for k, (row, col) in enumerate(pixels):
        y, x = np.floor(_canvas_centre(row, col)).astype(int)
        assert tuple(canvas[y, x]) == keypoint_colour(k), (k, row, col)
    # Markers are small: far from every keypoint the frame is untouched.
    assert (canvas[40 * SCALE, 50 * SCALE] == 0).all()
    # Marker centroids sit on the keypoints (corner markers are clipped, so skip those).
    for k, (row, col) in enumerate(pixels[:2]):
        assert np.allclose(
            _centroid(canvas, keypoint_colour(k)), _canvas_centre(row, col), atol=0.6
        )


def test_draw_accepts_tensors_and_custom_colours():
    centres = torch.tensor(_centres_at([(42, 42)]), dtype=torch.float32)
    canvas = draw_keypoints(_black()[0], centres, SCALE, colours=np.array([[1, 2, 3]]))
    assert tuple(canvas[42 * SCALE + 1, 42 * SCALE + 1]) == (1, 2, 3)
    with pytest.raises(ValueError, match="colours"):
        draw_keypoints(_black()[0], centres, SCALE, colours=palette(2))
    with pytest.raises(ValueError, match="marker"):
        draw_keypoints(_black()[0], centres, SCALE, marker="star")
    with pytest.raises(ValueError, match="uint8"):
        draw_keypoints(np.zeros((84, 84, 3), np.float32), centres, SCALE)


def test_windows_tint_around_the_centre_in_the_keypoint_colour():
    centres = torch.tensor(_centres_at([(20, 60)]), dtype=torch.float32)[None]  # (1, 1, 2)
    # On the image's own grid the resize is the identity; from a coarse 21 x 21 grid the
    # peak moves by at most half a cell (83 / 20 / 2 pixels).
    fine = gaussian_windows(centres, 84, 84, 0.1)[0]  # (1, 84, 84)
    assert np.allclose(resize_windows(fine, 84, 84), fine.numpy(), atol=1e-6)
    windows = gaussian_windows(centres, 21, 21, 0.1)[0]  # (1, 21, 21)
    resized = resize_windows(windows, 84, 84)
    assert resized.shape == (1, 84, 84)
    peak = np.unravel_index(resized[0].argmax(), (84, 84))
    assert np.abs(np.array(peak) - [20, 60]).max() <= 83 / 20 / 2
    windows = fine
    canvas = draw_windows(_black()[0], windows, SCALE, alpha=1.0)
    y, x = np.floor(_canvas_centre(20, 60)).astype(int)
    # Half a canvas pixel off the centre, bilinear sampling gives a window value of ~0.99.
    assert np.abs(canvas[y, x].astype(int) - keypoint_colour(0)).max() <= 5
    assert (canvas[80 * SCALE, 5 * SCALE] == 0).all()


def test_heat_map_is_normalised_nearest_and_ordered():
    values = np.array([[0.0, 1.0], [2.0, 3.0]])
    rgb = heat_map(values, 8, 8)
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (0, 0, 4) and tuple(rgb[7, 7]) == (252, 255, 164)
    assert (rgb[:4, :4] == rgb[0, 0]).all() and (rgb[4:, 4:] == rgb[7, 7]).all()
    brightness = [int(rgb[r, c].sum()) for r, c in ((0, 0), (0, 4), (4, 0), (4, 4))]
    assert brightness == sorted(brightness)
    assert (heat_map(np.ones((3, 3)), 6, 6) == heat_map(np.zeros((3, 3)), 6, 6)).all()


def _second_cell_origin(page) -> tuple[int, int]:
    """Top-left of the second row of black cells on a white page (the first model's row)."""
    black = np.all(np.asarray(page) == 0, axis=-1)
    rows = np.flatnonzero(black.any(axis=1))
    starts = rows[np.flatnonzero(np.diff(rows) > 1) + 1]
    return int(starts[0]), int(np.flatnonzero(black.any(axis=0))[0])


def test_same_keypoint_same_colour_and_place_in_every_figure():
    pixels = [(20, 30), (60, 50), (40, 70)]
    centres = _centres_at(pixels)[None]  # (1, 3, 2)
    windows = gaussian_windows(torch.tensor(centres, dtype=torch.float32), 21, 21, 0.1).numpy()
    fig2 = figures.keypoint_figure(_black(), {"model": centres}, scale=SCALE)
    fig4 = figures.window_figure(_black(), {"model": (centres, windows)}, scale=SCALE)
    gif = figures.keypoint_animation(_black(2), {"model": np.repeat(centres, 2, 0)}, scale=SCALE)
    for page in (fig2, fig4):
        top, left = _second_cell_origin(page)
        for k, (row, col) in enumerate(pixels):
            inside = _mask(page, keypoint_colour(k))[
                top : top + 84 * SCALE, left : left + 84 * SCALE
            ]
            ys, xs = np.nonzero(inside)
            assert np.allclose([ys.mean(), xs.mean()], _canvas_centre(row, col), atol=0.6)
    # The animation's only row is its first: colours appear once per keypoint, in the panel.
    panel = np.asarray(gif[1])
    for k in range(3):
        assert _mask(panel, keypoint_colour(k)).sum() > 10
    # A colour beyond K is not drawn (the legend lists exactly K colours).
    assert not _mask(fig2, keypoint_colour(3)).any()


def test_keypoint_figure_layout_and_size():
    n, k = 3, 5
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (n, 84, 84, 3), dtype=np.uint8)
    centres = rng.uniform(-1, 1, (n, k, 2))
    maps = {
        "error map, layer 0": rng.random((n, 42, 42)),
        "error map, layer 1": rng.random((n, 21, 21)),
    }
    page = figures.keypoint_figure(
        frames, {"a": centres, "b": centres}, maps, "title", [f"f{i}" for i in range(n)], SCALE
    )
    rows = 1 + 2 + 2
    assert page.mode == "RGB"
    assert page.width > n * 84 * SCALE and page.height > rows * 84 * SCALE
    assert page.width < n * (84 * SCALE + 20) + 200 and page.height < rows * (84 * SCALE + 10) + 120
    with pytest.raises(ValueError, match="frames"):
        figures.keypoint_figure(frames, {"a": centres[:2]})
    with pytest.raises(ValueError, match="uint8"):
        figures.keypoint_figure(frames.astype(np.float32), {"a": centres})


def test_seed_figure_colours_by_run():
    base = _centres_at([(20, 20), (60, 60)])[None]  # (1, 2, 2)
    runs = {"seed 0": base, "seed 1": base + 0.3, "seed 2": base - 0.3}
    page = figures.seed_figure(_black(), runs, "seeds", scale=SCALE)
    for i in range(3):
        colour, _ = run_style(i)
        # Two markers in the overlay plus the legend's swatch.
        assert _mask(page, colour).sum() > 3 * 20
    # Keypoint 1's palette colour is run 1's, so check a colour no run uses is absent.
    assert not _mask(page, keypoint_colour(5)).any()


def test_gif_has_all_frames_and_exact_keypoint_colours(tmp_path):
    t = 6
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 120, (t, 84, 84, 3), dtype=np.uint8)
    centres = np.stack([_centres_at([(10 + 5 * i, 40), (70, 10 + 10 * i)]) for i in range(t)])
    images = figures.keypoint_animation(frames, {"a": centres, "b": centres}, "episode")
    assert len(images) == t and len({im.size for im in images}) == 1
    path = tmp_path / "episode.gif"
    figures.save_gif(images, path, fps=5)
    assert [p.name for p in tmp_path.iterdir()] == ["episode.gif"]  # no temporary file left
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == t and gif.size == images[0].size
        gif.seek(3)
        frame = gif.convert("RGB")
    # One shared palette keeps the keypoint colours and the white page exact in every frame.
    for colour in (keypoint_colour(0), keypoint_colour(1), (255, 255, 255)):
        source = _mask(images[3], colour)
        assert source.any() and _mask(frame, colour)[source].all()


def test_save_png_round_trip(tmp_path):
    page = figures.keypoint_figure(_black(), {"m": _centres_at([(42, 42)])[None]})
    figures.save_png(page, tmp_path / "sub" / "f.png")
    with Image.open(tmp_path / "sub" / "f.png") as png:
        assert png.format == "PNG" and png.size == page.size
        assert (np.asarray(png.convert("RGB")) == np.asarray(page)).all()


def test_compose_rejects_ragged_grids():
    cell = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="shape"):
        figures.compose([[cell, np.zeros((5, 4, 3), np.uint8)]], ["r"])
    with pytest.raises(ValueError, match="labels"):
        figures.compose([[cell]], ["a", "b"])


def test_line_chart_puts_each_value_at_its_height_and_leaves_gaps():
    red, blue = (230, 25, 75), (67, 99, 216)
    low = figures.Series("low", (0.0, 0.25, None, 0.25), red)
    high = figures.Series("high", (1.0, 0.75, 0.75, 1.0), blue, marker="square")
    chart = figures.line_chart([low, high], ["1x", "2x", "4x", "8x"], y_range=(0.0, 1.0))
    assert chart.shape == (*figures._CHART_SIZE, 3) and chart.dtype == np.uint8
    h, w = chart.shape[:2]
    red_rows, red_cols = np.nonzero(_mask(chart, red))
    blue_rows = np.nonzero(_mask(chart, blue))[0]
    # y is linear in the value, 0 at the bottom: values up to 0.25 stay in the lower half,
    # values from 0.75 in the upper one.
    assert red_rows.min() > h / 2 > blue_rows.max()
    # x positions evenly spaced: the third (None) leaves the red line broken there, while the
    # fourth point is drawn alone.
    third = slice(int(w * 0.55), int(w * 0.70))
    assert not _mask(chart, red)[:, third].any() and _mask(chart, blue)[:, third].any()
    assert red_cols.max() > w * 0.8
    with pytest.raises(ValueError, match="series 'low' has 4 values for 2 x labels"):
        figures.line_chart([low], ["1x", "2x"])


def test_curve_figure_has_a_chart_per_row_and_column_and_a_legend_entry_per_series():
    line = figures.Series("run", (0.2, 0.4), (60, 180, 75))
    chance = figures.Series("chance", (0.2, 0.2), (140, 140, 140), dashed=True)
    figure = figures.curve_figure(
        [[[line, chance], [line]], [[line], [chance]]], ["a", "b"], ["game 1", "game 2"],
        ["1x", "2x"], title="t",
    )  # fmt: skip
    h, w = figures._CHART_SIZE
    assert figure.width > 2 * w and figure.height > 2 * h
    with pytest.raises(ValueError, match="got 1 y ranges for 2 rows"):
        figures.curve_figure(
            [[[line]], [[line]]], ["a", "b"], ["g"], ["1x", "2x"], y_ranges=[(0, 1)]
        )
