"""Bar error mass and its parts on hand-made error maps whose answers are known."""

import numpy as np
import pytest

from permakey.data.noise import NoiseConfig, bar_mask, draw_bars
from permakey.evaluation import error_mass, metrics
from permakey.evaluation.error_mass import OUTSIDE, PARTS

H = W = 84
BOTH = NoiseConfig("both", width=5)


def measure(stack, bars, noise=BOTH, sprites=None):
    """`BarErrorMass` of (N, L, H, W) maps on frames with (N, 2) bars."""
    bars = np.asarray(bars)
    sprites = np.zeros((len(bars), H, W), dtype=bool) if sprites is None else sprites
    labels = error_mass.bar_parts(bars, noise, H, W, sprites)
    masses = error_mass.part_masses(np.asarray(stack, dtype=np.float32), labels)
    areas = error_mass.part_areas(labels)
    layers = range(np.shape(stack)[1])
    return error_mass.bar_error_mass(masses, areas, layers, error_mass.SPRITES_FROM_BOXES)


def test_known_mass_on_a_bar_gives_the_exact_share():
    # Horizontal bar on rows 40-44 (grown: 38-46); 9 pixels of mass inside it, 27 outside.
    stack = np.zeros((1, 2, H, W))
    stack[0, 0, 41:44, 30:33] = 1.0  # in the bar's interior
    stack[0, 0, 10:13, 10:19] = 1.0  # far from it
    stack[0, 1, 46, 20:29] = 0.5  # layer 1: all on the grown margin's last row
    mass = measure(stack, [[40, -1]], NoiseConfig("horizontal", width=5))
    assert mass.per_layer == (0.25, 1.0)
    assert mass.summed == pytest.approx((9 + 4.5) / (36 + 4.5))
    assert mass.parts["interior"].per_layer == (0.25, 0.0)
    assert mass.parts["edges"].per_layer == (0.0, 1.0)
    assert mass.chance == pytest.approx(9 / 84)
    assert mass.layers == (0, 1) and mass.margin == 2


def test_a_map_uniform_over_the_frame_gives_the_bars_area_share():
    # Frame 1's horizontal bar touches the top border, so its grown bars cover less area:
    # a ratio of sums over the frames would not give the mean area share.
    bars = np.array([[40, 20], [0, 60]])
    stack = np.ones((2, 2, H, W))
    stack[1] *= 0.3  # frames differ in total mass
    mass = measure(stack, bars)
    chance = metrics.bar_area_fraction(bars, 5, 2, H, W).mean()
    assert mass.chance == pytest.approx(chance)
    assert mass.summed == pytest.approx(chance)
    assert mass.per_layer == pytest.approx((chance, chance))
    for part in mass.parts.values():
        assert part.summed == pytest.approx(part.area)


def test_a_map_zero_on_the_bars_gives_zero():
    bars = np.array([[40, 20], [3, 77]])
    stack = np.repeat(~bar_mask(bars, H, W, BOTH, margin=2)[:, None], 3, axis=1)  # (2, 3, H, W)
    mass = measure(stack.astype(np.float32), bars)
    assert mass.summed == 0.0 and mass.per_layer == (0.0, 0.0, 0.0)
    assert all(part.summed == 0.0 for part in mass.parts.values())


def test_frames_without_mass_are_left_out_and_none_without_any():
    stack = np.zeros((2, 1, H, W))
    stack[1, 0, 41, 50] = 1.0  # frame 1 all on the bar; frame 0 has no mass
    assert measure(stack, [[40, -1], [40, -1]]).summed == 1.0
    empty = measure(np.zeros((1, 1, H, W)), [[40, -1]])
    assert empty.summed is None and empty.per_layer == (None,)
    assert empty.parts["edges"].summed is None and empty.chance > 0


def one_pixel(row, col, bars, sprites=None):
    """The part that holds a map lit on one pixel only (None: off the grown bars)."""
    stack = np.zeros((1, 1, H, W))
    stack[0, 0, row, col] = 1.0
    mass = measure(stack, [bars], sprites=sprites)
    held = [name for name, part in mass.parts.items() if part.summed == 1.0]
    assert mass.summed == (1.0 if held else 0.0)
    return held[0] if held else None


@pytest.mark.parametrize(
    ("row", "col", "part"),
    [
        (42, 30, "interior"),  # horizontal bar rows 40-44, away from the vertical bar
        (41, 30, "interior"),
        (40, 30, "edges"),  # the bar's first row
        (44, 30, "edges"),  # its last row
        (38, 30, "edges"),  # 2 px outside
        (46, 30, "edges"),
        (47, 30, None),  # 3 px outside: off the grown bar
        (20, 62, "interior"),  # vertical bar columns 60-64
        (20, 58, "edges"),
        (42, 62, "crossing"),
        (38, 58, "crossing"),  # where the grown bars cross
        (42, 0, "ends"),  # the horizontal bar meets the left border
        (42, 83, "ends"),
        (42, 4, "interior"),  # just past the end's 4 px
        (0, 62, "ends"),  # the vertical bar meets the top border
        (83, 60, "ends"),
        (10, 10, None),
    ],
)
def test_mass_on_one_pixel_is_counted_in_its_part(row, col, part):
    assert one_pixel(row, col, (40, 60)) == part


def test_bar_pixels_over_a_sprite_are_sprites_unless_ends_or_crossing():
    sprites = np.zeros((1, H, W), dtype=bool)
    sprites[0, 36:48, 0:70] = True  # a wide object across the horizontal bar
    assert one_pixel(42, 30, (40, 60), sprites) == "sprites"
    assert one_pixel(38, 30, (40, 60), sprites) == "sprites"
    assert one_pixel(42, 2, (40, 60), sprites) == "ends"
    assert one_pixel(42, 62, (40, 60), sprites) == "crossing"
    assert one_pixel(37, 30, (40, 60), sprites) is None  # on the sprite, off the bar


@pytest.mark.parametrize("kind", ["horizontal", "vertical", "both"])
@pytest.mark.parametrize("width", [1, 2, 5, 9])
def test_the_parts_cover_exactly_the_grown_bars(kind, width):
    noise = NoiseConfig(kind, width=width)
    bars = draw_bars(np.random.default_rng(width), 20, H, W, noise)
    bars[:2] = np.where(bars[:2] >= 0, [[0, 0], [H - width, W - width]], -1)  # on the borders
    sprites = np.random.default_rng(1).random((20, H, W)) < 0.1
    labels = error_mass.bar_parts(bars, noise, H, W, sprites)
    assert np.array_equal(labels < OUTSIDE, bar_mask(bars, H, W, noise, margin=2))
    areas = error_mass.part_areas(labels)
    assert areas.sum(axis=1) == pytest.approx(np.ones(20))
    chance = metrics.bar_area_fraction(bars, width, 2, H, W)
    assert areas[:, :OUTSIDE].sum(axis=1) == pytest.approx(chance)
    if width <= 2:  # no pixel has bar on both sides across the bar
        assert not (labels == PARTS.index("interior")).any()


@pytest.mark.parametrize("resize", ["nearest", "area", "authors"])
def test_the_parts_of_bars_drawn_before_the_resize_are_the_mask_of_the_same_bars(resize):
    # Float positions (multiples of 0.4 rows, 0.525 columns), whose edges fall between pixels.
    noise = NoiseConfig("both", width=5, before_resize=resize)
    bars = draw_bars(np.random.default_rng(3), 50, H, W, noise)
    assert (bars != np.round(bars)).any()
    labels = error_mass.bar_parts(bars, noise, H, W, np.zeros((50, H, W), dtype=bool))
    assert np.array_equal(labels < OUTSIDE, bar_mask(bars, H, W, noise, margin=2))
    # The interior of a horizontal bar: its painted rows whose neighbours are painted too.
    horizontal = np.stack([bars[:, 0], np.full(50, -1.0)], axis=1)
    labels = error_mass.bar_parts(horizontal, noise, H, W, np.zeros((50, H, W), dtype=bool))
    painted = bar_mask(horizontal, H, W, noise)[:, :, 30]  # (50, H), away from the ends
    between = painted[:, 1:-1] & painted[:, :-2] & painted[:, 2:]
    assert np.array_equal(labels[:, 1:-1, 30] == PARTS.index("interior"), between)
    assert (between.sum(axis=1) == 3).all()


@pytest.mark.parametrize(
    ("row", "part"),
    [
        (8, None),  # the grown bar covers centres in [8.8, 17.8): rows 9 to 17
        (9, "edges"),
        (11, "edges"),  # painted: centres in [10.8, 15.8), rows 11 to 15
        (12, "interior"),
        (14, "interior"),
        (15, "edges"),
        (17, "edges"),
        (18, None),
    ],
)
def test_a_bar_between_pixels_has_its_parts_where_its_mask_is(row, part):
    noise = NoiseConfig("horizontal", width=5, before_resize="nearest")
    bars = np.array([[27 * 84 / 210, -1.0]])  # raw row 27: stored row 10.8
    assert bar_mask(bars, H, W, noise, margin=2)[0, row, 30] == (part is not None)
    stack = np.zeros((1, 1, H, W))
    stack[0, 0, row, 30] = 1.0
    mass = measure(stack, bars, noise)
    assert [name for name, p in mass.parts.items() if p.summed == 1.0] == ([part] if part else [])


def test_box_pixels_take_the_pixels_whose_centre_is_inside():
    offsets = np.array([3, 5, 5, 6])  # frames 0, 1 (no objects), 2; boxes from index 3
    boxes = np.array([[10.0, 20.0, 4.0, 6.0], [40.2, 0.0, 0.5, 2.0], [80.0, 80.0, 9.0, 9.0]])
    pixels = error_mass.box_pixels(offsets, boxes, H, W)
    expected = np.zeros((3, H, W), dtype=bool)
    expected[0, 20:26, 10:14] = True  # centres 20.5-25.5 in [20, 26], 10.5-13.5 in [10, 14]
    expected[0, 0:2, 40] = True  # a bullet 0.5 px wide holds column 40's centre
    expected[2, 80:, 80:] = True  # clipped by the frame
    assert np.array_equal(pixels, expected)


def test_background_mode_and_foreground():
    frames = np.zeros((5, 4, 6, 3), dtype=np.uint8)
    frames[:, :, :] = [10, 20, 30]
    for f in range(5):
        frames[f, 1, f] = [200, 0, 0]  # a sprite moving right
    frames[:2, 3, 5] = [0, 0, 1]  # three frames say (10, 20, 30), two (0, 0, 1)
    frames[:, 0, 0] = [[9, 9, 9], [9, 9, 9], [1, 1, 1], [1, 1, 1], [5, 5, 5]]  # a tie
    background = error_mass.background_mode(frames)
    expected = np.broadcast_to(np.array([10, 20, 30], dtype=np.uint8), (4, 6, 3)).copy()
    expected[0, 0] = [1, 1, 1]  # the smaller of the tied colours
    assert np.array_equal(background, expected)
    moving = error_mass.foreground(frames, background)
    assert moving[:, 1, :5].diagonal().all()  # the sprite, in every frame
    assert moving[0].sum() == 3 and moving[2].sum() == 1  # frame 0: also (3, 5) and (0, 0)


def test_part_masses_refuse_maps_of_another_size():
    labels = np.full((1, H, W), OUTSIDE, dtype=np.int8)
    with pytest.raises(ValueError, match=r"error maps \(42, 42\)"):
        error_mass.part_masses(np.zeros((1, 1, 42, 42)), labels)
