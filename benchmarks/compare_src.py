"""Keypoint observation speed of two versions of permakey's code, timed in alternating runs.

    git archive COMMIT src | tar -x -C /tmp/old
    python benchmarks/compare_src.py --old /tmp/old/src [--games Pong] [--rounds 5]

Each round runs one child process per version (old, then new: this checkout's ``src``), each
timing `permakey.envs.observation.KeypointEncoder` of ``pretrained:GAME`` on the same random
raw (210, 160, 3) frames: batch 1 (one environment) and 8 (a vector of them), coordinates
only and with features, one torch thread. Alternating the versions within one run spreads a
shared machine's load over both. Prints, per setting, the median over rounds of each
version's frames/s by the child's own CPU time (what other processes take from it is not
counted) and by wall-clock time, and new / old.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = [(batch, features) for features in (False, True) for batch in (1, 8)]


def child(games: list[str], calls: int) -> dict[str, list[float]]:
    """{"GAME/batch/features": [cpu frames/s, wall frames/s]} for this process's permakey."""
    import numpy as np
    import torch

    import permakey
    from permakey.envs.observation import KeypointEncoder

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rates = {}
    for game in games:
        model = permakey.load(f"pretrained:{game}")
        for batch, features in SETTINGS:
            encoder = KeypointEncoder(model, features=features)
            frames = rng.integers(0, 256, (batch, 210, 160, 3), dtype=np.uint8)
            for _ in range(3):
                encoder(frames)
            cpu, wall = time.thread_time(), time.perf_counter()
            for _ in range(calls):
                encoder(frames)
            cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
            rates[f"{game}/{batch}/{features}"] = [batch * calls / cpu, batch * calls / wall]
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="the old version's src folder")
    parser.add_argument("--new", type=Path, default=Path(__file__).parents[1] / "src")
    parser.add_argument("--games", nargs="+", default=["Pong"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=40, help="timed calls per setting")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.games, args.calls)))
        return 0
    results: dict[str, dict[str, list[list[float]]]] = {"old": {}, "new": {}}
    for _ in range(args.rounds):
        for side, src in (("old", args.old), ("new", args.new)):
            env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
            command = [sys.executable, __file__, "--old", str(args.old), "--child",
                       "--calls", str(args.calls), "--games", *args.games]  # fmt: skip
            out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            for key, rate in json.loads(out.stdout.splitlines()[-1]).items():
                results[side].setdefault(key, []).append(rate)
    print("| game | frames per call | features | old frames/s (CPU / wall) "
          "| new frames/s (CPU / wall) | new / old (CPU / wall) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for key in results["new"]:
        game, batch, features = key.split("/")
        old, new = ([statistics.median(r[i] for r in results[s][key]) for i in (0, 1)]
                    for s in ("old", "new"))  # fmt: skip
        print(
            f"| {game} | {batch} | {'yes' if features == 'True' else 'no'} "
            f"| {old[0]:,.0f} / {old[1]:,.0f} | {new[0]:,.0f} / {new[1]:,.0f} "
            f"| {new[0] / old[0]:.2f} / {new[1] / old[1]:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
