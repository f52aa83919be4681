"""One table per game of an experiment that evaluates noisy runs on clean frames too.

A row per run and evaluated weights (each point of a curve, or the scale's weights): the
share of its keypoints on the bars, the share of its summed error map's mass on them and that
mass by part of the bars (`permakey.evaluation.error_mass.PARTS`), the bars' share of the
frame (chance), its error-map peaks' share on the bars, and F1 on the noisy and on the clean
test frames, all at the evaluation's headline radius (the error mass at its own margin, 2 px
as well); read from the groups' evaluation JSON files.
"""

from __future__ import annotations

from pathlib import Path

from permakey.evaluation.error_mass import PARTS
from permakey.evaluation.evaluate import read_result
from permakey.evaluation.results import ColumnMetrics, EvaluationResult, peaks_name
from permakey.experiments.definitions import step_budget
from permakey.experiments.plan import Bars, ExperimentPlan, GroupPlan, RunPlan
from permakey.runs.folder import snapshot_step
from permakey.runs.trained import unique_names


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


def _value(metrics: ColumnMetrics | None, field: str, radius: int) -> str:
    values = None if metrics is None else getattr(metrics, field)
    return _number(None if values is None else values.get(radius))


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


def summary_table(plan: ExperimentPlan, game: str) -> str | None:
    """The markdown table of ``game``'s runs, or None while an evaluation it needs is missing."""
    found: dict[tuple[Path, str, bool], tuple[GroupPlan, EvaluationResult]] = {}
    for group in plan.groups:
        if group.data.game != game:
            continue
        if not group.evaluation.is_file():
            return None
        result = read_result(group.evaluation)
        for run in group.runs:
            clean = group.bars == Bars() and Bars.of(run.variant) != Bars()
            found[(run.path, group.weights, clean)] = (group, result)
    radius = None
    lines = []
    for run in plan.runs:
        if run.variant.game != game:
            continue
        for weights in dict.fromkeys(w for (path, w, _) in found if path == run.path):
            noisy_group, noisy = found[(run.path, weights, False)]
            clean = found.get((run.path, weights, True))
            radius = noisy.headline_radius
            model = _column(noisy, noisy_group, run)
            peaks = _column(noisy, noisy_group, run, peaks=True)
            clean_f1 = _value(_column(clean[1], clean[0], run), "f1", radius) if clean else "n/a"
            mass, parts = _mass(model)
            lines.append(
                f"| {run.variant.name} | {_trained(plan, run, weights)} | "
                f"{_value(model, 'distractor_share', radius)} | {mass} | {parts} | "
                f"{_value(model, 'distractor_chance', radius)} | "
                f"{_value(peaks, 'distractor_share', radius)} | {_value(model, 'f1', radius)} | "
                f"{clean_f1} |"
            )
    if radius is None:
        return None
    header = (
        f"| run | trained | keypoints on bars@{radius} | error mass on bars | its parts "
        f"({', '.join(PARTS)}) | chance@{radius} | its peaks on bars@{radius} | "
        f"F1@{radius} noisy | F1@{radius} clean |\n|---|---|---|---|---|---|---|---|---|"
    )
    return "\n".join([header, *lines])
