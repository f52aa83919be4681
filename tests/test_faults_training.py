"""Faults and hostile input on the training side (issue 20), each tried for real.

`--overwrite` and what it may replace; a checkpoint as one unit under failed writes and
crashes; checkpoints inside the first epoch; the runner and damaged runs; one writer per run
folder (real locks, real processes, real SIGKILL); absolute dataset paths; file modes under
the umask; leftovers of killed writes; the file-size limit and read-only folders (real
subprocesses); damaged and malicious run files; and the fault-injection suite
(`tests/faultkit.py`, RELIABILITY.md).
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import TINY_PERMAKEY, FakeSteps, tiny_cfg
from safetensors.torch import load_file

import permakey
from permakey.cli.main import main
from permakey.errors import UserError
from permakey.experiments.definitions import EXPERIMENTS, SCALES
from permakey.experiments.plan import plan_experiment
from permakey.experiments.runner import (
    DAMAGED,
    in_subprocess,
    run_plan,
    run_status,
    status_line,
    train_step,
)
from permakey.experiments.steps import Step
from permakey.fileio import write_json_atomic
from permakey.locks import FolderLocked, hold_folder
from permakey.runs.folder import last_checkpoint, weights_path
from permakey.testing import make_sprites_dataset
from permakey.training.config import PermaKeyTrainConfig
from permakey.training.loop import train
from permakey.training.permakey import PermaKeyMethod
from permakey.training.start import resume_run

SRC = Path(__file__).resolve().parent.parent / "src"
ENV = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
SIZES = {"train": 64, "val": 16, "test": 16}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "sprites"
    return make_sprites_dataset(path, SIZES, episode_length=32, size=32, sprite_size=4)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test of this file runs on one thread (`conftest.one_thread`)."""


def one_line(text: str) -> str:
    """``text`` stripped, asserted to be a single line."""
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(a), load_file(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def cli_args(data: Path, out: Path, *extra: str) -> list[str]:
    """`permakey train permakey` of the tiny model on ``data`` into ``out``."""
    return [
        "train", "permakey", "--data", str(data), "--out", str(out), "--batch-size", "8",
        "--epochs", "2", "--workers", "0", "--device", "cpu", "--no-progress",
        "--model", "image_size=32", "--model", "encoder_channels=[8, 8, 8, 8]",
        "--model", "latent_dim=4", "--model", "lsp_hidden=[16]", "--num-keypoints", "3",
        *extra,
    ]  # fmt: skip


def dead_pid() -> int:
    """The PID of a process that has ended."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _train_apart(data: Path, run: Path, max_steps: int) -> Path:
    """Trains the tiny run to ``max_steps`` on one thread, as the tests' runs train (a thread
    count changes the sums' order), leaving the global RNG as it was."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():
            train(PermaKeyMethod(), tiny_cfg(data, max_steps=max_steps), TINY_PERMAKEY, run)
    finally:
        torch.set_num_threads(threads)
    return run


@pytest.fixture(scope="module")
def stopped_run(data, tmp_path_factory):
    """A run stopped at step 2 (a checkpoint at step 2), to be copied by each test."""
    return _train_apart(data, tmp_path_factory.mktemp("runs") / "run", 2)


@pytest.fixture(scope="module")
def reference_4(data, tmp_path_factory):
    """The same run trained to step 4 without interruption."""
    return _train_apart(data, tmp_path_factory.mktemp("runs") / "reference", 4)


def copy_run(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    return copy


# --- --overwrite -----------------------------------------------------------------------------


def test_overwrite_never_replaces_a_folder_of_other_files(data, tmp_path):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("two years of work")
    with pytest.raises(UserError) as err:
        train(PermaKeyMethod(), tiny_cfg(data, max_steps=1), TINY_PERMAKEY, out, overwrite=True)
    assert "replaces only a run folder" in one_line(str(err.value)) and str(out) in str(err.value)
    assert files(out) == {"chapter1.tex": b"two years of work"}


@pytest.mark.parametrize("out", ["the dataset", "its parent"])
def test_overwrite_never_replaces_the_dataset_or_a_folder_that_holds_it(tmp_path, capsys, out):
    dataset = make_sprites_dataset(
        tmp_path / "lab" / "sprites", SIZES, episode_length=32, size=32, sprite_size=4
    )
    before = files(dataset)
    target = dataset if out == "the dataset" else dataset.parent
    assert main(cli_args(dataset, target, "--overwrite")) == 2
    assert "is the dataset" in one_line(capsys.readouterr().err)
    assert files(dataset) == before


def test_overwrite_replaces_a_run_folder_or_an_empty_folder(data, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg = tiny_cfg(data, max_steps=1)
    assert train(PermaKeyMethod(), cfg, TINY_PERMAKEY, empty, overwrite=True).step == 1
    again = train(PermaKeyMethod(), replace(cfg, seed=1), TINY_PERMAKEY, empty, overwrite=True)
    assert again.step == 1
    assert json.loads((empty / "run.json").read_text())["train"]["seed"] == 1


# --- a checkpoint is one unit ----------------------------------------------------------------


class _FailingOs:
    """The os module as `permakey.fileio` sees it, with its k-th os.replace failing (ENOSPC)."""

    def __init__(self, fail_at: int | None) -> None:
        self.fail_at, self.calls = fail_at, 0

    def replace(self, *args):
        self.calls += 1
        if self.calls == self.fail_at:
            raise OSError(28, "No space left on device")
        return os.replace(*args)

    def __getattr__(self, name):
        return getattr(os, name)


@pytest.mark.slow
def test_a_failed_write_at_any_point_leaves_the_last_checkpoint(
    data, stopped_run, reference_4, tmp_path, monkeypatch
):
    """Every os.replace of a resumed session fails in turn (a full disk at that moment): each
    time the error is one line naming the file, the checkpoint of step 2 stays loadable, and a
    resume without the fault ends bit-identical to the uninterrupted run."""
    import permakey.fileio

    counting = _FailingOs(None)
    monkeypatch.setattr(permakey.fileio, "os", counting)
    run = copy_run(stopped_run, tmp_path / "count")
    cfg = tiny_cfg(data, max_steps=4)
    train(PermaKeyMethod(), cfg, TINY_PERMAKEY, run, resume=True)
    assert counting.calls >= 5  # metrics, run.json, best, checkpoint, run.json
    for k in range(1, counting.calls + 1):
        run = copy_run(stopped_run, tmp_path / str(k))
        monkeypatch.setattr(permakey.fileio, "os", _FailingOs(k))
        with pytest.raises(UserError) as err:
            train(PermaKeyMethod(), cfg, TINY_PERMAKEY, run, resume=True)
        assert "No space left on device" in one_line(str(err.value)), k
        monkeypatch.setattr(permakey.fileio, "os", os)
        assert permakey.load(run, "last").model is not None
        assert last_checkpoint(run).step in (2, 4)  # the new one only once complete
        train(PermaKeyMethod(), cfg, TINY_PERMAKEY, run, resume=True)
        assert same_weights(weights_path(run, "last"), weights_path(reference_4, "last")), k
        assert same_weights(run / "best.safetensors", reference_4 / "best.safetensors"), k


def test_older_run_folders_load_and_resume(stopped_run, reference_4, tmp_path):
    """A run of a version before checkpoint folders: last.safetensors and state.pt at the top."""
    run = copy_run(stopped_run, tmp_path)
    folder = last_checkpoint(run).weights.parent
    for name in ("last.safetensors", "state.pt"):
        os.replace(folder / name, run / name)
    shutil.rmtree(run / "checkpoints")
    assert permakey.load(run, "last").identity()["weights"] == "last.safetensors"
    assert permakey.load(run, "best")
    assert resume_run("permakey", run, max_steps=4).step == 4
    assert same_weights(weights_path(run, "last"), weights_path(reference_4, "last"))
    # The first new checkpoint replaced the old pair.
    assert not (run / "state.pt").exists() and not (run / "last.safetensors").exists()


# --- a first checkpoint early ----------------------------------------------------------------


def test_checkpoints_come_every_1000_steps_or_10_minutes_by_default():
    cfg = PermaKeyTrainConfig()
    assert (cfg.checkpoint_every, cfg.checkpoint_minutes) == (1000, 10.0)
    with pytest.raises(ValueError, match="checkpoint_every"):
        PermaKeyTrainConfig(checkpoint_every=0)


def test_a_crash_in_the_first_epoch_resumes_bit_identically_from_a_mid_epoch_checkpoint(
    data, tmp_path
):
    full = tmp_path / "full"
    train(PermaKeyMethod(), tiny_cfg(data), TINY_PERMAKEY, full)  # checkpoints at epoch ends

    class CrashAtStep5(PermaKeyMethod):
        calls = 0

        def forward(self, model, batch, device, channels_last):
            if model.training:
                CrashAtStep5.calls += 1
                if CrashAtStep5.calls == 5:
                    raise MemoryError("a crash in the middle of step 5 of epoch 1")
            return super().forward(model, batch, device, channels_last)

    run = tmp_path / "run"
    with pytest.raises(MemoryError):
        train(CrashAtStep5(), tiny_cfg(data, checkpoint_every=3), TINY_PERMAKEY, run)
    assert last_checkpoint(run).step == 3 and run_status(run) == "running"
    resumed = train(PermaKeyMethod(), tiny_cfg(data), TINY_PERMAKEY, run, resume=True)
    assert (resumed.status, resumed.step) == ("finished", 16)
    # Checkpoints every 3 steps or only at epoch ends: the same numbers.
    assert same_weights(weights_path(run, "last"), weights_path(full, "last"))
    assert same_weights(run / "best.safetensors", full / "best.safetensors")


# --- the runner never deletes a checkpoint ---------------------------------------------------


def _planned_run(tmp_path: Path, source: Path):
    """The seeds experiment's plan in ``tmp_path``, its first run replaced by ``source``."""
    plan = plan_experiment(EXPERIMENTS["seeds"], SCALES["cpu"], tmp_path)
    for dataset in plan.datasets:  # collected already
        dataset.path.mkdir(parents=True)
        (dataset.path / "meta.json").write_text("{}")
    run = plan.runs[0]
    shutil.copytree(source, run.path)
    return plan, run


@pytest.mark.parametrize(
    "damage", ["truncated run.json", "foreign run.json", "no run.json", "no state"]
)
def test_the_runner_reports_a_damaged_run_and_keeps_its_files(
    stopped_run, tmp_path, capsys, damage
):
    plan, run = _planned_run(tmp_path, stopped_run)
    info = run.path / "run.json"
    if damage == "truncated run.json":
        info.write_bytes(info.read_bytes()[:100])
    elif damage == "foreign run.json":
        info.write_text('{"hello": "world"}')
    elif damage == "no run.json":
        info.unlink()
    else:  # an interrupted run of an older version, killed before its first checkpoint
        write_json_atomic(info, {**json.loads(info.read_text()), "status": "interrupted"})
        (last_checkpoint(run.path).state).unlink()
    before = files(run.path)
    assert run_status(run.path) == DAMAGED
    assert train_step("permakey", run.path, run.options, run.runtime) is None
    assert status_line(run.path).startswith("damaged, skipped: ")
    assert main(["reproduce", "seeds", "--out", str(tmp_path), "--dry-run"]) == 0
    said = capsys.readouterr().out
    assert f"run {run.path}: damaged, skipped: " in said
    fake = FakeSteps()
    assert run_plan(plan, execute=fake) == 1
    assert str(run.path) not in [s.kwargs.get("out") or s.kwargs.get("run") for s in fake.calls]
    said = capsys.readouterr().out
    assert f"run {run.path}: damaged, skipped: " in said and f"run {run.path} (damaged)" in said
    assert files(run.path) == before


# --- one writer per run folder ---------------------------------------------------------------


def _hold_in_another_process(folder: Path) -> subprocess.Popen:
    """A real process that holds ``folder``'s lock until killed."""
    code = (
        "import sys, time\n"
        "from permakey.locks import hold_folder\n"
        "with hold_folder(sys.argv[1], 'run folder'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(120)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, env=ENV, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_writer_is_refused_naming_the_holder_until_it_is_killed(
    data, stopped_run, tmp_path, capsys
):
    run = copy_run(stopped_run, tmp_path)
    before = files(run)
    holder = _hold_in_another_process(run)
    try:
        with pytest.raises(FolderLocked) as err:
            resume_run("permakey", run, max_steps=3)
        message = one_line(str(err.value))
        assert f"pid {holder.pid} on host {socket.gethostname()}" in message
        # --overwrite and --resume from the command line: one line, nothing touched.
        assert main(["train", "permakey", "--resume", str(run), "--max-steps", "3"]) == 2
        assert f"pid {holder.pid}" in one_line(capsys.readouterr().err)
        assert main(cli_args(data, run, "--overwrite")) == 2
        assert f"pid {holder.pid}" in one_line(capsys.readouterr().err)
        assert files(run) == before
        # The runner skips it, says why, and trains nothing there.
        plan, planned = _planned_run(tmp_path / "plan", run)
        other = _hold_in_another_process(planned.path)
        try:
            assert run_plan(plan, execute=FakeSteps()) == 1
            assert f"run {planned.path}: skipped: run folder" in capsys.readouterr().out
        finally:
            other.kill()
            other.wait()
    finally:
        holder.send_signal(signal.SIGKILL)  # a stale lock: the kernel releases it
        holder.wait()
    assert resume_run("permakey", run, max_steps=3).step == 3


@pytest.mark.slow
def test_the_runner_lends_its_lock_to_its_subprocess_worker(stopped_run, tmp_path):
    run = copy_run(stopped_run, tmp_path)
    execute = in_subprocess(1)
    step = Step("resume", {"kind": "permakey", "run": str(run), "max_steps": 3, "progress": False})
    with hold_folder(run, "run folder"):
        assert execute(step, tmp_path / "log") == 0, (tmp_path / "log").read_text()
    assert last_checkpoint(run).step == 3


@pytest.mark.slow
def test_a_killed_training_process_leaves_no_lock_behind(data, tmp_path):
    """SIGKILL a real `permakey train` with DataLoader workers: its lock goes with it."""
    run = tmp_path / "run"
    args = cli_args(data, run, "--workers", "2", "--checkpoint-every", "1", "--epochs", "50")
    process = subprocess.Popen(
        [sys.executable, "-m", "permakey", *args], env=ENV, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while (last_checkpoint(run) is None or last_checkpoint(run).step < 2) and (
            time.monotonic() < deadline and process.poll() is None
        ):
            time.sleep(0.05)
        assert process.poll() is None and last_checkpoint(run).step >= 2
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    step = last_checkpoint(run).step
    result = resume_run("permakey", run, max_steps=step + 1, workers=0)
    assert (result.status, result.step) == ("stopped", step + 1)


# --- paths, modes, leftovers -----------------------------------------------------------------


def test_a_relative_dataset_path_is_stored_absolute_and_resumes_from_anywhere(
    data, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    monkeypatch.chdir(data.parent)
    train(PermaKeyMethod(), tiny_cfg(data.name, max_steps=1), TINY_PERMAKEY, run)
    assert json.loads((run / "run.json").read_text())["train"]["data"] == str(data)
    monkeypatch.chdir(tmp_path)
    assert resume_run("permakey", run, max_steps=2).step == 2
    # A run of an older version stored the path as given: its dataset identity finds it.
    info = json.loads((run / "run.json").read_text())
    info["train"]["data"] = data.name
    write_json_atomic(run / "run.json", info)
    assert resume_run("permakey", run, max_steps=3).step == 3
    assert json.loads((run / "run.json").read_text())["train"]["data"] == str(data)


@pytest.mark.parametrize("umask, folders, plain", [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)])
def test_runs_and_datasets_get_ordinary_modes(tmp_path, umask, folders, plain):
    old = os.umask(umask)
    try:
        dataset = make_sprites_dataset(
            tmp_path / "sprites", SIZES, episode_length=32, size=32, sprite_size=4
        )
        run = tmp_path / "run"
        train(PermaKeyMethod(), tiny_cfg(dataset, max_steps=1), TINY_PERMAKEY, run)
    finally:
        os.umask(old)
    for root in (dataset, run):
        for path in [root, *root.rglob("*")]:
            mode = path.stat().st_mode & 0o777
            assert mode == (folders if path.is_dir() else plain), (path, oct(mode))


def test_leftovers_of_killed_writes_are_removed_on_resume(stopped_run, tmp_path):
    run = copy_run(stopped_run, tmp_path)
    dead, live = dead_pid(), os.getpid()
    checkpoint = last_checkpoint(run).weights.parent
    partial = run / "checkpoints" / f".step-00000003.{dead}-0a1b2c3d.partial"
    partial.mkdir(parents=True)
    (partial / "state.pt").write_bytes(b"x" * 1000)
    leftovers = [
        run / ".state.pt.k2j3_x9a.tmp",  # an older version's, named by mkstemp
        run / f".run.json.{dead}-00ff00ff.tmp",
        tmp_path / f".run.{dead}-1234abcd.partial",  # a killed --overwrite of the run
        partial,
    ]
    for path in leftovers[:3]:
        path.mkdir() if path.suffix == ".partial" else path.write_bytes(b"x" * 1000)
    writing = run / f".metrics.jsonl.{live}-abcdef01.tmp"  # this process writes it: kept
    writing.write_text("")
    resume_run("permakey", run, max_steps=3)
    assert [p for p in leftovers if p.exists()] == []
    assert writing.exists() and not checkpoint.exists()  # step 2's went with step 3's


def test_the_next_write_of_a_file_removes_its_leftovers(tmp_path):
    dead = dead_pid()
    mine = tmp_path / f".notes.json.{dead}-0badf00d.tmp"
    other = tmp_path / f".other.json.{dead}-0badf00d.tmp"
    for path in (mine, other):
        path.write_text("{")
    write_json_atomic(tmp_path / "notes.json", {"a": 1})
    assert not mine.exists() and other.exists()  # another target's waits for its own write
    assert (tmp_path / "notes.json").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- failed writes: file-size limit, read-only folder ----------------------------------------


def _resume_in_subprocess(run: Path, limit: int | None = None, drop_root: bool = False):
    """`permakey train permakey --resume RUN --max-steps 4` in a real subprocess, under a
    file-size limit (RLIMIT_FSIZE) or without the root's right to write anywhere."""

    def limited() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    prefix = []
    if drop_root:  # root writes through permission bits; without CAP_DAC_OVERRIDE it cannot
        caps = "-dac_override,-dac_read_search"
        prefix = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", "--"]
    return subprocess.run(
        [*prefix, sys.executable, "-m", "permakey", "train", "permakey", "--resume",
         str(run), "--max-steps", "4", "--no-progress"],
        env=ENV, capture_output=True, text=True, preexec_fn=limited, timeout=300,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    "limit, fails",
    [(1_000, "run.json"), (16_000, "best.safetensors"), (200_000, "checkpoints/step-00000004")],
    ids=["run.json", "weights", "state"],
)
def test_a_file_size_limit_fails_in_one_line_and_keeps_the_checkpoint(
    stopped_run, reference_4, tmp_path, limit, fails
):
    run = copy_run(stopped_run, tmp_path)
    result = _resume_in_subprocess(run, limit=limit)
    assert result.returncode == 2, result.stderr
    message = one_line(result.stderr)
    assert f"cannot write {run / fails}: File too large" in message
    assert "checkpoints/step-00000002, is intact" in message
    assert last_checkpoint(run).step == 2 and permakey.load(run, "last")
    assert run_status(run) in ("failed", "stopped")  # run.json says so where it can be written
    assert resume_run("permakey", run, max_steps=4).step == 4
    assert same_weights(weights_path(run, "last"), weights_path(reference_4, "last"))


@pytest.mark.slow
def test_a_read_only_run_folder_fails_in_one_line_and_keeps_the_checkpoint(
    stopped_run, reference_4, tmp_path
):
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("as root, a read-only folder needs setpriv to drop CAP_DAC_OVERRIDE")
    run = copy_run(stopped_run, tmp_path)
    before = files(run)
    paths = [run, *run.rglob("*")]
    for path in paths:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        result = _resume_in_subprocess(run, drop_root=os.geteuid() == 0)
    finally:
        for path in paths:
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert result.returncode == 2, result.stderr
    assert f"cannot write {run / 'metrics.jsonl'}: Permission denied" in one_line(result.stderr)
    assert files(run) == before
    assert resume_run("permakey", run, max_steps=4).step == 4
    assert same_weights(weights_path(run, "last"), weights_path(reference_4, "last"))


# --- damaged and malicious files -------------------------------------------------------------


def _damage(run: Path, what: str) -> Path:
    """Damages one file of ``run``; returns it."""
    checkpoint = last_checkpoint(run)
    path = {
        "run.json": run / "run.json",
        "weights": checkpoint.weights,
        "state": checkpoint.state,
    }[what.split()[-1]]
    if what.startswith("truncated"):
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    elif what == "foreign state":
        torch.save({"lr": torch.zeros(1)}, path)
    elif what == "foreign run.json":
        path.write_text('{"format": "permakey-dataset"}')
    else:  # random bytes
        path.write_bytes(os.urandom(4096))
    return path


@pytest.mark.parametrize(
    "what",
    ["truncated run.json", "foreign run.json", "truncated weights", "random weights",
     "truncated state", "foreign state", "random state"],
)  # fmt: skip
def test_a_damaged_run_file_gives_one_line_naming_it_and_what_to_do(
    stopped_run, tmp_path, capsys, what
):
    run = copy_run(stopped_run, tmp_path)
    path = _damage(run, what)
    assert main(["train", "permakey", "--resume", str(run), "--max-steps", "3"]) == 2
    message = one_line(capsys.readouterr().err)
    assert str(path) in message
    assert "restore it" in message or "train the run again" in message


class _WritesAFile:
    """Unpickled, it would create the file ``path`` (any code could run instead)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.mark.parametrize("form", ["torch file", "plain pickle"])
def test_a_malicious_state_file_runs_no_code(stopped_run, tmp_path, capsys, form):
    run = copy_run(stopped_run, tmp_path)
    marker = tmp_path / "pwned"
    evil = _WritesAFile(marker)
    pickle.loads(pickle.dumps(evil)).close()  # what unpickling it does
    assert marker.exists()
    marker.unlink()
    state = last_checkpoint(run).state
    if form == "torch file":
        good = torch.load(state, weights_only=True)
        torch.save({**good, "optimizer": evil}, state)
    else:
        state.write_bytes(pickle.dumps({"step": 2, "payload": evil}, protocol=2))
    assert main(["train", "permakey", "--resume", str(run), "--max-steps", "3"]) == 2
    message = one_line(capsys.readouterr().err)
    assert str(state) in message and "never runs code" in message
    assert not marker.exists()


# --- fault injection -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.faults
@pytest.mark.skipif(sys.platform != "linux", reason="forks a process that imported torch")
def test_kills_at_write_events_and_random_times_lose_nothing(tmp_path):
    """`tests/faultkit.py train`: 20 write events and 6 random times per method (RELIABILITY.md)."""
    report = tmp_path / "faults.json"
    result = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "faultkit.py"), "train", "--points", "20",
         "--delays", "6", "--json", str(report)],
        env=ENV, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = json.loads(report.read_text())["kinds"]
    assert all(k["survived"] == k["tried"] for k in kinds), result.stdout
    assert sum(k["tried"] for k in kinds) >= 50
