"""`permakey pretrained`: the models that ship with the package, and how to build them."""

from __future__ import annotations

import argparse
import shlex


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "pretrained",
        help="list the pretrained models (pretrained:GAME) or build them",
        description="List the keypoint models that ship with the package, usable wherever a "
        "run folder is: permakey.load('pretrained:Pong'), KeypointObservation(env, "
        "'pretrained:Pong'), permakey evaluate pretrained:Pong --data DIR. For each: how it was "
        "made and its F1@2 on held-out test episodes (another seed) next to its static "
        "template, its error-map peaks and random points.",
    )
    parser.set_defaults(func=run_list)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    build = actions.add_parser(
        "build",
        help="collect, train, evaluate and export pretrained models, resumably",
        description="For each game: collect a dataset, train PermaKey with the best CPU preset "
        "on a step budget, evaluate it on held-out episodes and export its inference weights "
        "(float16) and record into --out. Complete models are kept; an interrupted run is "
        "resumed; rerun the same command to continue.",
    )
    build.add_argument("games", nargs="+", metavar="GAME", help="games to build")
    build.add_argument(
        "--out",
        metavar="DIR",
        help="folder of model folders (default: the package's permakey/pretrained_models)",
    )
    build.add_argument(
        "--work",
        default="runs/pretrained",
        metavar="DIR",
        help="datasets, runs and evaluations (default: runs/pretrained)",
    )
    build.add_argument("--steps", type=int, metavar="N", help="PermaKey steps per game")
    build.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    build.add_argument(
        "--table", metavar="FILE", help="also write the markdown table of --out's models to FILE"
    )
    build.add_argument(
        "--refresh",
        action="store_true",
        help="measure complete models' quality again on their held-out episodes and rewrite "
        "their records (the weights stay); needs their runs in --work",
    )
    build.set_defaults(func=run_build)


def run_list(args: argparse.Namespace) -> int:
    from permakey.experiments.pretrained import records
    from permakey.runs.pretrained import catalogue

    found = records()
    if not found:
        print("no pretrained models are installed")
        return 0
    print(catalogue(found))
    return 0


def run_build(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from permakey.errors import UserError
    from permakey.experiments.pretrained import Recipe, build, records
    from permakey.fileio import write_text_atomic
    from permakey.runs.pretrained import FOLDER, catalogue

    recipe = Recipe(device=args.device)
    if args.steps is not None:
        if args.steps < 1:
            raise UserError(f"--steps must be >= 1, got {args.steps}")
        recipe = replace(recipe, steps=args.steps)
    out = args.out or FOLDER
    options = [("--out", args.out), ("--work", args.work), ("--steps", args.steps),
               ("--device", args.device)]  # fmt: skip
    given = [str(part) for flag, value in options if value is not None for part in (flag, value)]
    command = shlex.join(["permakey", "pretrained", "build", *args.games, *given])
    built = build(args.games, out, args.work, recipe, command, refresh=args.refresh)
    print(f"models in {out}: {', '.join(built) or 'none'}")
    if args.table:
        write_text_atomic(args.table, catalogue(records(out)) + "\n")
        print(f"wrote {args.table}")
    return 0
