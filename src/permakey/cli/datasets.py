"""`permakey datasets`: summarise collected datasets."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "datasets",
        help="summarise datasets: game, frames and episodes per split, objects, size",
        description=(
            "Print, for each dataset folder, its game, frames and episodes per split, the "
            "mean number of objects per frame by category, and its size on disk."
        ),
    )
    parser.add_argument(
        "paths", nargs="+", metavar="DIR", help="dataset folder(s) written by `permakey collect`"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from permakey.data.summary import format_summary, summarize

    for path in args.paths:
        print(format_summary(summarize(path)))
    return 0
