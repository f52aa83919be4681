"""Keypoint quality against issue 8's targets, as a markdown table.

python scripts/curve_table.py PATH [...]

PATH is a folder that scripts/curve.sh wrote (OUT/GAME-PRESET-curve: one row per
evaluation_<minutes>min.json in it) or an evaluation JSON that scripts/lever_sweep.sh wrote
(OUT/eval-GAME-sSEED.json: one row per model in it). The last column names the targets a row
meets, at the headline radius of 2 pixels:
  margin  F1 at least 0.10 above the model's own static template;
  peaks   F1 at least that of the model's error-map peaks;
  player  Player recall >= 0.85;
  enemy   recall of the moving enemy (Alien, Bird or Ghost) at least 0.10 above the template's.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from permakey.evaluation.evaluate import read_result
from permakey.evaluation.results import ColumnMetrics, EvaluationResult

ENEMIES = ("Alien", "Bird", "Ghost")  # the moving enemy whose recall is shown, per game
MARGIN = 0.10  # how far above its template a model must be: F1@2 and enemy recall@2
PLAYER = 0.85  # Player recall@2 to reach
R = 2  # the radius of every number in the table, in pixels

HEADER = (
    "| run | trained | F1@2 | its template | margin | error-map peaks | random "
    "| Player recall@2 (template) | enemy recall@2 (template) | px/frame | targets met |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def row(result: EvaluationResult, model: str, label: str, trained: str) -> str:
    """One markdown row for the model column ``model`` of an evaluation ``result``."""
    mine, template = result.column(model).metrics, result.template_of(model).metrics
    peaks = result.peaks_of(model).metrics
    random_f1 = result.random_for(model).metrics.f1[R]

    def recall(metrics: ColumnMetrics, name: str) -> float:
        return metrics.per_category[name].recall[R]

    enemy = next(n for n in ENEMIES if n in mine.per_category)
    f1, f1_template = mine.f1[R], template.f1[R]
    met = {
        "margin": f1 >= f1_template + MARGIN,
        "peaks": f1 >= peaks.f1[R],
        "player": recall(mine, "Player") >= PLAYER,
        "enemy": recall(mine, enemy) >= recall(template, enemy) + MARGIN,
    }
    cells = [
        label,
        trained,
        f"{f1:.3f}",
        f"{f1_template:.3f}",
        f"{f1 - f1_template:+.3f}",
        f"{peaks.f1[R]:.3f}",
        f"{random_f1:.3f}",
        f"{recall(mine, 'Player'):.2f} ({recall(template, 'Player'):.2f})",
        f"{enemy} {recall(mine, enemy):.2f} ({recall(template, enemy):.2f})",
        f"{mine.motion.per_step_px:.2f}",
        "all" if all(met.values()) else ", ".join(k for k, v in met.items() if v) or "none",
    ]
    return f"| {' | '.join(cells)} |"


def steps(result: EvaluationResult, model: str) -> int:
    """Optimiser steps of the run evaluated in column ``model``."""
    return result.column(model).identity["run_json"]["step"]


def rows(path: Path) -> list[str]:
    """The rows of a curve folder (by minutes) or of one sweep evaluation JSON (by model)."""
    if path.is_dir():
        out = []
        files = sorted(
            path.glob("evaluation_*min.json"), key=lambda p: int(re.findall(r"\d+", p.stem)[0])
        )
        for file in files:
            result = read_result(file)
            model = result.models[0].name
            minutes = file.stem.split("_")[1].removesuffix("min")
            trained = f"{minutes} min ({steps(result, model)} steps)"
            out.append(row(result, model, path.name.removesuffix("-curve"), trained))
        return out
    result = read_result(path)
    game = result.dataset.meta["game"]
    models = [c.name for c in result.models]
    return [row(result, m, f"{game} {m}", f"{steps(result, m)} steps") for m in models]


if __name__ == "__main__":
    print(HEADER)
    for arg in sys.argv[1:]:
        print("\n".join(rows(Path(arg))))
