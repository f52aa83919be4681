"""`permakey demo`: the whole pipeline on one game, on a CPU, in minutes, ending in a report.

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
# Share of the training budget for PermaKey; Transporter gets the rest.
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
        description="The whole pipeline on one game within a CPU budget: collect frames with "
        "object ground truth, train PermaKey and Transporter (cpu presets), evaluate both "
        "against the objects and the controls, draw the figures, and write a self-contained "
        "HTML report into --out. Rerunning continues an interrupted demo.",
    )
    parser.add_argument("--game", default=DEMO_GAME, help=f"Atari game (default {DEMO_GAME})")
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument(
        "--minutes",
        type=float,
        default=10.0,
        help="training minutes for both models together (default 10; PermaKey gets "
        f"{PERMAKEY_SHARE * 100:.0f} percent)",
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


def _train(method: str, run: Path, data: Path, minutes: float, args) -> None:
    """Trains a method under a time budget, or resumes it, or keeps a complete run."""
    from permakey.experiments.runner import DAMAGED, run_status, status_line, train_step

    new_run = {"data": str(data), "preset": PRESETS[method], "noise": args.noise,
               "seed": args.seed, "num_keypoints": args.num_keypoints, "time_budget": minutes,
               "in_memory": True, "workers": 0, "progress": False}  # fmt: skip
    step = train_step(method, run, new_run, {"device": args.device})
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
    from permakey.evaluation.judgement import identity_note, tracking_note
    from permakey.runs.folder import read_run_json
    from permakey.visualisation.report import Config, Figure, Text, Timings, write_report

    runs = {m: read_run_json(out / "runs" / m) for m in METHODS}
    notes = [tracking_note(evaluations["clean"], m) for m in METHODS]
    notes += [identity_note(evaluations["clean"], m) for m in METHODS]
    if "noisy" in evaluations:
        noisy = evaluations["noisy"]
        r = noisy.headline_radius
        for m in METHODS:
            metrics = noisy.column(m).metrics
            share, chance = metrics.distractor_share[r], metrics.distractor_chance[r]
            notes.append(
                f"{m} on Noisy Atari ({args.noise} bars): {share:.2f} of its keypoints lie on a "
                f"bar (within {r} px), where random points would give {chance:.2f}."
            )
    trained = ", ".join(f"{m} {runs[m]['step']} steps ({runs[m]['status']})" for m in METHODS)
    sections = [
        Text(
            "What the keypoints do",
            [
                f"{args.game}, {args.frames} training frames, cpu presets, "
                f"{args.num_keypoints} keypoints per model, {args.minutes:g} training minutes in "
                f"all; trained: {trained}.",
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
    if args.minutes <= 0:
        raise UserError(f"--minutes must be positive, got {args.minutes}")
    from permakey.data.games import resolve_game
    from permakey.evaluation.evaluate import read_result
    from permakey.experiments.definitions import KEYPOINTS, POLICY
    from permakey.fileio import write_json_atomic

    args.game = resolve_game(args.game)
    if args.num_keypoints is None:
        args.num_keypoints = KEYPOINTS.get(args.game, DEFAULT_KEYPOINTS)
    out = Path(args.out)
    _prepare(out, args.overwrite)
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
    budgets = {"permakey": args.minutes * PERMAKEY_SHARE}
    budgets["transporter"] = args.minutes - budgets["permakey"]
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
