"""Training options shared by every method: one dataclass, a docstring per field.

Each method subclasses `TrainConfig` with its own fields and defaults (`training.permakey`,
`training.transporter`). The docstring under each field is its help text: `field_docs` reads
it from the source, and the command line turns it into ``--help`` (CleanRL's style).
"""

from __future__ import annotations

import ast
import inspect
import math
import textwrap
from dataclasses import dataclass
from functools import cache
from typing import Any

from permakey.config import JsonConfig
from permakey.data.noise import NOISE_KINDS

DECAYS = ("inverse-time", "exponential", "none")
PRECISIONS = ("fp32", "bf16", "auto")
DEVICES = ("auto", "cpu", "cuda", "mps")

# Fields that change how a run is executed, not what it computes (apart from the device):
# they may be given again when resuming a run; every other field is fixed at the start.
RUNTIME_FIELDS = frozenset(
    {
        "epochs", "time_budget", "max_steps", "device", "workers", "in_memory", "progress",
        "checkpoint_every", "checkpoint_minutes", "track", "snapshot_steps",
    }
)  # fmt: skip
# Experiment trackers beside TensorBoard (`training.tracking`; "wandb" needs the `track` extra).
TRACKERS = ("none", "wandb")


@dataclass
class TrainConfig(JsonConfig):
    """Options of a training run that every method shares (defaults: PermaKey's paper values)."""

    data: str = ""
    """dataset folder written by `permakey collect` (meta.json, train.h5, val.h5)"""
    seed: int = 0
    """seeds python, numpy and torch, the data order of every epoch and the Noisy Atari bars"""
    epochs: int = 100
    """maximum number of epochs"""
    batch_size: int = 32
    """images (or frame pairs) per optimiser step, summed over all processes under torchrun"""
    lr: float = 2e-4
    """Adam learning rate"""
    lr_decay: str = "inverse-time"
    """staircase learning-rate decay: inverse-time, lr / (1 + rate * floor(step / steps)); exponential, lr * rate ** floor(step / steps); or none"""
    decay_rate: float = 0.85
    """rate of the learning-rate decay"""
    decay_steps: int = 10_000
    """optimiser steps between two decays"""
    adam_eps: float = 1e-8
    """Adam's epsilon"""
    patience: int = 10
    """epochs without a lower validation loss before training stops early"""
    noise: str = "none"
    """Noisy Atari bars drawn over every frame: none, horizontal, vertical or both"""
    noise_width: int = 5
    """width of the Noisy Atari bars in pixels of the 84 x 84 frame"""
    noise_colour: tuple[int, int, int] = (128, 0, 255)
    """RGB colour of the Noisy Atari bars"""
    # Options for the controlled Noisy Atari runs, none of them in the paper (whose bars are
    # on every frame, in one colour, painted after the resize): `permakey.data.noise`.
    noise_share: float = 1.0
    """share of training and validation frames with bars, each frame drawn afresh every epoch (not in the paper, which puts bars on every frame: 1)"""
    noise_random_colour: bool = False
    """a fresh bar colour per frame, uniform over the RGB cube, instead of --noise-colour (not in the paper)"""
    noise_before_resize: bool = False
    """paint the bars as if on the raw 210 x 160 frame before the dataset's resize, emulated from the stored frame (not in the paper, which paints them after the resize)"""
    precision: str = "fp32"
    """fp32; bf16 autocast (error maps and losses stay float32); or auto: bf16 where the device multiplies bf16 natively (CUDA GPUs with bf16, CPUs with AVX512-BF16 or AMX), else fp32"""
    channels_last: bool = False
    """channels-last memory format for the model and its inputs (faster convolutions on CPU)"""
    val_limit: int | None = None
    """validate on the first N validation items only (all when unset)"""
    log_every: int = 50
    """optimiser steps between two lines of training metrics"""
    device: str = "auto"
    """auto (cuda, then mps, then cpu), cpu, cuda or mps; under torchrun each process takes cuda:LOCAL_RANK"""
    workers: int = 2
    """DataLoader worker processes (0 loads in the training process)"""
    in_memory: bool = False
    """read each split into memory once instead of reading frames from the HDF5 file"""
    time_budget: float | None = None
    """minutes after which training stops cleanly and resumably"""
    max_steps: int | None = None
    """total optimiser steps after which training stops cleanly and resumably"""
    progress: bool = True
    """show a progress bar"""
    # Checkpoints inside an epoch (an option of this implementation, not the paper's). The
    # paper's PermaKey checkpoint is 96 MB (weights 32 MB, Adam state 64 MB), 0.7 s to write on
    # the 2-core development machine; its epoch is 2,656 steps. Every 1,000 steps, a kill
    # loses at most 0.4 epoch and the writes cost 0.7 s per 1,000 steps (under 1% wherever a
    # step takes over 0.1 s); 10 minutes bound the loss where steps are slow (that model takes
    # ~4 s a step on a CPU: 1,000 steps would be an hour).
    # Checkpoints read no random numbers: results are the same whatever their spacing.
    checkpoint_every: int | None = 1000
    """optimiser steps between two checkpoints inside an epoch, counted from the run's start (besides the checkpoint at each epoch's end); unset: by time only"""
    checkpoint_minutes: float | None = 10.0
    """minutes between two checkpoints inside an epoch, whichever of this and --checkpoint-every comes first; unset: by steps only"""
    track: str = "none"
    """also log losses, keypoint pictures and the final state to an experiment tracker: none or wandb (Weights & Biases, the `track` extra; WANDB_MODE=offline logs without a network)"""
    snapshot_steps: tuple[int, ...] = ()
    """optimiser steps after which the weights are also kept, in RUN/snapshots/step-NNNNNNNN.safetensors, never removed (one run observed at several budgets: `permakey evaluate --weights step-N`)"""

    def __post_init__(self) -> None:
        self.noise_colour = tuple(self.noise_colour)  # JSON gives a list
        self.snapshot_steps = tuple(self.snapshot_steps)
        for name, choices in (
            ("noise", NOISE_KINDS),
            ("lr_decay", DECAYS),
            ("precision", PRECISIONS),
            ("device", DEVICES),
            ("track", TRACKERS),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(
                    f"{name} must be one of {list(choices)}, got {getattr(self, name)!r}"
                )
        for name in ("epochs", "batch_size", "decay_steps", "patience", "noise_width", "log_every"):
            _check(name, getattr(self, name), int, minimum=1)
        for name in ("val_limit", "max_steps", "checkpoint_every"):
            if getattr(self, name) is not None:
                _check(name, getattr(self, name), int, minimum=1)
        _check("seed", self.seed, int, minimum=0)
        _check("workers", self.workers, int, minimum=0)
        for name in ("lr", "decay_rate", "adam_eps"):
            _check(name, getattr(self, name), float, minimum=0.0, strict=True)
        for name in ("time_budget", "checkpoint_minutes"):
            if getattr(self, name) is not None:
                _check(name, getattr(self, name), float, minimum=0.0, strict=True)
        if len(self.noise_colour) != 3 or not all(0 <= c <= 255 for c in self.noise_colour):
            raise ValueError(f"noise_colour must be 3 values in [0, 255], got {self.noise_colour}")
        _check("noise_share", self.noise_share, float, minimum=0.0)
        if self.noise_share > 1:
            raise ValueError(f"noise_share must be in [0, 1], got {self.noise_share!r}")
        for step in self.snapshot_steps:
            _check("snapshot_steps entry", step, int, minimum=1)


def _check(name: str, value: Any, kind: type, minimum: float, strict: bool = False) -> None:
    ok_type = isinstance(value, (int, float) if kind is float else int) and not isinstance(
        value, bool
    )
    if not ok_type or not math.isfinite(value) or value < minimum or (strict and value == minimum):
        bound = f"> {minimum}" if strict else f">= {minimum}"
        raise ValueError(f"{name} must be a finite {kind.__name__} {bound}, got {value!r}")


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of dataclass ``cls`` and of its bases.

    A subclass that redeclares a field only to change its default keeps its base's text.

    Returns:
        {field name: one-line help text}.
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not hasattr(klass, "__dataclass_fields__"):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for node, after in zip(body, body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


@dataclass
class PermaKeyTrainConfig(TrainConfig):
    """Options of `permakey train permakey` (defaults: the paper's appendix)."""

    channels_last: bool = True  # same numbers up to rounding; faster on CPU (BENCHMARKS.md)
    lr_vae: float | None = None
    """learning rate of the VAE; unset: --lr"""
    lr_lsp: float | None = None
    """learning rate of the local spatial prediction networks; unset: --lr"""
    lr_pointnet: float | None = None
    """learning rate of the PointNet; unset: --lr"""
    shared_adam_counter: bool = False
    """one Adam step counter shared by the module updates of a training step, as in the authors' code: it drives Adam's bias correction and the decay, which then comes every decay-steps / 4 training steps"""
    pointnet_updates: int = 1
    """PointNet updates per training step, all on the step's detached error maps (each extra update costs a fraction of a step; the PointNet learns slowest of the modules)"""
    pointnet_warmup: int = 0
    """training steps during which only the VAE and LSP networks learn; the PointNet starts after them"""
    window_anneal: float = 1.0
    """factor on the width of the PointNet's Gaussian windows at step 0, shrinking geometrically to 1 (the model's gaussian_sigma) over window_anneal_steps steps: a narrow window that overlaps no error gets no gradient, a wide one draws its keypoint towards the nearest errors; 1: off. Not in the paper; at the `cpu` scale it helped on BattleZone and cost on MsPacman and Seaquest (RESULTS.md)"""
    window_anneal_steps: int = 0
    """training steps over which window_anneal shrinks to 1"""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("lr_vae", "lr_lsp", "lr_pointnet"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name} must be > 0, got {value!r}")
        _check("pointnet_updates", self.pointnet_updates, int, minimum=1)
        _check("pointnet_warmup", self.pointnet_warmup, int, minimum=0)
        _check("window_anneal", self.window_anneal, float, minimum=1.0)
        _check("window_anneal_steps", self.window_anneal_steps, int, minimum=0)
        if self.window_anneal > 1 and not self.window_anneal_steps:
            raise ValueError(
                f"window_anneal {self.window_anneal} needs window_anneal_steps >= 1, got 0"
            )
        if self.shared_adam_counter and self.pointnet_updates > 1:
            raise ValueError(
                "pointnet_updates > 1 does not go with shared_adam_counter (the authors' code "
                "updates each module once per step)"
            )


@dataclass
class TransporterTrainConfig(TrainConfig):
    """Options of `permakey train transporter` (defaults: the PermaKey paper's appendix)."""

    batch_size: int = 64
    lr: float = 5e-4
    lr_decay: str = "exponential"
    decay_rate: float = 0.9
    decay_steps: int = 30_000
    patience: int = 5
    window: int = 100
    """consecutive frames of an episode a pair comes from: source in the first half, target in the second"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 2:
            raise ValueError(f"window must be an int >= 2, got {self.window!r}")


# Training presets per method. PermaKey (each preset has a model preset of the same name;
# `cpu` uses the paper's model with LSP hidden [128, 64]):
# - paper: the appendix. Adam 2e-4, batch 32, inverse-time staircase decay 0.85 every 10,000
#   steps, up to 100 epochs, patience 10 on the validation LSP + PointNet loss.
# - authors-code: the authors' TensorFlow code: one Adam (epsilon 1e-7, Keras's update) shared
#   by the four module updates of a step; its counter drives bias correction and decay, so the
#   rate decays every 2,500 training steps (`optim.SharedCounterAdam`).
# - cpu: short runs on a few CPU cores, with the `cpu` model preset (half the encoder channels,
#   LSP hidden [128, 64]: about 5x faster than the paper's model in float32), bf16 where the
#   hardware has it, and 1e-3 for the LSP networks and the PointNet (keypoints begin to follow
#   moving objects within minutes); the VAE keeps 2e-4, at which its KL term settles; and 4
#   PointNet updates per step on the step's error maps (the PointNet learns slowest; the extra
#   updates widen the keypoints' margin over their static template, RESULTS.md).
# - cpu-track: the same training with the `cpu-track` model preset (keypoints that follow the
#   SpaceInvaders player, the Frostbite birds and the MsPacman ghosts within 10 CPU minutes,
#   RESULTS.md); the demo's.
# Transporter:
# - paper: the PermaKey paper's re-implementation: Adam 5e-4, batch 64, rate x 0.9 every 30,000
#   steps (staircase), up to 100 epochs, patience 5 on the validation reconstruction loss.
# - cpu: the same with bf16 where the hardware has it.
PRESETS: dict[str, dict[str, TrainConfig]] = {
    "permakey": {
        "paper": PermaKeyTrainConfig(),
        "authors-code": PermaKeyTrainConfig(shared_adam_counter=True, adam_eps=1e-7),
        **{
            name: PermaKeyTrainConfig(
                lr_lsp=1e-3, lr_pointnet=1e-3, pointnet_updates=4, precision="auto"
            )
            for name in ("cpu", "cpu-track")
        },
    },
    "transporter": {
        "paper": TransporterTrainConfig(),
        "cpu": TransporterTrainConfig(precision="auto"),
    },
}
