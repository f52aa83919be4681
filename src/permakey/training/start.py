"""Starting and resuming a training run from names and values: what `permakey train` does.

`new_run` assembles a new run's configs (a training preset, the model preset that goes with
it or another one, or a saved configuration read by `configs_from`; then the given training
options and model-config overrides) and trains it;
`resume_run` continues a run with the configs stored in its folder, changing only the options
that say how it runs (`config.RUNTIME_FIELDS`). Both return `loop.TrainResult`; the command
line parses its arguments into these calls.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from permakey.errors import UserError
from permakey.runs.folder import RUN_JSON, read_run_json
from permakey.training import get_method, run_configs
from permakey.training.config import RUNTIME_FIELDS
from permakey.training.loop import TrainResult, train


def fixed_options(names: Iterable[str]) -> list[str]:
    """The training options among ``names`` that a resumed run cannot change, sorted."""
    return sorted(set(names) - RUNTIME_FIELDS)


@dataclass(frozen=True)
class SavedConfig:
    """A run's configuration read from a file: what `new_run` starts from instead of presets.

    Attributes:
        train: training-config fields (`TrainConfig.to_dict` of the method), by name.
        model: model-config fields, by name.
        kind: the method the configuration is for, or None where the file does not say.
        source: where it came from, recorded in the new run's run.json as "config_source":
            {"path": absolute path} and, for a run folder, {"run_code": its code version}.
    """

    train: dict[str, Any]
    model: dict[str, Any]
    kind: str | None = None
    source: dict[str, Any] = field(default_factory=dict)


def configs_from(path: str | os.PathLike) -> SavedConfig:
    """The configuration saved in ``path``: a run folder (its run.json) or a JSON file.

    A JSON file holds {"train": {...}, "model": {...}} and may name its method ("kind"), as a
    run.json does (a run.json itself is read as its folder).

    Raises:
        UserError: no such file or folder, not JSON, or no "train" and "model" objects.
    """
    path = Path(path)
    if path.is_dir() or path.name == RUN_JSON:
        folder = path if path.is_dir() else path.parent
        info = read_run_json(folder)
        source = {"path": str(folder.resolve()), "run_code": info.get("code")}
    else:
        try:
            info = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"--config {path}: no such file or run folder") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise UserError(f"--config {path}: not a JSON file ({err})") from None
        source = {"path": str(path.resolve())}
    if not isinstance(info, dict) or not all(
        isinstance(info.get(key), dict) for key in ("train", "model")
    ):
        raise UserError(f'--config {path}: expected a JSON object with "train" and "model" objects')
    kind = info.get("kind")
    return SavedConfig(dict(info["train"]), dict(info["model"]), kind, source)


def new_run(
    kind: str,
    data: str | os.PathLike | None,
    out: str | os.PathLike,
    preset: str = "paper",
    model_preset: str | None = None,
    num_keypoints: int | None = None,
    model: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    config: SavedConfig | str | os.PathLike | None = None,
    **options: Any,
) -> TrainResult:
    """Trains a new run of method ``kind`` on a dataset into the run folder ``out``.

    Args:
        kind: "permakey" or "transporter" (`permakey.training.METHOD_NAMES`).
        data: dataset folder written by `permakey.data.collect.collect` (None: the one of
            ``config``).
        out: the run folder to create.
        preset: training preset of the method (`training.config.PRESETS[kind]`); its values
            fill every option not in ``options``.
        model_preset: model config preset (the models' ``PRESETS``); None: the one named
            ``preset``.
        num_keypoints: keypoints K, overriding the model preset's.
        model: model-config fields to override, by name (JSON values: lists for tuples).
        overwrite: replace an existing run folder at ``out`` (only a run folder or an empty
            folder: never other files, nor the dataset).
        config: a saved configuration (`configs_from`, or the path to read it from) that
            replaces the presets: every training and model field is its, then ``data`` (None:
            its dataset), ``num_keypoints``, ``model`` and ``options`` on top. ``preset`` and
            ``model_preset`` are not used with it (the command line refuses them).
        **options: fields of the method's training config (`TrainConfig` and its subclass),
            e.g. ``seed=1, epochs=5, time_budget=2.0, device="cpu"``.

    Returns:
        How training ended (`TrainResult`: status, steps, epochs, best validation loss).

    Raises:
        UserError: unknown preset or model preset, an unknown or invalid option or model
            field, a run folder in the way without ``overwrite``, bad data, a ``config`` that
            cannot be read or is for another method;
            `loop.TrainingDiverged` on a non-finite loss.
    """
    method = get_method(kind)
    overrides = dict(model or {})
    if num_keypoints is not None:
        overrides["num_keypoints"] = num_keypoints
    info = {}
    if config is not None:
        saved = config if isinstance(config, SavedConfig) else configs_from(config)
        if saved.kind not in (None, method.kind):
            raise UserError(
                f"--config {saved.source.get('path')} is a {saved.kind} configuration, not a "
                f"{method.kind} one"
            )
        info["config_source"] = saved.source
        where = f"--config {saved.source.get('path')}: "
        try:
            base_cfg = method.config_class.from_dict(saved.train)
            base_model = method.model_config_class.from_dict(saved.model)
        except (ValueError, TypeError) as err:
            raise UserError(where + str(err)) from None
    else:
        if preset not in method.presets:
            raise UserError(f"unknown preset {preset!r}; choose from {sorted(method.presets)}")
        if model_preset is not None and model_preset not in method.model_presets:
            raise UserError(
                f"unknown model preset {model_preset!r}; choose from {sorted(method.model_presets)}"
            )
        base_cfg, base_model, where = method.presets[preset], None, ""
    if data is not None:
        options["data"] = str(data)
    try:
        cfg = replace(base_cfg, **options)
        base_model = base_model or method.model_config(model_preset or preset)
        model_config = method.model_config_class.from_dict({**base_model.to_dict(), **overrides})
    except (ValueError, TypeError) as err:
        raise UserError(where + str(err)) from None
    if not cfg.data:
        raise UserError("no dataset: give --data DIR")
    return train(method, cfg, model_config, out, overwrite=overwrite, info=info)


def resume_run(kind: str, run: str | os.PathLike, **options: Any) -> TrainResult:
    """Continues the run in folder ``run`` from its last checkpoint, with its stored configs.

    Args:
        kind: the run's method, "permakey" or "transporter" (checked against its run.json).
        run: the run folder.
        **options: options that may change between sessions of a run (`RUNTIME_FIELDS`:
            epochs, time_budget, max_steps, device, workers, in_memory, progress,
            checkpoint_every, checkpoint_minutes, track).

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
