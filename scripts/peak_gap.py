"""Issue 16's targets per game and variant: keypoints against the error-map peaks and every
control, mean over seeds, as a markdown table.

python scripts/peak_gap.py VARIANT=EVALUATION.json[,EVALUATION.json...] [...]

Each argument names a variant (a preset or a lever) and its evaluation JSONs (`permakey
evaluate --out`), one per seed, each holding one PermaKey run; files of several games may be
mixed, rows are per game and variant. Columns: F1@2 of the keypoints (seeds' mean, then each
seed) and of their error-map peaks; mean purity; objects kept (share of the object tracks) by
the keypoints and by the best of their template, their peaks and random points, and by the
perfect tracker (the ceiling); and which targets the mean meets: "f1" (F1@2 at least the
peaks'), "kept" (at least every control's but the tracker's), "purity" (at least 0.8).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from permakey.evaluation.evaluate import read_result
from permakey.evaluation.results import Column

HEADER = (
    "| game | variant | seeds | F1@2 (each seed) | peaks' F1@2 | mean purity | kept | best "
    "control's kept | tracker's kept | targets met |\n|---|---|---|---|---|---|---|---|---|---|"
)


def _kept(column: Column) -> float:
    return column.metrics.identity.kept.share or 0.0


def scores(path: Path) -> tuple[str, dict[str, float]]:
    """The game of one evaluation and the scores of its (only) model column and controls."""
    result = read_result(path)
    if len(result.models) != 1:
        raise SystemExit(f"{path}: {len(result.models)} model columns, expected 1")
    (model,) = result.models
    if model.metrics.identity is None:
        raise SystemExit(f"{path}: no identity metrics (a dataset without ground truth?)")
    r = result.headline_radius
    controls = [result.template_of(model.name), result.peaks_of(model.name)]
    controls.append(result.random_for(model.name))
    return result.dataset.meta["game"], {
        "f1": model.metrics.f1[r],
        "peaks_f1": result.peaks_of(model.name).metrics.f1[r],
        "purity": model.metrics.identity.mean_purity or 0.0,
        "kept": _kept(model),
        "control_kept": max(_kept(c) for c in controls),
        "tracker_kept": _kept(result.tracker_for(model.name)),
    }


def row(game: str, variant: str, seeds: list[dict[str, float]]) -> str:
    """One markdown row: the seeds' means and the targets they meet."""
    mean = {key: float(np.mean([s[key] for s in seeds])) for key in seeds[0]}
    each = " / ".join(f"{s['f1']:.3f}" for s in seeds)
    met = [
        name
        for name, ok in (
            ("f1", mean["f1"] >= mean["peaks_f1"]),
            ("kept", mean["kept"] >= mean["control_kept"]),
            ("purity", mean["purity"] >= 0.8),
        )
        if ok
    ]
    return (
        f"| {game} | {variant} | {len(seeds)} | {mean['f1']:.3f} ({each}) | "
        f"{mean['peaks_f1']:.3f} | {mean['purity']:.3f} | {mean['kept']:.2f} | "
        f"{mean['control_kept']:.2f} | {mean['tracker_kept']:.2f} | {', '.join(met) or 'none'} |"
    )


def main(args: list[str]) -> None:
    table: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    for arg in args:
        variant, sep, files = arg.partition("=")
        if not sep or not files:
            raise SystemExit(f"expected VARIANT=FILE[,FILE...], got {arg!r}")
        for name in files.split(","):
            game, seed_scores = scores(Path(name))
            table[(game, variant)].append(seed_scores)
    print(HEADER)
    for (game, variant), seeds in sorted(table.items()):
        print(row(game, variant, seeds))


if __name__ == "__main__":
    main(sys.argv[1:])
