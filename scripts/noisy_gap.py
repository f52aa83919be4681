"""Issue 17's item 4 per game and variant: PermaKey's keypoints on the Noisy Atari bars against
chance, and its clean F1, mean over seeds, as a markdown table.

python scripts/noisy_gap.py VARIANT=NOISY.json+CLEAN.json[,NOISY.json+CLEAN.json...] [...]

Each argument names a variant (a preset or an option) and, per seed, the two evaluations of one
run trained with bars (`permakey evaluate --noise both` and `--noise none`), each holding one
PermaKey model; files of several games may be mixed, rows are per game and variant. Columns:
the keypoints' distractor share@2 on the noisy test frames (seeds' mean, then each seed), its
chance (the grown bars' share of the frame), the error maps' mass on the grown bars, the
error-map peaks' distractor share@2, the clean F1@2 (mean, each seed) and its change from the
variant named "base" of the same game, and the targets the means meet: "bars" (distractor
share at most chance + 0.02) and "f1" (clean F1@2 at most 0.02 below base's).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from permakey.evaluation.evaluate import read_result

R = 2  # the radius of every number, in pixels
SLACK = 0.02  # item 4: distractor share at most chance + SLACK, clean F1 at most SLACK below

HEADER = (
    "| game | variant | seeds | keypoints on bars@2 (each seed) | chance@2 | error-map mass "
    "on bars | peaks on bars@2 | F1@2 clean (each seed) | change from base | targets met |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def scores(noisy: Path, clean: Path) -> tuple[str, dict[str, float]]:
    """The game of one run and its scores from its noisy and clean evaluations."""
    found = []
    for path in (noisy, clean):
        result = read_result(path)
        if len(result.models) != 1:
            raise SystemExit(f"{path}: {len(result.models)} model columns, expected 1")
        found.append((result, result.models[0]))
    (noisy_result, model), (clean_result, clean_model) = found
    if model.metrics.distractor_share is None or model.metrics.bar_error_mass is None:
        raise SystemExit(f"{noisy}: no distractor metrics (evaluated without --noise?)")
    game = noisy_result.dataset.meta["game"]
    if clean_result.dataset.meta["game"] != game:
        raise SystemExit(f"{noisy} and {clean}: different games")
    peaks = noisy_result.peaks_of(model.name).metrics
    return game, {
        "share": model.metrics.distractor_share[R],
        "chance": model.metrics.distractor_chance[R],
        "mass": model.metrics.bar_error_mass.summed,
        "peaks": peaks.distractor_share[R],
        "f1": clean_model.metrics.f1[R],
    }


def each(seeds: list[dict[str, float]], key: str) -> str:
    """The seeds' values of ``key``, "a / b / ..."."""
    return " / ".join(f"{s[key]:.3f}" for s in seeds)


def main(argv: list[str]) -> None:
    if not argv or any("=" not in a for a in argv):
        raise SystemExit(__doc__)
    table: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    for arg in argv:
        variant, _, pairs = arg.partition("=")
        for pair in pairs.split(","):
            noisy, plus, clean = pair.partition("+")
            if not plus:
                raise SystemExit(f"{pair!r}: expected NOISY.json+CLEAN.json")
            game, values = scores(Path(noisy), Path(clean))
            table[(game, variant)].append(values)
    print(HEADER)
    for (game, variant), seeds in sorted(table.items()):
        mean = {key: float(np.mean([s[key] for s in seeds])) for key in seeds[0]}
        base = table.get((game, "base"))
        change = None if base is None else mean["f1"] - float(np.mean([s["f1"] for s in base]))
        met = [
            name
            for name, ok in (
                ("bars", mean["share"] <= mean["chance"] + SLACK),
                ("f1", change is not None and change >= -SLACK),
            )
            if ok
        ]
        cells = [
            game,
            variant,
            str(len(seeds)),
            f"{mean['share']:.3f} ({each(seeds, 'share')})",
            f"{mean['chance']:.3f}",
            f"{mean['mass']:.3f}",
            f"{mean['peaks']:.3f}",
            f"{mean['f1']:.3f} ({each(seeds, 'f1')})",
            "" if change is None else f"{change:+.3f}",
            ", ".join(met) or "none",
        ]
        print(f"| {' | '.join(cells)} |")


if __name__ == "__main__":
    main(sys.argv[1:])
