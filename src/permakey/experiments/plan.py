"""An experiment at a scale, expanded into datasets, runs and evaluation groups.

Layout under the output folder ``OUT`` (one per scale; datasets are shared by every
experiment written there)::

    OUT/data/<Game>-seed0-<train>-<val>-<test>-<policy>/    `permakey collect`
    OUT/<experiment>/runs/<variant>/                        `permakey train`
    OUT/<experiment>/evaluation_<group>.{json,md}           `permakey evaluate`, its table
    OUT/<experiment>/figures/<group>/                       `permakey show`
    OUT/<experiment>/tables.md                              every table of the experiment

A group is the runs of one experiment on the same dataset and Noisy Atari kind: they are
evaluated together on the same frames (one table) and drawn together (one set of figures).
Everything here is pure: it builds paths and argument lists, and reads nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from permakey.experiments.definitions import DATA_SEED, POLICY, Experiment, Scale, Variant


@dataclass(frozen=True)
class DatasetPlan:
    """One dataset to collect; runs on the same game share it.

    Attributes:
        game: canonical ALE game name.
        path: the dataset folder.
        argv: `permakey collect` arguments (without the program name).
    """

    game: str
    path: Path
    argv: tuple[str, ...]


@dataclass(frozen=True)
class RunPlan:
    """One training run.

    Attributes:
        variant: what it trains.
        path: the run folder.
        data: the dataset it trains on.
        new_argv: `permakey train` arguments that start it (without --out and runtime options).
        runtime: options given both when starting and when resuming (budgets, loading).
    """

    variant: Variant
    path: Path
    data: DatasetPlan
    new_argv: tuple[str, ...]
    runtime: tuple[str, ...]

    @property
    def start_command(self) -> list[str]:
        """`permakey train` arguments that start the run afresh."""
        return [
            "train",
            self.variant.method,
            "--out",
            str(self.path),
            *self.new_argv,
            *self.runtime,
        ]


@dataclass(frozen=True)
class GroupPlan:
    """Runs evaluated together on one dataset and noise kind.

    Attributes:
        name: "<Game>" or "<Game>-<noise>".
        runs: the runs, in the experiment's order.
        data: their dataset.
        noise: Noisy Atari kind of the evaluation and figures.
        evaluation: the JSON file of `permakey evaluate`; its table is the same name in .md.
        figures: the folder of `permakey show`.
        evaluate_argv: `permakey evaluate` arguments.
        show_argv: `permakey show` arguments.
    """

    name: str
    runs: tuple[RunPlan, ...]
    data: DatasetPlan
    noise: str
    evaluation: Path
    figures: Path
    evaluate_argv: tuple[str, ...]
    show_argv: tuple[str, ...]

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
    argv = (
        "collect", game, "--out", str(path), "--frames", str(scale.train_frames),
        "--val-frames", str(scale.eval_frames), "--test-frames", str(scale.eval_frames),
        "--seed", str(DATA_SEED), "--policy", POLICY,
    )  # fmt: skip
    return DatasetPlan(game, path, argv)


def _device(device: str) -> tuple[str, ...]:
    return () if device == "auto" else ("--device", device)


def _run(
    variant: Variant, scale: Scale, folder: Path, data: DatasetPlan, device: str, precision: str
) -> RunPlan:
    new = [
        "--data", str(data.path), "--preset", scale.preset,
        "--num-keypoints", str(variant.num_keypoints), "--seed", str(variant.seed),
        "--noise", variant.noise,
    ]  # fmt: skip
    for key, value in variant.model:
        new += ["--model", f"{key}={json.dumps(value, separators=(',', ':'))}"]
    if precision != "auto":  # a setting of the run: given when it starts, kept when it resumes
        new += ["--precision", precision]
    runtime = ["--epochs", str(scale.epochs)]
    if scale.max_steps is not None:
        runtime += ["--max-steps", str(scale.max_steps[variant.method])]
    if scale.in_memory:
        runtime += ["--in-memory", "--workers", "0"]
    runtime += _device(device)
    return RunPlan(variant, folder / "runs" / variant.name, data, tuple(new), tuple(runtime))


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
        evaluate = (
            "evaluate", *paths, "--data", str(data.path), "--noise", noise,
            "--out", str(evaluation), "--weights", scale.weights, *_device(device),
        )  # fmt: skip
        show = (
            "show", *paths, "--data", str(data.path), "--out", str(figures), "--noise", noise,
            "--frames", str(scale.show_frames), "--episode-frames", str(scale.episode_frames),
            "--weights", scale.weights, "--overwrite",
            *(("--seeds",) if experiment.show_seeds else ()), *_device(device),
        )  # fmt: skip
        groups.append(
            GroupPlan(name, tuple(group_runs), data, noise, evaluation, figures, evaluate, show)
        )
    return ExperimentPlan(
        experiment, scale, folder, tuple(datasets.values()), tuple(runs), tuple(groups)
    )
