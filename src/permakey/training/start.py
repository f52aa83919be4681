"""Starting and resuming a training run from names and values: what `permakey train` does.

`new_run` assembles a new run's configs (a training preset, the model preset that goes with
it or another one, the given training options and model-config overrides) and trains it;
`resume_run` continues a run with the configs stored in its folder, changing only the options
that say how it runs (`config.RUNTIME_FIELDS`). Both return `loop.TrainResult`; the command
line parses its arguments into these calls.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from permakey.errors import UserError
from permakey.training import get_method, run_configs
from permakey.training.config import RUNTIME_FIELDS
from permakey.training.loop import TrainResult, train


def fixed_options(names: Iterable[str]) -> list[str]:
    """The training options among ``names`` that a resumed run cannot change, sorted."""
    return sorted(set(names) - RUNTIME_FIELDS)


def new_run(
    kind: str,
    data: str | os.PathLike,
    out: str | os.PathLike,
    preset: str = "paper",
    model_preset: str | None = None,
    num_keypoints: int | None = None,
    model: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    **options: Any,
) -> TrainResult:
    """Trains a new run of method ``kind`` on a dataset into the run folder ``out``.

    Args:
        kind: "permakey" or "transporter" (`permakey.training.METHOD_NAMES`).
        data: dataset folder written by `permakey.data.collect.collect`.
        out: the run folder to create.
        preset: training preset of the method (`training.config.PRESETS[kind]`); its values
            fill every option not in ``options``.
        model_preset: model config preset (the models' ``PRESETS``); None: the one named
            ``preset``.
        num_keypoints: keypoints K, overriding the model preset's.
        model: model-config fields to override, by name (JSON values: lists for tuples).
        overwrite: replace an existing run folder at ``out`` (only a run folder or an empty
            folder: never other files, nor the dataset).
        **options: fields of the method's training config (`TrainConfig` and its subclass),
            e.g. ``seed=1, epochs=5, time_budget=2.0, device="cpu"``.

    Returns:
        How training ended (`TrainResult`: status, steps, epochs, best validation loss).

    Raises:
        UserError: unknown preset or model preset, an unknown or invalid option or model
            field, a run folder in the way without ``overwrite``, bad data;
            `loop.TrainingDiverged` on a non-finite loss.
    """
    method = get_method(kind)
    if preset not in method.presets:
        raise UserError(f"unknown preset {preset!r}; choose from {sorted(method.presets)}")
    if model_preset is not None and model_preset not in method.model_presets:
        raise UserError(
            f"unknown model preset {model_preset!r}; choose from {sorted(method.model_presets)}"
        )
    overrides = dict(model or {})
    if num_keypoints is not None:
        overrides["num_keypoints"] = num_keypoints
    try:
        cfg = replace(method.presets[preset], data=str(data), **options)
        base = method.model_config(model_preset or preset)
        model_config = method.model_config_class.from_dict({**base.to_dict(), **overrides})
    except (ValueError, TypeError) as err:
        raise UserError(str(err)) from None
    return train(method, cfg, model_config, out, overwrite=overwrite)


def resume_run(kind: str, run: str | os.PathLike, **options: Any) -> TrainResult:
    """Continues the run in folder ``run`` from its last checkpoint, with its stored configs.

    Args:
        kind: the run's method, "permakey" or "transporter" (checked against its run.json).
        run: the run folder.
        **options: options that may change between sessions of a run (`RUNTIME_FIELDS`:
            epochs, time_budget, max_steps, device, workers, in_memory, progress,
            checkpoint_every, checkpoint_minutes).

    Returns:
        How training ended (`TrainResult`).

    Raises:
        UserError: an option that a run keeps fixed, a missing or corrupted run folder, a run
            of another method, an invalid value, another process writing the run
            (`permakey.locks.FolderLocked`), a failed write; `loop.TrainingDiverged` on a
            non-finite loss.
    """
    fixed = fixed_options(options)
    if fixed:
        raise UserError(
            f"{', '.join(fixed)} cannot change when a run resumes: a run keeps its settings "
            "(start a new run instead)"
        )
    method = get_method(kind)
    stored_method, stored, model_config = run_configs(run)
    if stored_method.kind != method.kind:
        raise UserError(f"{run} is a {stored_method.kind} run, not a {method.kind} run")
    try:
        cfg = replace(stored, **options)
    except (ValueError, TypeError) as err:
        raise UserError(str(err)) from None
    return train(method, cfg, model_config, run, resume=True)


def result_line(kind: str, result: TrainResult) -> str:
    """One line on how a run of method ``kind`` ended, as `permakey train` prints it."""
    best = "none yet" if result.best_val_loss is None else f"{result.best_val_loss:.6g}"
    return (
        f"{kind}: {result.status} at step {result.step} ({result.epoch} epochs); "
        f"best validation loss {best}; run folder {result.run}"
    )
