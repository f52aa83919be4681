"""`permakey reproduce --launcher submitit-local`: every step a real submitit job.

The tiny `num-keypoints` experiment (300 Frostbite frames, three PermaKey runs of two steps)
runs through submitit's LocalExecutor: real pickled jobs, each a process running its worker
subprocess. While it trains, one job gets the preemption signal (SIGUSR2, as Slurm sends it)
and is requeued and resumed; another job's process is killed with SIGKILL, which fails that
step; a second invocation finishes it. The tables are those of `--launcher local`.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import write_status

from permakey.cli.main import main
from permakey.experiments.runner import current_step, train_step
from permakey.experiments.steps import Step

ARGV = ["reproduce", "num-keypoints", "--scale", "tiny", "--precision", "fp32"]
# One job at a time: a preempted run finishes its step and saves within the job's grace
# time even on a loaded 2-core machine.
JOBS = ["--launcher", "submitit-local", "--cpus", "2", "--time", "20", "--workers", "1"]


def permakey(*argv: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    # A session of its own: `finish` ends it with every job process it started.
    return subprocess.Popen(
        [sys.executable, "-m", "permakey", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )


def finish(process: subprocess.Popen, timeout_s: float = 600) -> str:
    """Waits for ``process``; its output. Kills its process group if it is still there."""
    try:
        said, _ = process.communicate(timeout=timeout_s)
        return said
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def worker_of(run: Path) -> int | None:
    """The pid of the worker process training ``run``, if one is running."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            words = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"permakey.experiments.worker" in words and any(str(run).encode() in w for w in words):
            return int(proc.name)
    return None


def parent(pid: int) -> int:
    # /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces, not ")".
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def wait_for(condition, what: str, timeout_s: float = 600.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_training_step_resumes_what_its_run_folder_has(tmp_path):
    run = tmp_path / "run"
    step = Step(
        "train", {"kind": "permakey", "out": str(run), "data": "d", "seed": 1, "max_steps": 2}
    )
    assert current_step(step) == step  # nothing there yet: a fresh start
    run.mkdir()
    assert current_step(step) == step.with_kwargs(overwrite=True)  # an empty folder: start
    write_status(run, "running", checkpoint=True)
    resume = Step("resume", {"kind": "permakey", "run": str(run), "max_steps": 2})
    assert current_step(step) == resume == current_step(resume)
    write_status(run, "stopped", checkpoint=True)
    assert current_step(step) is None and current_step(resume) is None
    other = Step("collect", {"game": "Pong", "out": "x"})
    assert current_step(other) is other
    assert train_step("permakey", run, {}, {}) is None


def test_job_launchers_say_what_they_need(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    assert main([*ARGV, "--out", str(tmp_path), "--launcher", "slurm"]) == 2
    assert "needs Slurm's sbatch" in capsys.readouterr().err
    assert main([*ARGV, "--out", str(tmp_path), *JOBS, "--gpus", "2"]) == 2
    assert "torchrun" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "submitit", None)  # not installed
    assert main([*ARGV, "--out", str(tmp_path), *JOBS]) == 2
    assert "permakey[cluster]" in capsys.readouterr().err
    assert not (tmp_path / "num-keypoints").exists()


@pytest.mark.slow
def test_jobs_survive_preemption_and_a_kill_and_give_the_local_tables(tmp_path, capsys):
    pytest.importorskip("submitit")
    pytest.importorskip("ocatari")
    # The local run on the jobs' torch threads (--cpus 2): float sums over another number of
    # threads round differently, and two training steps carry that to the third decimal.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert main([*ARGV, "--out", str(tmp_path / "local")]) == 0
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    local = (tmp_path / "local" / "num-keypoints" / "tables.md").read_text()

    out = tmp_path / "jobs"
    runs = out / "num-keypoints" / "runs"
    logs = out / "num-keypoints" / "logs"
    first = permakey(*ARGV, "--out", str(out), *JOBS)
    try:
        # K15, once it trains (its TensorBoard writer is open), is preempted: submitit's
        # signal goes to its job's process, which stops the worker and is requeued.
        wait_for(lambda: list((runs / "K15" / "tb").glob("events*")), "K15 to train")
        os.kill(parent(wait_for(lambda: worker_of(runs / "K15"), "K15's worker")), signal.SIGUSR2)
        # K20's job process is killed outright once its run exists.
        wait_for(lambda: (runs / "K20" / "run.json").is_file(), "K20 to start")
        os.kill(parent(wait_for(lambda: worker_of(runs / "K20"), "K20's worker")), signal.SIGKILL)
    finally:
        said = finish(first)
    assert first.returncode == 1, said
    assert "failed: train-K20" in said
    k15 = (logs / "train-K15.log").read_text()
    assert f"$ permakey train permakey --resume {runs / 'K15'}" in k15, k15
    assert "Requeued job" in "".join(p.read_text() for p in (out / "jobs").glob("*_log.*"))
    assert json.loads((runs / "K15" / "run.json").read_text())["step"] == 2
    wait_for(lambda: worker_of(runs / "K20") is None, "K20's orphaned worker to stop", 60)

    again = permakey(*ARGV, "--out", str(out), *JOBS)
    said = finish(again)
    assert again.returncode == 0, said
    assert said.count("submitted job") == 3, said  # K20, the evaluation and the figures
    assert "train permakey --resume" in said or "train permakey --out" in said
    for k in (15, 20, 25):
        assert json.loads((runs / f"K{k}" / "run.json").read_text())["step"] == 2
    assert (out / "num-keypoints" / "tables.md").read_text() == local
