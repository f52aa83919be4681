"""Options shared by the commands that run trained models on a dataset (`evaluate`, `show`)."""

from __future__ import annotations

import argparse

from permakey.data.noise import NOISE_KINDS


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
        choices=("best", "last"),  # permakey.runs.folder.WEIGHTS, without importing torch here
        help="which weights of each run: best (lowest validation loss; the paper's protocol) or "
        "last (the end of training, e.g. of a time budget) (default: best)",
    )
