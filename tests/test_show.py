"""`permakey show` end to end on a tiny synthetic dataset with untrained real models.

`permakey.load` is replaced by a stand-in that returns freshly built models (as in the
evaluation's end-to-end test), so this checks the command against the real dataset format,
noise and model classes; the lead's end-to-end test with trained runs covers `permakey.load`.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from conftest import make_run
from PIL import Image

from permakey.cli import show as cli
from permakey.errors import UserError
from permakey.models.permakey import PermaKey, PermaKeyConfig
from permakey.models.transporter import TransporterConfig
from permakey.runs import TrainedModel
from permakey.testing import make_sprites_dataset
from permakey.visualisation.colours import keypoint_colour
from permakey.visualisation.show import episode_indices, seed_groups, show_runs, spread_indices

BAR = (128, 0, 255)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "sprites"
    return make_sprites_dataset(out, {"train": 4, "val": 4, "test": 30}, episode_length=12)


@pytest.fixture
def runs(tmp_path):
    """Two PermaKey runs that differ only in their seed, and a Transporter run (untrained)."""
    small = PermaKeyConfig(num_keypoints=3, lsp_hidden=(16,))
    return [
        make_run(tmp_path / "pk0", "permakey", small, 0),
        make_run(tmp_path / "pk1", "permakey", small, 1),
        make_run(tmp_path / "tr", "transporter", TransporterConfig(num_keypoints=4), 0),
    ]


def _show(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["show", *argv])
    return args.func(args)


def _rgb(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _bar_pixels(image: np.ndarray) -> int:
    return int(np.all(image == BAR, axis=-1).sum())


@pytest.mark.slow
def test_show_writes_every_figure_and_gif(dataset, runs, tmp_path, capsys):
    out = tmp_path / "figures"
    common = ["--data", str(dataset), "--out", str(out), "--frames", "3"]
    assert _show(*map(str, runs), *common, "--episode-frames", "5", "--noise", "both") == 0
    expected = {
        "figure2_clean.png",
        "figure2_noisy.png",
        "figure4_windows.png",
        "figure3_seeds.png",
        "episode_clean.gif",
        "episode_noisy.gif",
    }
    assert {p.name for p in out.iterdir()} == expected  # and no temporary files
    assert f"wrote {out / 'figure2_clean.png'}" in capsys.readouterr().out

    cell = 84 * 4
    clean, noisy = _rgb(out / "figure2_clean.png"), _rgb(out / "figure2_noisy.png")
    # Rows: image, 3 models' keypoints, 2 PermaKey runs x 2 error-map layers; 3 columns.
    assert clean.shape[0] > 8 * cell and clean.shape[1] > 3 * cell
    assert clean.shape == noisy.shape
    # The bars are painted on the noisy frames only (4 rows of cells show the frame itself).
    assert _bar_pixels(clean) == 0 and _bar_pixels(noisy) > 4 * 3 * 2 * 5 * cell
    # Keypoint 0 is drawn in its palette colour in the figures.
    for name in ("figure2_clean.png", "figure4_windows.png"):
        assert np.all(_rgb(out / name) == keypoint_colour(0), axis=-1).sum() > 50
    with Image.open(out / "episode_clean.gif") as gif:
        assert gif.n_frames == 5 and gif.width > 3 * cell
    with Image.open(out / "figure3_seeds.png") as seeds:
        assert seeds.height > 2 * cell and seeds.width > 3 * cell

    with pytest.raises(UserError, match="already exists"):
        _show(*map(str, runs), *common)
    assert (
        _show(str(runs[2]), *common, "--noise", "none", "--episode-frames", "0", "--overwrite") == 0
    )
    assert {p.name for p in out.iterdir()} == {"figure2_clean.png", "figure4_windows.png"}


@pytest.mark.slow
def test_show_seeds_flag_groups_unrelated_runs(dataset, runs, tmp_path):
    out = tmp_path / "figures"
    argv = [str(runs[0]), str(runs[2]), "--data", str(dataset), "--out", str(out)]
    argv += ["--noise", "none", "--episode-frames", "0", "--frames", "2"]
    assert _show(*argv) == 0
    assert not (out / "figure3_seeds.png").exists()  # a PermaKey and a Transporter run
    assert _show(*argv, "--seeds", "--overwrite") == 0
    assert (out / "figure3_seeds.png").is_file()


def test_show_paints_the_bars_the_run_trained_on_unless_told(dataset, tmp_path):
    green = (0, 255, 0)
    run = make_run(
        tmp_path / "tr", "transporter", TransporterConfig(num_keypoints=2), 0, noise="both",
        noise_width=3, noise_colour=green,
    )  # fmt: skip
    common = [str(run), "--data", str(dataset), "--frames", "2", "--episode-frames", "0"]

    def painted(*argv):
        out = tmp_path / "figures"
        assert _show(*common, "--out", str(out), "--overwrite", *argv) == 0
        clean, noisy = _rgb(out / "figure2_clean.png"), _rgb(out / "figure2_noisy.png")
        assert _bar_pixels(clean) == 0 and _bar_pixels(noisy) == 0  # never the paper's purple
        return {
            colour: (int(np.all(clean == colour, -1).sum()), int(np.all(noisy == colour, -1).sum()))
            for colour in (green, (255, 255, 0))
        }

    # 2 frames x 2 rows of cells show the frame (image, keypoints), each cell 4x the frame: a
    # 3 px cross covers 3 * 84 * 2 - 9 pixels of a frame, 16x that of a cell.
    cross = (3 * 84 * 2 - 9) * 16
    trained = painted()
    assert trained[green][0] == 0 and 0.9 * 4 * cross < trained[green][1] <= 4 * cross
    told = painted("--noise-width", "6", "--noise-colour", "255", "255", "0")
    assert told[green] == (0, 0) and told[(255, 255, 0)][1] > 1.8 * trained[green][1]


def test_show_runs_refuses_an_existing_folder_before_loading_anything(tmp_path):
    with pytest.raises(UserError, match="already exists"):
        show_runs([tmp_path / "no-run"], tmp_path / "no-data", tmp_path)


def test_show_rejects_bad_values(dataset, runs, tmp_path):
    with pytest.raises(UserError, match="--frames"):
        _show(str(runs[0]), "--data", str(dataset), "--out", str(tmp_path / "o"), "--frames", "0")


def test_seed_groups_and_frame_choice():
    model = PermaKey(PermaKeyConfig(image_size=32, num_keypoints=2))

    def run(seed, lr):
        return TrainedModel(model, info={"kind": "permakey", "train": {"seed": seed, "lr": lr}})

    models = [run(0, 1e-3), run(0, 2e-4), run(1, 1e-3)]
    assert seed_groups(models) == [[0, 2]]
    assert seed_groups(models, all_seeds=True) == [[0, 1, 2]]
    assert seed_groups(models[:1], all_seeds=True) == []
    assert spread_indices(10, 3).tolist() == [0, 4, 9]
    assert spread_indices(2, 5).tolist() == [0, 1]
    episode = np.array([0, 0, 1, 1, 1, 2])
    step = np.array([0, 1, 2, 0, 1, 0])
    assert episode_indices(episode, step, 2).tolist() == [3, 4]
