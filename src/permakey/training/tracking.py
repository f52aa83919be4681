"""Experiment tracking beside TensorBoard: the `Tracker` protocol and Weights & Biases.

The training loop's `Logger` hands a tracker what it writes to TensorBoard (the same
namespaced scalar keys, "losses/vae", "val/loss"..., and the keypoint pictures) and, at the end
of every session, the run's state as run.json has it (status, step, best validation loss).
`log_evaluation` adds an evaluation's table to the tracked runs it scored.

This is the only module that imports ``wandb`` (the ``track`` extra), lazily. A run's W&B id
is kept in its run.json ("wandb": {"id", "project"}), so a resumed run, or its evaluation,
continues the same W&B run. W&B's own environment variables apply: WANDB_MODE=offline logs
without a network (`wandb sync` uploads later), WANDB_PROJECT (default "permakey"),
WANDB_ENTITY, WANDB_DIR (default: the run folder, so its files sit beside tb/).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from permakey.errors import UserError
from permakey.runs.folder import RUN_JSON, read_run_json
from permakey.training.config import TRACKERS

DEFAULT_PROJECT = "permakey"


class Tracker(Protocol):
    """Where the main training process sends what it logs, besides TensorBoard."""

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """Namespaced scalars at optimiser step ``step``."""

    def image(self, tag: str, picture: np.ndarray, step: int) -> None:
        """An (H, W, 3) uint8 picture."""

    def summary(self, entries: Mapping[str, Any]) -> None:
        """The run's state (status, step, best validation loss...), replacing earlier values."""

    def close(self) -> None:
        """Flushes and ends the session."""


def _wandb():
    try:
        import wandb
    except ImportError:
        raise UserError(
            "--track wandb needs Weights & Biases: pip install 'permakey[track]' (or pip install "
            "wandb)"
        ) from None
    return wandb


class WandbTracker:
    """A `Tracker` writing to one W&B run, started or continued for a run folder.

    Args:
        run: the run folder; its run.json gives the W&B run's config (model and train) and,
            once this has run, its id.
        write_id: called with {"id", "project"} when the W&B run is new, to record it (the
            training loop stores it in run.json).
    """

    def __init__(self, run: str | Path, write_id=None) -> None:
        wandb = _wandb()
        run = Path(run)
        info = read_run_json(run)
        known = info.get("wandb") or {}
        project = known.get("project") or os.environ.get("WANDB_PROJECT", DEFAULT_PROJECT)
        self.wandb = wandb
        self.run = wandb.init(
            project=project,
            id=known.get("id"),
            resume="allow",
            name=run.name,
            dir=os.environ.get("WANDB_DIR", str(run)),
            config={"kind": info["kind"], "model": info["model"], "train": info["train"]},
            reinit="create_new",
        )
        if not known and write_id is not None:
            write_id({"id": self.run.id, "project": project})

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        self.run.log(dict(values), step=step)

    def image(self, tag: str, picture: np.ndarray, step: int) -> None:
        self.run.log({tag: self.wandb.Image(picture)}, step=step)

    def summary(self, entries: Mapping[str, Any]) -> None:
        self.run.summary.update(dict(entries))

    def close(self) -> None:
        self.run.finish()


def check_tracker(kind: str) -> None:
    """Raises `UserError` when tracker ``kind`` cannot be used here (its package is missing)."""
    if kind == "wandb":
        _wandb()


def open_tracker(kind: str, run: str | Path, write_id=None) -> Tracker | None:
    """The tracker named ``kind`` (`TRACKERS`) for a run folder; None for "none"."""
    if kind == "none":
        return None
    if kind == "wandb":
        return WandbTracker(run, write_id)
    raise ValueError(f"unknown tracker {kind!r}; choose from {list(TRACKERS)}")


def log_evaluation(result: Any, runs: Sequence[str | Path], kind: str = "wandb") -> list[str]:
    """Logs an evaluation's table to each of ``runs`` that training tracked with ``kind``.

    Each W&B run gets the whole table (one row per metric, one column per model and control,
    as `permakey evaluate` prints it) as "evaluation/table", and its own column's object
    metrics per radius in its summary ("evaluation/F1@2", "evaluation/recall@2",
    "evaluation/precision@2"...), where the dataset has object ground truth.

    Args:
        result: an `evaluation.results.EvaluationResult` of these runs.
        runs: the run folders evaluated, in the result's column order.
        kind: the tracker ("wandb").

    Returns:
        The run folders whose W&B runs got the table (those without a W&B id are skipped).
    """
    from permakey.evaluation.evaluate import table_rows

    if kind != "wandb":
        raise ValueError(f"unknown tracker {kind!r}; choose from {list(TRACKERS[1:])}")
    wandb = _wandb()
    rows = table_rows(result)
    names = [c.name for c in result.columns]
    logged = []
    for run, model in zip(runs, result.models, strict=True):
        if not (read_run_json(run).get("wandb") or {}).get("id"):
            continue
        tracker = WandbTracker(run)
        table = wandb.Table(columns=["metric", *names], data=[[m, *v] for m, v in rows])
        tracker.run.log({"evaluation/table": table})
        metrics = model.metrics
        tracker.summary(
            {
                f"evaluation/{label}@{r}": values[r]
                for label, values in (
                    ("F1", metrics.f1), ("recall", metrics.recall), ("precision", metrics.precision)
                )
                if values is not None
                for r in result.radii
            }
        )  # fmt: skip
        tracker.close()
        logged.append(str(Path(run) / RUN_JSON))
    return logged
