"""Fault injection: run a permakey call in a forked process and SIGKILL it at a chosen point.

A driver imports torch and permakey once and forks one child per trial, so that a trial costs
the work it does, not an interpreter start. A child is killed with a real SIGKILL, either

- at its k-th *write event*: a call of one of the functions through which every write goes
  (`WRITE_FUNCTIONS`: opening a file for writing, fsync, rename/replace, mkdir, unlink,
  rmtree), hooked in the child only, so that the kill lands before that call (inside an
  atomic write: after its data, before its fsync, before its rename, between a checkpoint's
  rename and the removal of the previous one...); or
- after a random delay, sent by the driver (anywhere, computation included).

`python tests/faultkit.py train [--quick] [--json OUT]` runs the training suite (both methods)
and prints its table; `tests/test_faults_training.py` runs it under ``pytest -m faults``.
Other suites (collection) can reuse `run_forked` and `WRITE_FUNCTIONS`.
"""

from __future__ import annotations

import argparse
import builtins
import io
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

# (module, attribute) of every function that writes to the file system, as hooked in a child.
WRITE_FUNCTIONS = (
    (builtins, "open"),
    (io, "open"),
    (os, "open"),
    (os, "fsync"),
    (os, "replace"),
    (os, "rename"),
    (os, "mkdir"),
    (os, "unlink"),
    (os, "rmdir"),
    (shutil, "rmtree"),
)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _writes(name: str, args: tuple, kwargs: dict) -> bool:
    """Whether this call of a hooked function writes (opening files for reading does not)."""
    if name == "open":
        if len(args) > 1 and isinstance(args[1], int):  # os.open(path, flags)
            return bool(args[1] & _WRITE_FLAGS)
        mode = args[1] if len(args) > 1 else kwargs.get("mode", "r")
        return isinstance(mode, str) and any(c in mode for c in "wax+")
    return True


def _where() -> str:
    """The permakey function (outside fileio) that a write event comes from, as file:function."""
    frame = first = sys._getframe(2)
    while frame is not None:
        path = frame.f_code.co_filename
        if "permakey" in path and "faultkit" not in path and not path.endswith("fileio.py"):
            return f"{Path(path).name}:{frame.f_code.co_qualname}"
        frame = frame.f_back
    # Not from permakey's own frames: TensorBoard's writer thread.
    return f"{Path(first.f_code.co_filename).parent.name}/{Path(first.f_code.co_filename).name}"


def install_kill_switch(kill_at: int | None, trace: list[str] | None = None) -> Callable[[], int]:
    """Hooks the write functions in this (child) process; SIGKILLs it before write event
    ``kill_at`` (1-based; None: never); appends where each event comes from to ``trace``.
    Returns a function giving the events so far."""
    count = 0

    def hook(name, original):
        def hooked(*args, **kwargs):
            nonlocal count
            if _writes(name, args, kwargs):
                count += 1
                if trace is not None:
                    trace.append(_where())
                if count == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)

        return hooked

    for module, name in WRITE_FUNCTIONS:
        setattr(module, name, hook(name, getattr(module, name)))
    return lambda: count


@dataclass
class Outcome:
    """How a forked call ended: killed by SIGKILL, or its exit status; its write events."""

    killed: bool
    status: int | None
    events: list[str] | None  # where each write event came from (`_where`), when not killed
    seconds: float


def run_forked(
    call: Callable[[], int], kill_at: int | None = None, kill_after: float | None = None
) -> Outcome:
    """Runs ``call`` (returning an exit status) in a forked child, killed as asked; the child's
    standard output is discarded.

    Args:
        call: what the child runs.
        kill_at: SIGKILL the child before its k-th write event.
        kill_after: SIGKILL the child after this many seconds (if it still runs).
    """
    read, write = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # result lines; errors stay on stderr
        status = 70
        try:
            import torch

            torch.set_num_threads(1)
            trace: list[str] = []
            install_kill_switch(kill_at, trace)
            status = call()
            with os.fdopen(write, "w") as f:
                json.dump(trace, f)
        except BaseException:  # noqa: BLE001 - reported as its status and traceback
            import traceback

            traceback.print_exc()
        finally:
            os._exit(status)
    os.close(write)
    done, wait_status = 0, 0
    if kill_after is not None:
        deadline = start + kill_after
        while not done and time.monotonic() < deadline:
            done, wait_status = os.waitpid(pid, os.WNOHANG)
            time.sleep(0.002)
        if not done:
            os.kill(pid, signal.SIGKILL)
    if not done:
        _, wait_status = os.waitpid(pid, 0)
    with os.fdopen(read) as f:
        text = f.read()
    killed = os.WIFSIGNALED(wait_status) and os.WTERMSIG(wait_status) == signal.SIGKILL
    status = os.WEXITSTATUS(wait_status) if os.WIFEXITED(wait_status) else None
    return Outcome(killed, status, json.loads(text) if text else None, time.monotonic() - start)


# --- the training suite --------------------------------------------------------------------

# Tiny models (as tests/conftest.py's) and a budget of 2 epochs of 4 steps with a checkpoint
# every 3 steps: checkpoints at steps 0 (the run folder's), 3, 4 (epoch end), 6 and 8.
MODELS = {
    "permakey": {
        "image_size": 32, "encoder_channels": [8, 8, 8, 8], "latent_dim": 4, "lsp_hidden": [16],
    },
    "transporter": {"image_size": 32, "channels": [8, 8, 8, 8]},
}  # fmt: skip
OPTIONS = {
    "epochs": 2, "batch_size": 8, "workers": 0, "device": "cpu", "progress": False,
    "log_every": 2, "checkpoint_every": 3,
}  # fmt: skip
EXTRA = {"permakey": {}, "transporter": {"window": 8}}
METHODS = ("permakey", "transporter")


@dataclass
class Kind:
    """Counts of one kind of fault: points tried, survived, and what went wrong elsewhere."""

    name: str
    tried: int = 0
    survived: int = 0
    failures: list[str] = field(default_factory=list)


def _train_options(kind: str, data: Path) -> dict:
    return {
        "data": str(data), "preset": "paper", "model": MODELS[kind], "num_keypoints": 3,
        **OPTIONS, **EXTRA[kind],
    }  # fmt: skip


def _train(kind: str, data: Path, run: Path) -> Callable[[], int]:
    """The call of `permakey train KIND --data DATA --out RUN ...` (quietly)."""
    from permakey.experiments.steps import Step, run_step

    step = Step("train", {"kind": kind, "out": str(run), **_train_options(kind, data)})
    return lambda: run_step(step)


def _recover(kind: str, data: Path, run: Path) -> str | None:
    """Brings a killed run to its budget as the runner would (`train_step`: train, resume or
    keep); None when done, else what went wrong."""
    from permakey.experiments.runner import DONE, status_line, train_step
    from permakey.experiments.steps import run_step

    options = _train_options(kind, data)
    runtime = {k: options.pop(k) for k in ("epochs", "workers", "device", "progress")}
    for _ in range(2):
        step = train_step(kind, run, options, runtime)
        if step is None:
            line = status_line(run)
            return None if line.split(",")[0] in DONE else f"not resumable: {line}"
        outcome = run_forked(lambda s=step: run_step(s))
        if outcome.status != 0:
            return f"{step.kind} exited with {outcome.status}"
    return "not finished after a resume"


def _snapshot(run: Path) -> dict:
    """What must be identical to the uninterrupted run: the weights, step, status, val rows."""
    from safetensors.numpy import load_file

    from permakey.runs.folder import last_checkpoint, read_run_json

    checkpoint = last_checkpoint(run)
    info = read_run_json(run)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {
        "status": info["status"],
        "step": info["step"],
        "checkpoint_step": checkpoint.step,
        "last": load_file(checkpoint.weights),
        "best": load_file(run / "best.safetensors"),
        "validation": [r for r in rows if "val/loss" in r],
    }


def _differences(a: dict, b: dict) -> list[str]:
    import numpy as np

    out = [k for k in ("status", "step", "checkpoint_step", "validation") if a[k] != b[k]]
    for which in ("last", "best"):
        if a[which].keys() != b[which].keys() or not all(
            np.array_equal(a[which][k], b[which][k]) for k in a[which]
        ):
            out.append(f"{which} weights")
    return out


def _leftovers(run: Path) -> list[str]:
    """Temporaries and extra checkpoints still there after recovery, and a lock that blocks.

    A lock file left by a killed holder is no leftover as long as it does not block (the
    kernel released its lock): taking the lock here removes it.
    """
    from permakey.locks import hold_folder

    try:
        with hold_folder(run, "run folder"):
            pass
    except Exception as err:  # noqa: BLE001 - reported
        return [f"the lock blocks: {err}"]
    found = [p.name for p in run.parent.iterdir() if p.name.startswith(f".{run.name}.")]
    for folder in (run, run / "checkpoints"):
        found += [p.name for p in folder.iterdir() if p.name.startswith(".")]
    checkpoints = list((run / "checkpoints").iterdir())
    if len(checkpoints) != 1:
        found.append(f"{len(checkpoints)} checkpoint folders")
    return found


def _trial(method: str, data: Path, run: Path, reference: dict, how: dict) -> str | None:
    """One kill and its recovery; None when nothing was lost, else what was."""
    from permakey.experiments.runner import DONE, run_status

    outcome = run_forked(_train(method, data, run), **how)
    if not outcome.killed and outcome.status != 0:
        return f"exited with {outcome.status}"
    # No folder may look finished when it is not.
    if run_status(run) in DONE and _differences(_snapshot(run), reference):
        return (
            f"looks finished after the kill but differs: {_differences(_snapshot(run), reference)}"
        )
    problem = _recover(method, data, run)
    if problem is None:
        diff = _differences(_snapshot(run), reference)
        problem = f"differs from the uninterrupted run: {diff}" if diff else None
    if problem is None and _leftovers(run):
        problem = f"leftovers: {_leftovers(run)}"
    return problem


def train_suite(
    work: Path, points: int | None = 20, delays: int = 6, seed: int = 0
) -> tuple[list[Kind], dict[str, int], dict[str, dict[str, int]]]:
    """Kills training of both methods at write events and at random times, brings each run to
    its budget as the runner would and compares it with an uninterrupted run: weights (last
    and best), status, step, validation rows, and no temporaries left.

    Args:
        work: a scratch folder.
        points: write events to kill at per method, drawn at random; None: every one.
        delays: random delays to kill after, per method.
        seed: seed of the draws.

    Returns:
        (the kinds of fault with their counts, {method: write events of an uninterrupted
        run}, {where a write event comes from: {method: kills tried there}}).
    """
    import torch

    from permakey.testing import make_sprites_dataset

    rng = random.Random(seed)
    data = make_sprites_dataset(
        work / "data", {"train": 32, "val": 8, "test": 8}, episode_length=16, size=32,
        sprite_size=4,
    )  # fmt: skip
    # A first run here loads every lazy part of torch and permakey once, before any fork, so
    # that no child pays for it; one thread, so that no thread pool is forked.
    torch.set_num_threads(1)
    for method in METHODS:
        _train(method, data, work / f"warm-{method}")()
    kinds, events = [], {}
    where: dict[str, dict[str, int]] = {}
    for method in METHODS:
        reference_run = work / f"{method}-reference"
        full = run_forked(_train(method, data, reference_run))
        if full.status != 0 or not full.events:
            raise RuntimeError(f"the uninterrupted {method} run failed ({full.status})")
        reference = _snapshot(reference_run)
        events[method] = len(full.events)
        every = range(1, len(full.events) + 1)
        chosen = (
            list(every) if points is None else sorted(rng.sample(every, min(points, len(every))))
        )
        trials = [
            (f"SIGKILL at a write event, training {method}", {"kill_at": k}) for k in chosen
        ] + [
            (f"SIGKILL at a random time, training {method}", {"kill_after": rng.uniform(0, full.seconds)})
            for _ in range(delays)
        ]  # fmt: skip
        by_name: dict[str, Kind] = {}
        for number, (name, how) in enumerate(trials):
            kind = by_name.setdefault(name, Kind(name))
            run = work / f"{method}-{number}"
            problem = _trial(method, data, run, reference, how)
            kind.tried += 1
            if "kill_at" in how:
                place = where.setdefault(full.events[how["kill_at"] - 1], {})
                place[method] = place.get(method, 0) + 1
            if problem is None:
                kind.survived += 1
                shutil.rmtree(run, ignore_errors=True)
            else:
                kind.failures.append(f"{how}: {problem} ({run})")
        kinds += by_name.values()
    return kinds, events, where


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", choices=["train"])
    parser.add_argument(
        "--points", default="20", help="write events to kill at per method, or 'all' (default 20)"
    )
    parser.add_argument("--delays", type=int, default=6, help="random-time kills per method")
    parser.add_argument("--seed", type=int, default=0, help="seed of the drawn points")
    parser.add_argument("--json", metavar="OUT", help="write the counts as JSON")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep failed runs there")
    args = parser.parse_args(argv)
    points = None if args.points == "all" else int(args.points)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.keep or scratch)
        work.mkdir(parents=True, exist_ok=True)
        kinds, events, where = train_suite(work, points, args.delays, args.seed)
    print(f"write events of one uninterrupted run: {events}")
    print("kills at write events, by where they landed:")
    for place, counts in sorted(where.items()):
        print(f"  {place}: {counts}")
    for kind in kinds:
        print(f"{kind.name}: {kind.survived}/{kind.tried} survived")
        for failure in kind.failures:
            print(f"  {failure}")
    if args.json:
        report = {"events": events, "where": where, "kinds": [asdict(k) for k in kinds]}
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(not k.failures for k in kinds) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    sys.exit(main())
