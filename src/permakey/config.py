"""JSON round trips for the package's config dataclasses (models and training).

Configs are frozen dataclasses stored in a run's ``run.json``. `JsonConfig` gives each one
``to_dict`` (JSON-safe: tuples become lists, nested configs become dicts) and ``from_dict``
(missing keys take their defaults; unknown keys are an error that names them).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T", bound="JsonConfig")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


class JsonConfig:
    """Mixin for dataclass configs: ``to_dict`` and ``from_dict``."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of every field; `from_dict` inverts it."""
        return _jsonable(dataclasses.asdict(self))  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
        """Builds a config from `to_dict` output; missing keys take their defaults.

        Raises:
            ValueError: ``data`` is not a mapping, has keys that are not fields (named in the
                message), or holds invalid values.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"{cls.__name__} must be given as a dict, got {data!r}")
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {unknown}")
        hints = typing.get_type_hints(cls)
        values = dict(data)
        for name, value in values.items():
            nested = hints.get(name)
            if (
                isinstance(nested, type)
                and issubclass(nested, JsonConfig)
                and isinstance(value, Mapping)
            ):
                values[name] = nested.from_dict(value)
        return cls(**values)
