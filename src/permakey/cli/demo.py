"""`permakey demo`: the whole pipeline on one game, on a CPU, in minutes, ending in a report.

Each model trains for a fixed number of optimiser steps (`STEPS`), so the demo gives the same
numbers on any machine whatever its load; it says how long that should take here before it
starts (from the benchmark's training speeds, `runner.benchmark_rates`). ``--minutes`` gives
a time budget instead.

Each step is the library call behind a subcommand (`collect`, `train permakey`, `train
transporter`, `evaluate`, `show`), made in this process as `permakey reproduce` makes it
(`permakey.experiments.steps`) and printed as the command a user would type for it; the only
code of its own is the HTML report that gathers the results.
Every step is resumable: a complete dataset or a finished run is reused, an interrupted run is
resumed, so running the demo again after Ctrl-C continues where it stopped.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from permakey.data.noise import NOISE_KINDS
from permakey.errors import UserError
from permakey.evaluation.results import EvaluationResult
from permakey.experiments.steps import Step
from permakey.models.registry import METHODS

# SpaceInvaders: its objects (player, alien block, shields, bullets, scores) are many and
# distinct, and keypoints land on them within minutes of CPU training (RESULTS.md).
DEMO_GAME = "SpaceInvaders"
# Training preset per method: with `cpu-track`, PermaKey's keypoints follow the SpaceInvaders
# player within 10 CPU minutes (RESULTS.md, "cpu-track").
PRESETS = {"permakey": "cpu-track", "transporter": "cpu"}
# Optimiser steps per model: a step budget, so that the demo trains the same and gives the
# same numbers on any machine, however loaded. On the 2-core development machine they take
# about 6 and 4 minutes (the README's earlier 6 + 4-minute demo reached 507 PermaKey and
# 169 Transporter steps; benchmarks/results-cpu-2.json: cpu-track 54.6 images/s and
# Transporter 43.7 pairs/s in float32, training steps alone).
STEPS = {"permakey": 500, "transporter": 170}
# With --minutes (a time budget instead): PermaKey's share; Transporter gets the rest.
PERMAKEY_SHARE = 0.6
# Keypoints for games without a count in the authors' code.
DEFAULT_KEYPOINTS = 10
MARKER = "demo.json"
# Figures of `permakey show` that the report embeds, when present: file, heading, caption.
FIGURES = [
    ("figure2_clean.png", "Keypoints on test frames",
     "Rows: the frames, each model's keypoints, PermaKey's error maps per layer."),
    ("figure2_noisy.png", "Keypoints on Noisy Atari",
     "The same frames with bars, which are predictable and should not draw keypoints."),
    ("figure4_windows.png", "Gaussian windows", "Keypoint centres and their Gaussian windows."),
    ("episode_clean.gif", "A test episode", "Keypoints following a test episode."),
    ("episode_noisy.gif", "A noisy test episode", "Keypoints following a noisy test episode."),
]  # fmt: skip


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="collect a small dataset, train PermaKey and Transporter, evaluate, write a report",
        description="The whole pipeline on one game on a CPU: collect frames with object "
        "ground truth, train PermaKey and Transporter (cpu presets) for a fixed number of steps "
        f"each ({STEPS['permakey']} and {STEPS['transporter']}: about 10 minutes on 2 cores, "
        "the same numbers on any machine), evaluate both against the objects and the controls, "
        "draw the figures, and write a self-contained HTML report into --out. It prints its "
        "estimated time first. Rerunning continues an interrupted demo.",
    )
    parser.add_argument("--game", default=DEMO_GAME, help=f"Atari game (default {DEMO_GAME})")
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    for method, steps in STEPS.items():
        parser.add_argument(
            f"--{method}-steps",
            type=int,
            default=steps,
            metavar="N",
            help=f"optimiser steps of {method} (default {steps})",
        )
    parser.add_argument(
        "--minutes",
        type=float,
        help="a time budget instead of the step budgets: training minutes for both models "
        f"together (PermaKey gets {PERMAKEY_SHARE * 100:.0f} percent); the numbers then depend "
        "on the machine's speed and load",
    )
    parser.add_argument(
        "--num-keypoints",
        type=int,
        metavar="K",
        help="keypoints of both models (default: the game's count in the authors' code, e.g. "
        f"SpaceInvaders 25, Frostbite 20, MsPacman 7; {DEFAULT_KEYPOINTS} for other games)",
    )
    parser.add_argument(
        "--frames", type=int, default=5000, help="training frames to collect (default 5000)"
    )
    parser.add_argument(
        "--eval-frames",
        type=int,
        default=500,
        help="validation and test frames to collect, each (default 500)",
    )
    parser.add_argument(
        "--noise",
        choices=NOISE_KINDS,
        default="none",
        help="Noisy Atari bars for training and evaluation (default none; 'both' shows the "
        "distractor experiment)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of data and training")
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16", "auto"],
        default="fp32",
        help="training precision (default fp32, whatever the CPU; auto: bf16 where the CPU "
        "multiplies it natively, which gives other numbers)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    parser.add_argument(
        "--overwrite", action="store_true", help="start again in an existing demo folder"
    )
    parser.set_defaults(func=run)


def _permakey(step: Step) -> None:
    """Makes a step's library call, printed as its command; a non-zero status stops the demo."""
    from permakey.cli.reproduce import command
    from permakey.experiments.steps import run_step

    print(f"\n$ {command(step)}", flush=True)
    status = run_step(step)
    if status:
        raise UserError(f"demo step failed (exit status {status}): {command(step)}")


def _budgets(args) -> dict[str, dict[str, float]]:
    """Per method, its training budget: {"max_steps": N}, or {"time_budget": minutes}."""
    if args.minutes is None:
        return {m: {"max_steps": getattr(args, f"{m}_steps")} for m in METHODS}
    permakey = args.minutes * PERMAKEY_SHARE
    return {
        "permakey": {"time_budget": permakey},
        "transporter": {"time_budget": args.minutes - permakey},
    }


def estimate_minutes(args, rates) -> float:
    """Minutes the demo takes from scratch at ``rates`` (`runner.Rates`), step budgets or not."""
    from permakey.experiments.runner import COLLECT_FPS, EVALUATE_MIN_PER_1K
    from permakey.training import get_method

    minutes = (args.frames + 2 * args.eval_frames) / COLLECT_FPS / 60
    for method, budget in _budgets(args).items():
        if "time_budget" in budget:
            minutes += budget["time_budget"]
            continue
        batch = get_method(method).presets[PRESETS[method]].batch_size
        minutes += budget["max_steps"] * batch / rates.rate(method, PRESETS[method]) / 60
    evaluations = 1 if args.noise == "none" else 2
    # The evaluations, and the figures (about one more evaluation's time).
    return minutes + EVALUATE_MIN_PER_1K * args.eval_frames / 1000 * (evaluations + 1)


def _train(method: str, run: Path, data: Path, budget: dict, args) -> None:
    """Trains a method on its budget, or resumes it, or keeps a complete run."""
    from permakey.experiments.runner import DAMAGED, run_status, status_line, train_step

    new_run = {"data": str(data), "preset": PRESETS[method], "noise": args.noise,
               "seed": args.seed, "num_keypoints": args.num_keypoints,
               "precision": args.precision, "in_memory": True, "workers": 0,
               "progress": False}  # fmt: skip
    step = train_step(method, run, new_run, {**budget, "device": args.device})
    if step is None:
        if run_status(run) == DAMAGED:
            raise UserError(f"run {run}: {status_line(run)}")
        print(f"\n{method}: keeping the complete run in {run}")
        return
    _permakey(step)


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise UserError(f"{out} exists and is not a demo folder; choose another --out")
        if overwrite:
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _metric_table(result: EvaluationResult, heading: str):
    from permakey.evaluation.evaluate import table_rows
    from permakey.visualisation.report import Table

    return Table(
        ["metric", *(c.name for c in result.columns)],
        [[label, *values] for label, values in table_rows(result)],
        heading=heading,
        caption=f"{result.frames} test frames, noise {result.noise.kind}. Greyed columns are "
        "controls: each model's static template (its mean keypoint positions), the error-map "
        "peaks (PermaKey without its PointNet, ranked by strength in each frame), random "
        "points, and a perfect tracker of the objects (the ceiling).",
        control_columns=[c.name for c in result.controls],
        css_class="metrics",
    )


def _report(
    out: Path, args, evaluations: dict[str, EvaluationResult], timings: dict[str, float]
) -> Path:
    from permakey.evaluation.judgement import distractor_note, identity_note, tracking_note
    from permakey.runs.folder import read_run_json
    from permakey.visualisation.report import Config, Figure, Text, Timings, write_report

    runs = {m: read_run_json(out / "runs" / m) for m in METHODS}
    notes = [tracking_note(evaluations["clean"], m) for m in METHODS]
    notes += [identity_note(evaluations["clean"], m) for m in METHODS]
    if "noisy" in evaluations:
        notes += [distractor_note(evaluations["noisy"], m) for m in METHODS]
    trained = ", ".join(f"{m} {runs[m]['step']} steps ({runs[m]['status']})" for m in METHODS)
    budget = (
        f"{args.minutes:g} training minutes in all"
        if args.minutes is not None
        else " and ".join(f"{getattr(args, f'{m}_steps')} {m} steps" for m in METHODS)
    )
    sections = [
        Text(
            "What the keypoints do",
            [
                f"{args.game}, {args.frames} training frames, cpu presets, "
                f"{args.num_keypoints} keypoints per model, {budget}; trained: {trained}.",
                *notes,
            ],
        ),
        _metric_table(evaluations["clean"], "Metrics on clean test frames"),
    ]
    if "noisy" in evaluations:
        sections.append(
            _metric_table(evaluations["noisy"], f"Metrics on Noisy Atari ({args.noise})")
        )
    for name, heading, caption in FIGURES:
        path = out / "figures" / name
        if path.exists():
            sections.append(Figure(heading, path, caption=caption))
    sections.append(
        Config({m: {"model": runs[m]["model"], "train": runs[m]["train"]} for m in METHODS})
    )
    sections.append(Timings(timings))
    return write_report(out, f"PermaKey demo on {args.game}", *sections)


def run(args: argparse.Namespace) -> int:
    if args.minutes is not None and args.minutes <= 0:
        raise UserError(f"--minutes must be positive, got {args.minutes}")
    for method in METHODS:
        if getattr(args, f"{method}_steps") < 1:
            raise UserError(
                f"--{method}-steps must be >= 1, got {getattr(args, f'{method}_steps')}"
            )
    from permakey.data.games import resolve_game
    from permakey.evaluation.evaluate import read_result
    from permakey.experiments.definitions import KEYPOINTS, POLICY
    from permakey.experiments.runner import benchmark_rates, format_minutes
    from permakey.fileio import write_json_atomic

    args.game = resolve_game(args.game)
    if args.num_keypoints is None:
        args.num_keypoints = KEYPOINTS.get(args.game, DEFAULT_KEYPOINTS)
    out = Path(args.out)
    _prepare(out, args.overwrite)
    rates = benchmark_rates()
    print(
        f"demo: about {format_minutes(estimate_minutes(args, rates))} on this machine from "
        f"scratch (training speeds: {rates.source}); a rerun keeps what is complete",
        flush=True,
    )
    write_json_atomic(out / MARKER, {k: v for k, v in vars(args).items() if k != "func"})
    data, timings = out / "data", {}

    def timed(step: str, fn, *a) -> None:
        start = time.monotonic()
        fn(*a)
        timings[step] = timings.get(step, 0.0) + time.monotonic() - start

    collect = {
        "game": args.game, "out": str(data), "frames": args.frames,
        "val_frames": args.eval_frames, "test_frames": args.eval_frames, "seed": args.seed,
        "policy": POLICY,
    }  # fmt: skip
    timed("collect", _permakey, Step("collect", collect))
    budgets = _budgets(args)
    runs = [out / "runs" / m for m in METHODS]
    for method, run_dir in zip(METHODS, runs, strict=True):
        timed(f"train {method}", _train, method, run_dir, data, budgets[method], args)
    paths = [str(run_dir) for run_dir in runs]
    evaluations = {}
    for label, noise in [("clean", "none")] + (
        [("noisy", args.noise)] if args.noise != "none" else []
    ):
        path = out / f"evaluation_{label}.json"
        evaluate = {
            "runs": paths, "data": str(data), "noise": noise, "out": str(path),
            "weights": "last", "device": args.device,
        }  # fmt: skip
        timed("evaluate", _permakey, Step("evaluate", evaluate))
        evaluations[label] = read_result(path)
    show = {
        "runs": paths, "data": str(data), "out": str(out / "figures"), "noise": args.noise,
        "weights": "last", "overwrite": True, "device": args.device,
    }  # fmt: skip
    timed("figures", _permakey, Step("show", show))
    report = _report(out, args, evaluations, timings)
    print(
        f"\nreport: {report}\nmetrics: {', '.join(str(out / f'evaluation_{k}.json') for k in evaluations)}"
    )
    return 0
