"""The one training loop, shared by every method through its `Method` adapter.

`_train` reads top to bottom as its named steps: `_setup` the processes, model, optimiser,
data and run folder (or resume them from it); then per epoch, `_train_epoch` with a progress
bar and metrics and `_end_epoch` (validate, keep the best weights, checkpoint); stop early on
patience, or `_stop_resumably` on a time or step budget or on Ctrl-C / SIGTERM; a non-finite
loss stops it with an error naming the loss (the last checkpoint stays as it was). A stop
condition is a plain value: the `Stopper`'s reason after each step, or None.

Checkpoints: one at the start (step 0, with the run folder), one every ``checkpoint_every``
steps or ``checkpoint_minutes`` minutes inside an epoch, one at each epoch's end and one at a
resumable stop; a kill loses at most the work since the last. Snapshots (weights only, kept):
after each step of ``snapshot_steps``, the same weights a run with that step budget ends with.
The main process holds the run folder's lock (`permakey.locks`) for the whole call, so that no
other process writes it.

Exact resume: the data order of an epoch is a function of (seed, epoch), a checkpoint records
the position inside the epoch, the learning rate is a function of the step, and state.pt holds
the optimiser and RNG states; validation runs on a forked RNG so that it never shifts the
training's random stream. On CPU a resumed run ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import threading
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, default_collate
from tqdm.auto import tqdm

from permakey.devices import autocast, cpu_has_fast_bf16, resolve_precision
from permakey.errors import UserError
from permakey.locks import drop_inherited, hold_folder
from permakey.runs.folder import TENSORBOARD, code_version, weights_path
from permakey.runs.trained import FrameSpec
from permakey.training.config import TrainConfig
from permakey.training.distributed import EpochSampler, Processes, average_gradients
from permakey.training.method import Method
from permakey.training.optim import build_optimizer, set_learning_rates
from permakey.training.run import RunFolder, rng_state, set_rng_state
from permakey.training.tracking import check_tracker, open_tracker

PICTURE_FRAMES = 8


class TrainingDiverged(UserError):
    """A loss became NaN or infinite; the message names it, the module and the step."""


@dataclass
class TrainResult:
    """How a call of `train` ended.

    Attributes:
        run: the run folder.
        status: "finished" (all epochs), "early-stopped", "stopped" (time or step budget) or
            "interrupted" (Ctrl-C / SIGTERM); the last two are resumable mid-epoch.
        step: optimiser steps done in total.
        epoch: epochs completed.
        best_val_loss: validation loss of the best weights (None before the first validation).
    """

    run: Path
    status: str
    step: int
    epoch: int
    best_val_loss: float | None


@dataclass
class Position:
    """Where training stands: completed epochs, batches into the current epoch, total steps."""

    epoch: int = 0
    batch: int = 0
    step: int = 0


@dataclass
class EarlyStopping:
    """Patience on the validation loss, and the loss of the weights kept as best.

    Patience counts only the validations at the ends of epochs, so resuming never changes
    when a run stops; ``kept`` also counts the validation of a run stopped on its budget,
    whose final weights become the best ones if they validate lower.
    """

    patience: int
    best: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    kept: float = math.inf

    def keep(self, loss: float) -> bool:
        """Whether weights with this validation loss replace the best weights (then recorded)."""
        if loss < self.kept:
            self.kept = loss
            return True
        return False

    def update(self, loss: float, epoch: int) -> bool:
        """Records a validation loss; returns whether it is the best so far."""
        if loss < self.best:
            self.best, self.best_epoch, self.bad_epochs = loss, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def exhausted(self) -> bool:
        """Whether ``patience`` epochs in a row brought no improvement."""
        return self.bad_epochs >= self.patience

    @property
    def kept_loss(self) -> float | None:
        """The validation loss of the weights kept as best; None before any validation."""
        return self.kept if math.isfinite(self.kept) else None


def training_step(
    method: Method,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: dict,
    device: torch.device,
    cfg: TrainConfig,
) -> dict[str, torch.Tensor]:
    """One training step on one batch (also what the benchmark times).

    One optimiser step on the method's total loss, then one per loss of the method's
    `extra_losses` (e.g. further PointNet updates), each computed after the previous step.
    Under DDP the extra losses' gradients are averaged over the processes here, since they do
    not pass through the wrapper's forward.

    Returns:
        {loss key: detached float32 scalar}, the losses before the step.
    """
    with autocast(device, cfg.precision):
        out = method.forward(model, batch, device, cfg.channels_last)
    optimizer.zero_grad(set_to_none=True)
    out.total.backward()
    optimizer.step()
    for loss in method.extra_losses(model, out, optimizer, cfg):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(optimizer)
        optimizer.step()
    return {k: v.detach() for k, v in out.losses.items()}


@torch.no_grad()
def validate(
    method: Method, model: nn.Module, loader: DataLoader, cfg: TrainConfig, procs: Processes
) -> dict[str, float]:
    """Mean losses over the validation set (all processes together), in eval mode.

    Runs on a forked RNG so that the training's random stream is the same with or without it.
    """
    model.eval()
    devices = [procs.device] if procs.device.type == "cuda" else []
    sums, count, keys = None, 0, []
    with torch.random.fork_rng(devices=devices):
        for batch in loader:
            with autocast(procs.device, cfg.precision):
                out = method.forward(model, batch, procs.device, cfg.channels_last)
            n = len(next(iter(batch.values())))
            keys = list(out.losses)
            values = torch.stack([v.float() for v in out.losses.values()]) * n
            sums = values if sums is None else sums + values
            count += n
    model.train()
    if sums is None:
        raise UserError("the validation split is empty")
    totals = procs.sum(torch.cat([sums, sums.new_tensor([count])]))
    return dict(zip(keys, (totals[:-1] / totals[-1]).tolist(), strict=True))


def check_finite(losses: dict[str, float], where: str, run: Path, saved_step: int) -> None:
    """Raises `TrainingDiverged` naming the first non-finite loss, its module and ``where``."""
    for key, value in losses.items():
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"loss {key!r} (module {key.split('/')[0]!r}) became {value} at {where}; "
                f"training stopped. The last good checkpoint, {weights_path(run, 'last')} "
                f"(step {saved_step}), is intact"
            )


class Stopper:
    """Decides when to stop resumably: SIGINT/SIGTERM, a time budget, a step budget.

    While active, SIGINT (Ctrl-C) and SIGTERM only set a flag, checked after each step, so a
    step is never cut in half; a second Ctrl-C interrupts at once.
    """

    REASONS = ("interrupted", "time budget", "max steps")

    def __init__(self, time_budget_min: float | None, max_steps: int | None) -> None:
        self.deadline = None if time_budget_min is None else time.monotonic() + 60 * time_budget_min
        self.max_steps = max_steps
        self.signalled = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signalled and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signalled = True

    def __enter__(self) -> Stopper:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def step_budget(self, step: int) -> str | None:
        """ "max steps" once ``step`` steps reach the step budget, else None."""
        return "max steps" if self.max_steps is not None and step >= self.max_steps else None

    def reason(self, step: int, procs: Processes) -> str | None:
        """Why to stop after ``step`` steps (one of `REASONS`), or None; the same on every process.

        A signal reaches one process and clocks differ, so under DDP the processes agree on
        their flags by a small all-reduce of its own (`Processes.any_flags`): a second, tiny
        collective per step besides the losses', and none in a single process.
        """
        flags = [
            self.signalled,
            self.deadline is not None and time.monotonic() >= self.deadline,
            self.step_budget(step) is not None,
        ]
        flags = procs.any_flags(flags)
        return next((r for r, f in zip(self.REASONS, flags, strict=True) if f), None)


class Logger:
    """TensorBoard events and metrics.jsonl rows of the main process (silent elsewhere), and
    the same to an experiment tracker (`tracking`, ``--track``) when there is one."""

    def __init__(self, run: RunFolder | None, purge_step: int | None, track: str = "none") -> None:
        self.run = run
        self.writer = None
        self.tracker = None
        if run is not None:
            from torch.utils.tensorboard import SummaryWriter  # slow import: main process only

            with run.writing(run.path / TENSORBOARD):
                self.writer = SummaryWriter(str(run.path / TENSORBOARD), purge_step=purge_step)
            self.tracker = open_tracker(track, run.path, lambda ids: run.update_info(wandb=ids))

    def scalars(self, values: dict[str, float], step: int, epoch: int) -> None:
        """Logs namespaced scalars ("losses/vae", "charts/images_per_s", "val/loss"...)."""
        if self.run is None:
            return
        with self.run.writing(self.run.path / TENSORBOARD):
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)
        self.run.append_metrics({"step": step, "epoch": epoch, **values})
        if self.tracker is not None:
            self.tracker.scalars(values, step)

    def image(self, tag: str, picture: np.ndarray, step: int) -> None:
        """Logs an (H, W, 3) uint8 picture."""
        if self.writer is not None:
            with self.run.writing(self.run.path / TENSORBOARD):
                self.writer.add_image(tag, picture, step, dataformats="HWC")
        if self.tracker is not None:
            self.tracker.image(tag, picture, step)

    def final(self, state: dict[str, Any]) -> None:
        """The run's state at the end of a session (as run.json has it), for the tracker."""
        if self.tracker is not None:
            self.tracker.summary(state)

    def close(self) -> None:
        if self.writer is not None:
            # Closing flushes: a failure here comes after the run's own files are written.
            with contextlib.suppress(OSError):
                self.writer.close()
        if self.tracker is not None:
            self.tracker.close()


def seed_everything(seed: int) -> None:
    """Seeds python's, numpy's and torch's global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the global state, for any code that uses it
    torch.manual_seed(seed)


def _init_worker(worker_id: int) -> None:
    # DataLoader workers leave Ctrl-C to the training process, which stops between steps,
    # and let go of the run folder's lock, which then ends with the training process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    drop_inherited()


def _loader(
    dataset: Dataset, batch_size: int, sampler, cfg: TrainConfig, device, drop_last: bool
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=cfg.workers,
        drop_last=drop_last,
        pin_memory=device.type == "cuda",
        worker_init_fn=_init_worker if cfg.workers else None,
        # Worker seeds come from this generator, not from the global RNG of the training.
        generator=torch.Generator().manual_seed(cfg.seed),
    )


def _state(position: Position, early: EarlyStopping, optimizer, elapsed: float) -> dict[str, Any]:
    """Everything besides the weights that a resumed run needs (plain tensors and containers)."""
    return {
        "step": position.step,
        "position": vars(position).copy(),
        "early_stopping": vars(early).copy(),
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(),
        "elapsed_s": elapsed,
    }


def train(
    method: Method,
    cfg: TrainConfig,
    model_config: Any,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    info: dict[str, Any] | None = None,
) -> TrainResult:
    """Trains a method's model and writes (or continues) its run folder.

    Args:
        method: the method's adapter (`permakey.training.METHODS`).
        cfg: training options.
        model_config: the model's config.
        out: the run folder.
        resume: continue the run in ``out`` from its last checkpoint (``cfg`` and
            ``model_config`` must be the run's, see `permakey.training.run_configs`).
        overwrite: replace an existing run folder at ``out`` (ignored with ``resume``; never
            a folder that is not a run, nor the dataset).
        info: entries added to a new run's run.json (e.g. "config_source"; ignored with
            ``resume``).

    Returns:
        `TrainResult`.

    Raises:
        UserError: bad data or run folder, another process writing ``out``
            (`permakey.locks.FolderLocked`), a failed write (named); `TrainingDiverged` on a
            non-finite loss.
    """
    if not resume:  # stored absolute, so that the run resumes from any working folder
        cfg = replace(cfg, data=os.path.abspath(cfg.data))
    elif not Path(out).is_dir():  # before its lock file is made beside it
        raise UserError(f"run folder {out} does not exist")
    procs = Processes.start(cfg.device)
    try:
        with contextlib.ExitStack() as lock:
            message = None
            if procs.is_main:
                try:
                    lock.enter_context(hold_folder(out, "run folder"))
                except UserError as err:
                    if not procs.distributed:
                        raise  # as it is: `permakey.locks.FolderLocked`
                    message = str(err)
            procs.share_error(message)
            return _train(
                _setup(method, cfg, model_config, Path(out), resume, overwrite, procs, info)
            )
    finally:
        procs.stop()


@dataclass
class _Data:
    """A run's training and validation data: the order of epoch e is drawn from (seed, e)."""

    train_set: Dataset
    val_set: Dataset
    sampler: EpochSampler
    loader: DataLoader
    val_loader: DataLoader
    picture_batch: dict[str, torch.Tensor]  # the first PICTURE_FRAMES validation items
    per_process_batch: int
    steps_per_epoch: int


@dataclass
class _Training:
    """Everything the steps of `_train` share, built by `_setup`.

    ``position`` and ``early`` advance as training goes; ``saved_step`` is the step of the
    last checkpoint (the one a divergence leaves intact) and ``saved_at`` its time.monotonic(),
    ``start_step`` the step this call started from.
    """

    method: Method
    cfg: TrainConfig
    procs: Processes
    model: nn.Module
    net: nn.Module  # what trains: ``model``, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    data: _Data
    run: RunFolder
    logger: Logger
    position: Position
    early: EarlyStopping
    start_step: int
    saved_step: int
    elapsed_before: float  # seconds of training before this call
    started: float  # time.monotonic() when this call's training started
    saved_at: float

    @property
    def done(self) -> bool:
        """Whether every epoch is trained or patience ran out."""
        return self.position.epoch >= self.cfg.epochs or self.early.exhausted


def _train(tr: _Training) -> TrainResult:
    """Trains epoch by epoch until the run is done or stops; its status goes to run.json."""
    procs = tr.procs
    try:
        with Stopper(tr.cfg.time_budget, tr.cfg.max_steps) as stopper:
            # A resumed run may be at its step budget already: it trains no further step.
            stop = stopper.step_budget(tr.position.step)
            while stop is None and not tr.done:
                stop = _train_epoch(tr, stopper)
                if tr.position.batch == tr.data.steps_per_epoch:
                    _end_epoch(tr)
            status = _status(tr, stop)
            if status in ("stopped", "interrupted"):
                _stop_resumably(tr, stop, status)
            if procs.is_main:
                tr.run.update_info(status=status, **_summary(tr))
                tr.logger.final({"status": status, **_summary(tr)})
    except TrainingDiverged as err:
        if procs.is_main:
            tr.run.update_info(status="diverged", error=str(err))
            tr.logger.final({"status": "diverged", "error": str(err)})
        raise
    except UserError as err:
        # Bad data met mid-run, a failed write: the run resumes from its last checkpoint, and
        # its run.json does not say "running" meanwhile (where run.json can still be written).
        if procs.is_main:
            with contextlib.suppress(UserError):
                tr.run.update_info(status="failed", error=str(err))
        raise
    finally:
        tr.logger.close()
    return TrainResult(tr.run.path, status, tr.position.step, tr.position.epoch, tr.early.kept_loss)


def _setup(
    method: Method,
    cfg: TrainConfig,
    model_config: Any,
    out: Path,
    resume: bool,
    overwrite: bool,
    procs: Processes,
    extra_info: dict[str, Any] | None = None,
) -> _Training:
    """Model, optimiser, data and run folder, created or resumed from the run's checkpoint."""
    device = procs.device
    check_tracker(cfg.track)  # before the run folder is created
    if cfg.batch_size % procs.world_size:
        raise UserError(
            f"batch size {cfg.batch_size} is not divisible by {procs.world_size} processes"
        )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    # "auto" is resolved once here, so the run folder records the precision that was used.
    cfg = replace(cfg, precision=resolve_precision(cfg.precision, device))
    if cfg.precision == "bf16" and device.type == "cpu" and not cpu_has_fast_bf16():
        warnings.warn(
            "bf16 autocast on this CPU is emulated (no AVX512-BF16 or AMX) and much slower "
            "than float32: consider --precision fp32",
            stacklevel=3,
        )

    # Every process starts from the same seed's weights (DDP also broadcasts rank 0's) and
    # then draws its own random numbers.
    seed_everything(cfg.seed)
    model = method.build_model(model_config).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(
        method.param_groups(model, cfg), cfg.adam_eps, getattr(cfg, "shared_adam_counter", False)
    )
    seed_everything(cfg.seed + procs.rank)

    data = _data(method, cfg, procs)
    position, early, elapsed_before = Position(), EarlyStopping(cfg.patience), 0.0
    start = None
    if not resume:
        start = (
            {**_run_info(method, cfg, model_config, data, procs), **(extra_info or {})},
            _state(position, early, optimizer, 0.0),
        )
    run = _open_run(RunFolder(out), method.kind, start, model, overwrite, procs)
    if resume:
        position, early, elapsed_before = _resume(run, model, optimizer, cfg, procs)

    net = model
    if procs.distributed:
        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    # TensorBoard hides the events from the purge step on: those logged after the checkpoint
    # (as truncate_metrics drops them), not the checkpoint's own step's.
    logger = Logger(
        run if procs.is_main else None, position.step + 1 if resume else None, cfg.track
    )
    now = time.monotonic()
    return _Training(
        method, cfg, procs, model, net, optimizer, data, run, logger, position, early,
        start_step=position.step, saved_step=position.step, elapsed_before=elapsed_before,
        started=now, saved_at=now,
    )  # fmt: skip


def _data(method: Method, cfg: TrainConfig, procs: Processes) -> _Data:
    """The loaders of this process's share; validation always sees the same items."""
    per_process_batch = cfg.batch_size // procs.world_size
    train_set, val_set = method.datasets(cfg)
    if len(val_set) == 0:
        raise UserError(f"the validation split of {cfg.data} is empty")
    val_set.set_epoch(0)
    if cfg.val_limit is not None:
        val_set = Subset(val_set, range(min(cfg.val_limit, len(val_set))))
    sampler = EpochSampler(train_set, procs.world_size, procs.rank, cfg.seed)
    steps_per_epoch = sampler.items_per_epoch // per_process_batch
    if steps_per_epoch == 0:
        raise UserError(
            f"the training split of {cfg.data} has {len(train_set)} items, fewer than one batch "
            f"of {cfg.batch_size}"
        )
    device = procs.device
    loader = _loader(train_set, per_process_batch, sampler, cfg, device, drop_last=True)
    val_sampler = DistributedSampler(
        val_set, procs.world_size, procs.rank, shuffle=False, drop_last=False
    )
    val_loader = _loader(val_set, per_process_batch, val_sampler, cfg, device, drop_last=False)
    pictures = default_collate([val_set[i] for i in range(min(PICTURE_FRAMES, len(val_set)))])
    return _Data(
        train_set, val_set, sampler, loader, val_loader, pictures, per_process_batch,
        steps_per_epoch,
    )  # fmt: skip


def _run_info(
    method: Method, cfg: TrainConfig, model_config: Any, data: _Data, procs: Processes
) -> dict[str, Any]:
    """run.json of a new run."""
    return {
        "kind": method.kind,
        "model": model_config.to_dict(),
        "train": cfg.to_dict(),
        "dataset": _dataset_identity(data.train_set, data.val_set),
        "frames": _frames(data.train_set, model_config).to_json(),
        "code": code_version(),
        "world_size": procs.world_size,
        "status": "running",
    }


def _open_run(
    run: RunFolder,
    kind: str,
    start: tuple[dict, dict] | None,
    model: nn.Module,
    overwrite: bool,
    procs: Processes,
) -> RunFolder:
    """The run folder: created with ``start``, its run.json and initial state (or, for None,
    checked to be a ``kind`` run to resume and cleaned of what killed writes left), by the
    main process alone, then read by all."""
    message = None
    if procs.is_main:
        try:
            if start is None:
                stored = run.info["kind"]
                if stored != kind:
                    raise UserError(f"{run.path} is a {stored} run, not a {kind} run")
                run.clean()
            else:
                info, state = start
                run.create(info, model, state, overwrite)
        except UserError as err:
            message = str(err)
    procs.share_error(message)
    return run


def _resume(
    run: RunFolder,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    procs: Processes,
) -> tuple[Position, EarlyStopping, float]:
    """Loads the last checkpoint into ``model`` and ``optimizer`` and restores the RNGs.

    Returns:
        The checkpoint's position, early stopping (with ``cfg``'s patience) and seconds of
        training so far.

    Raises:
        UserError: a checkpoint that does not fit the run, or one past ``cfg.max_steps``.
    """
    state = run.load_checkpoint(model, procs.device)
    try:
        optimizer.load_state_dict(state["optimizer"])
        position = Position(**state["position"])
        early = EarlyStopping(**{**state["early_stopping"], "patience": cfg.patience})
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(
            f"the state of {weights_path(run.path, 'last').parent} does not fit this run "
            f"({type(err).__name__}: {err}); train the run again with --overwrite"
        ) from None
    if cfg.max_steps is not None and position.step > cfg.max_steps:
        # Otherwise it would stop at once and report a step past the budget asked for.
        raise UserError(
            f"{run.path} is at step {position.step}, past --max-steps {cfg.max_steps}: "
            f"nothing to train (give --max-steps {position.step} or more)"
        )
    if procs.is_main:
        set_rng_state(state["rng"])
        run.truncate_metrics(position.step)
        run.update_info(status="running", train=cfg.to_dict())
    else:
        seed_everything(hash((cfg.seed, procs.rank, position.step)) % 2**31)
    return position, early, state["elapsed_s"]


def _train_epoch(tr: _Training, stopper: Stopper) -> str | None:
    """Trains the rest of the current epoch, with a progress bar and metrics.

    Returns:
        Why training stops after the last step taken (a `Stopper` reason), or None.
    """
    cfg, position, data = tr.cfg, tr.position, tr.data
    data.sampler.set_position(position.epoch, position.batch * data.per_process_batch)
    data.train_set.set_epoch(position.epoch)
    tr.net.train()
    window = _Window()
    with tqdm(
        total=data.steps_per_epoch,
        initial=position.batch,
        desc=f"{tr.method.kind} epoch {position.epoch + 1}/{cfg.epochs}",
        unit="step",
        disable=not (tr.procs.is_main and cfg.progress),
        dynamic_ncols=True,
    ) as bar:
        for batch in data.loader:
            lrs = set_learning_rates(
                tr.optimizer, position.step, cfg.lr_decay, cfg.decay_rate, cfg.decay_steps
            )
            scheduled = tr.method.before_step(tr.net, position.step, cfg)
            losses = training_step(tr.method, tr.net, tr.optimizer, batch, tr.procs.device, cfg)
            losses = _mean_over_processes(losses, tr.procs)
            where = f"step {position.step + 1} (epoch {position.epoch + 1})"
            check_finite(losses, where, tr.run.path, tr.saved_step)
            position.step += 1
            position.batch += 1
            if position.step in cfg.snapshot_steps and tr.procs.is_main:
                tr.run.save_snapshot(tr.model, position.step)
            window.add(losses, cfg.batch_size)
            bar.update()
            if position.step % cfg.log_every == 0 or position.batch == data.steps_per_epoch:
                _log_training(tr, window.flush(), lrs, scheduled, bar)
            stop = stopper.reason(position.step, tr.procs)
            if stop is not None:
                return stop  # the stop checkpoints
            if position.batch < data.steps_per_epoch and _checkpoint_due(tr):
                _checkpoint(tr, "running")  # the epoch's end checkpoints after its last step
    return None


def _checkpoint_due(tr: _Training) -> bool:
    """Whether a checkpoint is due inside the epoch: every ``checkpoint_every`` steps (counted
    from the run's start, so the same steps whether or not it resumed) or minutes."""
    cfg = tr.cfg
    if cfg.checkpoint_every is not None and tr.position.step % cfg.checkpoint_every == 0:
        return True
    minutes = cfg.checkpoint_minutes
    return minutes is not None and time.monotonic() - tr.saved_at >= 60 * minutes


def _mean_over_processes(losses: dict[str, torch.Tensor], procs: Processes) -> dict[str, float]:
    """The losses' means over the processes, all in one all-reduce."""
    sums = procs.sum(torch.stack(list(losses.values())).float()).tolist()
    return {k: v / procs.world_size for k, v in zip(losses, sums, strict=True)}


def _log_training(
    tr: _Training,
    row: dict[str, float],
    lrs: dict[str, float],
    scheduled: dict[str, float],
    bar: tqdm,
) -> None:
    """Logs a window's mean losses and throughput, the learning rates and the method's other
    scheduled values; shows the losses on the bar."""
    row.update({f"charts/lr/{name}": lr for name, lr in lrs.items()})
    row.update({f"charts/{name}": value for name, value in scheduled.items()})
    tr.logger.scalars(row, tr.position.step, tr.position.epoch)
    bar.set_postfix(
        {"img/s": f"{row['charts/images_per_s']:.1f}"}
        | {k: f"{row[f'losses/{k}']:.4g}" for k in tr.method.display_losses}
    )


def _end_epoch(tr: _Training) -> None:
    """End of an epoch: validate, count patience, log pictures, keep the best weights, checkpoint."""
    position = tr.position
    val = validate(tr.method, tr.model, tr.data.val_loader, tr.cfg, tr.procs)
    check_finite(val, f"validation after epoch {position.epoch + 1}", tr.run.path, tr.saved_step)
    val_loss = tr.method.validation_loss(val)
    tr.early.update(val_loss, position.epoch)
    position.epoch += 1
    position.batch = 0
    _log_validation(tr, val, val_loss)
    if tr.procs.is_main:
        for tag, picture in _pictures(tr).items():
            tr.logger.image(tag, picture, position.step)
    _keep_if_best(tr, val_loss)
    _checkpoint(tr, "running")


@torch.no_grad()
def _pictures(tr: _Training) -> dict[str, np.ndarray]:
    """The method's TensorBoard pictures of the first validation items, in eval mode."""
    tr.model.eval()
    batch = tr.data.picture_batch
    out = tr.method.forward(tr.model, batch, tr.procs.device, tr.cfg.channels_last)
    tr.model.train()
    return tr.method.picture(tr.model, batch, out)


def _stop_resumably(tr: _Training, reason: str, status: str) -> None:
    """Stops before the end ("stopped" on a budget, or "interrupted") so that --resume goes on.

    Stopped on its budget mid-epoch, the final weights are validated and kept as best if they
    are better (a run stopped before its first validation always gets a best model); patience
    is left alone (see `EarlyStopping`). A call that trained no step (a run resumed at its
    step budget) validates nothing: its weights are those of the checkpoint it resumed.
    """
    position = tr.position
    kept = False
    if status == "stopped" and position.batch > 0 and position.step > tr.start_step:
        val = validate(tr.method, tr.model, tr.data.val_loader, tr.cfg, tr.procs)
        val_loss = tr.method.validation_loss(val)
        _log_validation(tr, val, val_loss)
        kept = _keep_if_best(tr, val_loss)
    if kept or tr.saved_step != position.step:
        _checkpoint(tr, status)
    if tr.procs.is_main:
        print(
            f"{tr.method.kind}: {reason}: stopped at step {position.step} "
            f"(epoch {position.epoch + 1}); continue with --resume {tr.run.path}"
        )


def _log_validation(tr: _Training, val: dict[str, float], val_loss: float) -> None:
    tr.logger.scalars(
        {f"val/{k}": v for k, v in val.items()} | {"val/loss": val_loss},
        tr.position.step,
        tr.position.epoch,
    )


def _keep_if_best(tr: _Training, val_loss: float) -> bool:
    """Writes best.safetensors if these weights validate lower than the kept ones; whether so."""
    kept = tr.early.keep(val_loss)
    if kept and tr.procs.is_main:
        tr.run.save_best(tr.model, tr.position.step)
    return kept


def _checkpoint(tr: _Training, status: str) -> None:
    """Writes a checkpoint (weights and state), then run.json's progress (main process only)."""
    if tr.procs.is_main:
        elapsed = tr.elapsed_before + time.monotonic() - tr.started
        tr.run.save_checkpoint(tr.model, _state(tr.position, tr.early, tr.optimizer, elapsed))
        tr.run.update_info(status=status, **_summary(tr))
    tr.saved_step = tr.position.step
    tr.saved_at = time.monotonic()


def _status(tr: _Training, stop: str | None) -> str:
    """How the run ended: finished, early-stopped, or stopped resumably (budget or signal)."""
    if tr.early.exhausted:
        return "early-stopped"
    if tr.position.epoch >= tr.cfg.epochs:
        return "finished"
    return "interrupted" if stop == "interrupted" else "stopped"


class _Window:
    """Mean losses and throughput since the last logged line."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.sums: dict[str, float] = {}
        self.steps = 0
        self.images = 0

    def add(self, losses: dict[str, float], images: int) -> None:
        for k, v in losses.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.steps += 1
        self.images += images

    def flush(self) -> dict[str, float]:
        now = time.monotonic()
        row = {f"losses/{k}": v / self.steps for k, v in self.sums.items()}
        row["charts/images_per_s"] = self.images / max(now - self.start, 1e-9)
        self.__init__()
        return row


def _summary(tr: _Training) -> dict[str, Any]:
    """The progress entries of run.json."""
    early = tr.early
    return {
        "step": tr.position.step,
        "epoch": tr.position.epoch,
        "steps_per_epoch": tr.data.steps_per_epoch,
        "best_val_loss": early.kept_loss,
        "best_epoch": early.best_epoch + 1 if early.best_epoch >= 0 else None,  # patience's
    }


def _dataset_identity(train_set: Dataset, val_set: Dataset) -> dict[str, Any]:
    """The identity of each split read (game, seed, split, frames, path, sha256)."""
    sets = {"train": train_set, "val": val_set}
    sets = {k: ds.dataset if isinstance(ds, Subset) else ds for k, ds in sets.items()}
    return {k: ds.split.identity() for k, ds in sets.items()}


def _frames(train_set: Dataset, model_config: Any) -> FrameSpec:
    """What inference needs to know of the frames: size, resize method, channels, game."""
    return FrameSpec.of_dataset(train_set.split.meta, model_config.image_size)
