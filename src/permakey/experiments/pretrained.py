"""Building the pretrained models that ship with the package, resumably, one game at a time.

For each game: collect a training dataset (the `cpu` reproduce scale's recipe), collect
held-out test episodes with another seed, train PermaKey with the best CPU preset on a step
budget, evaluate the last weights on the held-out episodes against the controls, and export
the inference weights with a record of all of it (`permakey.runs.pretrained`). A game whose
model folder exists is skipped; an interrupted run is resumed (`runner.train_step`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from permakey.errors import UserError
from permakey.evaluation.evaluate import evaluate_runs, write_result
from permakey.evaluation.judgement import judge_tracking
from permakey.evaluation.results import EvaluationResult
from permakey.experiments.definitions import DATA_SEED, KEYPOINTS, POLICY, SCALES
from permakey.experiments.runner import (
    DAMAGED,
    dataset_complete,
    run_status,
    status_line,
    train_step,
)
from permakey.experiments.steps import INTERRUPTED, Step, run_step
from permakey.fileio import write_json_atomic
from permakey.runs import load
from permakey.runs.pretrained import (
    FOLDER,
    RECORD,
    available,
    export,
    model_folder,
    read_record,
)

# The paper's six games, Montezuma's Revenge, and what RL users start with.
GAMES = (
    "Frostbite", "SpaceInvaders", "BattleZone", "MsPacman", "Seaquest", "Enduro",
    "MontezumaRevenge", "Pong", "Breakout",
)  # fmt: skip
# Keypoints per game: the authors' table, and for the two games it lacks, about their number of
# distinct objects (Pong: two paddles, the ball, two scores; Breakout: paddle, ball, score,
# lives, rows of bricks). Not in the paper.
NUM_KEYPOINTS = {**KEYPOINTS, "Pong": 6, "Breakout": 10}
# The best CPU preset of the day (RESULTS.md, "cpu-track").
PRESET = "cpu-track"
# Four times the `cpu` reproduce scale's PermaKey step budget.
STEPS = 4 * SCALES["cpu"].max_steps["permakey"]
# Held-out test episodes come from another environment seed than the training data.
HELDOUT_SEED = DATA_SEED + 1


@dataclass(frozen=True)
class Recipe:
    """How every model of a build is made.

    Attributes:
        steps: PermaKey optimiser steps (batch 32).
        train_frames: training frames collected; validation and test get ``eval_frames``.
        eval_frames: validation and test frames of the training dataset, and held-out frames.
        preset: training and model preset.
        device: torch device of training and evaluation.
    """

    steps: int = STEPS
    train_frames: int = SCALES["cpu"].train_frames
    eval_frames: int = SCALES["cpu"].eval_frames
    preset: str = PRESET
    device: str = "auto"


def _collect(game: str, out: Path, seed: int, frames: int, val: int, test: int) -> Step:
    return Step(
        "collect",
        {"game": game, "out": str(out), "frames": frames, "val_frames": val, "test_frames": test,
         "seed": seed, "policy": POLICY, "progress": False},
    )  # fmt: skip


def game_steps(game: str, work: Path, recipe: Recipe) -> dict[str, Step]:
    """The library calls that make one game's model: "data", "heldout" (collections) and
    "train" (a new run; `runner.train_step` turns it into a resume, or nothing when done)."""
    data = work / "data" / f"{game}-seed{DATA_SEED}-{recipe.train_frames}"
    heldout = work / "data" / f"{game}-seed{HELDOUT_SEED}-heldout-{recipe.eval_frames}"
    train = {"kind": "permakey", "out": str(work / "runs" / game), "data": str(data),
             "preset": recipe.preset, "seed": 0, "num_keypoints": NUM_KEYPOINTS.get(game, 10),
             "max_steps": recipe.steps, "in_memory": True, "workers": 0, "progress": False,
             "device": recipe.device}  # fmt: skip
    return {
        "data": _collect(game, data, DATA_SEED, recipe.train_frames, recipe.eval_frames,
                         recipe.eval_frames),
        # One frame each for training and validation: only the test split is used.
        "heldout": _collect(game, heldout, HELDOUT_SEED, 1, 1, recipe.eval_frames),
        "train": Step("train", train),
    }  # fmt: skip


RUNTIME = ("max_steps", "in_memory", "workers", "progress", "device")


def _to_run(step: Step) -> Step | None:
    """The step that brings the run of a "train" step to completion (None: complete)."""
    kwargs = dict(step.kwargs)
    kind, run = kwargs.pop("kind"), kwargs.pop("out")
    runtime = {k: kwargs.pop(k) for k in RUNTIME}
    return train_step(kind, run, kwargs, runtime)


def quality(result: EvaluationResult, model: str) -> dict[str, Any]:
    """What a record says of a model's keypoints on held-out frames (F1@2 against controls)."""
    if not result.ground_truth:
        return {"ground_truth": False}
    r = 2
    mine, template = result.column(model), result.template_of(model)
    peaks = result.peaks_of(model)
    verdict = judge_tracking(result, model)
    identity = mine.metrics.identity
    kept = None if identity is None else identity.kept
    return {
        "ground_truth": True,
        "frames": result.frames,
        "f1@2": mine.metrics.f1[r],
        "template_f1@2": template.metrics.f1[r],
        "peaks_f1@2": None if peaks is None else peaks.metrics.f1[r],
        "random_f1@2": result.random_for(model).metrics.f1[r],
        "precision@2": mine.metrics.precision[r],
        "recall@2 per category": {
            name: {
                "keypoints": scores.recall[r],
                "template": template.metrics.per_category[name].recall[r],
            }
            for name, scores in mine.metrics.per_category.items()
        },  # fmt: skip
        "follows": [f.category for f in verdict.followed],
        "verdict": verdict.sentence(),
        # Whether each keypoint keeps its object (evaluation.md): None where not measured.
        "mean_purity@2": None if identity is None else identity.mean_purity,
        "objects_kept@2": None if kept is None else {"kept": kept.kept, "tracks": kept.tracks},
    }


def build_game(game: str, out: Path, work: Path, recipe: Recipe, command: str = "") -> Path | None:
    """Collects, trains, evaluates and exports one game's model; None when a step failed.

    Raises:
        KeyboardInterrupt: a step was interrupted (its run is resumable: rerun the build).

    Args:
        game: canonical ALE game name.
        out: the folder of model folders (``permakey/pretrained_models``).
        work: where datasets, runs and evaluations go.
        recipe: how the model is made.
        command: the command line that runs the build, for the record.
    """
    steps = game_steps(game, work, recipe)
    todo = [s for s in (steps["data"], steps["heldout"]) if not dataset_complete(s.kwargs["out"])]
    todo.append(_to_run(steps["train"]))
    for step in filter(None, todo):
        print(f"{game}: {step}", flush=True)
        status = run_step(step)
        if status == INTERRUPTED:  # Ctrl-C / SIGTERM stops the build, resumably
            raise KeyboardInterrupt
        if status:
            print(f"{game}: {step.kind} failed; the game is skipped", flush=True)
            return None
    run = steps["train"].kwargs["out"]
    if run_status(run) == DAMAGED:  # never trained over: the runner's rule
        print(f"{game}: run {run}: {status_line(run)}; the game is skipped", flush=True)
        return None
    trained = load(run, "last", device=recipe.device)
    result = evaluate_runs([run], steps["heldout"].kwargs["out"], weights="last",
                           device=recipe.device)  # fmt: skip
    write_result(work / f"evaluation_{game}.json", result)
    info = trained.info
    record = {
        "game": game,
        "method": trained.kind,
        "preset": recipe.preset,
        "num_keypoints": trained.num_keypoints,
        "train": info["train"],
        "steps": info["step"],
        "frames_seen": info["step"] * info["train"]["batch_size"],
        "dataset": {"seed": DATA_SEED, "policy": POLICY, "frames": recipe.train_frames,
                    "val_frames": recipe.eval_frames, "test_frames": recipe.eval_frames},
        "heldout": {"seed": HELDOUT_SEED, "test_frames": recipe.eval_frames},
        "code": info.get("code"),
        "quality": quality(result, result.models[0].name),
        "commands": {"build": command, "steps": [str(s) for s in steps.values()]},
    }  # fmt: skip
    return export(trained.model, trained.kind, trained.frames, out / game, record)


def refresh_record(game: str, out: Path, work: Path, recipe: Recipe) -> Path:
    """Re-measures a complete model's quality and rewrites its record; the weights stay.

    For records written before a metric existed (the identity metrics): the game's run in
    ``work`` is evaluated again on its held-out episodes (unless ``work``'s evaluation already
    has every metric), and the record's "quality" is replaced, atomically.

    Raises:
        UserError: ``work`` lacks the game's run or held-out episodes.
    """
    from permakey.evaluation.evaluate import read_result

    steps = game_steps(game, work, recipe)
    run, heldout = steps["train"].kwargs["out"], steps["heldout"].kwargs["out"]
    for path, what in ((run, "run"), (heldout, "held-out episodes")):
        if not Path(path).is_dir():
            raise UserError(f"{game}: no {what} at {path} to refresh its record from (--work)")
    evaluation = work / f"evaluation_{game}.json"
    result = read_result(evaluation) if evaluation.is_file() else None
    if result is None or result.models[0].metrics.identity is None:
        result = evaluate_runs([run], heldout, weights="last", device=recipe.device)
        write_result(evaluation, result)
    folder = model_folder(game, out)
    record = read_record(folder)
    file = folder / RECORD
    record["quality"] = quality(result, result.models[0].name)
    write_json_atomic(file, record)
    return file


def build(
    games: Sequence[str],
    out: str | os.PathLike = FOLDER,
    work: str | os.PathLike = "runs/pretrained",
    recipe: Recipe = Recipe(),
    command: str = "",
    refresh: bool = False,
) -> list[str]:
    """Builds every game's model that ``out`` lacks (complete ones are kept).

    With ``refresh``, complete models' records get their quality measured again
    (`refresh_record`).

    Returns:
        The games with a model folder in ``out`` afterwards.

    Raises:
        UserError: an unknown game.
    """
    from permakey.data.games import resolve_game

    out, work = Path(out), Path(work)
    for game in [resolve_game(g) for g in games]:
        if (out / game).is_dir():
            if refresh:
                print(f"{game}: refreshed {refresh_record(game, out, work, recipe)}", flush=True)
            else:
                print(f"{game}: {out / game} is complete, kept", flush=True)
            continue
        build_game(game, out, work, recipe, command)
    return available(out)


def records(folder: str | os.PathLike = FOLDER) -> list[dict[str, Any]]:
    """The records of every model in ``folder``, by game."""
    folder = Path(folder)
    return [read_record(model_folder(game, folder)) for game in available(folder)]
