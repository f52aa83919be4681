"""Prints the keypoint-quality curve written by scripts/curve.sh as a markdown table.

python scripts/curve_table.py OUT/GAME-PRESET-curve [...]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ENEMIES = ("Alien", "Bird", "Ghost")  # the moving enemies whose recall is shown, per game


def rows(folder: Path) -> list[str]:
    """One markdown row per evaluation_<minutes>min.json in ``folder``, by minutes."""
    out = []
    files = sorted(
        folder.glob("evaluation_*min.json"), key=lambda p: int(re.findall(r"\d+", p.stem)[0])
    )
    for path in files:
        result = json.loads(path.read_text())
        columns = {c["name"]: c["metrics"] for c in result["columns"]}
        model = next(c["name"] for c in result["columns"] if c["kind"] == "model")
        mine, template = columns[model], columns[f"template: {model}"]
        peaks = columns[f"peaks: {model}"]
        random_f1 = next(m["f1"]["2"] for n, m in columns.items() if n.startswith("random"))

        def recall(metrics: dict, name: str) -> str:
            return f"{metrics['per_category'][name]['recall']['2']:.2f}"

        enemy = next(n for n in ENEMIES if n in mine["per_category"])
        cells = [
            folder.name.removesuffix("-curve"),
            path.stem.split("_")[1],
            f"{mine['f1']['2']:.3f}",
            f"{template['f1']['2']:.3f}",
            f"{peaks['f1']['2']:.3f}",
            f"{random_f1:.3f}",
            f"{recall(mine, 'Player')} ({recall(template, 'Player')})",
            f"{enemy} {recall(mine, enemy)} ({recall(template, enemy)})",
            f"{mine['motion']['per_step_px']:.2f}",
        ]
        out.append(f"| {' | '.join(cells)} |")
    return out


if __name__ == "__main__":
    print(
        "| run | trained | F1@2 | its template | error-map peaks | random "
        "| Player recall@2 (template) | enemy recall@2 (template) | px/frame |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for arg in sys.argv[1:]:
        print("\n".join(rows(Path(arg))))
