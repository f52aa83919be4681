"""`permakey reproduce NAME`: the paper's experiments and ablations, resumable, as plain commands.

The experiments are data (`permakey.experiments.definitions`); each expands into datasets,
training runs and evaluation groups (`permakey.experiments.plan`) that run as ordinary
`permakey collect / train / evaluate / show` commands (`permakey.experiments.runner`).
"""

from __future__ import annotations

import argparse

from permakey.errors import UserError
from permakey.experiments.definitions import EXPERIMENTS, PUBLIC_SCALES, SCALES
from permakey.training.config import PRECISIONS

ALL = "all"


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
        default=1,
        metavar="N",
        help="commands at a time, each in its own process with its share of the CPU threads "
        "(default 1: in this process)",
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


def _describe(plan, rates, workers: int) -> str:
    from permakey.experiments.runner import DONE, estimate_minutes, format_minutes, run_status

    to_collect = sum(not (d.path / "meta.json").is_file() for d in plan.datasets)
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
    from permakey.experiments.runner import run_status, train_argv

    for data in plan.datasets:
        state = "complete" if (data.path / "meta.json").is_file() else "to collect"
        print(f"  dataset {data.path}: {state}")
    for run in plan.runs:
        argv = train_argv(run.variant.method, run.path, run.new_argv, run.runtime)
        if argv is None:
            state = f"{run_status(run.path)}, kept"
        else:
            state = "to resume" if "--resume" in argv else "to train"
        print(f"  run {run.path}: {state}")


def run(args: argparse.Namespace) -> int:
    import torch

    from permakey.experiments.plan import plan_experiment
    from permakey.experiments.runner import (
        benchmark_rates,
        estimate_minutes,
        format_minutes,
        print_commands,
        run_plan,
    )

    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    scale = args.scale
    out = args.out or f"runs/reproduce-{scale.name}"
    names = list(EXPERIMENTS) if args.name == ALL else [args.name]
    plans = [
        plan_experiment(EXPERIMENTS[n], scale, out, args.device, args.precision) for n in names
    ]
    if args.print_commands:
        print_commands(plans)
        return 0
    rates = benchmark_rates()
    for plan in plans:
        print(_describe(plan, rates, args.workers))
        if args.dry_run:
            _dry_run(plan)
    print(f"(training speeds: {rates.source})")
    if args.dry_run:
        return 0
    if scale.name == "paper" and not torch.cuda.is_available() and not args.yes:
        work = sum(estimate_minutes(p, rates) for p in plans)
        raise UserError(
            f"--scale paper needs a GPU and this machine has none: about "
            f"{format_minutes(work / args.workers)} here (up to 100 epochs per run at "
            f"{rates.permakey_img_s['paper']:.1f} PermaKey images/s and "
            f"{rates.transporter_pairs_s:.1f} Transporter pairs/s, from {rates.source}); pass "
            "--yes to start anyway, or --print-commands for a cluster"
        )
    worst = 0
    for plan in plans:
        status = run_plan(plan, args.workers)
        if status == 130:
            return status
        worst = max(worst, status)
    return worst
