"""Runs an `ExperimentPlan`: collect, then train, then evaluate and draw, resumably.

Every step is a library call held as data (`steps.Step`). With one worker the calls run in
this process (`steps.run_step`); with N workers each runs in its own subprocess
(`permakey.experiments.worker`, given the same step as JSON) with its share of the CPU
threads, so a failing or interrupted run cannot touch another. Stages are separated: every
dataset is collected (each once) before any training starts, and a group is evaluated once all
its runs are complete.

What is already done is kept: a dataset folder with its meta.json (written last, atomically),
a run whose run.json says finished, early-stopped or stopped (its budget), an evaluation or
figure folder newer than every run.json of its group. An interrupted run is resumed.

The runner never deletes a checkpoint: a run folder it cannot read (a damaged run.json, a run
without a resumable checkpoint, a folder of other files) is reported as damaged, with what to
do, and skipped; only an empty folder is replaced. It holds each run folder's lock
(`permakey.locks`) from its decision to the end of the training step, lending it to the
subprocess worker, so that two runners never train one run.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from permakey.data.store import meta_path
from permakey.errors import UserError
from permakey.experiments.plan import ExperimentPlan, GroupPlan, RunPlan
from permakey.experiments.steps import INTERRUPTED, USER_ERROR, Step, run_step
from permakey.fileio import write_text_atomic
from permakey.locks import held, hold_folder, lend
from permakey.runs.folder import (
    RUN_JSON,
    last_checkpoint,
    read_run_json,
    snapshot_path,
    snapshot_step,
)

# Statuses after which a run is complete: nothing to resume.
DONE = ("finished", "early-stopped", "stopped")
# A diverged run stopped on a non-finite loss; resuming would repeat it. It is reported.
DIVERGED = "diverged"
# A run folder that cannot be resumed or replaced without losing something: reported, skipped.
DAMAGED = "damaged"
# Frames/s of `permakey collect` with object ground truth (SpaceInvaders, this 2-core machine).
COLLECT_FPS = 450.0
# Minutes of `permakey evaluate` and `permakey show` per group, per 1,000 test frames.
EVALUATE_MIN_PER_1K = 1.0


def inspect_run(run: str | Path) -> tuple[str | None, str | None]:
    """A run folder's status and, for a damaged one, why and what to do.

    Returns:
        (None, None) when there is no run: no folder, or an empty one; (status in run.json,
        None); or (`DAMAGED`, one line naming the file): run.json missing beside other files,
        damaged or foreign, or a run to resume without a resumable checkpoint.
    """
    run = Path(run)
    try:
        if not run.exists() or (run.is_dir() and not any(run.iterdir())):
            return None, None
        info = read_run_json(run)
    except UserError as err:
        return DAMAGED, f"{err}; the runner leaves the folder as it is"
    except OSError as err:
        return DAMAGED, f"cannot read {run}: {err.strerror}"
    status = info.get("status")
    if status in (*DONE, DIVERGED):
        return status, None
    checkpoint = last_checkpoint(run)
    if checkpoint is None or not checkpoint.state.is_file():
        return DAMAGED, (
            f"{run} is a run ({status}) without a resumable checkpoint (a version before "
            "checkpoint folders, killed in its first epoch): remove the folder to train it again"
        )
    return status, None


def run_status(run: str | Path) -> str | None:
    """The status of a run folder (`inspect_run`): None for no run, `DAMAGED`, or run.json's."""
    return inspect_run(run)[0]


def status_line(run: str | Path) -> str:
    """How a run the runner does not train is reported: "finished, kept", "damaged: ...".

    Raises:
        ValueError: the run is to be trained (`train_step` gives a step).
    """
    status, damage = inspect_run(run)
    if status == DAMAGED:
        return f"{DAMAGED}, skipped: {damage}"
    if status in (*DONE, DIVERGED):
        return f"{status}, kept"
    raise ValueError(f"run {run} is to be trained ({status})")


def dataset_complete(data: str | Path) -> bool:
    """Whether a dataset folder is complete: its meta.json is written last, atomically."""
    return meta_path(data).is_file()


def train_step(
    kind: str,
    run: str | Path,
    options: Mapping[str, Any],
    runtime: Mapping[str, Any] | None = None,
) -> Step | None:
    """The training step that brings a run folder to completion.

    Args:
        kind: "permakey" or "transporter".
        run: the run folder.
        options: arguments of `training.start.new_run` besides ``kind``, ``out`` and the
            runtime options (data, preset, model, seed...).
        runtime: training options that may also be given when resuming (budgets, device,
            loading; `training.config.RUNTIME_FIELDS`).

    Returns:
        None when the run is complete (`DONE`), diverged or damaged (`status_line` says
        which); a "resume" step (``kind``, ``run``, ``*runtime``) for a run with a checkpoint
        to continue from; otherwise a fresh start, a "train" step (``kind``, ``out``,
        ``*options``, ``*runtime``, and ``overwrite`` when an empty folder is in the way).
    """
    run = Path(run)
    runtime = dict(runtime or {})
    status = run_status(run)
    if status in (*DONE, DIVERGED, DAMAGED):
        return None
    if status is not None:
        return Step("resume", {"kind": kind, "run": str(run), **runtime})
    step = Step("train", {"kind": kind, "out": str(run), **options, **runtime})
    return step.with_kwargs(overwrite=True) if run.exists() else step


def current_step(step: Step) -> Step | None:
    """``step`` as it stands now: a training step recomputed from its run folder (`train_step`).

    A cluster job runs this when it starts, so that a job restarted after a preemption or a
    crash resumes its run from the checkpoint it left instead of starting again, and a job whose
    run completed meanwhile does nothing. Other steps are returned unchanged.

    Returns:
        None when the step's run is complete or diverged; else the step to run.
    """
    from permakey.training.config import RUNTIME_FIELDS

    if step.kind not in ("train", "resume"):
        return step
    kwargs = dict(step.kwargs)
    kind, run = kwargs.pop("kind"), kwargs.pop("out" if step.kind == "train" else "run")
    kwargs.pop("overwrite", None)  # `train_step` adds it where a folder without checkpoint is
    runtime = {k: v for k, v in kwargs.items() if k in RUNTIME_FIELDS}
    options = {k: v for k, v in kwargs.items() if k not in RUNTIME_FIELDS}
    return train_step(kind, run, options, runtime)


@dataclass(frozen=True)
class Rates:
    """Training speeds for time estimates.

    Attributes:
        items_per_s: per method, per training preset, training items/s (PermaKey: images,
            Transporter: frame pairs); a preset not listed goes at its method's "paper" rate.
        source: where the numbers come from.
    """

    items_per_s: dict[str, dict[str, float]]
    source: str

    def rate(self, method: str, preset: str) -> float:
        """Training items/s of ``method`` with ``preset``."""
        table = self.items_per_s[method]
        return table.get(preset, table["paper"])


DEFAULT_RATES = Rates(
    {
        "permakey": {"paper": 8.0, "authors-code": 2.0, "cpu": 26.0, "cpu-track": 36.0},
        "transporter": {"paper": 25.0},
    },
    "measured on this project's 2-core development CPU in float32: PermaKey paper preset ~8 "
    "images/s (training loop), cpu preset ~26 and Transporter ~25 frame pairs/s "
    "(benchmarks/bench.py --quick, 1 thread); cpu-track ~1.4x cpu (README)",
)


def benchmark_rates(folder: str | Path = "benchmarks") -> Rates:
    """Rates from a full `benchmarks/bench.py` JSON in ``folder``, else `DEFAULT_RATES`."""
    for path in sorted(Path(folder).glob("*.json")):
        try:
            bench = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(bench, dict) or bench.get("quick", True):
            continue
        paper = bench.get("permakey_train_img_s_fp32")
        pairs = bench.get("transporter_train_pairs_s")
        if not paper or not pairs:
            continue
        permakey = dict(DEFAULT_RATES.items_per_s["permakey"], paper=paper)
        for preset, key in (
            ("authors-code", "permakey_authors_train_img_s_fp32"),
            ("cpu", "permakey_cpu_preset_train_img_s_fp32"),
            ("cpu-track", "permakey_cpu_track_preset_train_img_s_fp32"),
        ):
            permakey[preset] = bench.get(key) or permakey[preset]
        device = bench.get("machine", {}).get("device_name", "unknown device")
        rates = {"permakey": permakey, "transporter": {"paper": pairs}}
        return Rates(rates, f"{path} (float32 on {device})")
    return DEFAULT_RATES


def run_minutes(run: RunPlan, plan: ExperimentPlan, rates: Rates) -> float:
    """Estimated minutes of one training run from scratch."""
    from permakey.training import get_method

    scale = plan.scale
    method = run.variant.method
    preset = run.options["preset"]
    rate = rates.rate(method, preset)
    # Up to the maximum epochs (early stopping may end a run sooner) or the step budget.
    items = scale.epochs * scale.train_frames
    steps = run.runtime.get("max_steps")
    if steps is not None:
        items = min(items, steps * get_method(method).presets[preset].batch_size)
    return items / rate / 60 + scale.overhead_min


def estimate_minutes(plan: ExperimentPlan, rates: Rates, pending_only: bool = True) -> float:
    """Estimated minutes of work (summed over workers) to finish an experiment.

    Args:
        plan: the experiment.
        rates: training speeds.
        pending_only: count only datasets not collected and runs not complete.
    """
    scale = plan.scale
    total = 0.0
    for data in plan.datasets:
        if not (pending_only and dataset_complete(data.path)):
            total += (scale.train_frames + 2 * scale.eval_frames) / COLLECT_FPS / 60
    for run in plan.runs:
        if not (pending_only and run_status(run.path) in (*DONE, DIVERGED, DAMAGED)):
            total += run_minutes(run, plan, rates)
    per_group = EVALUATE_MIN_PER_1K * scale.eval_frames / 1000
    return total + per_group * sum(len(g.runs) for g in plan.groups)


def format_minutes(minutes: float) -> str:
    """'12 min' below two hours, else hours (and days past two days)."""
    if minutes < 120:
        return f"{minutes:.0f} min"
    hours = minutes / 60
    return f"{hours:.0f} h" if hours < 48 else f"{hours:.0f} h ({hours / 24:.0f} days)"


Execute = Callable[[Step, Path], int]
# How a step is named in progress lines and logs (the command line passes its own rendering).
Describe = Callable[[Step], str]


def in_process(describe: Describe = str) -> Execute:
    """An `Execute` that runs each step in this process; output goes to the terminal."""

    def execute(step: Step, log: Path) -> int:
        print(f"\n$ {describe(step)}", flush=True)
        return run_step(step)

    return execute


def in_subprocess(threads: int, describe: Describe = str) -> Execute:
    """An `Execute` that runs each step in a subprocess with ``threads`` CPU threads.

    The subprocess (`permakey.experiments.worker`, given the step as JSON) writes its output
    to ``log``; OMP_NUM_THREADS and MKL_NUM_THREADS bound its torch threads so that N workers
    share the cores instead of oversubscribing them.
    """

    def execute(step: Step, log: Path) -> int:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        # The runner holds the run folder's lock: the worker borrows it.
        folder = step.kwargs.get("out") or step.kwargs.get("run")
        lent, fds = lend([folder]) if folder and held(folder) else ({}, [])
        env.update(lent)
        log.parent.mkdir(parents=True, exist_ok=True)
        line = describe(step)
        print(f"start: {line}  (log {log})", flush=True)
        with open(log, "a") as f:
            f.write(f"$ {line}\n")
            f.flush()
            status = subprocess.call(
                [sys.executable, "-m", "permakey.experiments.worker", step.to_json()],
                stdout=f,
                stderr=subprocess.STDOUT,
                env=env,
                pass_fds=fds,
            )
        print(f"done ({status}): {log.stem}", flush=True)
        return status

    return execute


# A job of a stage: its label and what runs it, returning an exit status (None: nothing to do).
Job = tuple[str, Callable[[], "int | None"]]


def step_jobs(steps: list[tuple[str, Step, Path]], execute: Execute) -> list[Job]:
    """(label, step, log) as jobs that execute the step."""
    return [(label, lambda s=step, lg=log: execute(s, lg)) for label, step, log in steps]


def run_jobs(jobs: list[Job], workers: int) -> dict:
    """Runs jobs, ``workers`` at a time; {label: exit status} of those that ran a step.

    After an interrupted job (status 130) no further job starts; the running ones finish.
    """
    results: dict[str, int] = {}
    stop = threading.Event()

    def one(job: Job) -> None:
        label, run = job
        if stop.is_set():
            return
        status = run()
        if status is None:
            return
        results[label] = status
        if status == INTERRUPTED:
            stop.set()

    if workers == 1:
        for job in jobs:
            one(job)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            try:
                list(pool.map(one, jobs))
            except KeyboardInterrupt:
                # The terminal's Ctrl-C reaches the subprocesses too: they save and stop.
                stop.set()
                raise
    return results


def _newer_than(path: Path, inputs: Sequence[Path]) -> bool:
    """Whether ``path`` exists and was written after every file of ``inputs``."""
    if not path.exists():
        return False
    mtime = path.stat().st_mtime
    return all(p.exists() and p.stat().st_mtime <= mtime for p in inputs)


def group_inputs(group: GroupPlan) -> list[Path]:
    """The files a group's evaluation and figures are made from: each run's run.json, or the
    snapshot of a curve point (which does not change when the run trains on)."""
    step = snapshot_step(group.weights)
    if step is None:
        return [r.path / RUN_JSON for r in group.runs]
    return [snapshot_path(r.path, step) for r in group.runs]


def _label(*parts: str) -> str:
    return "-".join(p.replace("/", "-") for p in parts)


def write_table(group: GroupPlan) -> None:
    """Writes the group's markdown table (`format_table`) from its evaluation JSON."""
    from permakey.evaluation.evaluate import format_table, read_result

    write_text_atomic(group.table, format_table(read_result(group.evaluation)) + "\n")


def write_tables(plan: ExperimentPlan) -> Path:
    """Gathers every evaluated group's table, with its dataset and figures, into
    OUT/<experiment>/tables.md, saying how many groups are still missing; first, for an
    experiment with ``clean_too``, each game's summary (`summary.summary_table`)."""
    lines = [f"# {plan.experiment.name} ({plan.scale.name} scale)", "", plan.experiment.reproduces]
    missing = [g.name for g in plan.groups if not g.table.is_file()]
    if missing:
        named = ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else "")
        lines += ["", f"Incomplete: {len(missing)} of {len(plan.groups)} groups not evaluated yet "
                  f"({named})."]  # fmt: skip
    if plan.experiment.clean_too:
        from permakey.experiments.summary import summary_table

        for game in dict.fromkeys(run.variant.game for run in plan.runs):
            table = summary_table(plan, game)
            if table is not None:
                lines += ["", f"## {game}: every run", "", table]
    for group in plan.groups:
        if group.name in missing:
            continue
        lines += [
            "",
            f"## {group.name}",
            "",
            f"Dataset {group.data.path.name}; noise {group.noise}; weights {group.weights}; "
            + (f"figures in figures/{group.name}/; " if group.show is not None else "")
            + f"JSON in {group.evaluation.name}.",
            "",
            group.table.read_text().rstrip(),
        ]
    write_text_atomic(plan.tables, "\n".join(lines) + "\n")
    return plan.tables


def write_summaries(
    plan: ExperimentPlan, groups: Sequence[GroupPlan] | None = None
) -> list[GroupPlan]:
    """Writes the table of each of ``groups`` (default: every group) that is evaluated, then,
    if any is, the experiment's tables and its curve; prints where they are.

    Returns:
        The groups tabled.
    """
    tabled = [g for g in (plan.groups if groups is None else groups) if g.evaluation.is_file()]
    for group in tabled:
        write_table(group)
    if tabled:
        print(f"\ntables: {write_tables(plan)}")
        figure = write_curve_figure(plan)
        if figure is not None:
            print(f"curve: {figure}")
    return tabled


def write_curve_figure(plan: ExperimentPlan) -> Path | None:
    """Draws the runs with a curve (`summary.curve_figure_of`) into
    OUT/<experiment>/figures/curve.png; None (nothing written) without an evaluated point."""
    from permakey.experiments.summary import curve_figure_of
    from permakey.visualisation.figures import save_png

    figure = curve_figure_of(plan)
    if figure is None:
        return None
    path = plan.folder / "figures" / "curve.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(figure, path)
    return path


def _training_job(
    run: RunPlan, quiet: Mapping[str, Any], execute: Execute, logs: Path
) -> Callable[[], int | None]:
    """The job that brings one run to completion under its lock: decides (`train_step`) and
    trains; None when there is nothing to do (reported), 2 when another process holds it."""

    # Jobs of a cluster scheduler (`slurm.JobLauncher`) run elsewhere and take the lock
    # themselves when they train (`permakey.training.loop`); the launcher must not hold it.
    remote = getattr(execute, "remote", False)

    def job() -> int | None:
        try:
            with contextlib.nullcontext() if remote else hold_folder(run.path, "run folder"):
                step = train_step(
                    run.variant.method, run.path, run.options, {**run.runtime, **quiet}
                )
                if step is None:
                    print(f"run {run.path}: {status_line(run.path)}", flush=True)
                    return None
                return execute(step, logs / f"{_label('train', run.variant.name)}.log")
        except UserError as err:  # another process trains it, or its lock cannot be made
            print(f"run {run.path}: skipped: {err}", flush=True)
            return USER_ERROR

    return job


def run_plan(
    plan: ExperimentPlan,
    workers: int = 1,
    execute: Execute | None = None,
    describe: Describe = str,
) -> int:
    """Collects, trains, evaluates and draws what an experiment still lacks.

    Args:
        plan: the experiment.
        workers: steps at a time; 1 runs them in this process.
        execute: how a step runs (default: `in_process` for one worker, else
            `in_subprocess` with the cores shared out).
        describe: how the default executors name a step in progress lines and logs
            (default: the call, ``collect(game='Frostbite', ...)``).

    Returns:
        0 when every step is complete, 1 when a step failed (the others still ran), 130 when
        interrupted.
    """
    if execute is None:
        threads = max(1, (os.cpu_count() or 1) // workers)
        execute = in_process(describe) if workers == 1 else in_subprocess(threads, describe)
    logs = plan.folder / "logs"
    # Progress bars of parallel workers would interleave in their logs.
    quiet = {} if workers == 1 else {"progress": False}
    jobs = []
    for data in plan.datasets:
        if dataset_complete(data.path):
            print(f"dataset {data.path}: complete, kept")
        else:
            label = _label("collect", data.game)
            jobs.append((label, data.collect.with_kwargs(**quiet), logs / f"{label}.log"))
    results = run_jobs(step_jobs(jobs, execute), workers)
    if INTERRUPTED in results.values():
        return INTERRUPTED
    missing = {d.game for d in plan.datasets if not dataset_complete(d.path)}

    runs = [run for run in plan.runs if run.variant.game not in missing]
    training = [
        (_label("train", run.variant.name), _training_job(run, quiet, execute, logs))
        for run in runs
    ]
    results.update(run_jobs(training, workers))
    if INTERRUPTED in results.values():
        return INTERRUPTED

    evaluations, shows, ready = [], [], []
    for group in plan.groups:
        statuses = [run_status(r.path) for r in group.runs]
        if any(s not in DONE for s in statuses):
            print(f"group {group.name}: not evaluated, runs incomplete or diverged: {statuses}")
            continue
        ready.append(group)
        inputs = group_inputs(group)
        label = _label("evaluate", group.name)
        if _newer_than(group.evaluation, inputs):
            print(f"evaluation {group.evaluation}: up to date, kept")
        else:
            evaluations.append((label, group.evaluate, logs / f"{label}.log"))
        if group.show is None:
            continue
        label = _label("show", group.name)
        if _newer_than(group.figures, inputs):
            print(f"figures {group.figures}: up to date, kept")
        else:
            shows.append((label, group.show, logs / f"{label}.log"))
    results.update(run_jobs(step_jobs(evaluations, execute), workers))
    if INTERRUPTED in results.values():
        return INTERRUPTED
    results.update(run_jobs(step_jobs(shows, execute), workers))
    if INTERRUPTED in results.values():
        return INTERRUPTED
    tabled = write_summaries(plan, ready)
    failed = sorted(label for label, status in results.items() if status)
    failed += [f"run {run.path} ({DAMAGED})" for run in runs if run_status(run.path) == DAMAGED]
    complete = len(tabled) == len(plan.groups) and not failed
    if failed:
        print(f"failed: {', '.join(failed)} (their logs are in {logs} with more than one worker)")
    return 0 if complete else 1
