"""Options shared by the commands that run trained models on a dataset (`evaluate`, `show`)."""

from __future__ import annotations

import argparse
import re
from typing import Any

from permakey.data.noise import NOISE_KINDS


def weights_choice(text: str) -> str:
    """The --weights value: best, last or step-N (`permakey.runs.folder.check_weights`'s rule,
    without importing torch while parsing)."""
    if text in ("best", "last") or re.fullmatch(r"step-0*[1-9]\d*", text):
        return text
    raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose best, last or step-N)")


def add_runs_arguments(parser: argparse.ArgumentParser, noise: str, noise_help: str) -> None:
    """RUN..., --data, --split, --noise (default ``noise``), --noise-seed, --device, --weights."""
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders of `permakey train`")
    parser.add_argument("--data", required=True, metavar="DIR", help="dataset folder")
    parser.add_argument(
        "--split", default="test", choices=("train", "val", "test"), help="(default: test)"
    )
    parser.add_argument(
        "--noise", default=noise, choices=NOISE_KINDS, help=f"{noise_help} (default: {noise})"
    )
    parser.add_argument(
        "--noise-seed",
        type=int,
        default=0,
        metavar="N",
        help="seed of the bar positions (default: 0)",
    )
    parser.add_argument(
        "--device", default="auto", help="cpu, cuda, mps, or auto: the best available (default)"
    )
    parser.add_argument(
        "--weights",
        default="best",
        type=weights_choice,
        metavar="{best,last,step-N}",
        help="which weights of each run: best (lowest validation loss; the paper's protocol), "
        "last (the end of training, e.g. of a time budget) or step-N (the snapshot a run kept "
        "at step N with --snapshot-steps) (default: best)",
    )


def add_bar_arguments(parser: argparse.ArgumentParser) -> None:
    """--noise-width, --noise-colour, --noise-random-colour, --noise-before-resize: how the
    bars of --noise look, as the training options of the same names; each one not given is
    as the runs trained (`permakey.runs.bars.noise_for_runs`)."""
    group = parser.add_argument_group(
        "bars",
        "how the Noisy Atari bars look; an option not given is as the runs were trained with "
        "bars (an error where they differ), the paper's where no run was",
    )
    group.add_argument(
        "--noise-width",
        type=int,
        metavar="PX",
        help="bar thickness in pixels of the 84 x 84 frame (the paper's: 5)",
    )
    group.add_argument(
        "--noise-colour",
        type=int,
        nargs=3,
        metavar=("R", "G", "B"),
        help="bar colour, and no random colour unless asked for (the paper's: 128 0 255)",
    )
    group.add_argument(
        "--noise-random-colour",
        action=argparse.BooleanOptionalAction,
        help="a fresh bar colour per frame instead of --noise-colour (not in the paper)",
    )
    group.add_argument(
        "--noise-before-resize",
        action=argparse.BooleanOptionalAction,
        help="bars as if painted on the raw frame before the dataset's resize (not in the paper)",
    )


def bar_options(args: argparse.Namespace) -> dict[str, Any]:
    """--noise and the options of `add_bar_arguments` as the keyword arguments of the library
    calls that paint bars for runs (`permakey.runs.bars.noise_for_runs`,
    `permakey.visualisation.show.show_runs`, named as the options); None where not given."""
    colour = None if args.noise_colour is None else tuple(args.noise_colour)
    return {
        "noise": args.noise,
        "noise_width": args.noise_width,
        "noise_colour": colour,
        "noise_random_colour": args.noise_random_colour,
        "noise_before_resize": args.noise_before_resize,
    }


def bars_from_args(args: argparse.Namespace):
    """The `permakey.data.noise.NoiseConfig` of --noise and the options of `add_bar_arguments`
    for the runs and dataset of `add_runs_arguments`.

    Raises:
        UserError: bad values, --noise-before-resize on a dataset without a known resize, or
            an option not given on which the runs' training bars differ.
    """
    from permakey.runs.bars import noise_for_runs

    return noise_for_runs(args.runs, args.data, **bar_options(args))
