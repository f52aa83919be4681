"""Faults and hostile input on the data side: damaged and foreign dataset files, full disks,
read-only folders, two writers, killed collections (issue 20).

Real components only: real HDF5 files damaged on disk, real subprocesses under a real
``RLIMIT_FSIZE``, real ``flock`` locks and real SIGKILLs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import TINY_PERMAKEY, make_run

from permakey.cli.main import main
from permakey.data.collect import collect
from permakey.data.datasets import FrameDataset
from permakey.data.store import DatasetDamaged, open_split
from permakey.locks import lock_file
from permakey.runs.folder import last_checkpoint
from permakey.testing import make_sprites_dataset

SRC = Path(__file__).resolve().parents[1] / "src"
SMALL = ["--frames", "20", "--val-frames", "5", "--test-frames", "5", "--quiet"]


@pytest.fixture(scope="module")
def sprites(tmp_path_factory):
    """A 32 x 32 synthetic dataset that the tiny models of conftest take."""
    out = tmp_path_factory.mktemp("data") / "sprites"
    return make_sprites_dataset(
        out, {"train": 48, "val": 16, "test": 16}, episode_length=16, size=32, sprite_size=4
    )


@pytest.fixture(scope="module")
def pong(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "pong"
    return collect(
        "pong", out, frames=20, val_frames=5, test_frames=5, objects=False, progress=False
    )


def _copy(path: Path, tmp_path: Path, name: str = "copy") -> Path:
    copy = tmp_path / name
    shutil.copytree(path, copy)
    return copy


def _error_line(capsys) -> str:
    """The command's stderr, which must be one `permakey: error:` line."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("permakey: error:") and "\n" not in err, err
    return err


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC)}


def _damage_chunk(file: Path, index: int) -> None:
    """Overwrites the stored (compressed) bytes of frame ``index``'s chunk with noise."""
    with h5py.File(file, "r") as h5:
        chunk = h5["frames"].id.get_chunk_info(index)
    noise = np.random.default_rng(index).integers(0, 256, chunk.size, dtype=np.uint8)
    with open(file, "r+b") as f:
        f.seek(chunk.byte_offset)
        f.write(noise.tobytes())


# --- 1. collect into a dataset of another game or other settings ------------------------


def test_collect_into_a_dataset_of_other_settings_names_what_differs(pong, capsys):
    before = {p.name: p.read_bytes() for p in pong.iterdir()}
    base = ["collect", "pong", "--out", str(pong), "--no-objects", *SMALL]
    for change, named in (
        (["spaceinvaders", *base[2:]], "game 'Pong' there, 'SpaceInvaders' asked"),
        ([*base[1:], "--seed", "3"], "seed 0 there, 3 asked"),
        ([*base[1:], "--frames", "30"], "train frames 20 there, 30 asked"),
        ([*base[1:], "--resize", "nearest"], "resize 'area' there, 'nearest' asked"),
    ):
        assert main(["collect", *change]) == 2
        err = _error_line(capsys)
        assert named in err and str(pong) in err and "--overwrite" in err
    # The same game and settings stays "nothing to do"; nothing was touched.
    assert main(base) == 0
    assert "nothing to do" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in pong.iterdir()} == before


# --- 2. checksums: datasets --verify, and a damaged chunk met while reading ---------------


def test_datasets_verify_reports_each_damaged_file(sprites, tmp_path, capsys):
    assert main(["datasets", "--verify", str(sprites)]) == 0
    out = capsys.readouterr().out
    assert "verified" in out and "48 frames" in out
    copy = _copy(sprites, tmp_path)
    _damage_chunk(copy / "train.h5", 20)
    # Bytes that still decompress but differ: only the checksum can tell.
    with h5py.File(copy / "test.h5", "r+") as h5:
        h5["episode"][3] += 1
    assert main(["datasets", "--verify", str(copy)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("permakey: error:") for line in lines)
    assert "train.h5" in lines[0] and "test.h5" in lines[1] and "sha256" in lines[1]
    assert all("collect the dataset again" in line for line in lines)
    # Without --verify the summary stays what it was (nothing is read but the tables).
    assert main(["datasets", str(copy)]) == 0


def test_a_damaged_chunk_is_a_one_line_error_naming_the_file(sprites, tmp_path):
    copy = _copy(sprites, tmp_path)
    _damage_chunk(copy / "train.h5", 30)
    data = FrameDataset(copy, "train")
    assert data[29]["frame"].shape == (3, 32, 32)  # the other frames still read
    with pytest.raises(DatasetDamaged) as err:
        data[30]
    assert "train.h5" in str(err.value) and "frames 30" in str(err.value)
    with pytest.raises(DatasetDamaged, match="train.h5"):
        FrameDataset(copy, "train", in_memory=True)
    # From a DataLoader worker process it comes back one line too, naming the file.
    loader = torch.utils.data.DataLoader(data, batch_size=8, num_workers=1)
    with pytest.raises(DatasetDamaged) as err:
        list(loader)
    message = str(err.value)
    assert "\n" not in message and message.startswith("damaged dataset file")
    assert "train.h5" in message


def test_train_meeting_a_damaged_chunk_stops_resumably_with_one_line(
    sprites, tmp_path, capsys, one_thread
):
    copy = _copy(sprites, tmp_path)
    _damage_chunk(copy / "train.h5", 40)  # read in the first epoch (6 steps of 8 frames)
    run = tmp_path / "run"
    argv = ["train", "permakey", "--data", str(copy), "--out", str(run), "--batch-size", "8"]
    argv += ["--epochs", "1", "--workers", "0", "--device", "cpu", "--no-progress"]
    argv += ["--model", "image_size=32", "--model", "encoder_channels=[8,8,8,8]"]
    argv += ["--model", "latent_dim=4", "--model", "lsp_hidden=[16]", "--num-keypoints", "3"]
    assert main(argv) == 2
    err = _error_line(capsys)
    assert "train.h5" in err and "collect the dataset again" in err
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed" and "train.h5" in info["error"]
    assert last_checkpoint(run) is not None  # the step-0 checkpoint at least
    # With the file put back, the run resumes from its checkpoint and finishes.
    shutil.copy(sprites / "train.h5", copy / "train.h5")
    assert main(["train", "permakey", "--resume", str(run), "--no-progress"]) == 0
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


# --- 3. full disk, file-size limit, read-only folders --------------------------------------


def _collect_limited(out: Path, limit: int, *extra: str) -> subprocess.CompletedProcess:
    """`permakey collect` in a subprocess whose files may not grow past ``limit`` bytes."""
    code = (
        "import resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "from permakey.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = ["collect", "pong", "--out", str(out), "--frames", "600", "--val-frames", "60"]
    argv += ["--test-frames", "60", "--quiet", "--no-objects", *extra]
    return subprocess.run(
        [sys.executable, "-c", code, *argv], env=_env(), capture_output=True, text=True
    )


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not line.startswith(("A.L.E", "[Powered"))]


@pytest.mark.slow
@pytest.mark.parametrize("limit", [4_000, 60_000, 250_000])
def test_collect_past_a_file_size_limit_fails_in_one_line(limit, pong, tmp_path):
    new = _collect_limited(tmp_path / "new", limit)
    assert new.returncode == 2, new.stderr  # not a segfault (-11), not a traceback (1)
    (line,) = _errors(new.stderr)
    assert line.startswith("permakey: error: cannot write dataset") and "File too large" in line
    assert str(tmp_path / "new") in line
    assert list(tmp_path.iterdir()) == []  # no dataset, no temporary folder, no lock file

    # --overwrite of an existing dataset: it stays as it was, byte for byte.
    old = _copy(pong, tmp_path, "old")
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    again = _collect_limited(old, limit, "--overwrite")
    assert again.returncode == 2, again.stderr
    (line,) = _errors(again.stderr)
    assert "File too large" in line and "unchanged" in line
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]
    assert len(open_split(old, "train")) == 20


@pytest.fixture
def shared_tmp():
    """A folder that another user can enter (tmp_path's parents are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="permakey-ro-"))
    folder.chmod(0o755)
    yield folder
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755)
    shutil.rmtree(folder)


# Root writes into read-only folders: as root, the collect drops to user nobody once the
# interpreter has imported what it needs (the Python of this venv may sit in root's home).
_AS_NOBODY = (
    "import os, sys\n"
    "import ale_py, gymnasium, h5py, tqdm\n"
    "import permakey.data.collect, permakey.data.summary\n"
    "from permakey.cli.main import build_parser, main\n"
    "build_parser()\n"
    "if os.geteuid() == 0:\n"
    "    os.setgroups([])\n"
    "    os.setgid(65534)\n"
    "    os.setuid(65534)\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


@pytest.mark.slow
def test_collect_into_a_read_only_folder_fails_in_one_line(shared_tmp, pong):
    folder = shared_tmp / "ro"
    folder.mkdir()
    shutil.copytree(pong, folder / "old")
    before = {p.name: p.read_bytes() for p in (folder / "old").iterdir()}
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    for out, extra in ((folder / "new", []), (folder / "old", ["--overwrite", "--seed", "1"])):
        argv = ["collect", "pong", "--out", str(out), "--no-objects", *SMALL, *extra]
        run = subprocess.run(
            [sys.executable, "-c", _AS_NOBODY, *argv],
            env=_env(),
            capture_output=True,
            text=True,
            cwd=shared_tmp,
        )
        assert run.returncode == 2, run.stderr
        (line,) = _errors(run.stderr)
        assert "Permission denied" in line and str(folder) in line
    assert sorted(p.name for p in folder.iterdir()) == ["old"]
    assert {p.name: p.read_bytes() for p in (folder / "old").iterdir()} == before


# --- 4. one writer per dataset ---------------------------------------------------------------


def _wait_for(condition, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


@pytest.mark.slow
def test_a_second_collect_is_refused_and_a_killed_ones_lock_does_not_block(tmp_path, capsys):
    out = tmp_path / "ds"
    first = subprocess.Popen(
        [sys.executable, "-m", "permakey", "collect", "pong", "--out", str(out)]
        + ["--frames", "100000", "--no-objects", "--quiet"],
        env=_env(),
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: str(first.pid) in _read(lock_file(out)))
        assert main(["collect", "pong", "--out", str(out), "--no-objects", *SMALL]) == 2
        err = _error_line(capsys)
        assert f"pid {first.pid}" in err and str(out) in err
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert not out.exists()  # the killed collect left no dataset
    assert main(["collect", "pong", "--out", str(out), "--no-objects", *SMALL]) == 0
    assert len(open_split(out, "train")) == 20
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # its partial folder cleaned


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


# --- 5. damaged and foreign dataset files in every command that reads them ------------------


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _without_splits(path: Path) -> None:
    meta = json.loads(path.read_text())
    del meta["splits"]
    path.write_text(json.dumps(meta))


def _foreign_json(path: Path) -> None:
    path.write_text(json.dumps({"name": "someone else's data", "splits": ["a"]}))


def _foreign_h5(path: Path) -> None:
    path.unlink()
    with h5py.File(path, "w") as h5:
        h5["frames"] = np.zeros((4, 32, 32, 3), np.uint8)


def _random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())


DAMAGES = {
    "truncated meta.json": ("meta.json", _truncate, "meta.json"),
    "meta.json without splits": ("meta.json", _without_splits, "'splits'"),
    "foreign meta.json": ("meta.json", _foreign_json, "not a permakey dataset"),
    "empty meta.json": ("meta.json", lambda p: p.write_text(""), "meta.json"),
    "truncated HDF5": ("*.h5", _truncate, ".h5"),
    "foreign HDF5": ("*.h5", _foreign_h5, "foreign"),
    "random bytes as HDF5": ("*.h5", _random_bytes, ".h5"),
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs") / "pk", "permakey", TINY_PERMAKEY, 0)


def _commands(data: Path, run: Path, out: Path) -> dict[str, list[str]]:
    return {
        "datasets": ["datasets", str(data)],
        "train": ["train", "permakey", "--data", str(data), "--out", str(out / "run")]
        + ["--max-steps", "1", "--workers", "0", "--device", "cpu", "--no-progress"]
        + ["--model", "image_size=32", "--batch-size", "4"],
        "evaluate": ["evaluate", str(run), "--data", str(data), "--device", "cpu"]
        + ["--out", str(out / "eval.json")],
        "show": ["show", str(run), "--data", str(data), "--device", "cpu"]
        + ["--out", str(out / "show"), "--frames", "2"],
    }


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_or_foreign_files_are_one_line_in_every_command(
    damage, sprites, tiny_run, tmp_path, capsys
):
    pattern, spoil, named = DAMAGES[damage]
    copy = _copy(sprites, tmp_path)
    for file in copy.glob(pattern):
        spoil(file)
    for command, argv in _commands(copy, tiny_run, tmp_path / "out").items():
        assert main(argv) == 2, command
        err = _error_line(capsys)
        assert named in err and str(copy) in err, (command, err)
        assert "collect" in err, (command, err)  # says what to do
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# --- 6. evaluate --out into an unwritable place fails before anything runs ------------------


def test_evaluate_out_into_an_unwritable_place_fails_before_computing(
    sprites, tiny_run, tmp_path, capsys
):
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "folder").mkdir()
    bad = {tmp_path / "file" / "e.json": "not a folder", tmp_path / "folder": "is a folder"}
    # A missing run fails when the models load: the --out error must come first.
    for run in (tiny_run, tmp_path / "no-run"):
        for out, named in bad.items():
            argv = ["evaluate", str(run), "--data", str(sprites), "--out", str(out)]
            assert main([*argv, "--device", "cpu", "--max-frames", "4"]) == 2
            err = _error_line(capsys)
            assert named in err and str(out) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]
