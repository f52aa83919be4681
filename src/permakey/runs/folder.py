"""The run folder's read side: what a trained run holds, read without any training code.

Layout (ARCHITECTURE.md, "Run folder")::

    RUN/run.json            kind, model config, training config (its dataset path absolute),
                            dataset identity, the frames the model takes, code version, status
                            and progress
    RUN/best.safetensors    weights (BatchNorm buffers included) of the lowest validation loss
    RUN/checkpoints/step-NNNNNNNN/
                            the last checkpoint, one atomic unit at step N:
        last.safetensors    its weights
        state.pt            its optimiser, RNG and early-stopping state (plain tensors and
                            containers, loaded with weights_only=True)
    RUN/snapshots/step-NNNNNNNN.safetensors
                            weights kept at the steps of ``snapshot_steps`` (never removed;
                            loaded as ``which="step-N"``)
    RUN/metrics.jsonl       one JSON object per logged training window and per validation
    RUN/tb/                 TensorBoard event files

A checkpoint folder is written whole under a temporary name and renamed into place
(`permakey.fileio.atomic_dir`); only then is the previous one removed. So the folder with the
highest step is always complete, and a kill or a failed write at any point leaves the previous
checkpoint loadable. Runs written before checkpoints had folders keep ``RUN/last.safetensors``
and ``RUN/state.pt`` at the top; they load and resume as they are, and their first new
checkpoint replaces the two files. The run's lock file is ``.RUN.lock`` beside the folder
(`permakey.locks`).

`permakey.training.run.RunFolder` writes it; everything here only reads.
"""

from __future__ import annotations

import json
import re
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
CHECKPOINTS = "checkpoints"
LAST = "last.safetensors"
SNAPSHOTS = "snapshots"
# Which weights of a run: these two, or "step-N", the snapshot kept at step N.
WEIGHTS = ("best", "last")
FORMAT = "permakey-run"
FORMAT_VERSION = 1
_CHECKPOINT = re.compile(r"^step-(\d+)$")


@dataclass(frozen=True)
class Checkpoint:
    """A run's last checkpoint: its weights and state files.

    Attributes:
        weights: its weights (``last.safetensors``).
        state: its state (``state.pt``), which may be missing in runs of older versions.
        step: the step its folder is named after; None for the top-level files of older runs
            (whose weights' metadata and state hold the step).
    """

    weights: Path
    state: Path
    step: int | None


def checkpoint_folder(run: str | Path, step: int) -> Path:
    """RUN/checkpoints/step-NNNNNNNN, the folder of the checkpoint at ``step``."""
    return Path(run) / CHECKPOINTS / f"step-{step:08d}"


def checkpoint_steps(run: str | Path) -> list[int]:
    """The steps of the complete checkpoint folders of a run, ascending (usually one)."""
    try:
        entries = list((Path(run) / CHECKPOINTS).iterdir())
    except OSError:
        return []
    found = (_CHECKPOINT.match(e.name) for e in entries if e.is_dir())
    return sorted(int(m[1]) for m in found if m)


def last_checkpoint(run: str | Path) -> Checkpoint | None:
    """The run's last checkpoint: the checkpoint folder of the highest step, else (a run of an
    older version) RUN/last.safetensors with RUN/state.pt; None when there is neither."""
    run = Path(run)
    steps = checkpoint_steps(run)
    if steps:
        folder = checkpoint_folder(run, steps[-1])
        return Checkpoint(folder / LAST, folder / STATE, steps[-1])
    if (run / LAST).is_file() or (run / STATE).is_file():
        return Checkpoint(run / LAST, run / STATE, None)
    return None


def snapshot_path(run: str | Path, step: int) -> Path:
    """RUN/snapshots/step-NNNNNNNN.safetensors, the weights kept at ``step``."""
    return Path(run) / SNAPSHOTS / f"step-{step:08d}.safetensors"


def snapshot_step(which: str) -> int | None:
    """N of weights named "step-N" (N >= 1), else None."""
    match = _CHECKPOINT.match(which)
    return int(match[1]) if match and int(match[1]) >= 1 else None


def check_weights(which: str) -> str:
    """``which`` if it names weights of a run ("best", "last" or "step-N").

    Raises:
        ValueError: it does not.
    """
    if which not in WEIGHTS and snapshot_step(which) is None:
        raise ValueError(f"which must be one of {list(WEIGHTS)} or step-N (N >= 1), got {which!r}")
    return which


def weights_path(run: str | Path, which: str) -> Path:
    """The weights file of ``which``: "best" is RUN/best.safetensors, "last" the last
    checkpoint's (RUN/last.safetensors where there is no checkpoint), "step-N" the snapshot
    of step N."""
    step = snapshot_step(check_weights(which))
    if step is not None:
        return snapshot_path(run, step)
    if which == "last":
        checkpoint = last_checkpoint(run)
        return checkpoint.weights if checkpoint else Path(run) / LAST
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


# What to do about a damaged run.json: nothing else in the folder is touched meanwhile.
_RESTORE = ": restore it from a copy, or move the run folder away and train the run again"


def error_line(err: BaseException) -> str:
    """An exception's message as one line (its first), or its type's name when it has none."""
    lines = str(err).strip().splitlines()
    return lines[0].strip() if lines else type(err).__name__


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
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path} is corrupted ({err}){_RESTORE}") from None
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror}") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise UserError(
            f"{path} is not a permakey run description (no format {FORMAT!r}){_RESTORE}"
        )
    for key in ("kind", "model", "train"):
        if key not in info:
            raise UserError(f"{path} is corrupted (no {key!r} entry){_RESTORE}")
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
        raise UserError(
            f"weights file {path} is corrupted ({error_line(err)}): restore it from a copy, or train "
            "the run again"
        ) from None
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
        resize: how raw frames were resized to S x S: "area", "nearest" or "authors".
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
