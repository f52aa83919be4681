"""How sharp are a PermaKey run's keypoint distributions, and do its keypoints move?

python scripts/keypoint_sharpness.py DATA RUN [RUN ...]

For each keypoint of each run (last weights) on the first 500 test frames of DATA: the largest
probability of its distribution over rows and over columns (`keypoints.axis_distributions`,
mean over the frames; 1 / 21 = 0.048 is a flat distribution on the 21 x 21 keypoint maps), and
the standard deviation of its centre over the frames in pixels (y, x). A keypoint whose
distributions are nearly flat sits near the middle of the frame whatever the frame holds.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

import permakey
from permakey.data.frames import to_float
from permakey.data.store import open_split
from permakey.keypoints import axis_distributions


def main(data: str, runs: list[str]) -> None:
    split = open_split(data, "test")
    frames = split.read_frames(slice(0, 500))
    for run in runs:
        model = permakey.load(run, "last")
        pointnet = getattr(model.model, "pointnet", None)
        if pointnet is None:
            sys.exit(f"{run} is not a PermaKey run (no PointNet)")
        found = model.keypoints(frames, windows=False, error_maps=True)
        images = to_float(torch.from_numpy(frames).permute(0, 3, 1, 2), "cpu")  # (N, 3, S, S)
        with torch.no_grad():
            maps = pointnet.maps(found.error_stack, images) * pointnet.map_scale  # (N, K, h, w)
        prob_y, prob_x = axis_distributions(maps, pointnet.joint_softmax)  # (N, K, h), (N, K, w)
        peak_y = prob_y.amax(-1).mean(0).numpy()  # (K,)
        peak_x = prob_x.amax(-1).mean(0).numpy()
        spread = np.asarray(found.pixels).std(axis=0)  # (K, 2) pixels
        print(f"{run}: largest probability y / x, centre std y / x (px)")
        for k in range(len(peak_y)):
            print(
                f"  keypoint {k:2d}: {peak_y[k]:.2f} / {peak_x[k]:.2f}   "
                f"{spread[k, 0]:4.1f} / {spread[k, 1]:4.1f}"
            )
        print(
            f"  mean: {peak_y.mean():.2f} / {peak_x.mean():.2f}   "
            f"{spread[:, 0].mean():4.1f} / {spread[:, 1].mean():4.1f}"
        )


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__.strip().splitlines()[2])
    main(sys.argv[1], sys.argv[2:])
