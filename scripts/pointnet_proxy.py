"""A PointNet alone on frames of identical blobs at random places: does it put keypoints on them?

python scripts/pointnet_proxy.py --peak-match 1.0 --map-scale 10 --steps 300 --seed 0

A `cpu-track` PointNet (K = 4; `peak_match` and `keypoint_map_scale` from the options) is
trained for ``--steps`` Adam updates (1e-3, batch 32) on error stacks of 48 x 48 frames, each
with four 3 x 3 blobs of value 1 at random places (new frames for every batch), and then placed
on 64 new frames. It prints the share of keypoints within 2.5 px (Chebyshev) of a blob's centre
and the share of blobs with such a keypoint. Frames of blobs that look alike are where a
keypoint map answers to several blobs; the per-axis spatial softmax then puts its centre
between them."""

from __future__ import annotations

import argparse
import dataclasses

import torch

from permakey.keypoints import to_pixels
from permakey.models.permakey import PRESETS, PointNet

SIZE, KEYPOINTS, BLOBS = 48, 4, 4


def frames(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 2, S, S) error stacks of BLOBS 3 x 3 blobs each and (n, BLOBS, 2) their centres."""
    stack = torch.zeros(n, 2, SIZE, SIZE)
    centres = torch.randint(3, SIZE - 3, (n, BLOBS, 2), generator=generator)
    for i in range(n):
        for row, col in centres[i].tolist():
            stack[i, :, row - 1 : row + 2, col - 1 : col + 2] = 1.0
    return stack, centres.float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peak-match", type=float, default=0.0)
    parser.add_argument("--map-scale", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    config = dataclasses.replace(
        PRESETS["cpu-track"],
        image_size=SIZE,
        num_keypoints=KEYPOINTS,
        pointnet_channels=(16, 32, 32, 64),
        window_border_cost=False,
        peak_match=args.peak_match,
        keypoint_map_scale=args.map_scale,
    )
    pointnet = PointNet(config)
    optimizer = torch.optim.Adam(pointnet.parameters(), lr=1e-3)
    for _ in range(args.steps):
        stack, _ = frames(32, generator)
        optimizer.zero_grad()
        pointnet.loss(pointnet(stack), stack).backward()
        optimizer.step()
    test, blobs = frames(64, generator)
    pointnet.eval()
    with torch.no_grad():
        found = to_pixels(pointnet(test, windows=False).centres, SIZE, SIZE)  # (64, K, 2)
    near = (found.unsqueeze(2) - blobs.unsqueeze(1)).abs().amax(-1) <= 2.5  # (64, K, BLOBS)
    print(
        f"peak_match {args.peak_match}, keypoint_map_scale {args.map_scale}, seed {args.seed}: "
        f"keypoints on a blob {near.any(-1).float().mean():.2f}, "
        f"blobs found {near.any(1).float().mean():.2f}"
    )


if __name__ == "__main__":
    main()
