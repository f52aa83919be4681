"""Training PermaKey: the adapter the generic loop uses (options and presets: `training.config`)."""

from __future__ import annotations

import torch
from torch import nn

from permakey.data.datasets import FrameDataset, to_float
from permakey.data.noise import NoiseConfig
from permakey.models import permakey as model_lib
from permakey.models.permakey import PermaKey, PermaKeyConfig, PermaKeyOutput
from permakey.training.config import PRESETS, PermaKeyTrainConfig, TrainConfig
from permakey.training.draw import draw_keypoints, heatmap, tile
from permakey.training.optim import ParamGroup


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
        noise = NoiseConfig(cfg.noise, cfg.noise_width, cfg.noise_colour)
        return (
            FrameDataset(cfg.data, "train", noise, noise_seed=cfg.seed, in_memory=cfg.in_memory),
            FrameDataset(cfg.data, "val", noise, noise_seed=cfg.seed + 1, in_memory=cfg.in_memory),
        )

    def param_groups(self, model: PermaKey, cfg: PermaKeyTrainConfig) -> list[ParamGroup]:
        """The VAE, each LSP network, the PointNet: the four updates of the authors' code."""
        groups = [ParamGroup("vae", list(model.vae.parameters()), cfg.lr_vae or cfg.lr)]
        for layer, lsp in zip(model.config.lsp_layers, model.lsp, strict=True):
            groups.append(ParamGroup(f"lsp/{layer}", list(lsp.parameters()), cfg.lr_lsp or cfg.lr))
        groups.append(
            ParamGroup("pointnet", list(model.pointnet.parameters()), cfg.lr_pointnet or cfg.lr)
        )
        return groups

    def forward(
        self, model: nn.Module, batch: dict, device: torch.device, channels_last: bool
    ) -> PermaKeyOutput:
        return model(to_float(batch["frame"], device, channels_last))

    def validation_loss(self, losses: dict[str, float]) -> float:
        """LSP + PointNet loss: the VAE's ELBO does not decide when PermaKey stops."""
        return losses["lsp"] + losses["pointnet"]

    @torch.no_grad()
    def picture(
        self, model: PermaKey, batch: dict, device: torch.device, cfg: TrainConfig
    ) -> torch.Tensor:
        """Rows: frames with keypoints, each layer's normalised error map with keypoints, and
        the VAE's reconstruction."""
        model.eval()
        images = to_float(batch["frame"], device, cfg.channels_last)
        out = model(images)
        model.train()
        rows = [draw_keypoints(images, out.centres)]
        for channel in range(out.error_stack.shape[1]):
            rows.append(draw_keypoints(heatmap(out.error_stack[:, channel]), out.centres))
        rows.append(out.reconstruction.float().cpu())
        return tile(rows)
