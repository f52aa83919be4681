"""`permakey evaluate`: keypoint metrics of trained runs against object ground truth."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from permakey.cli.runs_options import add_bar_arguments, add_runs_arguments, bars_from_args
from permakey.errors import UserError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="measure keypoints of trained runs against object ground truth",
        description=(
            "Runs every model on the same frames of a dataset split (with the same Noisy Atari "
            "bars for every model), scores object recall, keypoint precision and F1 at "
            "r = 0, 2, 4 pixels, per-category recall, distractor share, the share of the error "
            "maps' mass on the bars grown by 2 pixels (models with error maps, noisy frames: "
            "summed, per layer, and on the bars' interior, edges, ends, crossing and sprites), "
            "border share, motion, seed stability and identity (mean purity: how much of its time on objects a "
            "keypoint spends on one; objects kept: tracks that one keypoint holds in 80 percent of "
            "their frames), next to the controls (random points, each model's static "
            "template, PermaKey's error-map peaks, a perfect object tracker). Prints a "
            "side-by-side table and writes the numbers as JSON."
        ),
    )
    add_runs_arguments(parser, "none", "Noisy Atari bars painted over the frames")
    add_bar_arguments(parser)
    parser.add_argument(
        "--categories",
        metavar="A,B",
        help="headline object categories, replacing the game's default table",
    )
    parser.add_argument(
        "--exclude", metavar="A,B", help="object categories to leave out of every metric"
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="FILE.json",
        help="where to write the JSON (default: evaluation_<dataset>_<split>_<noise>.json)",
    )
    parser.add_argument(
        "--max-frames", type=int, metavar="N", help="evaluate only the first N frames"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=64,
        metavar="B",
        help="frames per model call (default: 64)",
    )
    parser.add_argument(
        "--track",
        choices=["none", "wandb"],
        default="none",
        help="also log the table to the Weights & Biases run of every run that trained with "
        "--track wandb (its id is in its run.json); default none",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from permakey.evaluation.categories import parse_names
    from permakey.evaluation.evaluate import evaluate_runs, format_table, write_result

    if args.max_frames is not None and args.max_frames < 1:
        raise UserError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    out = args.out or Path(f"evaluation_{Path(args.data).name}_{args.split}_{args.noise}.json")
    _check_writable(out)
    result = evaluate_runs(
        args.runs,
        args.data,
        split=args.split,
        noise=bars_from_args(args),
        noise_seed=args.noise_seed,
        include=parse_names(args.categories),
        exclude=parse_names(args.exclude),
        max_frames=args.max_frames,
        batch_size=args.batch_size,
        device=args.device,
        weights=args.weights,
    )
    write_result(out, result)
    print(format_table(result))
    print(f"\nwrote {out}")
    if args.track != "none":
        from permakey.training.tracking import log_evaluation

        logged = log_evaluation(result, args.runs, args.track)
        print(f"logged to {args.track}: {len(logged)} of {len(args.runs)} runs")
    return 0


def _check_writable(out: Path) -> None:
    """Fails before any model runs if ``out`` cannot be written: a folder, or a file in a
    place that is not a folder or takes no new files (read-only, or no such device)."""
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give the JSON file to write")
    folder = out.parent
    while not folder.exists():  # the folders that writing will create
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"cannot write --out {out}: {folder} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise UserError(f"cannot write --out {out}: {err.strerror or err} in {folder}") from None
