"""Issue 17's background hypothesis: does a bar light up the error maps more where the game
behind it changes along the bar? One trained run, its own test frames and bars: no second run.

python scripts/bar_background.py RUN DATA [FRAMES]

Paints the bars the run trained with over the first FRAMES (default 500) test frames, at the
positions `permakey evaluate` draws (noise seed 0), and computes the run's summed normalised
error map. For every bar (the vertical ones transposed, so that each is a row band) it takes
the bar grown by `error_mass.MARGIN` px without its crossing with the other bar and without
its ends at the border (`error_mass.END_PX`): there the two bars and the frame's edge are not
in the way, and what differs between bars is only the game beside them. For each it measures:

- the bar's **excess**: its share of the map's mass over its share of the frame's area (1: as
  if the map were blind to the bar);
- the **background change along the bar**: in the clean frame, within `BESIDE` px above and
  below the painted bar (the pixels that share LSP cells with it), the share of pixels whose
  colour differs from the next pixel along the bar.

Prints, per bin of the background change (`BINS`), the number of bars, the change's range and
the mean excess (with its standard error), and the rank correlation of the two.
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.stats import spearmanr

from permakey.data.noise import bar_bands, draw_bars, paint_bars
from permakey.data.store import open_split
from permakey.evaluation import error_mass
from permakey.runs.bars import noise_for_runs
from permakey.runs.trained import load

BESIDE = 4  # px above and below the bar measured for the background: one `cpu-track` cell
BATCH = 64
BINS = (0.0, 0.05, 0.15, 0.25, 0.35, 1.01)  # of the background change, same for every game


def bar_rows(
    stack: np.ndarray, clean: np.ndarray, band: np.ndarray, painted: np.ndarray, across: np.ndarray
):
    """(excess, change) of row bars: one frame's summed map (H, W), its clean frame (H, W, 3),
    the bar's grown and painted rows (H,) bool, and the other bar's grown columns (W,) bool."""
    height, frame_width = stack.shape
    cols = np.ones(frame_width, dtype=bool)
    cols[: error_mass.END_PX] = cols[frame_width - error_mass.END_PX :] = False
    cols &= ~across
    region = band[:, None] & cols[None, :]  # (H, W)
    excess = (stack[region].sum() / stack.sum()) / (region.sum() / stack.size)
    rows = np.flatnonzero(painted)
    top, bottom = rows[0], rows[-1] + 1
    beside = np.zeros(height, dtype=bool)
    beside[max(top - BESIDE, 0) : top] = beside[bottom : bottom + BESIDE] = True
    changes = np.any(clean[:, 1:] != clean[:, :-1], axis=-1)  # (H, W - 1)
    pairs = cols[1:] & cols[:-1]
    return excess, changes[beside][:, pairs].mean()


def main(argv: list[str]) -> None:
    if len(argv) not in (2, 3):
        raise SystemExit(__doc__)
    run, data = argv[0], argv[1]
    frames = int(argv[2]) if len(argv) == 3 else 500
    noise = noise_for_runs([run], data, "both")
    model = load(run, "last")
    split = open_split(data, "test")
    frames = min(frames, len(split))
    clean = split.read_frames(slice(0, frames))  # (N, H, W, 3) uint8
    n, height, width = clean.shape[:3]
    bars = draw_bars(np.random.default_rng(0), n, height, width, noise)
    maps = []
    for start in range(0, n, BATCH):
        painted = paint_bars(clean[start : start + BATCH], bars[start : start + BATCH], noise)
        found = model.keypoints(painted, windows=False, error_maps=True)
        maps.append(found.error_stack.sum(dim=1).numpy())  # (B, H, W)
    stacks = np.concatenate(maps)
    rows, cols = bar_bands(bars, height, width, noise, error_mass.MARGIN)  # (N, H), (N, W)
    painted_rows, painted_cols = bar_bands(bars, height, width, noise)
    found = []
    for i in range(n):
        if stacks[i].sum() <= 0:
            continue
        found.append(bar_rows(stacks[i], clean[i], rows[i], painted_rows[i], cols[i]))
        flipped = clean[i].transpose(1, 0, 2)  # the vertical bar as a row band
        found.append(bar_rows(stacks[i].T, flipped, cols[i], painted_cols[i], rows[i]))
    excess, change = np.array(found).T  # (2N,) each
    print(f"{run}: {len(excess)} bars on {n} frames, {noise}")
    print("| background change along the bar | bars | mean excess (s.e.) |\n|---|---|---|")
    group = np.searchsorted(BINS, change, side="right") - 1  # (2N,) in [0, len(BINS) - 1)
    for q in range(len(BINS) - 1):
        pick = group == q
        if not pick.any():
            continue
        spread = excess[pick].std(ddof=1) / np.sqrt(pick.sum()) if pick.sum() > 1 else 0.0
        print(
            f"| {BINS[q]:.2f}-{min(BINS[q + 1], 1):.2f} | {pick.sum()} "
            f"| {excess[pick].mean():.2f} ({spread:.2f}) |"
        )
    rho = spearmanr(change, excess)
    print(f"rank correlation {rho.statistic:.2f} (p = {rho.pvalue:.1g})")


if __name__ == "__main__":
    main(sys.argv[1:])
