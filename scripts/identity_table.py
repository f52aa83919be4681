"""F1@2 and identity of the keypoints and of every control, as a markdown table.

python scripts/identity_table.py [--detail] EVALUATION.json [...]

One block of rows per model column of each evaluation JSON (`permakey evaluate --out`): the
model, then its controls (its static template, its error-map peaks, random points, a perfect
tracker with as many keypoints), each with F1@2, mean purity, the object tracks kept (count
and share) and the moving ones kept (`permakey.evaluation.results.IdentityScores`). Several
files of one game (seeds) can be given; each row names its file's game and model column.
``--detail`` adds precision and recall at the headline radius and the tracks kept in each
headline category.
"""

from __future__ import annotations

import sys
from pathlib import Path

from permakey.evaluation.evaluate import read_result
from permakey.evaluation.results import Column, EvaluationResult, TrackCounts

HEADER = (
    "| game | column | F1@2 | mean purity | objects kept | moving kept | static kept |\n"
    "|---|---|---|---|---|---|---|"
)


def _kept(counts: TrackCounts) -> str:
    return f"{counts.kept}/{counts.tracks} ({counts.share or 0:.2f})"


def row(game: str, label: str, column: Column, radius: int, detail: bool = False) -> str:
    """One markdown row: F1 at ``radius`` and the identity scores of one column (and with
    ``detail``, its precision and recall at ``radius`` and its tracks kept per headline
    category)."""
    m = column.metrics
    identity = m.identity
    if identity is None:
        cells = ["n/a"] * 4
    else:
        purity = "n/a" if identity.mean_purity is None else f"{identity.mean_purity:.3f}"
        cells = [purity, _kept(identity.kept), _kept(identity.moving), _kept(identity.static)]
    if detail:
        cells.append(f"{m.precision[radius]:.3f} / {m.recall[radius]:.3f}")
        per = {} if identity is None else identity.per_category
        cells.append(", ".join(f"{n} {c.kept}/{c.tracks}" for n, c in sorted(per.items())))
    return f"| {game} | {label} | {m.f1[radius]:.3f} | {' | '.join(cells)} |"


def rows(result: EvaluationResult, detail: bool = False) -> list[str]:
    """The rows of every model column of one evaluation and of its controls (``detail``: as
    `row`)."""
    game = result.dataset.meta["game"] if result.dataset else "?"
    r = result.headline_radius
    out = []
    for model in result.models:
        controls = [
            ("its template", result.template_of(model.name)),
            ("its error-map peaks", result.peaks_of(model.name)),
            ("random", result.random_for(model.name)),
            ("perfect tracker", result.tracker_for(model.name)),
        ]
        out.append(row(game, model.name, model, r, detail))
        out += [row(game, label, c, r, detail) for label, c in controls if c is not None]
    return out


if __name__ == "__main__":
    paths = sys.argv[1:]
    detail = "--detail" in paths
    paths = [p for p in paths if p != "--detail"]
    if detail:
        extra = " | precision / recall | kept per category |\n"
        print(HEADER.replace(" |\n", extra, 1) + "---|---|")
    else:
        print(HEADER)
    for path in paths:
        print("\n".join(rows(read_result(Path(path)), detail)))
