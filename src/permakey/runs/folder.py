"""The run folder's read side: what a trained run holds, read without any training code.

Layout (ARCHITECTURE.md, "Run folder")::

    RUN/run.json            kind, model config, training config, dataset identity, the
                            frames the model takes, code version, status and progress
    RUN/best.safetensors    weights (BatchNorm buffers included) of the lowest validation loss
    RUN/last.safetensors    weights at the last checkpoint
    RUN/state.pt            optimiser, RNG and early-stopping state at the last checkpoint
                            (plain tensors and containers, loaded with weights_only=True)
    RUN/metrics.jsonl       one JSON object per logged training window and per validation
    RUN/tb/                 TensorBoard event files

`permakey.training.run.RunFolder` writes it; everything here only reads.
"""

from __future__ import annotations

import json
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

import permakey
from permakey.data.frames import CHANNELS, DEFAULT_RESIZE, RESIZE_METHODS
from permakey.errors import UserError

RUN_JSON = "run.json"
STATE = "state.pt"
METRICS = "metrics.jsonl"
TENSORBOARD = "tb"
WEIGHTS = ("best", "last")
FORMAT = "permakey-run"
FORMAT_VERSION = 1


def weights_path(run: Path, which: str) -> Path:
    """RUN/{which}.safetensors for ``which`` in ("best", "last")."""
    if which not in WEIGHTS:
        raise ValueError(f"which must be one of {list(WEIGHTS)}, got {which!r}")
    return Path(run) / f"{which}.safetensors"


def code_version() -> dict[str, Any]:
    """The package version and, when the code sits in a git checkout, its commit."""
    commit = None
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(permakey.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        if result.returncode == 0:
            commit = result.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {"version": permakey.__version__, "git_commit": commit}


def read_run_json(run: str | Path) -> dict[str, Any]:
    """Reads RUN/run.json.

    Raises:
        UserError: the folder or file is missing, or the file is not a run description.
    """
    run = Path(run)
    if not run.is_dir():
        raise UserError(f"run folder {run} does not exist")
    path = run / RUN_JSON
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} is missing: {run} is not a training run folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path} is corrupted ({err})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise UserError(f"{path} is not a permakey run description (no format {FORMAT!r})")
    for key in ("kind", "model", "train"):
        if key not in info:
            raise UserError(f"{path} is corrupted (no {key!r} entry)")
    return info


def load_weights(model: nn.Module, path: Path) -> dict[str, str]:
    """Loads a safetensors file into ``model`` (strict) and returns the file's metadata.

    Raises:
        UserError: the file is missing, unreadable, or does not fit the model.
    """
    if not path.is_file():
        raise UserError(f"weights file {path} is missing")
    try:
        tensors = load_file(path)
        with safe_open(path, "pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise UserError(f"weights file {path} is corrupted ({err})") from None
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[:2]
        raise UserError(f"weights file {path} does not fit the model: {' '.join(first)}") from None
    return metadata


@dataclass(frozen=True)
class FrameSpec:
    """The frames a model takes, as its training dataset stored them (`permakey.data.frames`).

    Attributes:
        size: S, frames are S x S (84).
        resize: how raw frames were resized to S x S: "area" or "nearest".
        channels: channel order, "RGB".
        game: the game the model was trained on; None where unknown (synthetic data).
    """

    size: int
    resize: str = DEFAULT_RESIZE
    channels: str = CHANNELS
    game: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``frames`` entry of run.json."""
        return {
            "size": self.size,
            "resize": self.resize,
            "channels": self.channels,
            "game": self.game,
        }

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> FrameSpec:
        """Reads the ``frames`` entry of run.json.

        Raises:
            ValueError: an unknown resize method or channel order, or a missing size.
        """
        spec = cls(
            int(entry["size"]),
            entry.get("resize", DEFAULT_RESIZE),
            entry.get("channels", CHANNELS),
            entry.get("game"),
        )
        if spec.resize not in RESIZE_METHODS:
            raise ValueError(f"unknown resize method {spec.resize!r}")
        if spec.channels != CHANNELS:
            raise ValueError(f"unknown channel order {spec.channels!r}")
        return spec

    @classmethod
    def of_dataset(cls, meta: dict[str, Any], size: int) -> FrameSpec:
        """The frames of a dataset, from its meta.json (`permakey.data.store.read_meta`)."""
        resize = meta.get("resize", DEFAULT_RESIZE)
        return cls(
            size, resize if resize in RESIZE_METHODS else DEFAULT_RESIZE, CHANNELS, meta.get("game")
        )


def run_frames(run: Path, info: dict[str, Any], size: int) -> FrameSpec:
    """The `FrameSpec` of a run: run.json's ``frames`` entry, or, for runs written before it
    existed, the training dataset's meta.json; "area" with a warning when that has moved."""
    if "frames" in info:
        try:
            return FrameSpec.from_json(info["frames"])
        except (ValueError, TypeError, KeyError) as err:
            raise UserError(f"{run}/{RUN_JSON} is corrupted (frames: {err})") from None
    from permakey.data.store import read_meta

    try:
        return FrameSpec.of_dataset(read_meta(Path(info["dataset"]["train"]["path"])), size)
    except (UserError, KeyError, TypeError, OSError):
        warnings.warn(
            f"{run}/{RUN_JSON} does not say how its frames were resized and its training "
            f"dataset is not where it was: assuming {DEFAULT_RESIZE!r}",
            stacklevel=3,
        )
        return FrameSpec(size)
