"""Would snapping each keypoint onto the error maps' strongest cell nearby close the gap to
the peaks? A probe of an inference-time refinement (not in the paper, not built into the model).

python scripts/snap_probe.py DATA RUN [RUN ...] [--radii 2,4,8]

For each PermaKey run (last weights) on the 500 test frames of DATA, clean: each keypoint is
moved to the pixel of largest `permakey.keypoints.peak_score` (what the peaks control ranks)
within R pixels of it along each axis (a (2R + 1)^2 square), and the moved keypoints are scored
as `permakey evaluate` scores a model (F1@2, mean purity, object tracks kept). The first row
("own") is the run's own keypoints, as `permakey evaluate` scores them; the last is the
error-map peaks control.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from probe_data import test_frames

import permakey
from permakey.evaluation import controls
from permakey.evaluation.evaluate import score_keypoints
from permakey.keypoints import peak_score


def snap(error_stack: torch.Tensor, pixels: torch.Tensor, radius: int) -> np.ndarray:
    """(N, L, H, W) error stack, (N, K, 2) keypoint pixels -> (N, K, 2) float64 pixels: each
    keypoint at the largest `peak_score` within ``radius`` pixels of its nearest pixel."""
    score = peak_score(error_stack)  # (N, H, W)
    height, width = score.shape[1:]
    side = 2 * radius + 1
    padded = F.pad(score[:, None], (radius,) * 4, value=-torch.inf)  # (N, 1, H + 2R, W + 2R)
    patches = F.unfold(padded, side)  # (N, side * side, H * W): each pixel's square
    cell = pixels.round().long()
    cell[..., 0].clamp_(0, height - 1)
    cell[..., 1].clamp_(0, width - 1)
    index = cell[..., 0] * width + cell[..., 1]  # (N, K)
    around = torch.gather(patches, 2, index[:, None].expand(-1, side * side, -1))  # (N, S², K)
    best = around.argmax(dim=1)  # (N, K) position in the square
    offset = torch.stack([best // side, best % side], dim=-1) - radius  # (N, K, 2)
    return (cell + offset).double().numpy()


def main(data: str, runs: list[str], radii: list[int]) -> None:
    test = test_frames(data)
    game, frames, truth = test.game, test.frames, test.truth
    height, width = frames.shape[1:3]
    print("| game | run | R (px) | F1@2 | mean purity | objects kept |")
    print("|---|---|---|---|---|---|")
    for run in runs:
        model = permakey.load(run, "last")
        found = model.keypoints(frames, windows=False, error_maps=True)
        columns = [("own", found.pixels.double().numpy())]
        columns += [(str(r), snap(found.error_stack, found.pixels, r)) for r in radii]
        columns.append(("peaks", controls.error_map_peaks(found.error_stack, model.num_keypoints)))
        for label, points in columns:
            scores = score_keypoints(points, truth, None, 0, test.episode, test.step, height, width)
            kept = scores.identity.kept
            print(
                f"| {game} | {model.name} | {label} | {scores.f1[2]:.3f} | "
                f"{scores.identity.mean_purity:.3f} | {kept.kept}/{kept.tracks} |"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--radii", default="2,4,8", help="comma-separated R in pixels")
    args = parser.parse_args()
    main(args.data, args.runs, [int(r) for r in args.radii.split(",")])
