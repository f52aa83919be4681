"""Metric functions and controls on hand-made cases with known answers."""

import numpy as np
import pytest
import torch

from permakey.evaluation import controls, metrics
from permakey.keypoints import from_pixels, gaussian_windows, grid, to_pixels

H = W = 84


def one_frame(*points):
    """(1, K, 2) keypoints of one frame from (row, col) pixel pairs."""
    return np.array([points], dtype=np.float64)


# One object, box x=10, y=20, w=4, h=6 in edge coordinates: rows [20, 26], cols [10, 14].
OFFSETS = np.array([0, 1])
BOX = np.array([[10.0, 20.0, 4.0, 6.0]])


def test_keypoint_at_object_centre_counts_at_every_radius():
    centre = one_frame((22.5, 11.5))  # edge (23, 12): the box's centre
    for r in metrics.RADII:
        assert metrics.object_hits(centre, OFFSETS, BOX, r).tolist() == [True]
        assert metrics.keypoint_hits(centre, OFFSETS, BOX, r).tolist() == [[True]]


@pytest.mark.parametrize("r", metrics.RADII)
def test_margin_edges_inclusive_and_just_outside_excluded(r):
    # Bottom edge of the grown box in edge coordinates is 26 + r, i.e. row 25.5 + r.
    inside = one_frame((25.5 + r, 11.5))
    outside = one_frame((25.5 + r + 1e-6, 11.5))
    assert metrics.object_hits(inside, OFFSETS, BOX, r)[0]
    assert not metrics.object_hits(outside, OFFSETS, BOX, r)[0]
    # Left edge: col + 0.5 >= 10 - r.
    assert metrics.object_hits(one_frame((22.5, 9.5 - r)), OFFSETS, BOX, r)[0]
    assert not metrics.object_hits(one_frame((22.5, 9.5 - r - 1e-6)), OFFSETS, BOX, r)[0]


def test_keypoint_three_pixels_outside_counts_only_at_r4():
    kp = one_frame((22.5, 14.5 + 3))  # edge col 18: 4 beyond the right edge at 14
    found = [bool(metrics.object_hits(kp, OFFSETS, BOX, r)[0]) for r in metrics.RADII]
    assert found == [False, False, True]


def test_precision_and_recall_with_two_keypoints_on_one_object():
    offsets = np.array([0, 2])
    boxes = np.array([[10.0, 20.0, 4.0, 6.0], [50.0, 50.0, 4.0, 4.0]])
    kps = one_frame((22.0, 11.0), (23.0, 12.0))  # both on the first object
    found = metrics.object_hits(kps, offsets, boxes, 0)
    on_object = metrics.keypoint_hits(kps, offsets, boxes, 0)
    assert metrics.fraction(found) == 0.5  # one of two objects found
    assert metrics.fraction(on_object) == 1.0  # every keypoint is on an object
    assert metrics.f1(1.0, 0.5) == pytest.approx(2 / 3)


def test_aggregation_is_micro_over_objects_and_keypoints():
    # Frame 0: one object, found. Frame 1: three objects, none found. Frame 2: no objects.
    offsets = np.array([0, 1, 4, 4])
    boxes = np.array([[0, 0, 4, 4], [40, 40, 2, 2], [60, 60, 2, 2], [70, 70, 2, 2]], float)
    kps = np.array([[[1.0, 1.0]], [[10.0, 10.0]], [[1.0, 1.0]]])
    assert metrics.fraction(metrics.object_hits(kps, offsets, boxes, 0)) == 0.25
    assert metrics.fraction(metrics.keypoint_hits(kps, offsets, boxes, 0)) == pytest.approx(1 / 3)
    recall, precision = metrics.per_frame_scores(kps, offsets, boxes, 0)
    assert recall[:2].tolist() == [1.0, 0.0] and np.isnan(recall[2])
    assert precision.tolist() == [1.0, 0.0, 0.0]


def test_recall_bound_and_per_category():
    offsets = np.array([0, 3, 4])  # 3 objects then 1 object
    assert metrics.recall_bound(offsets, 2) == pytest.approx((2 + 1) / 4)
    assert metrics.recall_bound(np.array([0, 0]), 2) is None
    found = np.array([True, False, True, True])
    per = metrics.per_category(found, np.array([0, 1, 1, 0]), ["Player", "Alien", "Score"])
    assert per == {"Player": (1.0, 2), "Alien": (0.5, 2)}


def test_empty_and_f1_edge_cases():
    assert metrics.fraction(np.zeros(0, bool)) is None
    assert metrics.f1(0.0, 0.0) == 0.0
    assert metrics.f1(None, 0.5) is None


def test_keypoint_on_bar_counts_and_chance_is_bar_area():
    bars = np.array([[10, -1], [-1, 30], [-1, -1]])  # horizontal, vertical, none
    kps = np.array([[[12.0, 50.0]], [[50.0, 31.0]], [[12.0, 31.0]]])
    assert metrics.bar_hits(kps, bars, 5, 0)[:, 0].tolist() == [True, True, False]
    # Row 15.5 (edge 16) is one past the horizontal bar [10, 15]: only in with r >= 1.
    below = np.array([[[15.5, 0.0]]])
    assert not metrics.bar_hits(below, bars[:1], 5, 0)[0, 0]
    assert metrics.bar_hits(below, bars[:1], 5, 2)[0, 0]
    chance = metrics.bar_area_fraction(bars, 5, 0, H, W)
    assert chance.tolist() == pytest.approx([5 / 84, 5 / 84, 0.0])
    both = metrics.bar_area_fraction(np.array([[10, 30]]), 5, 2, H, W)[0]
    assert both == pytest.approx((9 * 84 + 9 * 84 - 81) / 84**2)
    clipped = metrics.bar_area_fraction(np.array([[0, -1]]), 5, 2, H, W)[0]
    assert clipped == pytest.approx(7 / 84)  # [-2, 7] clipped to [0, 7]


def test_random_keypoints_hit_bars_at_chance():
    rng = np.random.default_rng(1)
    bars = rng.integers(0, H - 5, size=(2000, 2))
    kps = controls.random_keypoints(2000, 10, H, W, seed=3)
    share = metrics.fraction(metrics.bar_hits(kps, bars, 5, 2))
    chance = metrics.bar_area_fraction(bars, 5, 2, H, W).mean()
    assert share == pytest.approx(chance, abs=0.01)


def test_random_control_recall_matches_area_fraction_on_big_frame():
    size = 400
    offsets = np.arange(501) * 1  # one object per frame
    box_side = 40.0
    boxes = np.tile([[100.0, 200.0, box_side, box_side]], (500, 1))
    kps = controls.random_keypoints(500, 1, size, size, seed=0)
    recall = metrics.fraction(metrics.object_hits(kps, offsets, boxes, 0))
    assert recall == pytest.approx(box_side**2 / size**2, abs=0.02)
    assert kps.min() >= -0.5 and kps.max() < size - 0.5
    assert np.array_equal(kps, controls.random_keypoints(500, 1, size, size, seed=0))


def test_border_share_and_chance():
    kps = np.array([[[0.0, 40.0], [1.5, 40.0], [1.6, 40.0], [40.0, 82.0], [40.0, 40.0]]])
    assert metrics.border_hits(kps, H, W)[0].tolist() == [True, True, False, True, False]
    assert metrics.border_area_fraction(H, W) == pytest.approx(1 - 80 * 80 / 84**2)


def test_seed_stability_of_permuted_and_shifted_keypoints():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 83, size=(20, 6, 2))
    permuted = a[:, rng.permutation(6)]
    shift = np.array([3.0, 4.0])  # distance 5
    assert metrics.matched_distance(a, permuted) == pytest.approx(0.0)
    assert metrics.seed_stability([a, permuted, a]) == pytest.approx(0.0)
    assert metrics.seed_stability([a, permuted + shift]) == pytest.approx(5.0)
    assert metrics.seed_stability([a]) is None


def test_motion_of_static_and_moving_keypoints():
    episode = np.array([0, 0, 0, 1, 1])
    step = np.array([0, 1, 2, 0, 2])  # frames 3 and 4 are not consecutive
    static = np.tile([[[10.0, 20.0]]], (5, 1, 1))
    assert metrics.motion(static, episode, step) == {"from_mean_px": 0.0, "per_step_px": 0.0}
    moving = static.copy()
    moving[:, 0, 1] += np.arange(5) * 2.0  # 2 px per frame along columns
    result = metrics.motion(moving, episode, step)
    assert result["per_step_px"] == pytest.approx(2.0)  # pairs (0,1), (1,2) only
    assert result["from_mean_px"] == pytest.approx(np.mean([4, 2, 0, 2, 4]))
    assert metrics.motion(static[:1], episode[:1], step[:1])["per_step_px"] is None


def test_static_template_of_static_keypoints_equals_them():
    static = np.tile(np.array([[[5.0, 6.0], [70.0, 1.0]]]), (4, 1, 1))
    assert np.array_equal(controls.static_template(static), static)
    moving = static + np.arange(4)[:, None, None]
    template = controls.static_template(moving)
    assert np.allclose(template, static + 1.5)


def test_object_tracker_follows_each_object_and_beats_its_template_only_on_movers():
    # Frame 0 and 1: a player (category 0) moving along row 40, and two blocks (category 1),
    # listed bottom first; frame 2: the blocks only. Boxes are 2 x 2: centre = (y + 0.5, x + 0.5).
    player = [[10.0, 40.0, 2.0, 2.0], [60.0, 40.0, 2.0, 2.0]]
    blocks = [[30.0, 70.0, 2.0, 2.0], [30.0, 10.0, 2.0, 2.0]]  # bottom, top
    boxes = np.array([player[0], *blocks, player[1], *blocks, *blocks])
    category = np.array([0, 1, 1, 0, 1, 1, 1, 1])
    offsets = np.array([0, 3, 6, 8])
    tracker = controls.object_tracker(offsets, category, boxes, 5)
    # Three slots, most frequent first: block rank 0 (the top one), block rank 1, the player.
    assert tracker.shape == (3, 3, 2)
    assert tracker[:, 0].tolist() == [[10.5, 30.5]] * 3
    assert tracker[:, 1].tolist() == [[70.5, 30.5]] * 3
    assert tracker[:, 2].tolist() == [[40.5, 10.5], [40.5, 60.5], [40.5, 35.5]]  # absent: mean
    # Every object holds its keypoint at r = 0; the template keeps the blocks, loses the player.
    assert metrics.object_hits(tracker, offsets, boxes, 0).all()
    template_hits = metrics.object_hits(controls.static_template(tracker), offsets, boxes, 0)
    assert template_hits.tolist() == [False, True, True, False, True, True, True, True]
    # With room for one keypoint only the most frequent slot stays.
    assert controls.object_tracker(offsets, category, boxes, 1)[:, 0].tolist() == [[10.5, 30.5]] * 3


def test_error_map_peaks_finds_separated_maxima_strongest_first():
    stack = torch.zeros(1, 2, H, W)
    stack[0, 0, 10:14, 20:24] = 1.0  # a 4x4 block: peak near its centre
    stack[0, 1, 60, 70] = 0.9
    stack[0, 0, 11, 22] += 0.5  # a bump inside the block must not take a second peak
    peaks = controls.error_map_peaks(stack, 3)
    assert peaks.shape == (1, 3, 2)
    assert np.abs(peaks[0, 0] - [11.5, 21.5]).max() <= 1.0
    assert peaks[0, 1].tolist() == [60.0, 70.0]
    for i in range(3):
        for j in range(i):
            assert np.abs(peaks[0, i] - peaks[0, j]).max() > controls.PEAK_SEPARATION_PX


def test_pixel_coordinate_round_trip_and_corners():
    centres = torch.tensor([[[-1.0, -1.0], [1.0, 1.0], [0.0, 0.5]]])
    pixels = to_pixels(centres, H, W)
    assert pixels[0, 0].tolist() == [0.0, 0.0]
    assert pixels[0, 1].tolist() == [83.0, 83.0]
    assert pixels[0, 2].tolist() == pytest.approx([41.5, 62.25])
    assert torch.allclose(from_pixels(pixels, H, W), centres)
    # The frame's centre keypoint sits on the centre of a box spanning the whole frame.
    full = np.array([[0.0, 0.0, 84.0, 84.0]])
    assert metrics.object_hits(pixels[:, 2:].numpy(), np.array([0, 1]), full, 0)[0]


def test_gaussian_windows_follow_the_two_dimensional_formula_and_peak_on_the_centre():
    torch.manual_seed(0)
    centres = torch.rand(3, 5, 2) * 2 - 1  # (B, K, 2) anywhere in the frame
    centres[0, 0] = torch.tensor([grid(21)[4], grid(13)[9]])  # exactly on a grid point
    sigma = 0.1
    windows = gaussian_windows(centres, 21, 13, sigma)  # (B, K, 21, 13)
    ys, xs = torch.meshgrid(grid(21), grid(13), indexing="ij")  # (21, 13) each
    squared = (ys - centres[..., 0, None, None]) ** 2 + (xs - centres[..., 1, None, None]) ** 2
    assert torch.allclose(windows, torch.exp(-squared / sigma**2), rtol=1e-5, atol=1e-7)
    assert windows[0, 0, 4, 9] == pytest.approx(1.0)
    assert windows[0, 0].argmax() == 4 * 13 + 9


@pytest.mark.parametrize("kind", ["horizontal", "vertical", "both"])
def test_bar_metrics_agree_with_the_data_layers_bar_mask(kind):
    noise = pytest.importorskip("permakey.data.noise")
    cfg = noise.NoiseConfig(kind=kind, width=5)
    bars = noise.draw_bars(np.random.default_rng(0), 50, H, W, cfg)
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    centres = np.broadcast_to(np.stack([rows, cols], -1).reshape(1, -1, 2), (50, H * W, 2))
    for r in metrics.RADII:
        mask = noise.bar_mask(bars, H, W, cfg, margin=r)  # (N, H, W)
        chance = metrics.bar_area_fraction(bars, cfg.width, r, H, W)
        assert chance == pytest.approx(mask.mean(axis=(1, 2)))
        hits = metrics.bar_hits(centres, bars, cfg.width, r)  # every pixel centre
        assert np.array_equal(hits, mask.reshape(50, -1))
