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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

import permakey
from permakey.errors import UserError

RUN_JSON = "run.json"
STATE = "state.pt"
METRICS = "metrics.jsonl"
TENSORBOARD = "tb"
CHECKPOINTS = "checkpoints"
LAST = "last.safetensors"
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


def weights_path(run: str | Path, which: str) -> Path:
    """The weights file of ``which``: "best" is RUN/best.safetensors, "last" the last
    checkpoint's (RUN/last.safetensors where there is no checkpoint)."""
    if which not in WEIGHTS:
        raise ValueError(f"which must be one of {list(WEIGHTS)}, got {which!r}")
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
