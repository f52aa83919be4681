"""An experiment at a scale, expanded into datasets, runs and evaluation groups.

Layout under the output folder ``OUT`` (one per scale; datasets are shared by every
experiment written there)::

    OUT/data/<Game>-seed0-<train>-<val>-<test>-<policy>/    collect
    OUT/<experiment>/runs/<variant>/                        train
    OUT/<experiment>/evaluation_<group>.{json,md}           evaluate, its table
    OUT/<experiment>/figures/<group>/                       show
    OUT/<experiment>/tables.md                              every table of the experiment

A group is the runs of one experiment on the same dataset and Noisy Atari kind: they are
evaluated together on the same frames (one table) and drawn together (one set of figures).
Each step is a `steps.Step`: the library call that does it, as data. Everything here is pure:
it builds paths and steps, and reads nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from permakey.experiments.definitions import DATA_SEED, POLICY, Experiment, Scale, Variant
from permakey.experiments.steps import Step


@dataclass(frozen=True)
class DatasetPlan:
    """One dataset to collect; runs on the same game share it.

    Attributes:
        game: canonical ALE game name.
        path: the dataset folder.
        collect: the "collect" step that writes it.
    """

    game: str
    path: Path
    collect: Step


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
    """Runs evaluated together on one dataset and noise kind.

    Attributes:
        name: "<Game>" or "<Game>-<noise>".
        runs: the runs, in the experiment's order.
        data: their dataset.
        noise: Noisy Atari kind of the evaluation and figures.
        evaluation: the JSON file of the evaluation; its table is the same name in .md.
        figures: the folder of the figures.
        evaluate: the "evaluate" step that writes ``evaluation``.
        show: the "show" step that writes ``figures``.
    """

    name: str
    runs: tuple[RunPlan, ...]
    data: DatasetPlan
    noise: str
    evaluation: Path
    figures: Path
    evaluate: Step
    show: Step

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


def dataset_name(game: str, scale: Scale, seed: int = DATA_SEED, policy: str = POLICY) -> str:
    """Folder name of a dataset: everything that makes two datasets differ."""
    sizes = f"{scale.train_frames}-{scale.eval_frames}-{scale.eval_frames}"
    return f"{game}-seed{seed}-{sizes}-{re.sub(r'[^A-Za-z0-9]+', '-', policy)}"


def _dataset(game: str, scale: Scale, out: Path) -> DatasetPlan:
    path = out / "data" / dataset_name(game, scale)
    collect = Step(
        "collect",
        {
            "game": game, "out": str(path), "frames": scale.train_frames,
            "val_frames": scale.eval_frames, "test_frames": scale.eval_frames,
            "seed": DATA_SEED, "policy": POLICY,
        },
    )  # fmt: skip
    return DatasetPlan(game, path, collect)


def _device(device: str) -> dict[str, str]:
    """The device argument of a step; none for "auto", which every step's function defaults to."""
    return {} if device == "auto" else {"device": device}


def _run(
    variant: Variant, scale: Scale, folder: Path, data: DatasetPlan, device: str, precision: str
) -> RunPlan:
    options: dict[str, Any] = {
        "data": str(data.path), "preset": scale.preset, "num_keypoints": variant.num_keypoints,
        "seed": variant.seed, "noise": variant.noise,
    }  # fmt: skip
    if variant.model:
        options["model"] = dict(variant.model)
    if precision != "auto":  # a setting of the run: given when it starts, kept when it resumes
        options["precision"] = precision
    runtime: dict[str, Any] = {"epochs": scale.epochs}
    if scale.max_steps is not None:
        runtime["max_steps"] = scale.max_steps[variant.method]
    if scale.in_memory:
        runtime.update(in_memory=True, workers=0)
    runtime.update(_device(device))
    return RunPlan(variant, folder / "runs" / variant.name, data, options, runtime)


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
        The plan; datasets appear once per game, in the order the runs first need them.
    """
    out = Path(out)
    folder = out / experiment.name
    datasets: dict[str, DatasetPlan] = {}
    runs = []
    for variant in experiment.variants:
        data = datasets.setdefault(variant.game, _dataset(variant.game, scale, out))
        runs.append(_run(variant, scale, folder, data, device, precision))
    members: dict[tuple[str, str], list[RunPlan]] = {}
    for run in runs:
        members.setdefault((run.variant.game, run.variant.noise), []).append(run)
    groups = []
    for (game, noise), group_runs in members.items():
        name = game if noise == "none" else f"{game}-{noise}"
        data = datasets[game]
        evaluation = folder / f"evaluation_{name}.json"
        figures = folder / "figures" / name
        paths = [str(r.path) for r in group_runs]
        evaluate = Step(
            "evaluate",
            {
                "runs": paths, "data": str(data.path), "noise": noise, "out": str(evaluation),
                "weights": scale.weights, **_device(device),
            },
        )  # fmt: skip
        show = Step(
            "show",
            {
                "runs": paths, "data": str(data.path), "out": str(figures), "noise": noise,
                "frames": scale.show_frames, "episode_frames": scale.episode_frames,
                "weights": scale.weights, "overwrite": True,
                **({"seeds": True} if experiment.show_seeds else {}), **_device(device),
            },
        )  # fmt: skip
        groups.append(
            GroupPlan(name, tuple(group_runs), data, noise, evaluation, figures, evaluate, show)
        )
    return ExperimentPlan(
        experiment, scale, folder, tuple(datasets.values()), tuple(runs), tuple(groups)
    )
