"""An experiment at a scale, expanded into datasets, runs and evaluation groups.

Layout under the output folder ``OUT`` (one per scale; datasets are shared by every
experiment written there)::

    OUT/data/<Game>-seed0-<train>-<val>-<test>-<policy>[-<resize>]/    collect
    OUT/<experiment>/runs/<variant>/                        train
    OUT/<experiment>/evaluation_<group>.{json,md}           evaluate, its table
    OUT/<experiment>/figures/<group>/                       show
    OUT/<experiment>/tables.md                              every table of the experiment
    OUT/<experiment>/figures/curve.png                      the curve (runs with curves)

A group is the runs of one experiment on the same dataset, with the same Noisy Atari bars
(`Bars`) and the same weights: they are evaluated together on the same frames (one table) and,
at the scale's weights with bars `permakey show` can paint, drawn together (one set of
figures). A run with a curve has one group per curve point (its snapshot "step-N") of its own,
so that its curve can be read while the experiment's other runs still train; with the
experiment's ``clean_too``, a run trained with bars is also evaluated on clean frames.
Each step is a `steps.Step`: the library call that does it, as data. Everything here is pure:
it builds paths and steps, and reads nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from permakey.experiments.definitions import (
    DATA_SEED,
    DEFAULT_RESIZE,
    POLICY,
    Experiment,
    Scale,
    Variant,
    step_budget,
)
from permakey.experiments.steps import Step

# The bars of the paper, which `Bars` leaves out of names and steps (`permakey.data.noise`).
PAPER_WIDTH = 5
PAPER_COLOUR = (128, 0, 255)


@dataclass(frozen=True)
class Bars:
    """The Noisy Atari bars of an evaluation: the kind and how they look.

    Attributes:
        kind: "none", "horizontal", "vertical" or "both".
        width: thickness in stored pixels.
        colour: RGB, each 0-255.
        random_colour: a fresh colour per frame.
        before_resize: painted as if before the dataset's resize.
    """

    kind: str = "none"
    width: int = PAPER_WIDTH
    colour: tuple[int, int, int] = PAPER_COLOUR
    random_colour: bool = False
    before_resize: bool = False

    @classmethod
    def of(cls, variant: Variant) -> Bars:
        """The bars ``variant`` trains on (its noise kind and bar options)."""
        train = dict(variant.train)
        if variant.noise == "none":
            return cls()
        return cls(
            variant.noise,
            train.get("noise_width", PAPER_WIDTH),
            tuple(train.get("noise_colour", PAPER_COLOUR)),
            train.get("noise_random_colour", False),
            train.get("noise_before_resize", False),
        )

    def step_kwargs(self) -> dict[str, Any]:
        """The noise arguments of the evaluate and show steps: the kind, and what differs from
        the paper."""
        kwargs: dict[str, Any] = {"noise": self.kind}
        if self.kind == "none":
            return kwargs
        if self.width != PAPER_WIDTH:
            kwargs["noise_width"] = self.width
        if self.colour != PAPER_COLOUR:
            kwargs["noise_colour"] = list(self.colour)
        if self.random_colour:
            kwargs["noise_random_colour"] = True
        if self.before_resize:
            kwargs["noise_before_resize"] = True
        return kwargs

    def name_parts(self) -> list[str]:
        """What a group's name says of the bars: nothing for clean frames."""
        if self.kind == "none":
            return []
        parts = [self.kind]
        if self.width != PAPER_WIDTH:
            parts.append(f"width{self.width}")
        if self.colour != PAPER_COLOUR:
            parts.append("colour" + ".".join(map(str, self.colour)))
        if self.random_colour:
            parts.append("random-colour")
        if self.before_resize:
            parts.append("before-resize")
        return parts


@dataclass(frozen=True)
class DatasetPlan:
    """One dataset to collect; runs on the same game share it.

    Attributes:
        game: canonical ALE game name.
        path: the dataset folder.
        collect: the "collect" step that writes it.
        resize: how its frames are resized.
    """

    game: str
    path: Path
    collect: Step
    resize: str = DEFAULT_RESIZE


@dataclass(frozen=True)
class RunPlan:
    """One training run.

    Attributes:
        variant: what it trains.
        path: the run folder.
        data: the dataset it trains on.
        options: arguments of `training.start.new_run` that start it, besides its kind, its
            folder and the runtime options (data, presets, keypoints, seed, noise, model...).
        runtime: training options given both when starting and when resuming (budgets,
            loading, device).
    """

    variant: Variant
    path: Path
    data: DatasetPlan
    options: dict[str, Any]
    runtime: dict[str, Any]

    @property
    def start(self) -> Step:
        """The "train" step that starts the run afresh."""
        return Step(
            "train",
            {"kind": self.variant.method, "out": str(self.path), **self.options, **self.runtime},
        )


@dataclass(frozen=True)
class GroupPlan:
    """Runs evaluated together on one dataset, with the same bars and weights.

    Attributes:
        name: "<Game>[-<resize>][-<noise>[-<bar details>]][-step<N>-<run>]", the run (the last
            part of its variant's name) for a run with a curve, which is evaluated alone.
        runs: the runs, in the experiment's order.
        data: their dataset.
        noise: Noisy Atari kind of the evaluation and figures.
        evaluation: the JSON file of the evaluation; its table is the same name in .md.
        figures: the folder of the figures.
        evaluate: the "evaluate" step that writes ``evaluation``.
        show: the "show" step that writes ``figures``; None where the group is not drawn
            (weights of a curve point before the scale's, clean frames of runs trained with
            bars, bars that `permakey show` cannot paint).
        weights: the weights of every run: the scale's, or "step-N" (a curve point).
        bars: the bars of the evaluation.
    """

    name: str
    runs: tuple[RunPlan, ...]
    data: DatasetPlan
    noise: str
    evaluation: Path
    figures: Path
    evaluate: Step
    show: Step | None
    weights: str
    bars: Bars

    @property
    def table(self) -> Path:
        """The markdown table beside the evaluation JSON."""
        return self.evaluation.with_suffix(".md")


@dataclass(frozen=True)
class ExperimentPlan:
    """An experiment at one scale: what to collect, train, evaluate and draw.

    Attributes:
        experiment: the definition.
        scale: the scale.
        folder: OUT/<experiment>.
        datasets: distinct datasets, each collected once.
        runs: every training run.
        groups: evaluation groups.
    """

    experiment: Experiment
    scale: Scale
    folder: Path
    datasets: tuple[DatasetPlan, ...]
    runs: tuple[RunPlan, ...]
    groups: tuple[GroupPlan, ...]

    @property
    def tables(self) -> Path:
        """The markdown file gathering every table of the experiment."""
        return self.folder / "tables.md"


def dataset_name(
    game: str,
    scale: Scale,
    seed: int = DATA_SEED,
    policy: str = POLICY,
    resize: str = DEFAULT_RESIZE,
) -> str:
    """Folder name of a dataset: everything that makes two datasets differ."""
    sizes = f"{scale.train_frames}-{scale.eval_frames}-{scale.eval_frames}"
    name = f"{game}-seed{seed}-{sizes}-{re.sub(r'[^A-Za-z0-9]+', '-', policy)}"
    return name if resize == DEFAULT_RESIZE else f"{name}-{resize}"


def _dataset(game: str, scale: Scale, out: Path, resize: str) -> DatasetPlan:
    path = out / "data" / dataset_name(game, scale, resize=resize)
    collect = Step(
        "collect",
        {
            "game": game, "out": str(path), "frames": scale.train_frames,
            "val_frames": scale.eval_frames, "test_frames": scale.eval_frames,
            "seed": DATA_SEED, "policy": POLICY,
            **({} if resize == DEFAULT_RESIZE else {"resize": resize}),
        },
    )  # fmt: skip
    return DatasetPlan(game, path, collect, resize)


def _device(device: str) -> dict[str, str]:
    """The device argument of a step; none for "auto", which every step's function defaults to."""
    return {} if device == "auto" else {"device": device}


def curve_steps(variant: Variant, scale: Scale) -> list[int]:
    """The steps of ``variant``'s curve points at ``scale`` (empty without a curve)."""
    budget = step_budget(scale, variant.method)
    return [budget * multiple for multiple in variant.curve]


def run_weights(variant: Variant, scale: Scale) -> list[str]:
    """The weights of a run that are evaluated: each curve point's snapshot, else the scale's."""
    steps = curve_steps(variant, scale)
    return [f"step-{step}" for step in steps] if steps else [scale.weights]


def _run(
    variant: Variant, scale: Scale, folder: Path, data: DatasetPlan, device: str, precision: str
) -> RunPlan:
    options: dict[str, Any] = {
        "data": str(data.path), "preset": variant.preset or scale.preset,
        "num_keypoints": variant.num_keypoints, "seed": variant.seed, "noise": variant.noise,
    }  # fmt: skip
    if variant.model:
        options["model"] = dict(variant.model)
    options.update(variant.train)
    if precision != "auto":  # a setting of the run: given when it starts, kept when it resumes
        options["precision"] = precision
    runtime: dict[str, Any] = {"epochs": scale.epochs}
    steps = curve_steps(variant, scale)
    if steps:
        # A curve measures step budgets: early stopping must not end it before its last point.
        options["patience"] = scale.epochs
        runtime.update(max_steps=max(steps), snapshot_steps=steps)
    elif scale.max_steps is not None:
        runtime["max_steps"] = scale.max_steps[variant.method]
    if scale.in_memory:
        runtime.update(in_memory=True, workers=0)
    runtime.update(_device(device))
    return RunPlan(variant, folder / "runs" / variant.name, data, options, runtime)


def _group(
    experiment: Experiment,
    scale: Scale,
    folder: Path,
    bars: Bars,
    weights: str,
    runs: list[RunPlan],
    device: str,
) -> GroupPlan:
    """The group of ``runs`` (on one dataset), evaluated with ``bars`` and ``weights``."""
    data = runs[0].data
    parts = [data.game]
    if data.resize != DEFAULT_RESIZE:
        parts.append(data.resize)
    parts += bars.name_parts()
    trained_on = {Bars.of(r.variant) for r in runs}
    if bars.kind == "none" and trained_on != {bars}:
        parts.append("clean")  # clean frames for runs trained with bars
    if weights != scale.weights:
        parts.append(weights.replace("-", ""))
    if any(r.variant.curve for r in runs):
        parts.append(runs[0].path.name)  # a run with a curve is a group of its own
    name = "-".join(parts)
    evaluation = folder / f"evaluation_{name}.json"
    figures = folder / "figures" / name
    paths = [str(r.path) for r in runs]
    evaluate = Step(
        "evaluate",
        {
            "runs": paths, "data": str(data.path), **bars.step_kwargs(),
            "out": str(evaluation), "weights": weights, **_device(device),
        },
    )  # fmt: skip
    show = None
    if weights == scale.weights and trained_on == {bars}:
        show = Step(
            "show",
            {
                "runs": paths, "data": str(data.path), "out": str(figures), **bars.step_kwargs(),
                "frames": scale.show_frames, "episode_frames": scale.episode_frames,
                "weights": weights, "overwrite": True,
                **({"seeds": True} if experiment.show_seeds else {}), **_device(device),
            },
        )  # fmt: skip
    return GroupPlan(
        name, tuple(runs), data, bars.kind, evaluation, figures, evaluate, show, weights, bars
    )


def plan_experiment(
    experiment: Experiment,
    scale: Scale,
    out: str | Path,
    device: str = "auto",
    precision: str = "auto",
) -> ExperimentPlan:
    """Expands an experiment at a scale into datasets, runs and groups under ``out``.

    Args:
        experiment: the definition (`definitions.EXPERIMENTS`).
        scale: the scale (`definitions.SCALES`).
        out: the output folder shared by the experiments of this scale.
        device: torch device of every step ("auto": left to each command).
        precision: training precision, "fp32" or "bf16" ("auto": left to the preset).

    Returns:
        The plan; datasets appear once per game and resize, in the order the runs first need
        them; groups in the order their first run needs them.
    """
    out = Path(out)
    folder = out / experiment.name
    datasets: dict[tuple[str, str], DatasetPlan] = {}
    runs = []
    for variant in experiment.variants:
        key = (variant.game, variant.resize)
        data = datasets.setdefault(key, _dataset(variant.game, scale, out, variant.resize))
        runs.append(_run(variant, scale, folder, data, device, precision))
    members: dict[tuple[Path, Bars, str, Path | None], list[RunPlan]] = {}
    for run in runs:
        trained = Bars.of(run.variant)
        evaluated = [trained]
        if experiment.clean_too and trained.kind != "none":
            evaluated.append(Bars())
        for weights in run_weights(run.variant, scale):
            for bars in evaluated:
                alone = run.path if run.variant.curve else None
                members.setdefault((run.data.path, bars, weights, alone), []).append(run)
    groups = [
        _group(experiment, scale, folder, bars, weights, group_runs, device)
        for (_, bars, weights, _), group_runs in members.items()
    ]
    return ExperimentPlan(
        experiment, scale, folder, tuple(datasets.values()), tuple(runs), tuple(groups)
    )
