"""Noisy Atari bars: positions inside the frame, painting and masks agree, reproducible."""

import numpy as np
import pytest

from permakey.data.noise import NoiseConfig, bar_mask, draw_bars, frame_bars, paint_bars


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
    "kwargs", [{"kind": "diagonal"}, {"width": 0}, {"colour": (0, 0, 300)}, {"colour": (1, 2)}]
)
def test_bad_noise_config_is_refused(kwargs):
    with pytest.raises(ValueError):
        NoiseConfig(**kwargs)
