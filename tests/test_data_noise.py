"""Noisy Atari bars: positions inside the frame, painting and masks agree, reproducible."""

import numpy as np
import pytest
from conftest import emulator_frames

from permakey.data.frames import RESIZE_METHODS, resize_frame
from permakey.data.noise import (
    NoiseConfig,
    bar_colours,
    bar_mask,
    draw_bars,
    frame_bars,
    paint_bars,
)


@pytest.mark.parametrize("kind", ["horizontal", "vertical", "both"])
def test_bars_lie_inside_and_cover_every_position(kind):
    cfg = NoiseConfig(kind=kind, width=5)
    bars = draw_bars(np.random.default_rng(0), 4000, 84, 84, cfg)
    assert bars.shape == (4000, 2) and bars.dtype == np.int64
    for column, present in ((0, cfg.horizontal), (1, cfg.vertical)):
        if present:
            # Uniform over every position that keeps the whole bar inside: 0..79.
            assert set(bars[:, column].tolist()) == set(range(84 - 5 + 1))
        else:
            assert (bars[:, column] == -1).all()


@pytest.mark.parametrize("kind", ["horizontal", "vertical", "both"])
def test_painted_pixels_are_where_the_bars_and_mask_say(kind):
    cfg = NoiseConfig(kind=kind, width=3, colour=(128, 0, 255))
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 100, size=(6, 40, 30, 3), dtype=np.uint8)  # never the bar colour
    bars = draw_bars(rng, 6, 40, 30, cfg)
    painted = paint_bars(frames, bars, cfg)
    mask = bar_mask(bars, 40, 30, cfg)
    is_bar_colour = (painted == np.array(cfg.colour, np.uint8)).all(axis=-1)
    np.testing.assert_array_equal(is_bar_colour, mask)
    np.testing.assert_array_equal(painted[~mask], frames[~mask])  # nothing else changed
    assert not (frames == np.array(cfg.colour, np.uint8)).all(axis=-1).any()  # input untouched
    for i, (top, left) in enumerate(bars):
        if top >= 0:
            assert mask[i, top : top + 3].all() and not mask[i, top + 3 :, :].all(axis=1).any()
        if left >= 0:
            assert mask[i, :, left : left + 3].all()


def test_mask_margin_grows_the_bar_and_clips_at_the_border():
    cfg = NoiseConfig(kind="horizontal", width=5)
    mask = bar_mask(np.array([[0, -1], [40, -1]]), 84, 84, cfg, margin=2)
    assert mask[0, :7].all() and not mask[0, 7:].any()  # rows 0-4 plus 2 below
    assert mask[1, 38:47].all() and mask[1].all(axis=1).sum() == 9


def test_frame_bars_depend_only_on_seed_epoch_and_index():
    cfg = NoiseConfig(kind="both")
    all_at_once = frame_bars(3, 0, [5, 9, 5], 84, 84, cfg)
    one_by_one = np.concatenate([frame_bars(3, 0, i, 84, 84, cfg) for i in (5, 9, 5)])
    np.testing.assert_array_equal(all_at_once, one_by_one)
    assert (all_at_once[0] == all_at_once[2]).all()
    many = np.arange(200)
    base = frame_bars(3, 0, many, 84, 84, cfg)
    assert (frame_bars(3, 1, many, 84, 84, cfg) != base).any(axis=1).mean() > 0.9  # new epoch
    assert (frame_bars(4, 0, many, 84, 84, cfg) != base).any(axis=1).mean() > 0.9  # new seed
    assert (frame_bars(3, 0, many, 84, 84, NoiseConfig()) == -1).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "diagonal"},
        {"width": 0},
        {"colour": (0, 0, 300)},
        {"colour": (1, 2)},
        {"before_resize": "bicubic"},
    ],
)
def test_bad_noise_config_is_refused(kwargs):
    with pytest.raises(ValueError):
        NoiseConfig(**kwargs)


# --- options of the controlled runs (not in the paper) -------------------------------------


def test_noise_share_puts_bars_on_that_share_of_frames_reproducibly():
    cfg = NoiseConfig(kind="both")
    frames = np.arange(2000)
    every = frame_bars(5, 2, frames, 84, 84, cfg)
    half = frame_bars(5, 2, frames, 84, 84, cfg, share=0.5)
    noisy = (half >= 0).all(axis=1)
    assert ((half == -1).all(axis=1) | noisy).all()  # a frame has both bars or none
    assert 0.45 < noisy.mean() < 0.55
    np.testing.assert_array_equal(half[noisy], every[noisy])  # the same bars where present
    np.testing.assert_array_equal(frame_bars(5, 2, frames, 84, 84, cfg, share=0.5), half)
    other_seed = (frame_bars(6, 2, frames, 84, 84, cfg, share=0.5) >= 0).all(axis=1)
    assert (other_seed != noisy).mean() > 0.3
    fewer = (frame_bars(5, 2, frames, 84, 84, cfg, share=0.2) >= 0).all(axis=1)
    assert 0.15 < fewer.mean() < 0.25 and not (fewer & ~noisy).any()  # nested shares
    np.testing.assert_array_equal(frame_bars(5, 2, frames, 84, 84, cfg, share=1.0), every)
    assert (frame_bars(5, 2, frames, 84, 84, cfg, share=0.0) == -1).all()
    with pytest.raises(ValueError, match="share"):
        frame_bars(5, 2, frames, 84, 84, cfg, share=1.5)


def test_random_colour_gives_each_frame_one_colour_and_every_reader_the_same():
    cfg = NoiseConfig(kind="both", width=4, random_colour=True)
    rng = np.random.default_rng(3)
    frames = np.zeros((300, 84, 84, 3), np.uint8)
    bars = draw_bars(rng, 300, 84, 84, cfg)
    painted = paint_bars(frames, bars, cfg)
    mask = bar_mask(bars, 84, 84, cfg)
    colours = bar_colours(bars, cfg)
    for i in range(300):
        np.testing.assert_array_equal(
            painted[i][mask[i]], np.broadcast_to(colours[i], (mask[i].sum(), 3))
        )
        assert not painted[i][~mask[i]].any()
    assert len({tuple(c) for c in colours}) > 250  # a fresh colour per frame
    assert 80 < colours.mean() < 175  # uniform over the cube: mean about 127.5
    np.testing.assert_array_equal(paint_bars(frames, bars, cfg), painted)  # from the bars alone
    fixed = bar_colours(bars, NoiseConfig(kind="both"))
    assert (fixed == (128, 0, 255)).all()


def test_mask_of_fractional_bars_holds_the_pixels_whose_centres_they_cover():
    cfg = NoiseConfig(kind="both", width=5)
    mask = bar_mask(np.array([[10.4, -1.0], [-1.0, 3.6]]), 84, 84, cfg)
    assert mask[0].all(axis=1).nonzero()[0].tolist() == [10, 11, 12, 13, 14]  # centres 10.5-14.5
    assert mask[1].all(axis=0).nonzero()[0].tolist() == [4, 5, 6, 7, 8]  # 4.5-8.5 in [3.6, 8.6)


@pytest.fixture(scope="module")
def raw_frames():
    """Real MsPacman frames (210, 160, 3) from the emulator, some with the player moving."""
    return emulator_frames("MsPacman", 0, 120, 10, lambda t: t % 5)


def _painted_on_raw(raw, bars, cfg):
    """The truth: bars painted on the raw frames, then each resized as the dataset does."""
    out = []
    for frame, (top, left) in zip(raw, bars, strict=True):
        frame = frame.copy()
        if top >= 0:
            start = round(top * 210 / 84)
            frame[start : start + round(cfg.width * 210 / 84)] = cfg.colour
        if left >= 0:
            start = round(left * 160 / 84)
            frame[:, start : start + round(cfg.width * 160 / 84)] = cfg.colour
        out.append(resize_frame(frame, 84, cfg.before_resize))
    return np.stack(out)


@pytest.mark.parametrize("method", RESIZE_METHODS)
def test_bars_before_the_resize_are_those_painted_on_the_raw_frame(raw_frames, method):
    cfg = NoiseConfig(kind="both", width=5, before_resize=method)
    bars = draw_bars(np.random.default_rng(4), len(raw_frames), 84, 84, cfg)
    assert bars.dtype == np.float64 and (bars >= 0).all()
    # Raw positions: whole raw rows (0.4 stored rows each) and columns, the bar inside.
    np.testing.assert_allclose(bars[:, 0] * 210 / 84, np.rint(bars[:, 0] * 210 / 84), atol=1e-9)
    assert bars[:, 0].max() <= (210 - 12) * 84 / 210 and bars[:, 1].max() <= (160 - 10) * 84 / 160
    stored = np.stack([resize_frame(f, 84, method) for f in raw_frames])
    painted = paint_bars(stored, bars, cfg)
    truth = _painted_on_raw(raw_frames, bars, cfg).astype(int)
    near = bar_mask(bars, 84, 84, cfg, margin=2)
    # Nothing changes away from the bars; inside them the bar is there, in its colour.
    np.testing.assert_array_equal(painted[~near], stored[~near])
    core = bar_mask(bars + 1, 84, 84, NoiseConfig(kind="both", width=3))
    assert (painted[core] == cfg.colour).all() and (truth[core] == cfg.colour).all()
    differs = np.abs(painted.astype(int) - truth).max(axis=-1)  # (N, 84, 84)
    if method == "nearest":
        assert differs.max() == 0  # exact: each stored pixel is one raw pixel
    else:  # bar edges blend with the stored pixel, not the raw pixels they leave uncovered
        assert (differs[near] > 1).mean() < 0.1
    after = paint_bars(stored, np.rint(bars).astype(np.int64), NoiseConfig(kind="both"))
    assert (painted != after).any(axis=-1)[~near].sum() == 0
    assert (painted != after).any()  # the edges fall between stored pixels: not the same bars
