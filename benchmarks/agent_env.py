"""Environment steps per second that an agent gets, on pixels and on each keypoint model.

    python benchmarks/agent_env.py [--games Pong Breakout ...] [--envs 1 8] [--steps 400]
        [--precision fp32|bf16|mixed]

For each game and number of environments, times random actions through the vector
environments of `permakey agents` (`permakey.envs.sb3.make_vec_env`: ALE v5, 4 stacked
observations): 84 x 84 pixels, keypoints, and keypoints with features of the game's
``pretrained:GAME`` model (one model call per step for all environments). The agent's own
cost is left out: this bounds every agent experiment on the machine it runs on. Prints a
markdown table of steps/s (all environments together); ``--threads`` sets torch's threads,
``--precision`` the models' (`permakey.load`).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def steps_per_s(env, steps: int) -> float:
    """Steps/s of random actions over ``steps`` steps of every environment (after a warm-up)."""
    rng = np.random.default_rng(0)
    n = env.num_envs
    env.reset()
    for _ in range(10):
        env.step(rng.integers(env.action_space.n, size=n))
    start = time.perf_counter()
    for _ in range(steps):
        env.step(rng.integers(env.action_space.n, size=n))
    return steps * n / (time.perf_counter() - start)


def main() -> int:
    import torch

    import permakey
    from permakey.envs.sb3 import OBSERVATIONS, make_vec_env
    from permakey.runs.trained import PRECISIONS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", nargs="+", default=["Pong", "Breakout", "SpaceInvaders",
                                                       "MsPacman"])  # fmt: skip
    parser.add_argument("--envs", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--steps", type=int, default=400, help="timed steps per environment")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"| game | envs | {' | '.join(OBSERVATIONS)} |")
    print(f"| --- | --- |{' --- |' * len(OBSERVATIONS)}")
    for game in args.games:
        model = permakey.load(f"pretrained:{game}", precision=args.precision)
        for n in args.envs:
            rates = []
            for observation in OBSERVATIONS:
                env = make_vec_env(game, observation, None if observation == "pixels" else model,
                                   n, seed=0, max_episode_steps=2_000, clip_rewards=False)  # fmt: skip
                rates.append(steps_per_s(env, max(1, args.steps // n)))
                env.close()
            print(f"| {game} | {n} | {' | '.join(f'{r:,.0f}' for r in rates)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
