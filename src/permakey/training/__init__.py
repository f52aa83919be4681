"""Training: one loop for every method (`loop.train`), per-method adapters and presets.

This package's own import is light (no torch): the adapters load when asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

from permakey.models.registry import METHODS

# Method name (as in run.json and on the command line) -> module and class of its adapter.
_ADAPTERS = {
    "permakey": ("permakey.training.permakey", "PermaKeyMethod"),
    "transporter": ("permakey.training.transporter", "TransporterMethod"),
}
METHOD_NAMES = METHODS


def get_method(kind: str) -> Any:
    """The `Method` adapter of ``kind`` ("permakey" or "transporter").

    Raises:
        ValueError: unknown method.
    """
    if kind not in _ADAPTERS:
        raise ValueError(f"unknown method {kind!r}; choose from {list(_ADAPTERS)}")
    module, name = _ADAPTERS[kind]
    return getattr(importlib.import_module(module), name)()


def run_configs(run) -> tuple[Any, Any, Any]:
    """The method adapter, training config and model config stored in a run folder.

    Raises:
        UserError: missing or corrupted run folder (names the file).
    """
    from permakey.errors import UserError
    from permakey.runs.folder import RUN_JSON, read_run_json

    info = read_run_json(run)
    try:
        method = get_method(info["kind"])
        cfg = method.config_class.from_dict(info["train"])
        model_config = method.model_config_class.from_dict(info["model"])
    except (ValueError, TypeError) as err:
        raise UserError(f"{run}/{RUN_JSON} is corrupted ({err})") from None
    return method, _absolute_data(cfg, info), model_config


def _absolute_data(cfg: Any, info: dict) -> Any:
    """``cfg`` with its dataset path absolute.

    Runs store it absolute; older ones stored it as given, relative to a working folder that
    is not recorded. Such a path is taken from this working folder when the dataset is there,
    else from the dataset identity, which recorded the resolved path of each split's dataset.
    """
    import os
    from dataclasses import replace

    if os.path.isabs(cfg.data) or os.path.isdir(cfg.data):
        return replace(cfg, data=os.path.abspath(cfg.data))
    recorded = (info.get("dataset") or {}).get("train", {}).get("path")
    if isinstance(recorded, str) and os.path.isabs(recorded):
        return replace(cfg, data=recorded)
    return cfg
