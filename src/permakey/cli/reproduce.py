"""`permakey reproduce NAME`: the paper's experiments and ablations, resumable, as plain commands.

The experiments are data (`permakey.experiments.definitions`); each expands into datasets,
training runs and evaluation groups (`permakey.experiments.plan`) whose steps are library
calls (`permakey.experiments.steps.Step`) that `permakey.experiments.runner` executes. Each
step is also an ordinary `permakey collect / train / evaluate / show` command: `command_line`
renders it, for --print-commands and for the progress lines.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from functools import cache

from permakey.errors import UserError
from permakey.experiments.definitions import EXPERIMENTS, PUBLIC_SCALES, SCALES
from permakey.experiments.steps import Step
from permakey.training.config import PRECISIONS

ALL = "all"
# `--launcher` values, and the submitit cluster of the job launchers.
LAUNCHERS = ("local", "slurm", "submitit-local")
CLUSTERS = {"slurm": "slurm", "submitit-local": "local"}


def add_parser(subparsers) -> None:
    names = [*EXPERIMENTS, ALL]
    parser = subparsers.add_parser(
        "reproduce",
        help="run the paper's experiments and ablations (collect, train, evaluate, figures)",
        description="Runs a named experiment of the paper: its datasets are collected once "
        "each, its runs trained (complete runs are kept, interrupted ones resumed), evaluated "
        "together per dataset and noise kind (a table in markdown and JSON) and drawn. "
        "Experiments: "
        + "; ".join(f"{e.name}: {e.reproduces}" for e in EXPERIMENTS.values())
        + f"; {ALL}: every one of them.",
    )
    parser.add_argument("name", choices=names, metavar="NAME", help=", ".join(names))
    parser.add_argument(
        "--scale",
        default="cpu",
        # "tiny" (tests) is accepted but not advertised.
        type=_scale,
        metavar="{" + ",".join(PUBLIC_SCALES) + "}",
        help="paper: 85,000 / 5,000 / 5,000 frames and up to 100 epochs with early stopping, "
        "paper presets (needs a GPU); cpu: 5,000 / 500 / 500 frames, cpu presets, 360 PermaKey "
        "and 170 Transporter steps per model, about 6.5 and 4 minutes on 2 CPU cores "
        "(default: cpu)",
    )
    parser.add_argument(
        "--out", metavar="DIR", help="output folder (default: runs/reproduce-SCALE)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="steps at a time: with --launcher local, each in its own process with its share "
        "of the CPU threads (default 1: in this process); with a job launcher, jobs in flight "
        "(default: every job of a stage at once)",
    )
    jobs = parser.add_argument_group(
        "cluster jobs",
        "--launcher slurm submits every step as a Slurm job through submitit (the `cluster` "
        "extra): the same stages, and complete steps kept, as with --launcher local; a training "
        "job that is preempted or reaches its time limit saves a checkpoint, is requeued and "
        "resumes from it. --launcher submitit-local runs the same jobs as processes of this "
        "machine (submitit's local executor).",
    )
    jobs.add_argument(
        "--launcher",
        choices=LAUNCHERS,
        default="local",
        help="local: in this process or --workers subprocesses (default); slurm: Slurm jobs; "
        "submitit-local: the jobs on this machine",
    )
    jobs.add_argument(
        "--cpus",
        type=int,
        default=4,
        metavar="N",
        help="CPU cores (and torch threads) per job (default 4)",
    )
    jobs.add_argument(
        "--gpus", type=int, default=0, metavar="G", help="GPUs per job, 0 or 1 (default 0)"
    )
    jobs.add_argument(
        "--mem", type=float, default=16.0, metavar="GB", help="memory per job in GB (default 16)"
    )
    jobs.add_argument(
        "--time",
        type=int,
        default=240,
        metavar="MIN",
        help="time limit per job in minutes; a training job past it is requeued and resumes, "
        "up to 3 times (default 240)",
    )
    jobs.add_argument("--partition", help="Slurm partition (default: the cluster's)")
    jobs.add_argument("--account", help="Slurm account (default: yours)")
    jobs.add_argument(
        "--slurm-folder",
        metavar="DIR",
        help="submitit's folder: job pickles and logs, named by job id (default: OUT/jobs); "
        "each step's output also goes to OUT/<experiment>/logs/",
    )
    parser.add_argument(
        "--print-commands",
        action="store_true",
        help="print every step as a `permakey ...` line in dependency order (for a cluster "
        "scheduler) and exit",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="say what is complete, what would run and how long it would take, and exit",
    )
    parser.add_argument(
        "--tables-only",
        action="store_true",
        help="write the tables (and the curve figure) of what is evaluated so far, run "
        "nothing, and exit",
    )
    parser.add_argument(
        "--device", default="auto", help="auto, cpu, cuda or mps for every step (default: auto)"
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="training precision of every run (default: auto, bf16 where the hardware has it)",
    )
    parser.add_argument(
        "--yes", action="store_true", help="start --scale paper on a machine without a GPU"
    )
    parser.set_defaults(func=run)


def _scale(name: str):
    if name not in SCALES:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {name!r} (choose from {', '.join(PUBLIC_SCALES)})"
        )
    return SCALES[name]


# Step arguments whose option says the opposite (collect's ``progress`` is ``--quiet``) or has
# another name; every other argument is the option of its own name.
NEGATED = {("collect", "progress"): "quiet", ("collect", "objects"): "no_objects"}
RENAMED = {("collect", "keep_raw"): "raw"}


@cache
def _actions(command: tuple[str, ...]) -> dict[str, argparse.Action]:
    """The options of subcommand ``command`` (e.g. ("train", "permakey")), by destination."""
    from permakey.cli.main import build_parser

    parser = build_parser()
    for word in command:
        (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = sub.choices[word]
    return {a.dest: a for a in parser._actions if a.option_strings}


def command_line(step: Step) -> list[str]:
    """The `permakey` arguments (without the program name) that make the call of ``step``.

    Raises:
        ValueError: an argument that no option of the command sets.
    """
    kwargs = dict(step.kwargs)
    if step.kind == "collect":
        command, words = ("collect",), [kwargs.pop("game")]
    elif step.kind in ("train", "resume"):
        command, words = ("train", kwargs.pop("kind")), []
        if step.kind == "resume":
            words += ["--resume", kwargs.pop("run")]
    else:
        command, words = (step.kind,), [*kwargs.pop("runs")]
    actions = _actions(command)
    for name, value in kwargs.items():
        if (step.kind, name) in NEGATED:
            name, value = NEGATED[step.kind, name], not value
        name = RENAMED.get((step.kind, name), name)
        if name not in actions:
            raise ValueError(f"`permakey {' '.join(command)}` has no option for {name!r}")
        action = actions[name]
        if name == "model":  # --model KEY=JSON, one per field
            words += [
                w
                for key, v in value.items()
                for w in (action.option_strings[0], f"{key}={json.dumps(v, separators=(',', ':'))}")
            ]
        elif isinstance(action, argparse.BooleanOptionalAction):
            words.append(action.option_strings[0 if value else 1])  # --x / --no-x
        elif isinstance(value, bool):  # a flag: given or not
            words += [action.option_strings[0]] if value else []
        elif isinstance(value, list | tuple):
            words += [action.option_strings[0], *value]
        else:
            words += [action.option_strings[0], value]
    return [*command, *map(str, words)]


def command(step: Step) -> str:
    """The shell line `permakey ...` of ``step``."""
    return shlex.join(["permakey", *command_line(step)])


def print_commands(plans, file=None) -> None:
    """Prints every step of ``plans`` as `permakey ...` lines in dependency order.

    Stages are separated by comment lines: collect (each dataset once, even where several
    experiments share it), train, evaluate, show.
    """
    file = file or sys.stdout
    datasets = {d.path: d.collect for plan in plans for d in plan.datasets}
    stages = [
        ("collect every dataset (once each) before any training", list(datasets.values())),
        (
            "train: independent runs, any order or all at once; continue an interrupted one "
            "with `permakey train METHOD --resume RUN`",
            [r.start for plan in plans for r in plan.runs],
        ),
        (
            "evaluate each group once its runs are complete",
            [g.evaluate for plan in plans for g in plan.groups],
        ),
        ("figures", [g.show for plan in plans for g in plan.groups if g.show is not None]),
    ]
    for plan in plans:
        print(
            f"# {plan.experiment.name} ({plan.scale.name} scale): {plan.experiment.reproduces}",
            file=file,
        )
    for i, (heading, steps) in enumerate(stages, 1):
        print(f"# stage {i}: {heading}", file=file)
        for step in steps:
            print(command(step), file=file)
    print(
        "# then, for the markdown tables: the same `permakey reproduce` without "
        "--print-commands (it keeps every complete step)",
        file=file,
    )


def _describe(plan, rates, workers: int) -> str:
    from permakey.experiments.runner import (
        DONE,
        dataset_complete,
        estimate_minutes,
        format_minutes,
        run_status,
    )

    to_collect = sum(not dataset_complete(d.path) for d in plan.datasets)
    to_train = sum(run_status(r.path) not in DONE for r in plan.runs)
    work = estimate_minutes(plan, rates)
    return (
        f"{plan.experiment.name} ({plan.scale.name} scale, {plan.folder}): "
        f"{len(plan.runs)} runs ({to_train} to train), {len(plan.datasets)} datasets "
        f"({to_collect} to collect), {len(plan.groups)} evaluation groups; about "
        f"{format_minutes(work)} of work, {format_minutes(work / workers)} with {workers} "
        "worker(s)"
    )


def _dry_run(plan) -> None:
    from permakey.experiments.runner import dataset_complete, status_line, train_step

    for data in plan.datasets:
        state = "complete" if dataset_complete(data.path) else "to collect"
        print(f"  dataset {data.path}: {state}")
    for run in plan.runs:
        step = train_step(run.variant.method, run.path, run.options, run.runtime)
        state = status_line(run.path) if step is None else f"to {step.kind}"
        print(f"  run {run.path}: {state}")


def _job_launcher(args: argparse.Namespace, out: str):
    """The `JobLauncher` of --launcher slurm / submitit-local, with the job resources given."""
    from pathlib import Path

    from permakey.experiments.slurm import JobLauncher, Resources, make_executor

    resources = Resources(
        cpus=args.cpus, gpus=args.gpus, mem_gb=args.mem, time_min=args.time,
        partition=args.partition, account=args.account,
    )  # fmt: skip
    folder = args.slurm_folder or Path(out) / "jobs"
    executor = make_executor(CLUSTERS[args.launcher], folder, resources)
    return JobLauncher(executor, resources.cpus, describe=command)


def run(args: argparse.Namespace) -> int:
    import torch

    from permakey.experiments.plan import plan_experiment
    from permakey.experiments.runner import (
        benchmark_rates,
        estimate_minutes,
        format_minutes,
        run_plan,
        write_summaries,
    )

    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    local = args.launcher == "local"
    scale = args.scale
    out = args.out or f"runs/reproduce-{scale.name}"
    names = list(EXPERIMENTS) if args.name == ALL else [args.name]
    plans = [
        plan_experiment(EXPERIMENTS[n], scale, out, args.device, args.precision) for n in names
    ]
    if args.print_commands:
        print_commands(plans)
        return 0
    if args.tables_only:
        for plan in plans:
            if not write_summaries(plan):
                print(f"{plan.experiment.name}: nothing evaluated yet in {plan.folder}")
        return 0
    rates = benchmark_rates()
    for plan in plans:
        at_once = args.workers or (1 if local else len(plan.runs))
        print(_describe(plan, rates, at_once))
        if args.dry_run:
            _dry_run(plan)
    print(f"(training speeds: {rates.source})")
    if args.dry_run:
        return 0
    workers = args.workers or 1
    # Jobs ask for their GPUs (--gpus); only a local launcher runs on this machine's.
    if local and scale.name == "paper" and not torch.cuda.is_available() and not args.yes:
        work = sum(estimate_minutes(p, rates) for p in plans)
        raise UserError(
            f"--scale paper needs a GPU and this machine has none: about "
            f"{format_minutes(work / workers)} here (up to 100 epochs per run at "
            f"{rates.rate('permakey', 'paper'):.1f} PermaKey images/s and "
            f"{rates.rate('transporter', 'paper'):.1f} Transporter pairs/s, from {rates.source}); pass "
            "--yes to start anyway, --launcher slurm for a cluster, or --print-commands"
        )
    if local:
        return _run_plans(plans, lambda plan: run_plan(plan, workers, describe=command))
    launcher = _job_launcher(args, out)
    # Every job of a stage at once unless --workers limits the jobs in flight.
    jobs = args.workers or max(len(p.runs) + len(p.datasets) + len(p.groups) for p in plans)
    with launcher.cancelling_on_interrupt():
        return _run_plans(
            plans, lambda plan: run_plan(plan, jobs, execute=launcher, describe=command)
        )


def _run_plans(plans, run_one) -> int:
    """Runs the plans in order; stops after an interrupted one. The worst exit status."""
    worst = 0
    for plan in plans:
        status = run_one(plan)
        if status == 130:
            return status
        worst = max(worst, status)
    return worst
