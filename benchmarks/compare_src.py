"""Keypoint speed of two versions of permakey's code, timed in alternating runs.

    git archive COMMIT src | tar -x -C /tmp/old
    python benchmarks/compare_src.py --old /tmp/old/src [--what observation|keypoints]
        [--games Pong] [--rounds 5]

Each round runs one child process per version (old, then new: this checkout's ``src``), each
timing, on one torch thread (``--threads`` to change; with more than one, read the wall-clock
rates: the CPU time counted is the calling thread's):

- ``observation`` (default): `permakey.envs.observation.KeypointEncoder` of ``pretrained:GAME``
  on the same random raw (210, 160, 3) frames: batch 1 (one environment) and 8 (a vector of
  them), coordinates only and with features;
- ``keypoints``: `TrainedModel.keypoints` of each method's ``paper`` model (random weights,
  seed 0) on 256 random 84 x 84 frames per call, as `benchmarks/bench.py` times it, with the
  version's default frames per forward pass.

Alternating the versions within one run spreads a shared machine's load over both. Prints,
per setting, the median over rounds of each version's frames/s by the child's own CPU time
(what other processes take from it is not counted) and by wall-clock time, and new / old.
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
KEYPOINT_FRAMES = 256


def _rate(call, frames: int, calls: int) -> list[float]:
    """[CPU frames/s, wall frames/s] of ``calls`` calls of ``call`` after 3 untimed ones."""
    for _ in range(3):
        call()
    cpu, wall = time.thread_time(), time.perf_counter()
    for _ in range(calls):
        call()
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    return [frames * calls / cpu, frames * calls / wall]


def child(what: str, games: list[str], calls: int, threads: int) -> dict[str, list[float]]:
    """{"SETTING/batch/features": [cpu frames/s, wall frames/s]} for this process's permakey."""
    import numpy as np
    import torch

    import permakey
    from permakey.envs.observation import KeypointEncoder
    from permakey.runs import TrainedModel
    from permakey.training import get_method

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    rates = {}
    if what == "keypoints":
        frames = rng.integers(0, 256, (KEYPOINT_FRAMES, 84, 84, 3), dtype=np.uint8)
        for kind in ("permakey", "transporter"):
            method = get_method(kind)
            torch.manual_seed(0)
            model = TrainedModel(method.build_model(method.model_config("paper")))
            call = lambda m=model: m.keypoints(frames, windows=False)  # noqa: E731
            rates[f"{kind} paper/{KEYPOINT_FRAMES}/False"] = _rate(call, KEYPOINT_FRAMES, calls)
        return rates
    for game in games:
        model = permakey.load(f"pretrained:{game}")
        for batch, features in SETTINGS:
            encoder = KeypointEncoder(model, features=features)
            frames = rng.integers(0, 256, (batch, 210, 160, 3), dtype=np.uint8)
            rates[f"{game}/{batch}/{features}"] = _rate(
                lambda e=encoder, f=frames: e(f), batch, calls
            )
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="the old version's src folder")
    parser.add_argument("--new", type=Path, default=Path(__file__).parents[1] / "src")
    parser.add_argument("--what", choices=("observation", "keypoints"), default="observation")
    parser.add_argument("--games", nargs="+", default=["Pong"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--calls", type=int, help="timed calls per setting (default 40; keypoints: 2)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    calls = args.calls or (2 if args.what == "keypoints" else 40)
    if args.child:
        print(json.dumps(child(args.what, args.games, calls, args.threads)))
        return 0
    results: dict[str, dict[str, list[list[float]]]] = {"old": {}, "new": {}}
    for _ in range(args.rounds):
        for side, src in (("old", args.old), ("new", args.new)):
            env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
            command = [sys.executable, __file__, "--old", str(args.old), "--child",
                       "--what", args.what, "--calls", str(calls), "--threads", str(args.threads),
                       "--games", *args.games]  # fmt: skip
            out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            for key, rate in json.loads(out.stdout.splitlines()[-1]).items():
                results[side].setdefault(key, []).append(rate)
    print("| model | frames per call | features | old frames/s (CPU / wall) "
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
