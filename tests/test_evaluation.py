"""The evaluate driver on a tiny hand-made split with fake models whose answers are known."""

import argparse
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from permakey import runs
from permakey.evaluation import evaluate
from permakey.evaluation.categories import default_categories
from permakey.evaluation.evaluate import evaluate_models
from permakey.evaluation.results import NO_GROUND_TRUTH, Noise, SeedStability
from permakey.keypoints import Keypoints, from_pixels
from permakey.runs import TrainedModel

CATEGORIES = ["Player", "Bullet", "Alien"]
N = 6


def player_box(f):
    return [10.0 + 2 * f, 20.0, 4.0, 4.0]  # moves 2 px right per frame


ALIEN_BOX = [60.0, 60.0, 4.0, 4.0]


class FakeSplit:
    """The documented `Split` interface; frame f is filled with the value f."""

    def __init__(self, has_objects=True):
        self.has_objects = has_objects
        self.categories = CATEGORIES
        self.episode = np.array([0, 0, 0, 1, 1, 1])
        self.step = np.array([0, 1, 2, 0, 1, 2])
        self.meta = {"game": "SpaceInvaders"}
        self.identity_method = None  # collected before identities: evaluation links boxes

    def object_ids(self):
        return None

    def __len__(self):
        return N

    def read_frames(self, indices):
        indices = np.arange(N)[indices]
        return np.broadcast_to(indices[:, None, None, None], (len(indices), 84, 84, 3)).astype(
            np.uint8
        )

    def object_table(self):
        boxes, category, offsets = [], [], [0]
        for f in range(N):
            boxes += [player_box(f), ALIEN_BOX, [90.0, 10.0, 4.0, 4.0]]  # last: off-frame
            category += [0, 2, 2]
            if f == 0:
                boxes.append([40.0, 40.0, 0.5, 4.0])
                category.append(1)
            offsets.append(len(boxes))
        return np.array(offsets), np.array(category), np.array(boxes, dtype=np.float32)


class FakeModel(nn.Module):
    """A `KeypointModel` whose keypoints (and error maps) are a function of the images."""

    feature_layers = ()
    feature_dim = 0

    def __init__(self, detect, error_layers=()):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the model a device
        self.config = SimpleNamespace(image_size=84, num_keypoints=2)
        self.error_layers = error_layers
        self._detect = detect

    def detect(self, images, windows=True, mixed=False):
        return self._detect(images)

    def feature_maps(self, images):
        return []


def fake_model(name, detect, seed=None, error_layers=()):
    """A `TrainedModel` around `FakeModel`; models with a seed differ only in their seed."""
    info = None if seed is None else {"kind": "fake", "model": {}, "train": {"seed": seed}}
    return TrainedModel(FakeModel(detect, error_layers), info=info, name=name)


def detection(pixels):
    """Keypoints at (B, K, 2) pixels, with flat windows that nothing here reads."""
    centres = from_pixels(pixels, 84, 84)
    return Keypoints(centres, torch.ones(*centres.shape[:2], 1, 1))


def frame_index(images):
    return (images[:, 0, 0, 0] * 255).round().long()  # (B,)


def box_centre(box):
    x, y, w, h = box
    return [y + h / 2 - 0.5, x + w / 2 - 0.5]  # (row, col) pixel centre


def tracker(images):
    """Keypoint 0 on the player, keypoint 1 on the alien, in every frame."""
    pixels = torch.tensor(
        [[box_centre(player_box(int(f))), box_centre(ALIEN_BOX)] for f in frame_index(images)]
    )
    return detection(pixels)


def corners(images):
    return detection(torch.tensor([[0.0, 0.0], [83.0, 83.0]]).expand(len(images), 2, 2))


def error_stack(images):
    """Error maps lit on the player (layer 0) and the alien (layer 1)."""
    maps = torch.zeros(len(images), 2, 84, 84)
    for i, f in enumerate(frame_index(images).tolist()):
        x, y, w, h = (int(v) for v in player_box(f))
        maps[i, 0, y : y + h, x : x + w] = 1.0
        maps[i, 1, 60:64, 60:64] = 0.8
    return maps


def tracker_with_errors(images):
    found = tracker(images)
    stack = error_stack(images)
    found.error_stack, found.error_maps = stack, list(stack.unbind(1))
    return found


MODELS = [
    fake_model("tracker", tracker_with_errors, seed=0, error_layers=(0, 1)),
    fake_model("tracker-seed1", tracker, seed=1),
    fake_model("corners", corners),
]


@pytest.fixture(scope="module")
def result():
    selection = default_categories("SpaceInvaders", CATEGORIES)
    return evaluate_models(MODELS, FakeSplit(), selection, batch_size=4)


def column(result, name):
    return result.column(name).metrics


def test_columns_models_and_controls_in_order(result):
    names = [c.name for c in result.columns]
    assert names == [
        "tracker",
        "template: tracker",
        "peaks: tracker",
        "tracker-seed1",
        "template: tracker-seed1",
        "corners",
        "template: corners",
        "random K=2",
        "perfect tracker K=2",
    ]
    assert result.frames == N and result.ground_truth is True
    assert result.categories.small == ("Bullet",)
    assert [c.name for c in result.models] == ["tracker", "tracker-seed1", "corners"]
    assert result.template_of("corners").of == "corners"
    assert result.peaks_of("tracker").name == "peaks: tracker"
    assert result.peaks_of("corners") is None  # no error maps
    assert result.random_for("corners").name == "random K=2"
    with pytest.raises(KeyError, match="no column 'nobody'"):
        result.column("nobody")


def test_tracker_scores_perfectly_and_template_only_where_player_passes(result):
    m = column(result, "tracker")
    assert m.recall == {0: 1.0, 2: 1.0, 4: 1.0}
    assert m.precision[0] == 1.0 and m.f1[2] == 1.0
    assert m.small_recall[4] == 0.0  # the bullet is not tracked
    assert m.per_category["Alien"].objects == N  # the off-frame aliens were dropped
    assert m.recall_bound == 1.0
    assert m.motion.per_step_px == pytest.approx(1.0)  # player 2 px, alien 0
    # The template sits at the player's mean column, 16.5: inside its box in frames 2 and 3.
    t = column(result, "template: tracker")
    assert t.per_category["Player"].recall[0] == pytest.approx(2 / N)
    assert t.recall[0] == pytest.approx((N + 2) / (2 * N))
    assert t.motion.from_mean_px == 0.0


def test_error_map_peaks_control_finds_both_objects(result):
    assert column(result, "peaks: tracker").recall[0] == 1.0


def test_corners_on_the_border_and_off_objects(result):
    m = column(result, "corners")
    assert m.recall[4] == 0.0 and m.precision[4] == 0.0 and m.f1[4] == 0.0
    assert m.border_share == 1.0
    assert m.distractor_share is None  # clean frames


def test_seed_stability_of_identical_seeds_is_zero(result):
    assert result.seed_stability == (SeedStability(("tracker", "tracker-seed1"), 0.0),)


def test_table_and_json(result, tmp_path):
    table = evaluate.format_table(result)
    assert "| F1@2" in table and "random K=2" in table and "recall@2 Player (headline)" in table
    assert "seed stability (tracker, tracker-seed1)" in table
    header, rule = table.splitlines()[:2]
    assert header.count("|") == rule.count("|") == len(result.columns) + 2
    path = tmp_path / "eval.json"
    evaluate.write_result(path, result)
    assert evaluate.read_result(path) == result


def test_no_ground_truth_gives_no_numbers_for_object_metrics():
    out = evaluate_models(MODELS[2:], FakeSplit(has_objects=False), None)
    m = out.columns[0].metrics
    for field in ("recall", "precision", "f1", "recall_bound", "small_recall", "per_category"):
        assert getattr(m, field) is None
    assert not m.ground_truth and out.ground_truth is False
    assert m.border_share == 1.0  # metrics without objects still have numbers
    table = evaluate.format_table(out)
    assert "| F1@2" in table and NO_GROUND_TRUTH in table
    assert out.to_json()["columns"][0]["metrics"]["f1"] == NO_GROUND_TRUTH  # as files say


def test_max_frames_and_bad_input():
    out = evaluate_models(MODELS[2:], FakeSplit(has_objects=False), None, max_frames=3)
    assert out.frames == 3
    with pytest.raises(ValueError, match="CategorySelection"):
        evaluate_models(MODELS[2:], FakeSplit(), None)
    with pytest.raises(ValueError, match="no models"):
        evaluate_models([], FakeSplit(), None)


def test_seed_group_ignores_seeds_only():
    a = {"kind": "permakey", "model": {"k": 7}, "train": {"seed": 0, "lr": 1e-3}}
    b = {"kind": "permakey", "model": {"k": 7}, "train": {"seed": 1, "lr": 1e-3, "workers": 0}}
    c = {"kind": "permakey", "model": {"k": 7}, "train": {"seed": 0, "lr": 2e-4}}
    assert runs.trained.seed_group(a) == runs.trained.seed_group(b) != runs.trained.seed_group(c)


def test_cli_parser_accepts_documented_flags():
    from permakey.cli import evaluate as cli

    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(
        ["evaluate", "r1", "r2", "--data", "d", "--noise", "both", "--noise-seed", "3"]
        + ["--categories", "Player,Alien", "--exclude", "Pill", "--max-frames", "10"]
    )
    assert args.runs == ["r1", "r2"] and args.noise == "both" and args.max_frames == 10
    assert args.split == "test" and args.func is cli.run


def test_noise_same_bars_for_every_model_and_chance():
    """Every model sees the same painted bars (the real noise module, a green bar)."""
    from permakey.data.noise import NoiseConfig, draw_bars

    noise = NoiseConfig(kind="horizontal", width=5, colour=(0, 255, 0))  # frames hold 0..5

    def chaser(images):
        """One keypoint on the painted bar's first row, one far from any bar column."""
        rows = (images[:, 1, :, 0] == 1.0).float().argmax(dim=1).float()  # (B,)
        pixels = torch.stack([torch.stack([rows, torch.full_like(rows, 40.0)], -1)] * 2, 1)
        pixels[:, 1, 0] = (rows + 40) % 84  # (B, 2, 2); second keypoint elsewhere
        return detection(pixels)

    models = [fake_model("a", chaser), fake_model("b", chaser)]
    out = evaluate_models(models, FakeSplit(False), None, noise=noise, noise_seed=7)
    bars = draw_bars(np.random.default_rng(7), N, 84, 84, noise)
    for name in ("a", "b"):
        share = column(out, name).distractor_share[0]
        assert share == pytest.approx(0.5)  # exactly the keypoint on the bar, in every frame
    assert column(out, "a").distractor_chance[0] == pytest.approx(5 / 84)
    assert column(out, "a").distractor_chance[2] == pytest.approx(
        evaluate.metrics.bar_area_fraction(bars, 5, 2, 84, 84).mean()
    )
    assert out.noise == Noise("horizontal", 5, (0, 255, 0), 7)
    assert "distractor share@2 (chance" in evaluate.format_table(out)


@pytest.mark.parametrize("noise", [None, "none"])
def test_no_noise_is_one_setting_however_it_is_asked_for(noise):
    from permakey.data.noise import NoiseConfig

    config = None if noise is None else NoiseConfig(kind=noise, width=3)
    out = evaluate_models(MODELS[2:], FakeSplit(False), None, noise=config, noise_seed=7)
    assert out.noise == Noise() and not out.noise.noisy
    assert out.columns[0].metrics.distractor_share is None
    assert evaluate.format_table(out).endswith("6 frames, noise none")


def bar_lit(images):
    """Corner keypoints; error layer 0 uniform, layer 1 lit exactly on the painted bars."""
    found = corners(images)
    on_bars = (images[:, 2] == 1.0).float()  # (B, H, W): only the bars' colour has full blue
    stack = torch.stack([torch.ones_like(on_bars), on_bars], dim=1)  # (B, 2, H, W)
    found.error_stack, found.error_maps = stack, list(stack.unbind(1))
    return found


@pytest.mark.parametrize("has_objects", [True, False])
def test_bar_error_mass_of_models_with_error_maps_on_noisy_frames(has_objects, tmp_path):
    from permakey.data.noise import NoiseConfig, bar_mask, draw_bars

    noise = NoiseConfig("both", width=5)
    models = [fake_model("lit", bar_lit, error_layers=(0, 3)), fake_model("corners", corners)]
    selection = default_categories("SpaceInvaders", CATEGORIES) if has_objects else None
    out = evaluate_models(models, FakeSplit(has_objects), selection, noise=noise, noise_seed=5)
    bars = draw_bars(np.random.default_rng(5), N, 84, 84, noise)
    grown = bar_mask(bars, 84, 84, noise, margin=2).sum(axis=(1, 2))  # (N,)
    painted = bar_mask(bars, 84, 84, noise).sum(axis=(1, 2))  # (N,)
    mass = column(out, "lit").bar_error_mass
    chance = column(out, "lit").distractor_chance[2]
    assert mass.layers == (0, 3) and mass.chance == pytest.approx(chance)
    assert mass.per_layer == pytest.approx((chance, 1.0))  # uniform; all on the bars
    assert mass.summed == pytest.approx(np.mean((grown + painted) / (84 * 84 + painted)))
    assert sum(p.summed for p in mass.parts.values()) == pytest.approx(mass.summed)
    assert mass.sprites == ("object boxes" if has_objects else "differs from the background mode")
    # Without objects, frames 1-5 differ everywhere from the background (frame 0's colour).
    sprites = mass.parts["sprites"].area
    assert sprites < 0.02 if has_objects else sprites > 0.5 * chance
    for name in ("corners", "template: lit", "peaks: lit", "template: corners", "random K=2"):
        assert column(out, name).bar_error_mass is None  # no error maps, or a control
    table = evaluate.format_table(out)
    assert f"bar error mass@2 (chance {chance:.3f})" in table
    assert "bar error mass@2 layer 3" in table and "bar error mass@2 edges (area" in table
    path = tmp_path / "eval.json"
    evaluate.write_result(path, out)
    assert evaluate.read_result(path) == out


def test_no_bar_error_mass_on_clean_frames(result):
    assert column(result, "tracker").bar_error_mass is None
    assert "bar error mass" not in evaluate.format_table(result)
