"""Where do the keypoints that miss lie? Per keypoint of PermaKey runs on clean test frames.

python scripts/miss_probe.py DATA RUN [RUN ...] [--summary]

For each run (last weights) on the first 500 test frames of DATA, and each keypoint k: the
share of frames in which k lies within 2 px of an object (a box of a counted category, as
`permakey evaluate` counts precision@2), the share in which it lies more than 4 px from every
object, its mean motion between consecutive frames of an episode (px), and its mean position
(row, col) with its spread (the standard deviation of row and col, averaged). A keypoint that
misses by a few pixels shows in the first share only; one that stays where there is no object
shows in both. ``--summary``: one row per run instead, counting its "still" keypoints (never
within 2 px of an object, spread at most 1 px) and its "away" ones (beyond 4 px in at least
half the frames), with the keypoints' precision at 2 and 4 px (`permakey evaluate`'s).
"""

from __future__ import annotations

import argparse

import numpy as np
from probe_data import test_frames

import permakey
from permakey.evaluation.metrics import consecutive_pairs, keypoint_hits


def main(data: str, runs: list[str], summary: bool) -> None:
    test = test_frames(data)
    game, frames, truth = test.game, test.frames, test.truth
    pairs = consecutive_pairs(test.episode, test.step)  # frame i + 1 follows frame i
    if summary:
        print(
            "| game | run | K | still | away | precision@2 | precision@4 |\n"
            "|---|---|---|---|---|---|---|"
        )
    else:
        print(
            "| game | run | keypoint | within 2 px | beyond 4 px | motion (px/step) "
            "| mean (row, col) | spread (px) |\n|---|---|---|---|---|---|---|---|"
        )
    for run in runs:
        model = permakey.load(run, "last")
        points = model.keypoints(frames, windows=False).pixels.double().numpy()  # (N, K, 2)
        near = keypoint_hits(points, truth.offsets, truth.boxes, 2).mean(axis=0)  # (K,)
        far = 1.0 - keypoint_hits(points, truth.offsets, truth.boxes, 4).mean(axis=0)  # (K,)
        moved = np.linalg.norm(points[pairs + 1] - points[pairs], axis=-1).mean(axis=0)  # (K,)
        spread = points.std(axis=0).mean(axis=-1)  # (K,)
        mean = points.mean(axis=0)  # (K, 2)
        if summary:
            still = int(((near == 0) & (spread <= 1.0)).sum())
            away = int((far >= 0.5).sum())
            print(
                f"| {game} | {model.name} | {len(near)} | {still} | {away} | {near.mean():.3f} "
                f"| {1.0 - far.mean():.3f} |"
            )
            continue
        for k in range(len(near)):
            print(
                f"| {game} | {model.name} | {k} | {near[k]:.2f} | {far[k]:.2f} | {moved[k]:.1f} "
                f"| ({mean[k, 0]:.0f}, {mean[k, 1]:.0f}) | {spread[k]:.1f} |"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--summary", action="store_true", help="one row per run")
    args = parser.parse_args()
    main(args.data, args.runs, args.summary)
