"""One table per game of an experiment that evaluates noisy runs on clean frames too.

A row per run and evaluated weights (each point of a curve, or the scale's weights): the
share of its keypoints on the bars, the share of its summed error map's mass on them and that
mass by part of the bars (`permakey.evaluation.error_mass.PARTS`), the bars' share of the
frame (chance), its error-map peaks' share on the bars, and F1 on the noisy and on the clean
test frames, all at the evaluation's headline radius (the error mass at its own margin, 2 px
as well); read from the groups' evaluation JSON files. Rows are given for what is evaluated so
far (a run still training has none yet).

`curve_figure_of` draws the same numbers against training steps for the runs with a curve:
a column per game, rows for the keypoints' and their peaks' share on the bars, the error maps'
mass on them (each beside chance, dashed) and F1 on clean frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from permakey.evaluation.error_mass import PARTS
from permakey.evaluation.evaluate import read_result
from permakey.evaluation.results import ColumnMetrics, EvaluationResult, peaks_name
from permakey.experiments.definitions import step_budget
from permakey.experiments.plan import Bars, ExperimentPlan, GroupPlan, RunPlan, run_weights
from permakey.runs.folder import snapshot_step
from permakey.runs.trained import unique_names
from permakey.visualisation.colours import run_style
from permakey.visualisation.figures import Series, curve_figure


def _column(result: EvaluationResult, group: GroupPlan, run: RunPlan, peaks: bool = False):
    """The metrics of ``run``'s column (or of its error-map peaks) in ``result``; None if absent."""
    name = unique_names([r.path for r in group.runs])[group.runs.index(run)]
    wanted = peaks_name(name) if peaks else name
    for column in result.columns:
        if column.name == wanted:
            return column.metrics
    return None


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _at(metrics: ColumnMetrics | None, field: str, radius: int) -> float | None:
    """``metrics.field`` at ``radius``; None where the metrics or the field are absent."""
    values = None if metrics is None else getattr(metrics, field)
    return None if values is None else values.get(radius)


def _value(metrics: ColumnMetrics | None, field: str, radius: int) -> str:
    return _number(_at(metrics, field, radius))


def _mass(metrics: ColumnMetrics | None) -> tuple[str, str]:
    """(summed error mass on the bars, its parts as "a / b / ..."), "n/a" without error maps."""
    mass = None if metrics is None else metrics.bar_error_mass
    if mass is None:
        return "n/a", "n/a"
    parts = " / ".join(_number(mass.parts[name].summed) for name in PARTS if name in mass.parts)
    return _number(mass.summed), parts


def _trained(plan: ExperimentPlan, run: RunPlan, weights: str) -> str:
    """How far ``run`` trained at ``weights``: "N (kx)" for a curve point."""
    step = snapshot_step(weights)
    if step is None:
        return weights
    multiple = step / step_budget(plan.scale, run.variant.method)
    return f"{step} ({multiple:g}x)"


@dataclass(frozen=True)
class Row:
    """What is evaluated of one run at one of its weights.

    Attributes:
        run: the run.
        weights: "step-N" (a curve point) or the scale's weights.
        radius: the evaluations' headline radius.
        model: the run's scores on noisy frames.
        peaks: its error-map peaks' scores on noisy frames (None: no error maps).
        clean: its scores on clean frames (None: not evaluated yet).
    """

    run: RunPlan
    weights: str
    radius: int
    model: ColumnMetrics | None
    peaks: ColumnMetrics | None
    clean: ColumnMetrics | None


def evaluated_rows(plan: ExperimentPlan, game: str) -> list[Row]:
    """``game``'s rows in the plan's run order, each run's weights in training order; a row
    for every run and weights whose noisy evaluation exists."""
    found: dict[tuple[Path, str, bool], tuple[GroupPlan, EvaluationResult]] = {}
    for group in plan.groups:
        if group.data.game != game or not group.evaluation.is_file():
            continue
        result = read_result(group.evaluation)
        for run in group.runs:
            clean = group.bars == Bars() and Bars.of(run.variant) != Bars()
            found[(run.path, group.weights, clean)] = (group, result)
    rows = []
    for run in plan.runs:
        if run.variant.game != game:
            continue
        for weights in run_weights(run.variant, plan.scale):
            if (run.path, weights, False) not in found:
                continue
            noisy_group, noisy = found[(run.path, weights, False)]
            clean = found.get((run.path, weights, True))
            rows.append(
                Row(
                    run, weights, noisy.headline_radius, _column(noisy, noisy_group, run),
                    _column(noisy, noisy_group, run, peaks=True),
                    _column(clean[1], clean[0], run) if clean else None,
                )
            )  # fmt: skip
    return rows


def summary_table(plan: ExperimentPlan, game: str) -> str | None:
    """The markdown table of ``game``'s evaluated runs, or None while none is evaluated."""
    rows = evaluated_rows(plan, game)
    if not rows:
        return None
    radius = rows[0].radius
    lines = []
    for row in rows:
        mass, parts = _mass(row.model)
        lines.append(
            f"| {row.run.variant.name} | {_trained(plan, row.run, row.weights)} | "
            f"{_value(row.model, 'distractor_share', radius)} | {mass} | {parts} | "
            f"{_value(row.model, 'distractor_chance', radius)} | "
            f"{_value(row.peaks, 'distractor_share', radius)} | "
            f"{_value(row.model, 'f1', radius)} | {_value(row.clean, 'f1', radius)} |"
        )
    header = (
        f"| run | trained | keypoints on bars@{radius} | error mass on bars | its parts "
        f"({', '.join(PARTS)}) | chance@{radius} | its peaks on bars@{radius} | "
        f"F1@{radius} noisy | F1@{radius} clean |\n|---|---|---|---|---|---|---|---|---|"
    )
    return "\n".join([header, *lines])


def _summed_mass(metrics: ColumnMetrics | None) -> float | None:
    mass = None if metrics is None else metrics.bar_error_mass
    return None if mass is None else mass.summed


_CHANCE_GREY = (140, 140, 140)


def curve_figure_of(plan: ExperimentPlan) -> Image.Image | None:
    """The experiment's curve: each run with a curve, against multiples of its step budget.

    Returns:
        The figure (`visualisation.figures.curve_figure`), or None while no curve point is
        evaluated.
    """
    curves = [r for r in plan.runs if r.variant.curve]
    multiples = sorted({m for r in curves for m in r.variant.curve})
    games = list(dict.fromkeys(r.variant.game for r in curves))
    by_game = {game: evaluated_rows(plan, game) for game in games}
    if not any(by_game.values()):
        return None
    kinds = list(dict.fromkeys(r.path.name for r in curves))  # the same runs on every game
    radius = next(rows[0].radius for rows in by_game.values() if rows)
    # (row label, the value of a row, whether it is a share of the frame drawn beside chance:
    # what a map or keypoints blind to the bars score)
    measures = (
        (f"keypoints on bars@{radius}", lambda row: _at(row.model, "distractor_share", radius), True),
        (f"error-map peaks on bars@{radius}", lambda row: _at(row.peaks, "distractor_share", radius), True),
        ("error-map mass on bars", lambda row: _summed_mass(row.model), True),
        (f"F1@{radius} clean frames", lambda row: _at(row.clean, "f1", radius), False),
    )  # fmt: skip

    def points(rows: list[Row], kind: str, value) -> tuple[float | None, ...]:
        at = {}
        for row in rows:
            if row.run.path.name == kind:
                budget = step_budget(plan.scale, row.run.variant.method)
                at[snapshot_step(row.weights) / budget] = value(row)
        return tuple(at.get(m) for m in multiples)

    charts = []
    for _, value, beside_chance in measures:
        row_charts = []
        for game in games:
            rows = by_game[game]
            lines = []
            for k, kind in enumerate(kinds):
                colour, marker = run_style(k)
                values = points(rows, kind, value)
                if any(v is not None for v in values):
                    lines.append(Series(kind, values, colour, marker))
            chance = [_at(row.model, "distractor_chance", radius) for row in rows]
            chance = [c for c in chance if c is not None]
            if beside_chance and chance:  # the same test frames and bars at every point
                lines.append(
                    Series("chance", (chance[0],) * len(multiples), _CHANCE_GREY, dashed=True)
                )
            row_charts.append(lines)
        charts.append(row_charts)
    return curve_figure(
        charts, [name for name, _, _ in measures], games, [f"{m:g}x" for m in multiples],
        title=f"{plan.experiment.name} ({plan.scale.name} scale): against multiples of the "
        "step budget",
    )  # fmt: skip
