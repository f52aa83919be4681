"""Training Transporter: the adapter the generic loop uses (options and presets: `training.config`)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from permakey.data.datasets import PairDataset
from permakey.data.frames import to_float
from permakey.models import transporter as model_lib
from permakey.models.transporter import Transporter, TransporterConfig, TransporterOutput
from permakey.training.config import PRESETS, TrainConfig, TransporterTrainConfig
from permakey.training.method import training_noise
from permakey.training.optim import ParamGroup
from permakey.visualisation.figures import training_pictures


class TransporterMethod:
    """The `Method` adapter of Transporter (see `permakey.training.method`)."""

    kind = "transporter"
    config_class = TransporterTrainConfig
    presets = PRESETS["transporter"]
    model_config_class = TransporterConfig
    model_presets = model_lib.PRESETS
    display_losses = ("reconstruction",)

    def model_config(self, preset: str) -> TransporterConfig:
        return model_lib.PRESETS.get(preset, model_lib.PRESETS["paper"])

    def build_model(self, model_config: TransporterConfig) -> nn.Module:
        return Transporter(model_config)

    def datasets(self, cfg: TransporterTrainConfig) -> tuple[PairDataset, PairDataset]:
        # The bars of source and target are drawn independently: they depend on the frame index.
        noise = training_noise(cfg)
        return tuple(
            PairDataset(
                cfg.data,
                split,
                cfg.window,
                noise,
                noise_seed=cfg.seed + offset,
                in_memory=cfg.in_memory,
                seed=cfg.seed + offset,
                noise_share=cfg.noise_share,
            )
            for split, offset in (("train", 0), ("val", 1))
        )

    def param_groups(self, model: Transporter, cfg: TransporterTrainConfig) -> list[ParamGroup]:
        """One group: Transporter's networks learn together from one reconstruction loss."""
        return [ParamGroup("transporter", list(model.parameters()), cfg.lr)]

    def before_step(self, model: nn.Module, step: int, cfg: TrainConfig) -> dict[str, float]:
        """Nothing is scheduled but the learning rate."""
        return {}

    def forward(
        self, model: nn.Module, batch: dict, device: torch.device, channels_last: bool
    ) -> TransporterOutput:
        return model(
            to_float(batch["source"], device, channels_last),
            to_float(batch["target"], device, channels_last),
        )

    def extra_losses(
        self, model: nn.Module, out: TransporterOutput, optimizer, cfg: TrainConfig
    ) -> Iterator[torch.Tensor]:
        """None: one update per step."""
        return iter(())

    def validation_loss(self, losses: dict[str, float]) -> float:
        return losses["reconstruction"]

    def picture(
        self, model: Transporter, batch: dict, out: TransporterOutput
    ) -> dict[str, np.ndarray]:
        """Target frames with their keypoints; the reconstructions of the targets."""
        return training_pictures(batch["target"], self.kind, out.target_centres, out.reconstruction)
