"""`permakey datasets`: summarise collected datasets."""

from __future__ import annotations

import argparse
import sys


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
    parser.add_argument(
        "--verify",
        action="store_true",
        help="also read every file back and check it against the sha256 that meta.json "
        "records; each damaged file is one line on stderr, and the exit status is 1 if any is",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from permakey.data.summary import format_summary, summarize, verify

    if not args.verify:
        for path in args.paths:
            print(format_summary(summarize(path)))
        return 0
    damaged = False
    for path in args.paths:
        problems = verify(path)
        if not problems:
            print(format_summary(summarize(path)))
            print("  verified: every split matches the sha256 in meta.json")
        for problem in problems:
            print(f"permakey: error: {problem}", file=sys.stderr)
        damaged = damaged or bool(problems)
    return 1 if damaged else 0
