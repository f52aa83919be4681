"""Seconds from ``import permakey`` to the first keypoints of a live environment.

    python benchmarks/first_keypoints.py [--model pretrained:Pong] [--repeats 5]

Each repeat is a fresh Python process that imports permakey, loads the model, makes
``ALE/<Game>-v5`` wrapped in `permakey.envs.KeypointObservation` and resets it: the time a new
user waits for their first observation. Prints each repeat and the median, in seconds, on
the machine it runs on (the number in BENCHMARKS.md names that machine).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

PROGRAM = """
import time
start = time.perf_counter()
import ale_py, gymnasium as gym
import permakey
from permakey.envs import KeypointObservation
gym.register_envs(ale_py)
model = permakey.load({model!r})
env = KeypointObservation(gym.make({env!r}), model)
obs, _ = env.reset(seed=0)
print(time.perf_counter() - start)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pretrained:Pong")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    game = args.model.split(":", 1)[1] if args.model.startswith("pretrained:") else "Pong"
    code = PROGRAM.format(model=args.model, env=f"ALE/{game}-v5")
    seconds = []
    for i in range(args.repeats):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        seconds.append(float(out.stdout.strip().splitlines()[-1]))
        print(f"repeat {i + 1}: {seconds[-1]:.2f} s")
    print(f"median {statistics.median(seconds):.2f} s over {args.repeats} fresh processes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
