"""Convolutional building blocks shared by PermaKey and Transporter.

`ConvEncoder` is the stack of Conv -> BatchNorm -> ReLU blocks with TensorFlow-style "same"
padding that both papers use (VAE encoder, PointNet, Transporter's feature extractor and
keypointer). `ConvDecoder` is its transpose: bilinear 2x upsampling undoes each stride.
"""

from __future__ import annotations

import functools
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


# --- the inference form: eval-mode BatchNorm folded into its conv, channels_last ---------


def fold_batchnorm(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A conv's (weight, bias) with an eval-mode BatchNorm after it folded in.

    ``bn(conv(x)) = conv'(x)`` with ``w' = w * s`` and ``b' = (b - mean) * s + beta`` per output
    channel, ``s = gamma / sqrt(var + eps)``. New tensors: the modules are not touched.

    Args:
        weight: (C_out, ...) float, any layout.
        bias: (C_out,) or None (zero).
        bn: the BatchNorm on the conv's output, using its running statistics; None: none.

    Returns:
        (weight, bias): detached copies, (C_out, ...) and (C_out,).
    """
    weight = weight.detach()
    bias = weight.new_zeros(weight.shape[0]) if bias is None else bias.detach()
    if bn is None:
        return weight.clone(), bias.clone()
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    shape = (-1,) + (1,) * (weight.ndim - 1)
    return weight * scale.view(shape), (bias - bn.running_mean) * scale + bn.bias.detach()


@functools.cache
def _fused_conv_relu():
    """oneDNN's convolution with the ReLU fused into it (the op PyTorch's compiler emits for
    conv + ReLU on a CPU): one pass over the output instead of two. None where this torch
    build lacks it or where it does not give plain ``conv2d(...).relu()`` on a probe; the op
    is internal to PyTorch, so it is checked once per process before it is trusted."""
    op = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return None
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, 5, 9, 9, generator=generator).contiguous(memory_format=torch.channels_last)
    w = torch.randn(7, 5, 3, 3, generator=generator).contiguous(memory_format=torch.channels_last)
    b = torch.randn(7, generator=generator)
    try:
        with torch.no_grad():
            fused = op(x, w, b, [1, 0], [2, 1], [1, 1], 1, "relu", [None], "")
            plain = F.conv2d(x, w, b, (2, 1), (1, 0)).relu()
    except (RuntimeError, TypeError):
        return None
    return op if fused.shape == plain.shape and torch.allclose(fused, plain, atol=1e-5) else None


class FoldedConv:
    """One Conv("same") -> [BatchNorm] -> [ReLU] block for inference: the BatchNorm folded
    into the conv, the weight in channels_last, symmetric "same" padding done by the conv.

    Gives the block's eval-mode output up to float rounding, in the channels_last memory
    format. It holds tensors computed from the block's at construction; later changes to the
    block's weights do not reach it (`InferenceCache` rebuilds it).
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor,
        stride: int,
        relu: bool,
    ) -> None:
        self.weight = weight.contiguous(memory_format=torch.channels_last)
        self.bias = bias.contiguous()
        self.kernel = weight.shape[-1]
        self.stride = stride
        self.relu = relu

    def to(self, dtype: torch.dtype) -> FoldedConv:
        """A copy with weight and bias in ``dtype`` (it then takes inputs of that dtype)."""
        return FoldedConv(self.weight.to(dtype), self.bias.to(dtype), self.stride, self.relu)

    @classmethod
    def of_block(cls, block: nn.Sequential) -> FoldedConv:
        """From a `conv_bn_relu` block (in eval mode)."""
        conv, bn = block[0], block[1]
        return cls(*fold_batchnorm(conv.weight, conv.bias, bn), conv.stride[0], relu=True)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, ceil(H / s), ceil(W / s)), channels_last.

        On a CPU in float32 without autocast, conv and ReLU run as one fused oneDNN op where
        this torch has it (`_fused_conv_relu`); the same numbers.
        """
        top, bottom = same_padding(x.shape[-2], self.kernel, self.stride)
        left, right = same_padding(x.shape[-1], self.kernel, self.stride)
        x = x.contiguous(memory_format=torch.channels_last)
        if top != bottom or left != right:
            x, top, left = F.pad(x, (left, right, top, bottom)), 0, 0
        fused = (
            _fused_conv_relu()
            if self.relu
            and x.device.type == "cpu"
            and x.dtype == self.weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu")
            and not torch.is_grad_enabled()
            else None
        )
        if fused is not None:
            stride = [self.stride, self.stride]
            return fused(
                x, self.weight, self.bias, [top, left], stride, [1, 1], 1, "relu", [None], ""
            )
        y = F.conv2d(x, self.weight, self.bias, self.stride, (top, left))
        return y.relu_() if self.relu else y


def check_mixed_in_eval(mixed: bool) -> None:
    """Mixed precision runs in the inference forms only: a ValueError for ``mixed`` in a
    model's training mode or with gradients on, where the modules run instead."""
    if mixed:
        raise ValueError(
            "mixed precision is for inference: call model.eval() and run without gradients"
        )


def fold_encoder(encoder: ConvEncoder, blocks: int | None = None) -> list[FoldedConv]:
    """The inference form of the first ``blocks`` blocks of an eval-mode `ConvEncoder`."""
    return [FoldedConv.of_block(block) for block in encoder.blocks[:blocks]]


def run_folded(convs: list[FoldedConv], x: torch.Tensor) -> list[torch.Tensor]:
    """`ConvEncoder.forward` with folded blocks: every block's output, channels_last."""
    features = []
    for conv in convs:
        x = conv(x)
        features.append(x)
    return features


class InferenceCache:
    """Holds an inference form built from a module's tensors, rebuilt when they change.

    The form is rebuilt when any parameter or buffer of the module is replaced, moved, cast
    or modified in place (an optimizer step, ``load_state_dict``, ``.to()``): the key is each
    tensor's storage address, dtype and version counter. Submodules are looked up once, so
    the module's structure must stay as it was built. Kept out of the module's state dict
    and submodules (a plain attribute).
    """

    def __init__(self) -> None:
        self._tables: list[dict] | None = None
        self._key: tuple | None = None
        self._value: object = None

    def get(self, module: nn.Module, build):
        """``build()``'s result for the module's current tensors (built once per state)."""
        if self._tables is None:
            # The modules' own name -> tensor tables: walking them is ~10x cheaper than
            # module.parameters(), which matters at batch 1.
            self._tables = [t for m in module.modules() for t in (m._parameters, m._buffers)]
        key = tuple(
            (t.data_ptr(), t.dtype, t._version)
            for table in self._tables
            for t in table.values()
            if t is not None
        )
        if key != self._key:
            self._value, self._key = build(), key
        return self._value
