"""The run folder's write side: creating a run, checkpoints, best weights and metrics.

The layout and everything that reads it are `permakey.runs.folder`'s. Every file is written
atomically (`permakey.fileio`); `last.safetensors` and `state.pt` carry the same step, which
`load_checkpoint` checks, so a crash between the two writes is detected instead of resuming
from a mismatched pair.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from permakey.errors import UserError
from permakey.fileio import atomic_dir, atomic_path, write_json_atomic
from permakey.runs.folder import (
    FORMAT,
    FORMAT_VERSION,
    METRICS,
    RUN_JSON,
    STATE,
    load_weights,
    read_run_json,
    weights_path,
)


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

    def create(self, info: dict[str, Any], model: nn.Module, overwrite: bool) -> None:
        """Creates the folder with run.json and the initial weights as ``last``, atomically.

        The initial weights make every run folder loadable and give a divergence in the very
        first steps a last good checkpoint.

        Raises:
            UserError: the folder exists and ``overwrite`` is False.
        """
        if self.path.exists() and not overwrite:
            raise UserError(
                f"run folder {self.path} already exists: pass --overwrite to replace it "
                "or --resume to continue it"
            )
        info = {"format": FORMAT, "format_version": FORMAT_VERSION, **info}
        with atomic_dir(self.path, overwrite=overwrite) as tmp:
            write_json_atomic(tmp / RUN_JSON, info)
            save_file(weights_state(model), tmp / "last.safetensors", metadata={"step": "0"})

    def update_info(self, **entries: Any) -> None:
        """Rewrites run.json with ``entries`` replaced."""
        write_json_atomic(self.path / RUN_JSON, {**self.info, **entries})

    def save_weights(self, which: str, model: nn.Module, step: int) -> None:
        """Writes RUN/{which}.safetensors atomically, with the step in its metadata."""
        with atomic_path(weights_path(self.path, which)) as tmp:
            save_file(weights_state(model), tmp, metadata={"step": str(step)})

    def save_checkpoint(self, model: nn.Module, state: dict[str, Any]) -> None:
        """Writes last.safetensors, then state.pt (which holds ``state["step"]``)."""
        self.save_weights("last", model, state["step"])
        with atomic_path(self.path / STATE) as tmp:
            torch.save(state, tmp)

    def load_checkpoint(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        """Loads last.safetensors into ``model`` and returns state.pt's contents.

        Raises:
            UserError: a file is missing or corrupted, or the two disagree on the step.
        """
        path = self.path / STATE
        if not path.is_file():
            raise UserError(f"{path} is missing: the run has no resumable checkpoint yet")
        metadata = load_weights(model, weights_path(self.path, "last"))
        try:
            state = torch.load(path, map_location=device, weights_only=True)
        except Exception as err:  # torch.load raises many types for a damaged file
            raise UserError(f"{path} is corrupted ({type(err).__name__}: {err})") from None
        if str(state.get("step")) != metadata.get("step"):
            raise UserError(
                f"{path} (step {state.get('step')}) and last.safetensors (step "
                f"{metadata.get('step')}) disagree: the run stopped while writing its checkpoint"
            )
        return state

    def has_weights(self, which: str) -> bool:
        """Whether RUN/{which}.safetensors exists."""
        return weights_path(self.path, which).is_file()

    def append_metrics(self, row: dict[str, Any]) -> None:
        """Appends one JSON line to metrics.jsonl (one write call, flushed)."""
        with open(self.path / METRICS, "a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
            f.flush()

    def truncate_metrics(self, step: int) -> None:
        """Drops metrics logged after ``step`` (by a run that stopped after its checkpoint)."""
        path = self.path / METRICS
        if not path.exists():
            return
        keep = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    keep.append(line + "\n")
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut short by a crash
        with atomic_path(path) as tmp:
            tmp.write_text("".join(keep))
