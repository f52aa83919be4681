"""`permakey train METHOD --config FILE|RUN`: a new run from a saved configuration."""

from __future__ import annotations

import json

import pytest
from conftest import TINY_PERMAKEY

from permakey.cli.main import main
from permakey.errors import UserError
from permakey.testing import make_sprites_dataset
from permakey.training.config import RUNTIME_FIELDS
from permakey.training.start import SavedConfig, configs_from, new_run

SIZE = TINY_PERMAKEY.image_size


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "sprites"
    return make_sprites_dataset(
        path, {"train": 32, "val": 8, "test": 8}, episode_length=16, size=SIZE, sprite_size=4
    )


@pytest.fixture(scope="module")
def other(data, tmp_path_factory):
    """A run with settings away from every preset: the configuration to start from."""
    run = tmp_path_factory.mktemp("other") / "run"
    model = {**TINY_PERMAKEY.to_dict(), "gaussian_sigma": 0.2, "lsp_hidden": [12]}
    new_run(
        "permakey", data, run, preset="cpu", model=model, batch_size=8, lr=3e-4, lr_lsp=5e-4,
        pointnet_updates=2, noise="horizontal", max_steps=1, workers=0, device="cpu",
        progress=False, precision="fp32",
    )  # fmt: skip
    return run


def info(run) -> dict:
    return json.loads((run / "run.json").read_text())


def test_a_run_from_another_runs_config_differs_only_where_the_command_line_says(
    other, tmp_path, one_thread
):
    run = tmp_path / "new"
    argv = ["train", "permakey", "--config", str(other), "--out", str(run), "--seed", "1"]
    assert main(argv) == 0
    old, new = info(other), info(run)
    assert new["model"] == old["model"]
    assert new["train"]["seed"] == 1 and old["train"]["seed"] == 0
    # Everything else is OTHER's, its run-time options too (its step budget, device...).
    assert set(old["train"]) >= RUNTIME_FIELDS
    assert {**new["train"], "seed": 0} == old["train"]
    assert new["train"]["data"] == old["train"]["data"]  # its dataset, as --data was not given
    assert new["dataset"] == old["dataset"]
    assert new["config_source"] == {"path": str(other.resolve()), "run_code": old["code"]}
    assert "config_source" not in old


def test_a_json_file_gives_a_config_and_options_go_on_top(other, data, tmp_path, one_thread):
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps({"train": info(other)["train"], "model": info(other)["model"]}))
    run = tmp_path / "new"
    result = new_run(
        "permakey", None, run, config=saved, num_keypoints=4, model={"gaussian_sigma": 0.1},
        lr=1e-3, max_steps=1,
    )  # fmt: skip
    assert result.status == "stopped"
    new = info(run)
    assert new["model"]["num_keypoints"] == 4 and new["model"]["gaussian_sigma"] == 0.1
    assert new["model"]["lsp_hidden"] == [12] and new["train"]["lr"] == 1e-3
    assert new["train"]["pointnet_updates"] == 2 and new["train"]["noise"] == "horizontal"
    assert new["config_source"] == {"path": str(saved.resolve())}
    assert configs_from(other / "run.json").train == configs_from(other).train


def test_bad_configs_get_one_line_errors_and_write_nothing(other, tmp_path, capsys):
    out = tmp_path / "new"
    base = ["train", "permakey", "--out", str(out), "--config"]
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "partial.json").write_text(json.dumps({"train": {}}))
    (tmp_path / "unknown.json").write_text(json.dumps({"train": {"colour": 1}, "model": {}}))
    cases = [
        ([str(tmp_path / "missing.json")], "no such file or run folder"),
        ([str(tmp_path / "broken.json")], "not a JSON file"),
        ([str(tmp_path / "partial.json")], 'with "train" and "model" objects'),
        ([str(tmp_path / "unknown.json")], "unknown PermaKeyTrainConfig keys: ['colour']"),
        (
            [str(other), "--preset", "cpu"],
            "--preset and --model-preset cannot be given with --config",
        ),
        ([str(other), "--resume", str(other)], "cannot be given with --resume"),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert main(["train", "transporter", "--out", str(out), "--config", str(other)]) == 2
    assert "is a permakey configuration, not a transporter one" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(UserError, match="no dataset"):
        new_run("permakey", None, out, config=SavedConfig({}, {}))
