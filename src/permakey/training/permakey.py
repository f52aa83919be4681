"""Training PermaKey: the adapter the generic loop uses (options and presets: `training.config`)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from permakey.data.datasets import FrameDataset
from permakey.data.frames import to_float
from permakey.devices import autocast
from permakey.models import permakey as model_lib
from permakey.models.permakey import PermaKey, PermaKeyConfig, PermaKeyOutput
from permakey.training.config import PRESETS, PermaKeyTrainConfig, TrainConfig
from permakey.training.method import training_noise
from permakey.training.optim import ParamGroup
from permakey.visualisation.figures import training_pictures


class PermaKeyMethod:
    """The `Method` adapter of PermaKey (see `permakey.training.method`)."""

    kind = "permakey"
    config_class = PermaKeyTrainConfig
    presets = PRESETS["permakey"]
    model_config_class = PermaKeyConfig
    model_presets = model_lib.PRESETS
    display_losses = ("vae", "lsp", "pointnet")

    def model_config(self, preset: str) -> PermaKeyConfig:
        return model_lib.PRESETS[preset]

    def build_model(self, model_config: PermaKeyConfig) -> nn.Module:
        return PermaKey(model_config)

    def datasets(self, cfg: TrainConfig) -> tuple[FrameDataset, FrameDataset]:
        noise = training_noise(cfg)
        return tuple(
            FrameDataset(
                cfg.data,
                split,
                noise,
                noise_seed=cfg.seed + offset,
                in_memory=cfg.in_memory,
                noise_share=cfg.noise_share,
            )
            for split, offset in (("train", 0), ("val", 1))
        )

    def param_groups(self, model: PermaKey, cfg: PermaKeyTrainConfig) -> list[ParamGroup]:
        """The VAE, each LSP network, the PointNet: the four updates of the authors' code.

        The PointNet learns from step ``cfg.pointnet_warmup`` on.
        """
        rates = {"vae": cfg.lr_vae, "lsp": cfg.lr_lsp, "pointnet": cfg.lr_pointnet}
        return [
            ParamGroup(
                name,
                params,
                rates[name.split("/")[0]] or cfg.lr,
                start=cfg.pointnet_warmup if name == "pointnet" else 0,
            )
            for name, params in model.param_groups().items()
        ]

    def before_step(
        self, model: nn.Module, step: int, cfg: PermaKeyTrainConfig
    ) -> dict[str, float]:
        """The Gaussian width of step ``step`` under ``cfg.window_anneal`` (none without it):
        gaussian_sigma * window_anneal ** (1 - step / window_anneal_steps), then
        gaussian_sigma."""
        if cfg.window_anneal == 1.0:
            return {}
        pointnet = _unwrap(model).pointnet
        left = max(0.0, 1.0 - step / cfg.window_anneal_steps)
        pointnet.sigma = pointnet.config_sigma * cfg.window_anneal**left
        return {"gaussian_sigma": pointnet.sigma}

    def forward(
        self, model: nn.Module, batch: dict, device: torch.device, channels_last: bool
    ) -> PermaKeyOutput:
        return model(to_float(batch["frame"], device, channels_last))

    def extra_losses(
        self,
        model: nn.Module,
        out: PermaKeyOutput,
        optimizer: torch.optim.Optimizer,
        cfg: PermaKeyTrainConfig,
    ) -> Iterator[torch.Tensor]:
        """``cfg.pointnet_updates - 1`` further PointNet losses on the step's detached error maps.

        None while the PointNet warms up (its learning rate is 0). Only the PointNet gets
        gradients, so the other modules keep their one update per step.
        """
        pointnet = _unwrap(model).pointnet
        (group,) = (g for g in optimizer.param_groups if g["name"] == "pointnet")
        if group["lr"] == 0.0:
            return
        for _ in range(cfg.pointnet_updates - 1):
            with autocast(out.error_stack.device, cfg.precision):
                keypoints = pointnet(out.error_stack, images=out.pointnet_images)
            yield pointnet.loss(keypoints, out.error_stack)

    def validation_loss(self, losses: dict[str, float]) -> float:
        """LSP + PointNet loss: the VAE's ELBO does not decide when PermaKey stops."""
        return losses["lsp"] + losses["pointnet"]

    def picture(self, model: PermaKey, batch: dict, out: PermaKeyOutput) -> dict[str, np.ndarray]:
        """Frames with keypoints and each layer's error map; the VAE's reconstructions."""
        maps = {
            f"error map, layer {layer}": m
            for layer, m in zip(model.error_layers, out.error_maps, strict=True)
        }
        return training_pictures(batch["frame"], self.kind, out.centres, out.reconstruction, maps)


def _unwrap(model: nn.Module) -> PermaKey:
    """The PermaKey model inside a DDP wrapper, or the model itself."""
    return model.module if isinstance(model, DistributedDataParallel) else model
