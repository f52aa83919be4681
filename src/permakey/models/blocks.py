"""Convolutional building blocks shared by PermaKey and Transporter.

`ConvEncoder` is the stack of Conv -> BatchNorm -> ReLU blocks with TensorFlow-style "same"
padding that both papers use (VAE encoder, PointNet, Transporter's feature extractor and
keypointer). `ConvDecoder` is its transpose: bilinear 2x upsampling undoes each stride.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from permakey.config import JsonConfig


@dataclass(frozen=True)
class BatchNormConfig(JsonConfig):
    """BatchNorm settings. PyTorch defaults; Keras's are momentum=0.01 (0.99 there), eps=1e-3."""

    momentum: float = 0.1
    eps: float = 1e-5


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) zero padding that gives TensorFlow's "same" output size ceil(size / stride)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """A bias-carrying Conv2d with TensorFlow "same" padding (asymmetric for even kernels)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        sh, sw = self.stride
        top, bottom = same_padding(x.shape[-2], kh, sh)
        left, right = same_padding(x.shape[-1], kw, sw)
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def conv_bn_relu(
    c_in: int, c_out: int, kernel: int, stride: int, bn: BatchNormConfig
) -> nn.Sequential:
    """One Conv("same") -> BatchNorm -> ReLU block."""
    return nn.Sequential(
        SameConv2d(c_in, c_out, kernel, stride),
        nn.BatchNorm2d(c_out, eps=bn.eps, momentum=bn.momentum),
        nn.ReLU(inplace=True),
    )


def _check_lengths(channels: Sequence[int], kernels: Sequence[int], strides: Sequence[int]) -> None:
    if not (len(channels) == len(kernels) == len(strides)) or not channels:
        raise ValueError(
            f"channels {list(channels)}, kernels {list(kernels)} and strides {list(strides)} "
            "must be non-empty and of equal length"
        )
    if any(s not in (1, 2) for s in strides):
        raise ValueError(f"strides must be 1 or 2, got {list(strides)}")


class ConvEncoder(nn.Module):
    """A stack of Conv -> BatchNorm -> ReLU blocks that returns every block's output.

    Args:
        in_channels: channels of the input image or map.
        channels: output channels per block.
        kernels: kernel size per block.
        strides: stride per block (1 or 2).
        bn: BatchNorm settings.
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        kernels: Sequence[int],
        strides: Sequence[int],
        bn: BatchNormConfig = BatchNormConfig(),
    ) -> None:
        super().__init__()
        _check_lengths(channels, kernels, strides)
        c_ins = [in_channels, *channels[:-1]]
        self.blocks = nn.ModuleList(
            conv_bn_relu(ci, co, k, s, bn)
            for ci, co, k, s in zip(c_ins, channels, kernels, strides, strict=True)
        )

    def forward(self, x: torch.Tensor, blocks: int | None = None) -> list[torch.Tensor]:
        """(B, C_in, H, W) -> list of per-block feature maps (B, C_i, H_i, W_i).

        ``blocks``: run only the first this many blocks (all when None).
        """
        features = []
        for block in self.blocks[:blocks]:
            x = block(x)
            features.append(x)
        return features


class ConvDecoder(nn.Module):
    """The transpose of a `ConvEncoder`: blocks in reverse order, 2x bilinear upsampling per stride 2.

    Block i (taken from the last to the first) maps to the channels of block i - 1 and, if
    block i had stride 2, is followed by 2x upsampling; a final "same" conv maps to
    ``out_channels``, followed by a sigmoid, so outputs are images in [0, 1].

    Args:
        in_channels: channels of the decoder's input map (the last encoder block's).
        channels, kernels, strides: the encoder's values, in encoder order.
        out_channels: channels of the output image.
        bn: BatchNorm settings.
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        kernels: Sequence[int],
        strides: Sequence[int],
        out_channels: int,
        bn: BatchNormConfig = BatchNormConfig(),
    ) -> None:
        super().__init__()
        _check_lengths(channels, kernels, strides)
        layers: list[nn.Module] = []
        c_in = in_channels
        for i in reversed(range(len(channels))):
            c_out = channels[i - 1] if i > 0 else channels[0]
            layers.append(conv_bn_relu(c_in, c_out, kernels[i], 1, bn))
            if strides[i] == 2:
                layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            c_in = c_out
        layers.append(SameConv2d(c_in, out_channels, kernels[0], 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, out_channels, h * 2^n, w * 2^n) in [0, 1], n = number of stride-2 blocks."""
        return torch.sigmoid(self.net(x))
