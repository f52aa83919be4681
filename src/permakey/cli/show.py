"""`permakey show`: the paper's figures and a GIF of keypoints for trained runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from permakey.cli.runs_options import add_bar_arguments, add_runs_arguments, bar_options
from permakey.errors import UserError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "show",
        help="draw keypoints, windows and error maps of trained runs (PNG figures and a GIF)",
        description=(
            "Draws the paper's figures for trained runs on frames of a dataset split: "
            "keypoints of every run and PermaKey's error maps per layer on clean and on Noisy "
            "Atari frames (Figure 2 style), keypoint centres with their Gaussian windows "
            "(Figure 4 style), the keypoints of runs that differ only in their seed on the same "
            "frames (Figure 3 style), and an animated GIF of the keypoints following a test "
            "episode. Keypoint k has the same colour in every picture. The bars are those of "
            "`permakey evaluate` with the same options: as the runs were trained unless told."
        ),
    )
    add_runs_arguments(
        parser, "both", "Noisy Atari bars of the noisy variants; none draws clean frames only"
    )
    add_bar_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    parser.add_argument(
        "--frames", type=int, default=4, metavar="N", help="frames per figure (default: 4)"
    )
    parser.add_argument(
        "--episode-frames",
        type=int,
        default=48,
        metavar="N",
        help="frames of the GIF, from the longest episode of the split; 0 for no GIF (default: 48)",
    )
    parser.add_argument(
        "--seeds",
        action="store_true",
        help="draw all runs together as seeds (Figure 3 style) even if they differ in more "
        "than their seed; runs that differ only in their seed get that figure anyway",
    )
    parser.add_argument("--fps", type=float, default=8.0, help="GIF frame rate (default: 8)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace --out if it exists (once complete)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from permakey.visualisation.show import show_runs

    if args.frames < 1:
        raise UserError(f"--frames must be >= 1, got {args.frames}")
    if args.episode_frames < 0:
        raise UserError(f"--episode-frames must be >= 0, got {args.episode_frames}")
    if args.fps <= 0:
        raise UserError(f"--fps must be > 0, got {args.fps}")
    written = show_runs(
        args.runs,
        args.data,
        args.out,
        split=args.split,
        frames=args.frames,
        **bar_options(args),
        noise_seed=args.noise_seed,
        episode_frames=args.episode_frames,
        seeds=args.seeds,
        fps=args.fps,
        device=args.device,
        overwrite=args.overwrite,
        weights=args.weights,
    )
    for path in written:
        print(f"wrote {path}")
    return 0
