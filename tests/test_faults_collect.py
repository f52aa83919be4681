"""Fault injection for `permakey collect` (issue 20): SIGKILL a real collection of Pong (real
ALE, real OCAtari objects) at many points, rerun the same command, and compare.

Each trial starts from the same state, forks a child that runs ``permakey collect`` (the
driver has imported everything once: `faultkit.run_forked`) and kills it with a real SIGKILL:

- before its k-th file-system write event (`faultkit.WRITE_FUNCTIONS`: the lock file, the
  temporary folder, each HDF5 file's creation and fsync, meta.json's write, fsync and rename,
  the folder's renames and the removal of the replaced one), for every k (for a replace,
  the last 12: before them it writes as a first collection does);
- before its k-th write into an HDF5 file (every byte HDF5 writes goes through
  `permakey.data.store._GuardedFile.write`), for evenly spread k;
- after a random delay.

Then it checks that no folder looks finished when it is not (the output is absent, or the
complete old dataset, or byte for byte the finished new one; a replace killed between its two
renames leaves the old dataset beside it, which the rerun restores), reruns the same command
uninterrupted, and checks that the dataset is byte-identical, file for file, to an
uninterrupted collection of the same seed, with nothing else left in the folder (no partial
folder, no lock file, no old copy). Two starting states: no dataset yet, and a dataset of
another seed replaced with ``--overwrite``.

`python tests/test_faults_collect.py` prints the table (RELIABILITY.md).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from faultkit import run_forked

from permakey.cli.main import main
from permakey.data import store

COLLECT = ["collect", "pong", "--frames", "150", "--val-frames", "30", "--test-frames", "30"]
COLLECT += ["--quiet"]
# Kill points per starting state. A replace differs from a first collection only once the
# new folder is complete: its last write events (meta.json's, the renames, the removal).
LAST_EVENTS = {"new": None, "overwrite": 12}  # None: every write event
SPREAD = {"new": 6, "overwrite": 2}  # HDF5 writes
DELAYS = {"new": 5, "overwrite": 2}  # random times


def _collect(out: Path, *extra: str) -> Callable[[], int]:
    argv = [*COLLECT, "--out", str(out), *extra]
    return lambda: main(argv)


def _killing_at_hdf5_write(call: Callable[[], int], kill_at: int | None, counts: Path | None):
    """``call``, in a child that SIGKILLs itself before its ``kill_at``-th write into an HDF5
    file; with ``counts``, it writes how many there were there instead."""

    def child() -> int:
        writes = 0
        original = store._GuardedFile.write

        def write(self, data):
            nonlocal writes
            writes += 1
            if writes == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(self, data)

        store._GuardedFile.write = write
        status = call()
        if counts is not None:
            os.write(os.open(counts, os.O_WRONLY | os.O_CREAT), str(writes).encode())
        return status

    return child


def _files(folder: Path) -> dict[str, bytes] | None:
    """The files of a folder, by name (None if there is no folder)."""
    if not folder.is_dir():
        return None
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _state_problem(out: Path, old: dict | None, new: dict) -> str | None:
    """After a kill: what is wrong with what the folder holds, or None."""
    there = _files(out)
    if there is not None and there not in (old, new):
        names = sorted(there)
        return f"{out.name} looks like a dataset but is neither the old nor the new one: {names}"
    if there is None and old is not None:
        aside = _files(out.with_name(f".{out.name}.old"))
        if aside != old:
            return "the old dataset is gone"
    return None


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name)


class Tally:
    """Kill points tried and survived per kind, and what went wrong."""

    def __init__(self) -> None:
        self.kinds: dict[str, list[int]] = {}
        self.failures: list[str] = []

    def add(self, kind: str, problem: str | None, how: str) -> None:
        counts = self.kinds.setdefault(kind, [0, 0])
        counts[0] += 1
        if problem is None:
            counts[1] += 1
        else:
            self.failures.append(f"{kind}, {how}: {problem}")

    @property
    def tried(self) -> int:
        return sum(tried for tried, _ in self.kinds.values())

    def table(self) -> str:
        rows = [f"{kind}: {ok}/{tried} survived" for kind, (tried, ok) in self.kinds.items()]
        return "\n".join(rows + [f"  {failure}" for failure in self.failures])


def collect_suite(work: Path, seed: int = 0) -> Tally:
    """Runs every trial (module docstring) in ``work``; returns the counts."""
    import ale_py  # noqa: F401 - imported once here, not in every child
    import ocatari.core  # noqa: F401

    import permakey.data.collect  # noqa: F401
    import permakey.data.objects  # noqa: F401

    rng = random.Random(seed)
    tally = Tally()
    # The references: the dataset uninterrupted, and the one --overwrite replaces.
    (work / "reference").mkdir()
    counted = work / "hdf5-writes"
    full = run_forked(_killing_at_hdf5_write(_collect(work / "reference" / "pong"), None, counted))
    assert full.status == 0, "the uninterrupted collection failed"
    new = _files(work / "reference" / "pong")
    (work / "previous").mkdir()
    assert run_forked(_collect(work / "previous" / "pong", "--seed", "1")).status == 0
    old = _files(work / "previous" / "pong")
    starts = {"new": (None, ()), "overwrite": (old, ("--overwrite",))}
    for start, (before, extra) in starts.items():
        trial = work / f"{start}-events"
        trial.mkdir()
        if before is not None:
            shutil.copytree(work / "previous" / "pong", trial / "pong")
        outcome = run_forked(_collect(trial / "pong", *extra))
        assert outcome.status == 0 and outcome.events, f"the uninterrupted {start} run failed"
        trace, hdf5_writes = outcome.events, int(counted.read_text())
        events = len(trace)
        n = SPREAD[start]
        spread = sorted({round(1 + i * (hdf5_writes - 1) / (n - 1)) for i in range(n)})
        first = 1 if LAST_EVENTS[start] is None else events - LAST_EVENTS[start] + 1
        points = [("file-system write event", {"kill_at": k}) for k in range(first, events + 1)]
        points += [("HDF5 write", {"hdf5_at": k}) for k in spread]
        points += [
            ("random time", {"kill_after": rng.uniform(0, full.seconds)})
            for _ in range(DELAYS[start])
        ]
        for label, how in points:
            shutil.rmtree(trial)
            trial.mkdir()
            if before is not None:
                shutil.copytree(work / "previous" / "pong", trial / "pong")
            out = trial / "pong"
            call = _collect(out, *extra)
            if "hdf5_at" in how:
                call = _killing_at_hdf5_write(call, how["hdf5_at"], None)
            outcome = run_forked(call, kill_at=how.get("kill_at"), kill_after=how.get("kill_after"))
            problem = None
            if not outcome.killed and outcome.status != 0:
                problem = f"exited with {outcome.status}"
            problem = problem or _state_problem(out, before, new)
            if problem is None:
                rerun = run_forked(_collect(out, *extra))
                if rerun.status != 0:
                    problem = f"the rerun exited with {rerun.status}"
                elif _files(out) != new:
                    problem = "the rerun's dataset differs from the uninterrupted one"
                elif _leftovers(out):
                    problem = f"leftovers after the rerun: {_leftovers(out)}"
            where = f" ({trace[how['kill_at'] - 1]})" if "kill_at" in how else ""
            tally.add(f"SIGKILL during collect ({start}), {label}", problem, f"{how}{where}")
    return tally


@pytest.mark.slow
@pytest.mark.faults
def test_collect_survives_sigkill_at_every_write_and_at_random_times(tmp_path, capsys):
    tally = collect_suite(tmp_path)
    with capsys.disabled():
        print(f"\n{tally.table()}")
    assert not tally.failures, tally.table()
    assert tally.tried >= 50


if __name__ == "__main__":  # PYTHONPATH=src python tests/test_faults_collect.py
    with tempfile.TemporaryDirectory() as folder:
        result = collect_suite(Path(folder))
    print(result.table())
    sys.exit(1 if result.failures else 0)
