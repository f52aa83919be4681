"""How often error-map peaks lie on objects, by their strength relative to the frame's strongest.

python scripts/peak_strength.py RUN DATA K

The K strongest separated peaks (`permakey.keypoints.error_peaks`, the peaks control) of a
PermaKey run's last weights on the first 500 test frames of DATA, binned by strength as a
share of the frame's strongest peak; per bin, the share of all peaks in it and the share on an
object (within 2 px of a stored box, all categories).
"""

from __future__ import annotations

import sys

import numpy as np
import torch

import permakey
from permakey.data.store import open_split
from permakey.evaluation import metrics
from permakey.keypoints import error_peaks, peak_score

BINS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.8, 1.01)


def main(run: str, data: str, num_peaks: int) -> None:
    model = permakey.load(run, "last")
    split = open_split(data, "test")
    frames = split.read_frames(slice(0, 500))
    offsets, _, boxes = split.object_table()
    offsets = np.asarray(offsets[: len(frames) + 1], dtype=np.int64)
    boxes = np.asarray(boxes[: offsets[-1]], dtype=np.float64)
    with torch.no_grad():
        stack = model.keypoints(frames, windows=False, error_maps=True).error_stack
    score = peak_score(stack)  # (N, H, W)
    pixels = error_peaks(stack, num_peaks)  # (N, P, 2)
    strength = score[torch.arange(len(score))[:, None], pixels[..., 0], pixels[..., 1]]
    share = (strength / strength[:, :1]).numpy()  # (N, P)
    hits = metrics.keypoint_hits(pixels.double().numpy(), offsets, boxes, 2)  # (N, P)
    print("| strength (share of the strongest) | share of the peaks | on an object |")
    print("|---|---|---|")
    for low, high in zip(BINS[:-1], BINS[1:], strict=True):
        band = (share >= low) & (share < high)
        on = f"{hits[band].mean():.2f}" if band.any() else "n/a"
        print(f"| [{low:.1f}, {min(high, 1.0):.1f}) | {band.mean():.2f} | {on} |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
