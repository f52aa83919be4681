"""The run folder's write side: creating a run, checkpoints, best weights and metrics.

The layout and everything that reads it are `permakey.runs.folder`'s. Every file is written
atomically (`permakey.fileio`); a checkpoint (weights and state) is one step-numbered folder,
written whole before the previous one is removed. Weights and state are serialised in memory
first, so that every write is a plain file write: a full disk, a file-size limit or a
read-only folder gives an OSError with its errno, reported as a one-line `UserError` naming
the file, and the last complete checkpoint stays as it was.

Only the process that holds the run's lock (`permakey.locks`, taken by `loop.train`) writes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save
from torch import nn

from permakey.errors import UserError
from permakey.fileio import (
    atomic_dir,
    atomic_path,
    remove_leftovers,
    remove_tree,
    write_bytes_atomic,
    write_json_atomic,
)
from permakey.runs.folder import (
    CHECKPOINTS,
    FORMAT,
    FORMAT_VERSION,
    LAST,
    METRICS,
    RUN_JSON,
    STATE,
    checkpoint_folder,
    checkpoint_steps,
    error_line,
    last_checkpoint,
    load_weights,
    read_run_json,
    snapshot_path,
    weights_path,
)

# What state.pt holds (`loop._state`); a file without these is not a permakey checkpoint.
STATE_KEYS = ("step", "position", "early_stopping", "optimizer", "rng", "elapsed_s")


def weights_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's parameters and buffers as contiguous CPU tensors, ready for safetensors."""
    return {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}


def rng_state() -> dict[str, Any]:
    """The python, numpy and torch (CPU and CUDA) RNG states as plain tensors and containers."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 - the global state
    return {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores what `rng_state` returned."""
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002 - the global state
        (
            n["kind"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RunFolder:
    """Reads and writes one run folder; only the main process of a run creates a RunFolder to write.

    Args:
        path: the run folder.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def info(self) -> dict[str, Any]:
        """The current run.json."""
        return read_run_json(self.path)

    def create(
        self, info: dict[str, Any], model: nn.Module, state: dict[str, Any], overwrite: bool
    ) -> None:
        """Creates the folder with run.json and the initial checkpoint (step 0), atomically.

        The initial checkpoint makes every run folder loadable and resumable from its start,
        and gives a divergence in the very first steps a last good checkpoint.

        Args:
            info: run.json's entries (its ``train`` entry's ``data`` is the dataset).
            model: the initial model.
            state: the initial training state (`loop._state`, step 0).
            overwrite: replace an existing run folder (never anything else, see
                `check_replaceable`).

        Raises:
            UserError: the folder exists and ``overwrite`` is False, or it is not a run folder,
                or it holds the dataset; the folder cannot be written (nothing is created).
        """
        check_replaceable(self.path, info.get("train", {}).get("data"), overwrite)
        info = {"format": FORMAT, "format_version": FORMAT_VERSION, **info}
        weights, serialised = _serialise(model, state)
        with self.writing(self.path, created=False), atomic_dir(self.path, overwrite) as tmp:
            write_json_atomic(tmp / RUN_JSON, info)
            folder = checkpoint_folder(tmp, state["step"])
            folder.mkdir(parents=True)
            (folder / LAST).write_bytes(weights)
            (folder / STATE).write_bytes(serialised)

    def update_info(self, **entries: Any) -> None:
        """Rewrites run.json with ``entries`` replaced."""
        path = self.path / RUN_JSON
        info = self.info
        with self.writing(path):
            write_json_atomic(path, {**info, **entries})

    def save_best(self, model: nn.Module, step: int) -> None:
        """Writes RUN/best.safetensors atomically, with the step in its metadata."""
        path = weights_path(self.path, "best")
        data = _weights_bytes(model, step)
        with self.writing(path):
            write_bytes_atomic(path, data)

    def save_snapshot(self, model: nn.Module, step: int) -> None:
        """Writes the weights of ``step`` to RUN/snapshots/step-NNNNNNNN.safetensors atomically
        (again with the same weights where a resumed run repeats the step)."""
        path = snapshot_path(self.path, step)
        data = _weights_bytes(model, step)
        with self.writing(path):
            path.parent.mkdir(exist_ok=True)
            write_bytes_atomic(path, data)

    def save_checkpoint(self, model: nn.Module, state: dict[str, Any]) -> None:
        """Writes the checkpoint folder of step ``state["step"]``, then removes the older ones.

        Raises:
            UserError: it cannot be written (the previous checkpoint stays the last one).
            RuntimeError: a checkpoint of this step exists already (a checkpoint is never
                rewritten in place: the loop writes at most one per step).
        """
        folder = checkpoint_folder(self.path, state["step"])
        if folder.exists():
            raise RuntimeError(f"{folder} exists already")
        weights, serialised = _serialise(model, state)
        with self.writing(folder):
            with atomic_dir(folder) as tmp:
                (tmp / LAST).write_bytes(weights)
                (tmp / STATE).write_bytes(serialised)
            self._remove_older_checkpoints()

    def _remove_older_checkpoints(self) -> None:
        """Removes every checkpoint but the last, and an older version's top-level pair."""
        steps = checkpoint_steps(self.path)
        for step in steps[:-1]:
            remove_tree(checkpoint_folder(self.path, step))
        if steps:
            for name in (STATE, LAST):  # state first: weights alone are no checkpoint
                with contextlib.suppress(FileNotFoundError):
                    (self.path / name).unlink()

    def clean(self) -> None:
        """Removes what killed writes left: temporaries in the folder and beside it (of a
        killed ``--overwrite``), and checkpoints older than the last."""
        with self.writing(self.path):
            for folder in (self.path, self.path / CHECKPOINTS):
                remove_leftovers(folder)
            remove_leftovers(self.path.parent, self.path.name)
            self._remove_older_checkpoints()

    def load_checkpoint(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        """Loads the last checkpoint's weights into ``model`` and returns its state.

        Raises:
            UserError: there is no checkpoint, a file is missing, damaged or foreign, or (older
                runs' top-level pair) the two disagree on the step.
        """
        checkpoint = last_checkpoint(self.path)
        if checkpoint is None or not checkpoint.state.is_file():
            missing = checkpoint.state if checkpoint else self.path / CHECKPOINTS
            raise UserError(
                f"{missing} is missing: the run has no resumable checkpoint (its weights, if "
                "any, still load with permakey.load); train it again with --overwrite"
            )
        metadata = load_weights(model, checkpoint.weights)
        state = load_state(checkpoint.state, device)
        if str(state["step"]) != metadata.get("step"):
            raise UserError(
                f"{checkpoint.state} (step {state['step']}) and {checkpoint.weights} (step "
                f"{metadata.get('step')}) disagree: the run stopped while writing its "
                "checkpoint (a version before checkpoint folders); train it again with --overwrite"
            )
        return state

    def append_metrics(self, row: dict[str, Any]) -> None:
        """Appends one JSON line to metrics.jsonl (one write call, flushed)."""
        path = self.path / METRICS
        with self.writing(path), open(path, "a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
            f.flush()

    def truncate_metrics(self, step: int) -> None:
        """Drops metrics logged after ``step`` (by a run that stopped after its checkpoint)."""
        path = self.path / METRICS
        if not path.exists():
            return
        with self.writing(path):
            keep = []
            for line in path.read_text().splitlines():
                try:
                    if json.loads(line)["step"] <= step:
                        keep.append(line + "\n")
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut short by a crash
            with atomic_path(path) as tmp:
                tmp.write_text("".join(keep))

    @contextlib.contextmanager
    def writing(self, target: Path, created: bool = True) -> Iterator[None]:
        """Turns a failed write (full disk, file-size limit, read-only folder) into a one-line
        `UserError` naming ``target`` and what is left."""
        try:
            yield
        except OSError as err:
            reason = err.strerror or error_line(err)
            if not created:
                kept = "nothing was created or replaced"
            else:
                checkpoint = last_checkpoint(self.path)
                kept = (
                    f"the last complete checkpoint, {checkpoint.weights.parent}, is intact; "
                    f"free space or make the folder writable, then --resume {self.path}"
                    if checkpoint
                    else "the run has no checkpoint"
                )
            raise UserError(f"cannot write {target}: {reason}; {kept}") from None


def check_replaceable(out: Path, data: str | None, overwrite: bool) -> None:
    """Checks that a new run folder may be written at ``out``.

    ``--overwrite`` replaces only a run folder (with a permakey run.json) or an empty folder:
    never a folder of other files, nor the dataset ``data`` or a folder that holds it.

    Raises:
        UserError: one line naming the folder and why not.
    """
    if data:
        real_out, real_data = Path(os.path.realpath(out)), Path(os.path.realpath(data))
        if real_out == real_data or real_out in real_data.parents:
            raise UserError(
                f"run folder {out} is the dataset {data} or holds it: choose another --out"
            )
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise UserError(f"{out} exists and is not a folder: choose another --out")
    if not overwrite:
        raise UserError(
            f"run folder {out} already exists: pass --overwrite to replace it or --resume to "
            "continue it"
        )
    try:
        empty = not any(out.iterdir())
    except OSError as err:
        raise UserError(f"cannot read {out}: {err.strerror}") from None
    if empty:
        return
    try:
        read_run_json(out)
    except UserError as err:
        raise UserError(
            f"--overwrite replaces only a run folder, and {out} is not one ({err}): choose "
            "another --out, or remove it yourself"
        ) from None


def load_state(path: Path, device: torch.device) -> dict[str, Any]:
    """Reads a state.pt: plain tensors and containers only, so that no code runs from it.

    Raises:
        UserError: the file is damaged, holds other objects, or lacks the state's entries.
    """
    what_to_do = "restore it from a copy, or train the run again with --overwrite"
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"{path} holds objects other than tensors and plain containers, refused (a "
            f"checkpoint never runs code): it is not a permakey checkpoint; {what_to_do}"
        ) from None
    except Exception as err:  # torch.load raises many types for a damaged file
        raise UserError(
            f"{path} is damaged ({type(err).__name__}: {error_line(err)}); {what_to_do}"
        ) from None
    if not isinstance(state, dict) or not all(key in state for key in STATE_KEYS):
        raise UserError(f"{path} is not a permakey checkpoint (entries missing); {what_to_do}")
    return state


def _weights_bytes(model: nn.Module, step: int) -> bytes:
    """A safetensors file of the model's weights, with the step in its metadata."""
    return save(weights_state(model), metadata={"step": str(step)})


def _serialise(model: nn.Module, state: dict[str, Any]) -> tuple[bytes, bytes]:
    """The checkpoint's two files as bytes: the weights and state.pt."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return _weights_bytes(model, state["step"]), buffer.getvalue()
