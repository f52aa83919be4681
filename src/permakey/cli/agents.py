"""`permakey agents`: PPO agents on keypoints and on pixels at equal steps, with intervals."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from permakey.errors import UserError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "agents",
        help="benchmark PPO agents on keypoint observations against pixels and random play",
        description="Train stable-baselines3 PPO agents on each game's keypoints (coordinates, "
        "and coordinates + pooled features; the shipped pretrained:GAME models unless --model "
        "says otherwise) and on 84 x 84 pixels (SB3's CNN policy), at the same environment-step "
        "budget and hyperparameters, for several seeds; play each greedy and stochastic, and "
        "random play, on the same held-out episodes. Each (game, observation, seed) is a cell "
        "written to OUT/cells/; finished cells are kept, so rerunning continues. Prints the "
        "table: interquartile means of the runs' mean returns with stratified bootstrap 95%% "
        "intervals, and whether keypoint agents beat random play and the pixel agent. Needs the "
        "rl extra (pip install 'permakey[rl]').",
    )
    parser.add_argument("--out", default="runs/agents", metavar="DIR",
                        help="benchmark folder (default: runs/agents)")  # fmt: skip
    parser.add_argument("--games", nargs="+", metavar="GAME",
                        help="games (default: Pong Breakout SpaceInvaders MsPacman)")  # fmt: skip
    parser.add_argument(
        "--observations", nargs="+", metavar="OBS",
        help="random, pixels, keypoints, keypoints+features (default: all)",
    )  # fmt: skip
    parser.add_argument("--seeds", type=int, default=5, metavar="N",
                        help="training seeds 0..N-1 per setting (default: 5)")  # fmt: skip
    parser.add_argument("--timesteps", type=int, default=25_000, metavar="N",
                        help="agent steps of training per run (default: 25000)")  # fmt: skip
    parser.add_argument("--eval-episodes", type=int, default=20, metavar="N",
                        help="episodes per evaluation mode (default: 20)")  # fmt: skip
    parser.add_argument("--max-episode-steps", type=int, default=1_000, metavar="N",
                        help="agent steps after which an episode is cut (default: 1000)")  # fmt: skip
    parser.add_argument("--envs", type=int, default=8, metavar="N",
                        help="environments stepped together (default: 8)")  # fmt: skip
    parser.add_argument(
        "--model", action="append", default=[], metavar="GAME=RUN",
        help="the keypoint model of a game: a run folder or pretrained:GAME (repeatable)",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="cells at a time, each in its own process (default: 1)")  # fmt: skip
    parser.add_argument("--device", default="cpu", help="agent and keypoint model device")
    parser.add_argument("--table-only", action="store_true",
                        help="print the table of the finished cells; run nothing")  # fmt: skip
    parser.set_defaults(func=run)


def _models(pairs: list[str]) -> dict[str, str]:
    from permakey.data.games import resolve_game

    models = {}
    for pair in pairs:
        game, sep, run = pair.partition("=")
        if not sep or not run:
            raise UserError(f"--model takes GAME=RUN, got {pair!r}")
        models[resolve_game(game)] = run
    return models


def run(args: argparse.Namespace) -> int:
    from permakey.data.games import resolve_game
    from permakey.experiments.agents import (
        GAMES,
        SETTINGS,
        AgentBudget,
        agent_table,
        pending_cells,
        read_cells,
    )  # fmt: skip
    from permakey.experiments.runner import in_process, in_subprocess, run_jobs, step_jobs
    from permakey.experiments.steps import Step

    out = Path(args.out)
    failed: list[str] = []
    if not args.table_only:
        try:
            import stable_baselines3  # noqa: F401
        except ImportError:
            raise UserError("permakey agents needs stable-baselines3: pip install "
                            "'permakey[rl]'") from None  # fmt: skip
        if args.seeds < 1 or args.workers < 1:
            raise UserError(f"--seeds and --workers must be >= 1, got {args.seeds}, {args.workers}")
        budget = AgentBudget(args.timesteps, args.eval_episodes, args.max_episode_steps, args.envs)
        games = [resolve_game(g) for g in args.games or GAMES]
        todo = pending_cells(out, games, args.observations or SETTINGS, range(args.seeds),
                              budget, _models(args.model), args.device)  # fmt: skip
        steps = [(label, Step("agent", kwargs), log) for label, kwargs, log in todo]
        print(f"{len(steps)} cells to run in {out}", flush=True)
        threads = max(1, (os.cpu_count() or 1) // args.workers)
        execute = in_process() if args.workers == 1 else in_subprocess(threads)
        results = run_jobs(step_jobs(steps, execute), args.workers)
        failed = sorted(label for label, status in results.items() if status)
        if failed:
            print(f"failed: {', '.join(failed)} (logs in {out / 'logs'})")
    cells = read_cells(out)
    print(agent_table(cells))
    return 1 if failed else 0
