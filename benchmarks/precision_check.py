"""How far the reduced-precision keypoints lie from float32's, on live frames of each model's game.

    python benchmarks/precision_check.py MODEL... [--frames 32] [--seed 3] [--threads 1]

MODEL: a run folder (its last weights) or ``pretrained:GAME``. For each model, frames of its
game (ALE v5, random actions, every 8th frame from ``--seed``), resized as its training frames,
go through `TrainedModel.keypoints` in float32, in ``"mixed"`` and in ``"bf16"`` precision;
prints a markdown row per model and precision: the largest distance of a keypoint from its
float32 position, the 99th percentile, and the share of keypoints more than 0.5 px away, in
pixels of the model's frame. bf16 is emulated, and slow, on CPUs without native bf16.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def live_frames(game: str, count: int, seed: int) -> np.ndarray:
    """(count, 210, 160, 3) uint8 frames of ALE/GAME-v5 under random actions, every 8th step."""
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    env = gym.make(f"ALE/{game}-v5")
    env.reset(seed=seed)
    env.action_space.seed(seed)
    frames = []
    while len(frames) < count:
        for _ in range(8):
            frame, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                frame, _ = env.reset()
        frames.append(frame)
    env.close()
    return np.stack(frames)


def main() -> int:
    import torch

    import permakey
    from permakey.data.frames import resize_frame
    from permakey.runs.pretrained import is_pretrained

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="run folders or pretrained:GAME")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| model | game | K | precision | max px | 99th percentile px | share > 0.5 px |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        which = "best" if is_pretrained(name) else "last"
        exact = permakey.load(name, which=which)
        info = exact.info or {}
        game = name.split(":", 1)[1] if is_pretrained(name) else info["dataset"]["train"]["game"]
        raw = live_frames(game, args.frames, args.seed)
        size = exact.frames.size
        frames = np.stack([resize_frame(f, size, exact.frames.resize) for f in raw])
        centres = exact.keypoints(frames, windows=False).centres  # (N, K, 2) in [-1, 1]
        for precision in ("mixed", "bf16"):
            other = permakey.load(name, which=which, precision=precision)
            found = other.keypoints(frames, windows=False).centres
            pixels = ((found - centres).norm(dim=-1) * (size - 1) / 2).flatten()  # (N * K,)
            print(
                f"| {name} | {game} | {centres.shape[1]} | {precision} | {pixels.max():.3f} | "
                f"{pixels.quantile(0.99):.3f} | {(pixels > 0.5).float().mean():.4f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
