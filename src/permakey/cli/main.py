"""The `permakey` command: one subcommand per module of this package's `cli` folder.

Each subcommand module defines ``add_parser(subparsers)``, which registers its parser and
sets ``func`` to a function of the parsed arguments returning an exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from permakey import __version__, devices
from permakey.errors import UserError

# Subcommands in the order `permakey --help` lists them.
SUBCOMMANDS = [
    "collect",
    "datasets",
    "train",
    "evaluate",
    "show",
    "demo",
    "reproduce",
    "pretrained",
    "agents",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="permakey",
        description="Unsupervised object keypoints (PermaKey) and the Transporter baseline on Atari.",
    )
    parser.add_argument("--version", action="version", version=f"permakey {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"permakey.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    devices.reuse_freed_memory()
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"permakey: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("permakey: interrupted", file=sys.stderr)
        return 130
