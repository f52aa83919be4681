"""Issue 17's mechanism: which LSP networks find the Noisy Atari bars predictable, on the same
features? Fresh LSP networks of several forms are trained on a trained run's frozen encoder
features of frames with bars, and their error maps' mass on the bars is measured.

python scripts/lsp_probe.py RUN DATA STEPS[,STEPS...] NAME=KEY=JSON[;KEY=JSON...] [...]
python scripts/lsp_probe.py R D 90,360 own= wide='lsp_hidden=[512, 256]' dir=lsp_directional=true

Each NAME names a form: the run's model config with the given fields replaced (none: the run's
own form, trained afresh). Every form is trained for the largest STEPS steps of batch 32 (Adam, learning
rate 1e-3, the `cpu` presets' LSP rate) on training frames with the bars the run trained with
(fresh bars per step, as in training), on the run's encoder in eval mode (last weights),
seed 0, and measured after each of STEPS steps, on the first 500 test frames with the evaluation's bars (noise seed 0):

- ``mass``: the share of the summed normalised error stack's mass on the bars grown by 2 px,
  mean over frames: `permakey evaluate`'s "error-map mass on bars", next to ``chance``;
- ``raw bar / off``: the mean squared prediction error (the map before its normalisation) of
  the cells mostly on a bar, over that of the cells off the bars, per LSP layer.

Only the LSP networks differ between the forms: the features, frames, bars and the
measurement are the same. The run's own LSP networks are measured too (``trained``).
"""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from permakey.data.frames import to_float
from permakey.data.noise import bar_mask, draw_bars, frame_bars, paint_bars
from permakey.data.store import open_split
from permakey.evaluation import error_mass
from permakey.models.permakey import (
    DIRECTION_PAIRS,
    NEIGHBOUR_OFFSETS,
    PermaKey,
    cell_errors,
    error_map,
    normalised_error_stack,
    to_cells,
)
from permakey.runs.bars import noise_for_runs
from permakey.runs.trained import load

BATCH = 32
LR = 1e-3
TEST_FRAMES = 500


class NeighbourMeanSkip(nn.Module):
    """An LSP network plus the mean of the neighbours it sees (prototype, "skip" form):
    directional networks add the mean of their pair, the others the mean of all 8."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, cells: torch.Tensor) -> torch.Tensor:
        h, w = cells.shape[-2:]
        padded = F.pad(cells, (1, 1, 1, 1))

        def at(dy: int, dx: int) -> torch.Tensor:
            return padded[:, :, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

        if self.net.directions == 1:
            means = torch.stack([at(*o) for o in NEIGHBOUR_OFFSETS]).mean(0).unsqueeze(1)
        else:
            means = torch.stack([(at(dy, dx) + at(-dy, -dx)) / 2 for dy, dx in DIRECTION_PAIRS], 1)
        return self.net(cells) + means  # (B, G, D, h, w)


def images(frames: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [0, 1]."""
    return to_float(torch.from_numpy(frames).permute(0, 3, 1, 2), "cpu")


def measure(model: PermaKey, lsp, frames, bars, noise) -> dict[str, float]:
    """Bar mass of the normalised error stack (as `permakey evaluate` computes it:
    `error_mass.bar_parts`, `part_masses`, `bar_error_mass`) and per-layer raw error ratios of
    ``lsp``."""
    n, height, width = frames.shape[:3]
    no_sprites = np.zeros((n, height, width), dtype=bool)  # the parts' total needs none
    labels = error_mass.bar_parts(bars, noise, height, width, no_sprites)  # (N, H, W)
    painted_mask = bar_mask(bars, height, width, noise)  # (N, H, W)
    masses, raw = [], {layer: [[], []] for layer in model.config.lsp_layers}
    with torch.no_grad():
        for start in range(0, n, 100):
            stop = min(start + 100, n)
            features = model.feature_maps(
                images(paint_bars(frames[start:stop], bars[start:stop], noise))
            )
            maps = []
            for layer, net in zip(model.config.lsp_layers, lsp, strict=True):
                cells = to_cells(features[layer], model.config.patch_size)  # (B, D, h, w)
                _, smallest = cell_errors(net(cells), cells)  # (B, h, w)
                config = model.config
                maps.append(error_map(smallest, cells, config.error_eps, config.error_map_sqrt))
                side = height // smallest.shape[-1]
                on = painted_mask[start:stop].reshape(
                    stop - start, smallest.shape[1], side, -1, side
                )
                share = torch.from_numpy(on.mean(axis=(2, 4)))  # (B, h, w) bar share of each cell
                raw[layer][0].append(smallest[share > 0.5])
                raw[layer][1].append(smallest[share == 0])
            stack = normalised_error_stack(maps, height).numpy()  # (B, L, H, W)
            masses.append(error_mass.part_masses(stack, labels[start:stop]))
    mass = error_mass.bar_error_mass(
        np.concatenate(masses), error_mass.part_areas(labels), model.error_layers, "none"
    )
    out = {"mass": mass.summed, "chance": mass.chance}
    for layer, (on, off) in raw.items():
        out[f"raw bar / off, layer {layer}"] = float(torch.cat(on).mean() / torch.cat(off).mean())
    return out


def main(argv: list[str]) -> None:
    if len(argv) < 4:
        raise SystemExit(__doc__)
    run, data = argv[0], argv[1]
    checkpoints = sorted(int(s) for s in argv[2].split(","))
    forms = {}
    for arg in argv[3:]:
        name, _, fields = arg.partition("=")
        pairs = [f.partition("=") for f in fields.split(";") if f]
        forms[name] = {key: json.loads(value) for key, _, value in pairs}
    # "skip=true" is not a config field: the prototype `NeighbourMeanSkip`.
    noise = noise_for_runs([run], data, "both")
    trained = load(run, "last").model.eval()
    train = open_split(data, "train").read_frames(slice(None))  # (N, H, W, 3) uint8
    test = open_split(data, "test")
    test = test.read_frames(slice(0, min(TEST_FRAMES, len(test))))
    n, height, width = test.shape[:3]
    test_bars = draw_bars(np.random.default_rng(0), n, height, width, noise)
    print(f"{run}: {noise}")
    print(json.dumps({"trained": measure(trained, trained.lsp, test, test_bars, noise)}))
    for name, fields in forms.items():
        torch.manual_seed(0)
        skip = fields.get("skip", False)
        config = dataclasses.replace(
            trained.config, **{k: v for k, v in fields.items() if k != "skip"}
        )
        lsp = PermaKey(config).lsp
        if skip:
            lsp = nn.ModuleList(NeighbourMeanSkip(net) for net in lsp)
        lsp.train()
        optimiser = torch.optim.Adam(lsp.parameters(), lr=LR)
        rng = np.random.default_rng(0)
        for step in range(checkpoints[-1]):
            index = rng.integers(0, len(train), BATCH)
            bars = frame_bars(0, step, index, height, width, noise)
            with torch.no_grad():
                features = trained.feature_maps(images(paint_bars(train[index], bars, noise)))
            loss = 0.0
            for layer, net in zip(config.lsp_layers, lsp, strict=True):
                cells = to_cells(features[layer], config.patch_size)
                squared, _ = cell_errors(net(cells), cells)
                loss = loss + squared.mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            if step + 1 in checkpoints:
                lsp.eval()
                found = measure(trained, lsp, test, test_bars, noise)
                print(json.dumps({name: found | {"steps": step + 1, "fields": fields}}), flush=True)
                lsp.train()


if __name__ == "__main__":
    main(sys.argv[1:])
