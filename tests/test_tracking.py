"""`--track wandb`: losses, keypoint pictures, the final state and the evaluation in W&B.

Weights & Biases runs in its offline mode (no network): its records are read back from the
offline run's .wandb file with its own reader, `wandb leet inspect --json`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_PERMAKEY, tiny_cfg

from permakey.cli.main import main
from permakey.evaluation.evaluate import read_result
from permakey.testing import make_sprites_dataset
from permakey.training.loop import train
from permakey.training.permakey import PermaKeyMethod

SIZE = TINY_PERMAKEY.image_size
wandb = pytest.importorskip("wandb")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "sprites"
    return make_sprites_dataset(
        path, {"train": 32, "val": 8, "test": 8}, episode_length=16, size=SIZE, sprite_size=4
    )


@pytest.fixture
def offline(tmp_path, monkeypatch):
    folder = tmp_path / "wandb-dir"
    folder.mkdir()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(folder))
    monkeypatch.setenv("WANDB_SILENT", "true")
    return folder


def records(folder: Path, run_id: str) -> list[dict]:
    """Every record of the offline W&B runs with id ``run_id`` under ``folder``, in order."""
    cli = shutil.which("wandb", path=str(Path(sys.executable).parent)) or "wandb"
    out = []

    # A session started within the same second as the last gets a "-1" suffix on its folder:
    # sessions are in order of (time, suffix).
    def started(path: Path) -> tuple[str, int]:
        stamp, _, suffix = path.parent.name.removeprefix("offline-run-").partition(f"-{run_id}")
        return stamp, int(suffix.lstrip("-") or 0)

    paths = folder.glob(f"wandb/offline-run-*-{run_id}*/run-{run_id}.wandb")
    for path in sorted(paths, key=started):
        said = subprocess.run(
            [cli, "leet", "inspect", "--json", str(path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        out += [json.loads(line) for line in said.splitlines() if line.strip()]
    return out


def history(recs: list[dict]) -> dict[str, dict]:
    """{key: {step: value}} of the history records."""
    out: dict[str, dict] = {}
    for r in recs:
        if r.get("type") == "history":
            item = r["history"]["item"]
            for key, value in item.items():
                out.setdefault(key, {})[item["_step"]] = value
    return out


def summary(recs: list[dict]) -> dict:
    out: dict = {}
    for r in recs:
        if r.get("type") == "summary":
            out.update(r["summary"].get("update", {}))
    return out


def test_training_logs_tensorboards_keys_pictures_and_final_state(
    data, tmp_path, offline, one_thread
):
    run = tmp_path / "run"
    cfg = tiny_cfg(data, epochs=1, log_every=1, track="wandb")
    train(PermaKeyMethod(), cfg, TINY_PERMAKEY, run)
    info = json.loads((run / "run.json").read_text())
    ids = info["wandb"]
    assert ids["project"] == "permakey" and ids["id"]
    recs = records(offline, ids["id"])
    logged = history(recs)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for row in rows:  # every scalar of metrics.jsonl (and TensorBoard), at its step
        for key, value in row.items():
            if key not in ("step", "epoch"):
                assert logged[key][row["step"]] == pytest.approx(value), key
    assert any(k.startswith("losses/") for k in logged) and "val/loss" in logged
    for tag in ("val/keypoints", "val/reconstruction"):  # the TensorBoard pictures
        assert logged[f"{tag}._type"] == {info["step"]: "image-file"}
        (picture,) = logged[f"{tag}.path"].values()
        assert (
            next(offline.glob(f"wandb/offline-run-*-{ids['id']}*/files/{picture}")).stat().st_size
        )
    final = summary(recs)
    assert final["status"] == info["status"] == "finished"
    assert final["step"] == info["step"] and final["best_val_loss"] == pytest.approx(
        info["best_val_loss"]
    )
    config = next(r["run"]["config"]["update"] for r in recs if r.get("type") == "run")
    assert config["model"] == info["model"] and config["train"]["track"] == "wandb"

    # A resumed run goes on in the same W&B run; its evaluation lands there too.
    assert main(["train", "permakey", "--resume", str(run), "--epochs", "2"]) == 0
    out = tmp_path / "evaluation.json"
    argv = ["evaluate", str(run), "--data", str(data), "--out", str(out), "--track", "wandb"]
    assert main(argv) == 0
    recs = records(offline, ids["id"])
    assert summary(recs)["status"] == "finished" and summary(recs)["step"] == 2 * info["step"]
    metrics = read_result(out).column("run").metrics
    final = summary(recs)
    for r in (0, 2, 4):
        assert final[f"evaluation/F1@{r}"] == pytest.approx(metrics.f1[r])
        assert final[f"evaluation/recall@{r}"] == pytest.approx(metrics.recall[r])
    assert final["evaluation/table._type"] == "table-file"
    assert json.loads((run / "run.json").read_text())["wandb"] == ids


def test_track_without_wandb_says_which_extra_and_writes_nothing(
    data, tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    run = tmp_path / "run"
    argv = ["train", "permakey", "--data", str(data), "--out", str(run), "--track", "wandb"]
    assert main(argv) == 2
    assert "permakey[track]" in capsys.readouterr().err
    assert not run.exists()
