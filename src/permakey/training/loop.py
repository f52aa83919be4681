"""The one training loop, shared by every method through its `Method` adapter.

`train` reads top to bottom: set up processes, model, optimiser, data and the run folder (or
resume them from it); then per epoch, train with a progress bar and metrics, validate, keep
the best weights, checkpoint, and stop early, on a time or step budget, on Ctrl-C / SIGTERM
(resumably), or on a non-finite loss (naming it; the last checkpoint stays as it was).

Exact resume: the data order of an epoch is a function of (seed, epoch), a checkpoint records
the position inside the epoch, the learning rate is a function of the step, and state.pt holds
the optimiser and RNG states; validation runs on a forked RNG so that it never shifts the
training's random stream. On CPU a resumed run ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import math
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
from permakey.runs.folder import TENSORBOARD, code_version
from permakey.runs.trained import FrameSpec
from permakey.training.config import TrainConfig
from permakey.training.distributed import EpochSampler, Processes, average_gradients
from permakey.training.method import Method
from permakey.training.optim import build_optimizer, set_learning_rates
from permakey.training.run import RunFolder, rng_state, set_rng_state

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
                f"training stopped. The last good checkpoint, {run}/last.safetensors "
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

    def flags(self, step: int) -> list[float]:
        """One 0/1 flag per reason in `REASONS`, for this process."""
        return [
            float(self.signalled),
            float(self.deadline is not None and time.monotonic() >= self.deadline),
            float(self.max_steps is not None and step >= self.max_steps),
        ]

    @classmethod
    def reason(cls, flags: list[float]) -> str | None:
        """The first reason whose flag is set on any process (flags summed over processes)."""
        return next((r for r, f in zip(cls.REASONS, flags, strict=True) if f > 0), None)


class Logger:
    """TensorBoard events and metrics.jsonl rows of the main process (silent elsewhere)."""

    def __init__(self, run: RunFolder | None, purge_step: int | None) -> None:
        self.run = run
        self.writer = None
        if run is not None:
            from torch.utils.tensorboard import SummaryWriter  # slow import: main process only

            self.writer = SummaryWriter(str(run.path / TENSORBOARD), purge_step=purge_step)

    def scalars(self, values: dict[str, float], step: int, epoch: int) -> None:
        """Logs namespaced scalars ("losses/vae", "charts/images_per_s", "val/loss"...)."""
        if self.run is None:
            return
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.run.append_metrics({"step": step, "epoch": epoch, **values})

    def image(self, tag: str, picture: np.ndarray, step: int) -> None:
        """Logs an (H, W, 3) uint8 picture."""
        if self.writer is not None:
            self.writer.add_image(tag, picture, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def seed_everything(seed: int) -> None:
    """Seeds python's, numpy's and torch's global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the global state, for any code that uses it
    torch.manual_seed(seed)


def _ignore_sigint(worker_id: int) -> None:
    # DataLoader workers leave Ctrl-C to the training process, which stops between steps.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


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
        worker_init_fn=_ignore_sigint if cfg.workers else None,
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
) -> TrainResult:
    """Trains a method's model and writes (or continues) its run folder.

    Args:
        method: the method's adapter (`permakey.training.METHODS`).
        cfg: training options.
        model_config: the model's config.
        out: the run folder.
        resume: continue the run in ``out`` from its last checkpoint (``cfg`` and
            ``model_config`` must be the run's, see `permakey.training.run_configs`).
        overwrite: replace an existing ``out`` (ignored with ``resume``).

    Returns:
        `TrainResult`.

    Raises:
        UserError: bad data or run folder; `TrainingDiverged` on a non-finite loss.
    """
    procs = Processes.start(cfg.device)
    try:
        return _train(method, cfg, model_config, Path(out), resume, overwrite, procs)
    finally:
        procs.stop()


def _train(
    method: Method,
    cfg: TrainConfig,
    model_config: Any,
    out: Path,
    resume: bool,
    overwrite: bool,
    procs: Processes,
) -> TrainResult:
    device = procs.device
    if cfg.batch_size % procs.world_size:
        raise UserError(
            f"batch size {cfg.batch_size} is not divisible by {procs.world_size} processes"
        )
    per_process_batch = cfg.batch_size // procs.world_size
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    # "auto" is resolved once here, so the run folder records the precision that was used.
    cfg = replace(cfg, precision=resolve_precision(cfg.precision, device))
    if cfg.precision == "bf16" and device.type == "cpu" and not cpu_has_fast_bf16():
        warnings.warn(
            "bf16 autocast on this CPU is emulated (no AVX512-BF16 or AMX) and much slower "
            "than float32: consider --precision fp32",
            stacklevel=2,
        )

    # Model and optimiser. Every process starts from the same seed's weights (DDP also
    # broadcasts rank 0's) and then draws its own random numbers.
    seed_everything(cfg.seed)
    model = method.build_model(model_config).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(
        method.param_groups(model, cfg), cfg.adam_eps, getattr(cfg, "shared_adam_counter", False)
    )
    seed_everything(cfg.seed + procs.rank)

    # Data: the order of epoch e is drawn from (seed, e); validation always sees the same items.
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
    loader = _loader(train_set, per_process_batch, sampler, cfg, device, drop_last=True)
    val_sampler = DistributedSampler(
        val_set, procs.world_size, procs.rank, shuffle=False, drop_last=False
    )
    val_loader = _loader(val_set, per_process_batch, val_sampler, cfg, device, drop_last=False)
    picture_batch = default_collate([val_set[i] for i in range(min(PICTURE_FRAMES, len(val_set)))])

    # The run folder: created (or checked) by the main process alone, then read by all.
    run = RunFolder(out)
    message = None
    if procs.is_main:
        try:
            if resume:
                info = run.info
                if info["kind"] != method.kind:
                    raise UserError(f"{out} is a {info['kind']} run, not a {method.kind} run")
            else:
                run.create(
                    {
                        "kind": method.kind,
                        "model": model_config.to_dict(),
                        "train": cfg.to_dict(),
                        "dataset": _dataset_identity(train_set, val_set),
                        "frames": _frames(train_set, model_config).to_json(),
                        "code": code_version(),
                        "world_size": procs.world_size,
                        "status": "running",
                    },
                    model,
                    overwrite,
                )
        except UserError as err:
            message = str(err)
    procs.share_error(message)

    position, early, elapsed_before = Position(), EarlyStopping(cfg.patience), 0.0
    if resume:
        state = run.load_checkpoint(model, device)
        optimizer.load_state_dict(state["optimizer"])
        position = Position(**state["position"])
        early = EarlyStopping(**{**state["early_stopping"], "patience": cfg.patience})
        elapsed_before = state["elapsed_s"]
        if procs.is_main:
            set_rng_state(state["rng"])
            run.truncate_metrics(position.step)
            run.update_info(status="running", train=cfg.to_dict())
        else:
            seed_everything(hash((cfg.seed, procs.rank, position.step)) % 2**31)
    saved_step = position.step

    net = model
    if procs.distributed:
        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    logger = Logger(run if procs.is_main else None, position.step if resume else None)
    started = time.monotonic()

    def save(status: str) -> None:
        nonlocal saved_step
        if procs.is_main:
            elapsed = elapsed_before + time.monotonic() - started
            run.save_checkpoint(model, _state(position, early, optimizer, elapsed))
            run.update_info(status=status, **_summary(position, early, steps_per_epoch))
        saved_step = position.step

    status = "finished"
    stop_reason = None
    try:
        with Stopper(cfg.time_budget, cfg.max_steps) as stopper:
            if early.exhausted or position.epoch >= cfg.epochs:
                status = "early-stopped" if early.exhausted else "finished"
            while position.epoch < cfg.epochs and not early.exhausted and stop_reason is None:
                # One epoch (or the rest of it, after a resume).
                sampler.set_position(position.epoch, position.batch * per_process_batch)
                train_set.set_epoch(position.epoch)
                net.train()
                window = _Window()
                bar = tqdm(
                    total=steps_per_epoch,
                    initial=position.batch,
                    desc=f"{method.kind} epoch {position.epoch + 1}/{cfg.epochs}",
                    unit="step",
                    disable=not (procs.is_main and cfg.progress),
                    dynamic_ncols=True,
                )
                for batch in loader:
                    lrs = set_learning_rates(
                        optimizer, position.step, cfg.lr_decay, cfg.decay_rate, cfg.decay_steps
                    )
                    losses = training_step(method, net, optimizer, batch, device, cfg)
                    # One reduction per step: mean losses over processes and the stop flags.
                    values = procs.sum(
                        torch.cat(
                            [
                                torch.stack(list(losses.values())).float(),
                                torch.tensor(stopper.flags(position.step + 1), device=device),
                            ]
                        )
                    ).tolist()
                    n_losses = len(losses)
                    mean_losses = {
                        k: v / procs.world_size
                        for k, v in zip(losses, values[:n_losses], strict=True)
                    }
                    check_finite(
                        mean_losses,
                        f"step {position.step + 1} (epoch {position.epoch + 1})",
                        run.path,
                        saved_step,
                    )
                    position.step += 1
                    position.batch += 1
                    window.add(mean_losses, cfg.batch_size)
                    bar.update()
                    if position.step % cfg.log_every == 0 or position.batch == steps_per_epoch:
                        row = window.flush()
                        row.update({f"charts/lr/{name}": lr for name, lr in lrs.items()})
                        logger.scalars(row, position.step, position.epoch)
                        bar.set_postfix(
                            {"img/s": f"{row['charts/images_per_s']:.1f}"}
                            | {k: f"{row[f'losses/{k}']:.4g}" for k in method.display_losses}
                        )
                    stop_reason = Stopper.reason(values[n_losses:])
                    if stop_reason is not None and position.batch < steps_per_epoch:
                        break
                bar.close()

                if position.batch == steps_per_epoch:
                    # End of the epoch: validate, keep the best weights, checkpoint.
                    val = validate(method, model, val_loader, cfg, procs)
                    check_finite(
                        val, f"validation after epoch {position.epoch + 1}", run.path, saved_step
                    )
                    val_loss = method.validation_loss(val)
                    early.update(val_loss, position.epoch)
                    position.epoch += 1
                    position.batch = 0
                    logger.scalars(
                        {f"val/{k}": v for k, v in val.items()} | {"val/loss": val_loss},
                        position.step,
                        position.epoch,
                    )
                    if procs.is_main:
                        pictures = method.picture(model, picture_batch, device, cfg)
                        for tag, picture in pictures.items():
                            logger.image(tag, picture, position.step)
                    if early.keep(val_loss) and procs.is_main:
                        run.save_weights("best", model, position.step)
                    status = "early-stopped" if early.exhausted else "finished"
                    save("running")

            if stop_reason is not None and not (position.epoch >= cfg.epochs or early.exhausted):
                status = "interrupted" if stop_reason == "interrupted" else "stopped"
                kept = False
                if status == "stopped" and position.batch > 0:
                    # Stopped on its budget mid-epoch: the final weights are validated and kept
                    # as best if they are better (a run stopped before its first validation
                    # always gets a best model). Patience is left alone (see EarlyStopping).
                    val = validate(method, model, val_loader, cfg, procs)
                    val_loss = method.validation_loss(val)
                    logger.scalars(
                        {f"val/{k}": v for k, v in val.items()} | {"val/loss": val_loss},
                        position.step,
                        position.epoch,
                    )
                    kept = early.keep(val_loss)
                    if kept and procs.is_main:
                        run.save_weights("best", model, position.step)
                if kept or saved_step != position.step:
                    save(status)
                if procs.is_main:
                    print(
                        f"{method.kind}: {stop_reason}: stopped at step {position.step} "
                        f"(epoch {position.epoch + 1}); continue with --resume {run.path}"
                    )
            if procs.is_main:
                run.update_info(status=status, **_summary(position, early, steps_per_epoch))
    except TrainingDiverged as err:
        if procs.is_main:
            run.update_info(status="diverged", error=str(err))
        raise
    finally:
        logger.close()
    best = early.kept if math.isfinite(early.kept) else None
    return TrainResult(run.path, status, position.step, position.epoch, best)


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


def _summary(position: Position, early: EarlyStopping, steps_per_epoch: int) -> dict[str, Any]:
    """The progress entries of run.json."""
    return {
        "step": position.step,
        "epoch": position.epoch,
        "steps_per_epoch": steps_per_epoch,
        "best_val_loss": early.kept if math.isfinite(early.kept) else None,
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
