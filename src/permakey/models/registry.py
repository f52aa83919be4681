"""The model kinds: run.json's ``kind`` -> model class, config class and presets.

Loading a trained run needs only this (and the weights), never training code. The module is
light: a kind's model module is imported when the kind is first asked for.

A new keypoint method adds one entry here and its model module (ARCHITECTURE.md).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

# Kind -> module of its model, model class, config class. The order is the command line's.
_KINDS = {
    "permakey": ("permakey.models.permakey", "PermaKey", "PermaKeyConfig"),
    "transporter": ("permakey.models.transporter", "Transporter", "TransporterConfig"),
}
METHODS = tuple(_KINDS)


@dataclass(frozen=True)
class ModelKind:
    """One kind of keypoint model.

    Attributes:
        name: the kind, as in run.json and on the command line.
        model_class: its `nn.Module`, built from its config; implements
            `permakey.keypoints.KeypointModel`.
        config_class: its config dataclass (`permakey.config.JsonConfig`).
        presets: model config presets by name ("paper", ...).
    """

    name: str
    model_class: type
    config_class: type
    presets: dict[str, Any]

    def config_from_dict(self, data: dict[str, Any]) -> Any:
        """The config stored in run.json.

        Raises:
            ValueError, TypeError: entries that are not this config's, or invalid values.
        """
        return self.config_class.from_dict(data)

    def build(self, config: Any) -> Any:
        """A freshly initialised model (an `nn.Module`)."""
        return self.model_class(config)


def model_kind(name: str) -> ModelKind:
    """The `ModelKind` called ``name``.

    Raises:
        ValueError: an unknown kind (the message lists the known ones).
    """
    if name not in _KINDS:
        raise ValueError(f"unknown model kind {name!r}; choose from {list(_KINDS)}")
    module_name, model, config = _KINDS[name]
    module = importlib.import_module(module_name)
    return ModelKind(name, getattr(module, model), getattr(module, config), module.PRESETS)
