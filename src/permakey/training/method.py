"""What the generic training loop needs to know about a method (PermaKey, Transporter).

A method is a small adapter: how to build its model, which datasets it reads, how a batch
becomes losses, which validation loss stops training early, and what to show in TensorBoard.
Everything else (run folder, checkpoints, resume, early stopping, logging, devices, DDP) is
the loop's, shared by every method.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from permakey.data.datasets import dataset_noise
from permakey.data.noise import NoiseConfig
from permakey.training.config import TrainConfig
from permakey.training.optim import ParamGroup


def training_noise(cfg: TrainConfig) -> NoiseConfig:
    """The Noisy Atari bars a run's training and validation frames get (every method's)."""
    return dataset_noise(
        cfg.data,
        cfg.noise,
        cfg.noise_width,
        cfg.noise_colour,
        cfg.noise_random_colour,
        cfg.noise_before_resize,
    )


class ModelOutput(Protocol):
    """What a model's forward returns: named float32 scalar losses and their sum to minimise."""

    losses: dict[str, torch.Tensor]

    @property
    def total(self) -> torch.Tensor: ...


class Method(Protocol):
    """The per-method adapter of the training loop.

    Attributes:
        kind: the method's name in run.json and on the command line.
        config_class: its `TrainConfig` subclass.
        presets: training presets by name.
        model_config_class: its model config dataclass (with to_dict / from_dict).
        model_presets: model config presets by name.
        display_losses: loss keys shown in the progress bar.
    """

    kind: str
    config_class: type[TrainConfig]
    presets: dict[str, TrainConfig]
    model_config_class: type
    model_presets: dict[str, Any]
    display_losses: tuple[str, ...]

    def model_config(self, preset: str) -> Any:
        """The model config that goes with training preset ``preset``."""

    def build_model(self, model_config: Any) -> nn.Module:
        """A freshly initialised model."""

    def datasets(self, cfg: TrainConfig) -> tuple[Dataset, Dataset]:
        """(train, validation) datasets of uint8 items; both have ``set_epoch(epoch)``."""

    def param_groups(self, model: nn.Module, cfg: TrainConfig) -> list[ParamGroup]:
        """Disjoint parameter groups covering the model, in update order, with their learning rates."""

    def before_step(self, model: nn.Module, step: int, cfg: TrainConfig) -> dict[str, float]:
        """Sets what a schedule changes, other than the learning rates, before training step
        ``step`` (0-based); returns those values by name for the charts ({} if none)."""

    def forward(
        self, model: nn.Module, batch: dict, device: torch.device, channels_last: bool
    ) -> ModelOutput:
        """Moves a collated batch to ``device`` and runs the model on it."""

    def extra_losses(
        self, model: nn.Module, out: ModelOutput, optimizer: torch.optim.Optimizer, cfg: TrainConfig
    ) -> Iterator[torch.Tensor]:
        """Losses of further optimiser steps on the same batch, after the step on ``out.total``.

        Each is computed only when asked for, after the previous step; most methods have none.
        """

    def validation_loss(self, losses: dict[str, float]) -> float:
        """The early-stopping criterion from the mean validation losses."""

    def picture(self, model: nn.Module, batch: dict, out: ModelOutput) -> dict[str, np.ndarray]:
        """TensorBoard tag -> (H, W, 3) uint8 picture of validation frames with keypoints.

        ``out`` is the model's output on ``batch`` in eval mode (`forward`).
        """
