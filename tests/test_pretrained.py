"""Pretrained models: built, exported in float16 and loaded by name, offline; the shipped ones
land on objects of frames they never saw."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import permakey
from permakey.data.store import open_split
from permakey.errors import UserError
from permakey.evaluation.evaluate import evaluate_runs
from permakey.experiments.pretrained import Recipe, build, records
from permakey.runs import TrainedModel
from permakey.runs.pretrained import (
    RECORD,
    WEIGHTS,
    available,
    catalogue,
    inference_state,
    read_pretrained,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Pong built with a tiny recipe: real collection, training, evaluation and export."""
    pytest.importorskip("ocatari")
    root = tmp_path_factory.mktemp("pretrained")
    recipe = Recipe(steps=3, train_frames=96, eval_frames=40, device="cpu")
    games = build(["pong"], root / "models", root / "work", recipe, command="permakey test")
    assert games == ["Pong"]
    return root


def pretrained(root: Path, name: str = "pretrained:Pong") -> TrainedModel:
    model, frames, info, weights, label = read_pretrained(name, root / "models")
    return TrainedModel(model, frames, info=info, weights=weights, name=label)


def test_the_export_keeps_inference_only_in_float16_and_its_record(built):
    folder = built / "models" / "Pong"
    record = json.loads((folder / RECORD).read_text())
    assert record["game"] == "Pong" and record["preset"] == "cpu-track"
    assert record["steps"] == 3 and record["frames_seen"] == 3 * 32
    assert record["dataset"]["seed"] != record["heldout"]["seed"]
    assert record["quality"]["ground_truth"] and record["quality"]["f1@2"] is not None
    kept = record["quality"]["objects_kept@2"]
    assert 0 <= kept["kept"] <= kept["tracks"] and kept["tracks"] > 0
    assert 0.0 <= record["quality"]["mean_purity@2"] <= 1.0
    assert record["commands"]["build"] == "permakey test"
    from safetensors.torch import load_file

    tensors = load_file(folder / WEIGHTS)
    assert not any(k.startswith("vae.decoder") for k in tensors)  # no VAE decoder
    assert {t.dtype for t in tensors.values() if t.is_floating_point()} == {torch.float16}
    assert (folder / WEIGHTS).stat().st_size < 2_000_000
    # Ordinary modes (0644 under umask 022), so that the package's files are readable by all.
    umask = os.umask(0)
    os.umask(umask)
    for path in (folder / WEIGHTS, folder / RECORD):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


def test_float16_keypoints_stay_within_a_quarter_pixel_of_the_run(built):
    run = permakey.load(built / "work" / "runs" / "Pong", "last")
    frames = open_split(built / "work" / "data" / "Pong-seed1-heldout-40", "test").frames[:]
    shipped = pretrained(built)
    gap = (shipped.keypoints(frames).pixels - run.keypoints(frames).pixels).abs().max()
    assert gap < 0.25
    assert shipped.frames == run.frames and shipped.name == "pretrained:Pong"


def test_names_are_forgiving_and_unknown_ones_list_the_games(built):
    assert pretrained(built, "pretrained:pong").name == "pretrained:Pong"
    with pytest.raises(UserError, match=r"no pretrained model 'pretrained:Pongg'.*Pong"):
        read_pretrained("pretrained:Pongg", built / "models")
    with pytest.raises(UserError, match="no pretrained model"):
        permakey.load("pretrained:NoSuchGame")


def test_a_damaged_model_file_is_a_one_line_error(built, tmp_path):
    import shutil

    folder = shutil.copytree(built / "models", tmp_path / "models")
    (folder / "Pong" / WEIGHTS).write_bytes(b"not safetensors")
    with pytest.raises(UserError, match=r"model.safetensors is corrupted.*reinstall"):
        read_pretrained("pretrained:Pong", folder)


def test_the_build_keeps_complete_models_and_the_table_lists_them(built, capsys):
    before = (built / "models" / "Pong" / WEIGHTS).read_bytes()
    assert build(["Pong"], built / "models", built / "work", Recipe(steps=3)) == ["Pong"]
    assert "is complete, kept" in capsys.readouterr().out
    assert (built / "models" / "Pong" / WEIGHTS).read_bytes() == before
    table = catalogue(records(built / "models"))
    assert "| pretrained:Pong | permakey (cpu-track) | 6 | 3 | 96 |" in table


def test_refresh_measures_an_old_record_again_and_keeps_the_weights(built, capsys):
    folder = built / "models" / "Pong"
    weights = (folder / WEIGHTS).read_bytes()
    record = json.loads((folder / RECORD).read_text())
    measured = record["quality"]
    old = {k: v for k, v in measured.items() if k not in ("mean_purity@2", "objects_kept@2")}
    (folder / RECORD).write_text(json.dumps(record | {"quality": old}))  # before identity
    (built / "work" / "evaluation_Pong.json").unlink()
    recipe = Recipe(steps=3, train_frames=96, eval_frames=40, device="cpu")
    assert build(["Pong"], built / "models", built / "work", recipe, refresh=True) == ["Pong"]
    assert "refreshed" in capsys.readouterr().out
    again = json.loads((folder / RECORD).read_text())
    assert again["quality"] == measured  # the same evaluation, in the same process
    assert {k: v for k, v in again.items() if k != "quality"} == {
        k: v for k, v in record.items() if k != "quality"
    }
    assert (folder / WEIGHTS).read_bytes() == weights
    with pytest.raises(UserError, match="no run"):
        build(["Pong"], built / "models", built / "elsewhere", recipe, refresh=True)


@pytest.fixture(scope="module")
def unseen(tmp_path_factory):
    """Frames with objects of every shipped game, from an environment seed no build used."""
    pytest.importorskip("ocatari")
    from permakey.data.collect import collect

    root = tmp_path_factory.mktemp("unseen")
    return {
        game: collect(game, root / game, frames=1, val_frames=1, test_frames=120, seed=7,
                      policy="random-hold:4", progress=False)
        for game in available()
    }  # fmt: skip


@pytest.mark.parametrize("game", available() or ["none shipped"])
def test_every_shipped_model_lands_on_objects_above_random_points(game, unseen):
    if game == "none shipped":
        pytest.skip("no pretrained models are installed")
    from safetensors.torch import load_file

    model = permakey.load(f"pretrained:{game}")
    # The model its record describes holds exactly the shipped weights.
    shipped = load_file(model.weights)
    loaded = inference_state(model.model)
    assert set(shipped) == set(loaded)
    assert all(torch.equal(shipped[k], loaded[k]) for k in shipped)
    result = evaluate_runs([f"pretrained:{game}"], unseen[game])
    name = result.models[0].name
    mine = result.column(name).metrics
    chance = result.random_for(name).metrics
    assert mine.precision[2] > chance.precision[2] + 0.1
    assert mine.f1[2] > chance.f1[2]
    assert np.isfinite(model.keypoints(open_split(unseen[game], "test").frames[:4]).centres).all()
