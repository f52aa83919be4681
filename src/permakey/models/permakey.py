"""PermaKey: keypoints from local spatial predictability (Gopalakrishnan et al.).

Three modules are trained side by side and no gradient crosses between them (the design
notes, method.md, give the method in full):

1. ``vae``: a VAE whose encoder provides the feature maps; trained only by its ELBO.
2. ``lsp``: one local spatial prediction network per chosen encoder layer. Each cuts the
   layer's (detached) features into p x p cells and predicts every cell from its 8 neighbours;
   the per-cell prediction error, relative to the cell's mean activation, is the error map.
3. ``pointnet``: maps the (detached) normalised error-map stack to K keypoints, trained to
   reconstruct the error maps with the sum of the keypoints' Gaussian windows.

The LSP networks use the efficient form of "an MLP on the concatenated 8 neighbour cells": a
3 x 3 convolution over the cell grid whose centre tap is zero, then 1 x 1 convolutions. The
first linear layer's input is the neighbours concatenated in `NEIGHBOUR_OFFSETS` order, so its
weight ``W`` (hidden, 8 * D) and the conv weight ``w`` (hidden, D, 3, 3) correspond by
``W[:, n * D + c] = w[:, c, 1 + dy_n, 1 + dx_n]`` (D = p * p * C, cells as F.pixel_unshuffle
orders them).

Losses and error maps are computed in float32 even under bf16 autocast.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from permakey.config import JsonConfig
from permakey.keypoints import (
    Keypoints,
    centres_from_maps,
    error_peaks,
    from_pixels,
    gaussian_windows,
    grid,
    matched_squared_distance,
)
from permakey.models.blocks import (
    BatchNormConfig,
    ConvDecoder,
    ConvEncoder,
    FoldedConv,
    InferenceCache,
    check_mixed_in_eval,
    fold_batchnorm,
    fold_encoder,
    run_folded,
)

LSP_WIDE = "8ppC"
"""Marker in `PermaKeyConfig.lsp_hidden` for a width of 8 * p * p * C (the authors' first layer)."""

NEIGHBOUR_OFFSETS: tuple[tuple[int, int], ...] = tuple(
    (dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)
)
"""(dy, dx) cell offsets of the 8 neighbours, in the order the plain form concatenates them."""

KEYPOINT_SOFTMAXES = ("axes", "joint")
"""Values of `PermaKeyConfig.keypoint_softmax`."""

DIRECTION_PAIRS: tuple[tuple[int, int], ...] = ((0, 1), (1, 0), (1, 1), (1, -1))
"""(dy, dx) of one cell of each opposite pair of neighbours a directional LSP network predicts
from, the other being (-dy, -dx): left and right, above and below, and the two diagonals."""


@dataclass(frozen=True)
class PermaKeyConfig(JsonConfig):
    """Every architectural number of PermaKey; the defaults are the paper's appendix."""

    image_size: int = 84
    """Height and width of the square input images, in pixels."""
    in_channels: int = 3
    """Channels of the input images (RGB)."""
    encoder_channels: tuple[int, ...] = (32, 64, 64, 128)
    """Output channels of each VAE encoder block (Conv -> BatchNorm -> ReLU)."""
    encoder_kernels: tuple[int, ...] = (4, 3, 3, 3)
    """Kernel size of each encoder block."""
    encoder_strides: tuple[int, ...] = (1, 2, 2, 1)
    """Stride (1 or 2) of each encoder block; "same" padding."""
    latent_dim: int = 32
    """Dimensions of the VAE's diagonal Gaussian latent."""
    recon_variance: float = 0.1
    """Fixed variance of the VAE's Gaussian likelihood."""
    lsp_layers: tuple[int, ...] = (0, 1)
    """Encoder layers (0-based block indices) that get a local spatial prediction network."""
    patch_size: int = 2
    """Side p of the square cells the LSP networks predict; divides each chosen layer's size."""
    lsp_hidden: tuple[int | str, ...] = (512, 256)
    """Hidden widths of the LSP MLP; the string "8ppC" stands for 8 * p * p * C of the layer."""
    lsp_batchnorm: bool = False
    """BatchNorm after each hidden LSP layer (the authors' code), before its ReLU."""
    lsp_directional: bool = False
    """Predict each cell four times, each time from one pair of opposite neighbours only
    (`DIRECTION_PAIRS`), by four networks of the `lsp_hidden` widths side by side, each trained
    on every cell; a cell's error is the smallest of its four. A cell on a straight line or
    edge (a Noisy Atari bar, a wall) is predictable from the two cells along it whatever lies
    beside it, while a part of a small object is predictable from no pair. Four times the LSP
    networks' arithmetic. Not in the paper."""
    error_map_sqrt: bool = False
    """Error map from the root of the cell's mean squared error (an earlier revision of the
    authors' code) instead of the mean squared error itself (the paper, the last revision)."""
    error_eps: float = 1e-3
    """Added to the cell's mean target value before dividing the cell's error by it."""
    num_keypoints: int = 7
    """Number of keypoints K."""
    gaussian_sigma: float = 0.1
    """Width s of the Gaussian windows exp(-d^2 / s^2), grid coordinates in [-1, 1]."""
    pointnet_channels: tuple[int, ...] | None = None
    """PointNet block channels; None: the encoder's."""
    pointnet_kernels: tuple[int, ...] | None = None
    """PointNet block kernels; None: the encoder's."""
    pointnet_strides: tuple[int, ...] | None = None
    """PointNet block strides; None: the encoder's (21 x 21 keypoint maps for 84 x 84 input)."""
    pointnet_coords: bool = False
    """Give the PointNet two more input channels holding each pixel's y and x in [-1, 1]
    (CoordConv, Liu et al. 2018), so that a keypoint map can select a blob by where it is (the
    player's row) and not only by its shape. Not in the paper."""
    pointnet_image: bool = False
    """Give the PointNet the frame's colour channels beside the error maps, so that a keypoint
    map can tell apart objects whose error blobs look alike (MsPacman's ghosts differ only in
    colour) and answer to one of them instead of settling between them. The VAE and LSP
    networks are unchanged. Not in the paper; with `cpu-track` at the `cpu` scale it raised
    F1@2 on MsPacman and Frostbite and left three other games within the seeds' spread
    (RESULTS.md, "Two more levers")."""
    window_border_cost: bool = False
    """Count the parts of the Gaussian windows that fall outside the frame in the PointNet
    loss, as if the error maps went on beyond the frame as zeros. Without it a keypoint parked
    on the border hides up to half its window (in a corner up to three quarters) and so costs
    less than anywhere else without error, which is where spare keypoints drift (the paper
    observes this in its K ablation). Not in the paper."""
    peak_match: float = 0.0
    """Weight of a term in the PointNet loss that pulls each keypoint to an error-map peak of
    its own: the K strongest separated peaks of the summed error stack (those of the
    error-map peaks control, `keypoints.error_peaks`) are matched one to one to the K
    centres, greedily by distance, and the matched squared distances (grid units) are
    averaged. The spatial softmax puts a keypoint whose map covers two blobs between them, on
    neither; the term moves it onto one. 0: off. Not in the paper; at the `cpu` scale it
    raised F1@2 where keypoints were far from the peaks' and lowered purity and objects kept
    on every game measured (RESULTS.md, "Closing the gap to the error-map peaks")."""
    keypoint_map_scale: float = 1.0
    """Factor on the PointNet's keypoint maps before the spatial softmax: above 1, a map that
    responds to several blobs puts its centre on the strongest instead of between them.
    1: off. Not in the paper; 10 with `cpu-track` at the `cpu` scale raised F1@2 on MsPacman
    and BattleZone by 0.2-0.3 and lowered it on SpaceInvaders (RESULTS.md, "Sharper keypoint
    maps")."""
    keypoint_softmax: str = "axes"
    """How a keypoint map gives its centre: "axes", the paper's softmax per axis over the map
    averaged along the other axis; "joint", one softmax over all the map's cells
    (`keypoints.centres_from_maps`). Averaged over a row of 21 cells, a blob of a few cells
    barely tilts the per-axis softmax, so early in training every centre sits near the middle
    of the frame; under the joint softmax the same map puts it on the blob. "joint" is not in
    the paper; with `cpu-track` at the `cpu` scale it was level with "axes" or above it on five
    games and lowered mean purity (RESULTS.md, "Sharper keypoint maps")."""
    bn: BatchNormConfig = field(default_factory=BatchNormConfig)
    """BatchNorm momentum and epsilon of every BatchNorm layer (PyTorch convention)."""

    def __post_init__(self) -> None:
        # JSON gives lists; tuples keep the config hashable and from_dict(to_dict(c)) == c.
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        self._validate()

    def _validate(self) -> None:
        _check_positive_int("image_size", self.image_size)
        _check_positive_int("in_channels", self.in_channels)
        _check_conv_stack(
            "encoder", self.encoder_channels, self.encoder_kernels, self.encoder_strides
        )
        _check_positive_int("latent_dim", self.latent_dim)
        _check_positive_float("recon_variance", self.recon_variance)
        _check_positive_int("patch_size", self.patch_size)
        _check_positive_int("num_keypoints", self.num_keypoints)
        _check_positive_float("gaussian_sigma", self.gaussian_sigma)
        _check_positive_float("error_eps", self.error_eps)
        if (
            isinstance(self.peak_match, bool)
            or not isinstance(self.peak_match, int | float)
            or not self.peak_match >= 0
        ):
            raise ValueError(f"peak_match must be a number >= 0, got {self.peak_match!r}")
        _check_positive_float("keypoint_map_scale", self.keypoint_map_scale)
        if self.keypoint_softmax not in KEYPOINT_SOFTMAXES:
            raise ValueError(
                f"keypoint_softmax must be one of {list(KEYPOINT_SOFTMAXES)}, got "
                f"{self.keypoint_softmax!r}"
            )
        upsampling = 2 ** sum(s == 2 for s in self.encoder_strides)
        if self.image_size % upsampling:
            raise ValueError(
                f"image_size {self.image_size} must be divisible by {upsampling} (2 per stride-2 "
                f"encoder block, {list(self.encoder_strides)}) for the decoder to restore it"
            )
        if not self.lsp_layers or len(set(self.lsp_layers)) != len(self.lsp_layers):
            raise ValueError(f"lsp_layers must be non-empty and distinct, got {self.lsp_layers}")
        sizes = [shape[1] for shape in self.feature_shapes]
        for layer in self.lsp_layers:
            if not isinstance(layer, int) or not 0 <= layer < len(sizes):
                raise ValueError(
                    f"lsp_layers entry {layer!r} is not an encoder layer index in "
                    f"[0, {len(sizes) - 1}]"
                )
            if sizes[layer] % self.patch_size:
                raise ValueError(
                    f"patch_size {self.patch_size} does not divide the {sizes[layer]} x "
                    f"{sizes[layer]} feature map of LSP layer {layer}"
                )
        for width in self.lsp_hidden:
            if width != LSP_WIDE and not (isinstance(width, int) and width >= 1):
                raise ValueError(
                    f"lsp_hidden entry {width!r} must be a positive int or {LSP_WIDE!r}"
                )
        _check_conv_stack("pointnet", *self.pointnet_stack)
        for name in (
            "lsp_batchnorm",
            "lsp_directional",
            "error_map_sqrt",
            "pointnet_coords",
            "pointnet_image",
            "window_border_cost",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.bn, BatchNormConfig):
            raise ValueError(f"bn must be a BatchNormConfig, got {self.bn!r}")
        if not 0.0 <= self.bn.momentum <= 1.0:
            raise ValueError(f"bn.momentum {self.bn.momentum} must be in [0, 1]")
        _check_positive_float("bn.eps", self.bn.eps)

    @property
    def feature_shapes(self) -> list[tuple[int, int, int]]:
        """(C, H, W) of each encoder layer's feature map."""
        shapes, size = [], self.image_size
        for channels, stride in zip(self.encoder_channels, self.encoder_strides, strict=True):
            size = -(-size // stride)  # "same" padding: ceil(size / stride)
            shapes.append((channels, size, size))
        return shapes

    @property
    def pointnet_stack(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(channels, kernels, strides) of the PointNet's conv blocks, None resolved."""
        return (
            self.encoder_channels if self.pointnet_channels is None else self.pointnet_channels,
            self.encoder_kernels if self.pointnet_kernels is None else self.pointnet_kernels,
            self.encoder_strides if self.pointnet_strides is None else self.pointnet_strides,
        )

    @property
    def keypoint_map_size(self) -> int:
        """Side of the PointNet's keypoint maps and Gaussian windows (21 for the paper)."""
        size = self.image_size
        for stride in self.pointnet_stack[2]:
            size = -(-size // stride)
        return size

    def cell_dim(self, layer: int) -> int:
        """p * p * C: the length of one cell vector of encoder layer ``layer``."""
        return self.patch_size**2 * self.feature_shapes[layer][0]

    def lsp_widths(self, layer: int) -> tuple[int, ...]:
        """Hidden widths of the LSP network of encoder layer ``layer``, "8ppC" resolved."""
        wide = 8 * self.cell_dim(layer)
        return tuple(wide if w == LSP_WIDE else int(w) for w in self.lsp_hidden)


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_positive_float(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def _check_conv_stack(name: str, channels: Any, kernels: Any, strides: Any) -> None:
    values = {"channels": channels, "kernels": kernels, "strides": strides}
    for key, seq in values.items():
        if not isinstance(seq, tuple) or not seq:
            raise ValueError(f"{name}_{key} must be a non-empty sequence, got {seq!r}")
        for v in seq:
            _check_positive_int(f"{name}_{key} entry", v)
    if not len(channels) == len(kernels) == len(strides):
        raise ValueError(
            f"{name} channels {channels}, kernels {kernels} and strides {strides} differ in length"
        )
    if any(s not in (1, 2) for s in strides):
        raise ValueError(f"{name}_strides must be 1 or 2, got {strides}")


PRESETS: dict[str, PermaKeyConfig] = {
    "paper": PermaKeyConfig(),
    # The authors' TensorFlow code: an extra 8ppC-wide first LSP layer, BatchNorm in the LSP
    # networks, Gaussian width 0.12, Keras BatchNorm defaults (momentum 0.99 there = 0.01 here,
    # eps 1e-3). Its optimizer details (one Adam shared by the four updates of a step, so the
    # step counter and the decay run 4x faster; Adam eps 1e-7) belong to the training presets.
    "authors-code": PermaKeyConfig(
        lsp_hidden=(LSP_WIDE, 512, 256),
        lsp_batchnorm=True,
        gaussian_sigma=0.12,
        bn=BatchNormConfig(momentum=0.01, eps=1e-3),
    ),
    # For minutes-long CPU runs: half the encoder channels and LSP hidden [128, 64] cut the
    # cost of a training step about 5x (benchmarks/bench.py); everything else as the paper.
    "cpu": PermaKeyConfig(encoder_channels=(16, 32, 32, 64), lsp_hidden=(128, 64)),
    # `cpu` changed so that keypoints follow moving objects within 10 CPU minutes (RESULTS.md,
    # "cpu-track"): a stride-2 first encoder block (LSP layers 0 and 1 both 42 x 42, so error
    # maps in 4-pixel cells; about 1.4x the steps per minute on a CPU), the PointNet on the
    # paper's stack (21 x 21 keypoint maps) with coordinate input channels, and no cheap
    # parking for spare keypoints on the border.
    "cpu-track": PermaKeyConfig(
        encoder_channels=(16, 32, 32, 64),
        encoder_strides=(2, 1, 2, 1),
        lsp_hidden=(128, 64),
        pointnet_strides=(1, 2, 2, 1),
        pointnet_coords=True,
        window_border_cost=True,
    ),
}


@dataclass
class VAEOutput:
    """What the VAE computes for a batch.

    Attributes:
        features: per encoder layer, (B, C_l, H_l, W_l) feature maps (autocast dtype).
        mean: (B, latent_dim) float32, posterior mean.
        scale: (B, latent_dim) float32 > 0, posterior standard deviation.
        reconstruction: (B, in_channels, H, W) float32 in [0, 1].
    """

    features: list[torch.Tensor]
    mean: torch.Tensor
    scale: torch.Tensor
    reconstruction: torch.Tensor


@dataclass
class PermaKeyOutput:
    """The result of `PermaKey.forward`.

    Attributes:
        centres: (B, K, 2) float32, keypoint centres (y, x) in [-1, 1].
        windows: (B, K, h, w) float32 in (0, 1], Gaussian windows on the keypoint-map grid.
        error_maps: per LSP layer, (B, H_l / p, W_l / p) float32 >= 0, detached.
        error_stack: (B, L, H, W) float32 in [0, 1], the error maps resized to the image
            (nearest) and min-max normalised per image and channel; detached.
        reconstruction: (B, in_channels, H, W) float32 in [0, 1], the VAE's output.
        losses: float32 scalars: "vae/recon", "vae/kl", "vae" (their sum, the negative ELBO),
            "lsp/<layer>" per LSP layer, "lsp" (their sum), "pointnet".
        pointnet_images: the (B, in_channels, H, W) images the PointNet saw beside the error
            stack (pointnet_image); None otherwise.
    """

    centres: torch.Tensor
    windows: torch.Tensor
    error_maps: list[torch.Tensor]
    error_stack: torch.Tensor
    reconstruction: torch.Tensor
    losses: dict[str, torch.Tensor]
    pointnet_images: torch.Tensor | None = None

    @property
    def total(self) -> torch.Tensor:
        """vae + lsp + pointnet: one backward gives each module exactly its own loss's gradient."""
        return self.losses["vae"] + self.losses["lsp"] + self.losses["pointnet"]


@contextmanager
def _float32(device: torch.device) -> Iterator[None]:
    """Suspends autocast so that the losses and error maps are computed in float32."""
    with torch.autocast(device_type=device.type, enabled=False):
        yield


class VAE(nn.Module):
    """Conv encoder -> diagonal Gaussian latent -> conv decoder.

    The decoder maps z linearly to the shape of the last encoder layer and then runs the
    encoder's transpose (`ConvDecoder`), as the paper describes; the authors' code instead maps
    z to a one-channel map.
    """

    def __init__(self, config: PermaKeyConfig) -> None:
        super().__init__()
        c, h, w = config.feature_shapes[-1]
        self.top_shape = (c, h, w)
        self.encoder = ConvEncoder(
            config.in_channels,
            config.encoder_channels,
            config.encoder_kernels,
            config.encoder_strides,
            config.bn,
        )
        self.to_latent = nn.Linear(c * h * w, 2 * config.latent_dim)
        self.from_latent = nn.Linear(config.latent_dim, c * h * w)
        self.decoder = ConvDecoder(
            c,
            config.encoder_channels,
            config.encoder_kernels,
            config.encoder_strides,
            config.in_channels,
            config.bn,
        )

    def forward(self, images: torch.Tensor) -> VAEOutput:
        """Encodes, samples z (the mean in eval mode) and decodes.

        Args:
            images: (B, in_channels, H, W) float in [0, 1].
        """
        features = self.encoder(images)
        # Flatten in (H, W, C) order: free for channels_last features.
        top = features[-1].permute(0, 2, 3, 1).flatten(1)  # (B, H * W * C)
        mean, raw_scale = self.to_latent(top).float().chunk(2, dim=1)  # (B, Z) each
        scale = F.softplus(raw_scale)
        z = mean + scale * torch.randn_like(mean) if self.training else mean
        c, h, w = self.top_shape
        top_hat = self.from_latent(z).view(-1, h, w, c).permute(0, 3, 1, 2)  # (B, C, H, W)
        reconstruction = self.decoder(top_hat).float()
        return VAEOutput(features, mean, scale, reconstruction)


def vae_losses(images: torch.Tensor, out: VAEOutput, variance: float) -> dict[str, torch.Tensor]:
    """The VAE's negative ELBO terms, float32.

    Reconstruction: the Gaussian negative log-likelihood with fixed variance, without its
    constant, taken per pixel, i.e. the squared error averaged over the pixels and channels of
    each image and divided by 2 * variance (0.2), then averaged over the batch. This is
    method.md's "mean squared error over pixels divided by 0.2" and the authors' code; the sum
    over pixels (the image's full log-likelihood) would weigh it 3 * 84 * 84 times more
    against the KL term.
    KL: KL(N(mean, scale^2) || N(0, 1)) summed over latent dimensions, averaged over the batch.

    Returns:
        {"vae/recon", "vae/kl", "vae"} scalars; "vae" is their sum.
    """
    with _float32(images.device):
        error = (out.reconstruction.float() - images.float()).square()
        recon = (error.mean(dim=(1, 2, 3)) / (2.0 * variance)).mean()
        mean, scale = out.mean.float(), out.scale.float()
        kl = (0.5 * (mean.square() + scale.square() - 1.0) - scale.log()).sum(dim=1).mean()
    return {"vae/recon": recon, "vae/kl": kl, "vae": recon + kl}


class CentreMaskedConv2d(nn.Conv2d):
    """A 3 x 3 convolution (zero padding 1) whose centre tap is always zero.

    Applied to a cell grid it is a linear layer on the concatenated 8 neighbour cells (zero
    cells beyond the border); the mask in forward keeps the centre weight out of both the
    output and the gradient. ``directional``: the outputs come in `DIRECTION_PAIRS` blocks of
    equal size, and block g sees only the pair of neighbours ``DIRECTION_PAIRS[g]``.
    """

    def __init__(self, in_channels: int, out_channels: int, directional: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size=3, padding=1)
        if directional:
            mask = torch.zeros(len(DIRECTION_PAIRS), out_channels // len(DIRECTION_PAIRS), 3, 3)
            for g, (dy, dx) in enumerate(DIRECTION_PAIRS):
                mask[g, :, 1 + dy, 1 + dx] = mask[g, :, 1 - dy, 1 - dx] = 1.0
            mask = mask.view(out_channels, 1, 3, 3)  # (G, out / G, 3, 3) -> (out, 1, 3, 3)
        else:
            mask = torch.ones(1, 1, 3, 3)
            mask[..., 1, 1] = 0.0
        self.register_buffer("centre_mask", mask, persistent=False)
        with torch.no_grad():
            self.weight.mul_(mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, h, w) -> (B, C_out, h, w)."""
        return self._conv_forward(x, self.weight * self.centre_mask, self.bias)


class LocalSpatialPredictor(nn.Module):
    """Predicts every cell of a cell grid from its 8 neighbours (one LSP network).

    Centre-masked 3 x 3 conv to the first hidden width, then 1 x 1 convs; each hidden layer is
    followed by [BatchNorm ->] ReLU, the output is linear. Directional (G = 4): G such
    networks side by side as grouped convs, network g predicting from the neighbour pair
    ``DIRECTION_PAIRS[g]`` only.

    Args:
        cell_dim: D = p * p * C, the length of a cell vector.
        hidden: hidden widths of each network (may be empty: a linear predictor).
        batchnorm: BatchNorm after each hidden layer.
        bn: BatchNorm settings.
        directional: G = 4 networks, one per neighbour pair; else G = 1 on all 8 neighbours.
    """

    def __init__(
        self,
        cell_dim: int,
        hidden: tuple[int, ...],
        batchnorm: bool,
        bn: BatchNormConfig,
        directional: bool = False,
    ) -> None:
        super().__init__()
        self.directions = g = len(DIRECTION_PAIRS) if directional else 1
        widths = [g * w for w in (*hidden, cell_dim)]
        layers: list[nn.Module] = [CentreMaskedConv2d(cell_dim, widths[0], directional)]
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            if batchnorm:
                layers.append(nn.BatchNorm2d(w_in, eps=bn.eps, momentum=bn.momentum))
            layers.append(nn.ReLU(inplace=True))
            layers.append(nn.Conv2d(w_in, w_out, kernel_size=1, groups=g))
        self.net = nn.Sequential(*layers)

    def forward(self, cells: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) cell grid -> (B, G, D, h, w) predictions of each cell (G = `directions`)."""
        predictions = self.net(cells)  # (B, G * D, h, w)
        return predictions.unflatten(1, (self.directions, -1))  # -> (B, G, D, h, w)


def to_cells(features: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cuts feature maps into non-overlapping p x p cells (space to depth).

    Args:
        features: (B, C, H, W), H and W divisible by p.
        patch_size: p.

    Returns:
        (B, C * p * p, H / p, W / p); channel ``c * p * p + i * p + j`` of cell (u, v) is
        ``features[:, c, u * p + i, v * p + j]``.
    """
    return F.pixel_unshuffle(features, patch_size)


def cell_squared_error(
    prediction: torch.Tensor, target: torch.Tensor, dim: int = 1
) -> torch.Tensor:
    """(B, D, h, w) prediction and target -> (B, h, w) float32 mean squared error per cell.

    ``dim``: the axis holding a cell's D values (-1 for (B, h, w, D) cell rows); the two may
    differ in other axes where they broadcast.
    """
    with _float32(prediction.device):
        return (prediction.float() - target.float()).square().mean(dim=dim)


def cell_errors(
    predictions: torch.Tensor, target: torch.Tensor, dim: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """The LSP loss's and the error map's cell errors from G predictions of each cell.

    Args:
        predictions: (B, G, D, h, w) (`LocalSpatialPredictor` output); with ``dim=-1``,
            (B, h, w, G, D) rows.
        target: (B, D, h, w) cells; with ``dim=-1``, (B, h, w, D).
        dim: ``target``'s axis holding a cell's D values, 1 or -1.

    Returns:
        (B, G, h, w) (``dim=-1``: (B, h, w, G)) float32 mean squared error of each prediction,
        whose mean is the loss, and (B, h, w) float32 the smallest over G, for `error_map`.
    """
    if dim == 1:
        squared = cell_squared_error(predictions, target.unsqueeze(1), dim=2)  # (B, G, h, w)
        return squared, squared.amin(dim=1)
    if dim == -1:
        squared = cell_squared_error(predictions, target.unsqueeze(-2), dim=-1)  # (B, h, w, G)
        return squared, squared.amin(dim=-1)
    raise ValueError(f"dim must be 1 or -1, got {dim}")


def error_map(
    cell_error: torch.Tensor,
    target: torch.Tensor,
    eps: float = 1e-3,
    sqrt: bool = False,
    dim: int = 1,
) -> torch.Tensor:
    """A layer's error map: each cell's error relative to its mean activation.

    Args:
        cell_error: (B, h, w) float, mean squared error per cell (`cell_squared_error`).
        target: (B, D, h, w), the cells (non-negative: post-ReLU features).
        eps: added to the denominator.
        sqrt: use the root of the mean squared error.
        dim: the axis of ``target`` holding a cell's D values (-1 for (B, h, w, D) rows).

    Returns:
        (B, h, w) float32 >= 0: error / (mean(target) + eps).
    """
    with _float32(target.device):
        error = cell_error.float().sqrt() if sqrt else cell_error.float()
        return error / (target.float().mean(dim=dim) + eps)


def normalised_error_stack(error_maps: list[torch.Tensor], size: int) -> torch.Tensor:
    """Resizes error maps to the image (nearest), stacks them, min-max normalises.

    Args:
        error_maps: per layer, (B, h_l, w_l) float.
        size: image height and width.

    Returns:
        (B, L, size, size) float32 in [0, 1]; per image and channel the minimum is 0 and the
        maximum 1, or all 0 where the map is constant.
    """
    with _float32(error_maps[0].device):
        stack = torch.cat(
            [
                F.interpolate(m.float().unsqueeze(1), size=(size, size), mode="nearest-exact")
                for m in error_maps
            ],
            dim=1,
        )  # (B, L, size, size)
        low = stack.amin(dim=(2, 3), keepdim=True)
        high = stack.amax(dim=(2, 3), keepdim=True)
        return (stack - low) / (high - low).clamp_min(torch.finfo(torch.float32).tiny)


class PointNet(nn.Module):
    """Error-map stack -> K keypoint maps -> centres (spatial softmax) and Gaussian windows."""

    def __init__(self, config: PermaKeyConfig) -> None:
        super().__init__()
        channels, kernels, strides = config.pointnet_stack
        # `sigma` draws the windows; a training schedule may widen it (config_sigma: the width).
        self.sigma = self.config_sigma = config.gaussian_sigma
        self.border_cost = config.window_border_cost
        self.peak_match = float(config.peak_match)
        self.map_scale = float(config.keypoint_map_scale)
        self.joint_softmax = config.keypoint_softmax == "joint"
        size = config.image_size
        coords = torch.stack(torch.meshgrid(grid(size), grid(size), indexing="ij"))  # (2, H, W)
        # Fixed by the config, so not saved with the weights.
        self.register_buffer("coords", coords if config.pointnet_coords else None, False)
        self.image_channels = config.in_channels if config.pointnet_image else 0
        inputs = len(config.lsp_layers) + (2 if config.pointnet_coords else 0)
        inputs += self.image_channels
        self.encoder = ConvEncoder(inputs, channels, kernels, strides, config.bn)
        self.head = nn.Conv2d(channels[-1], config.num_keypoints, kernel_size=1)

    def inputs(self, error_stack: torch.Tensor, images: torch.Tensor | None) -> torch.Tensor:
        """(B, L, H, W) error stack -> (B, L [+ 2] [+ C], H, W): the coordinate channels
        appended with pointnet_coords, then the (B, C, H, W) images with pointnet_image."""
        parts = [error_stack]
        if self.coords is not None:
            parts.append(self.coords.to(error_stack.dtype).expand(len(error_stack), -1, -1, -1))
        if self.image_channels:
            if images is None:
                raise ValueError("this PointNet (pointnet_image) needs the images")
            parts.append(images.to(error_stack.dtype))
        return torch.cat(parts, dim=1) if len(parts) > 1 else error_stack

    def keypoints(self, maps: torch.Tensor, windows: bool = True) -> Keypoints:
        """(B, K, h, w) keypoint maps -> Keypoints: centres and (unless ``windows`` is False)
        windows, float32."""
        if self.map_scale != 1.0:
            maps = maps * self.map_scale
        centres = centres_from_maps(maps, self.joint_softmax)  # (B, K, 2), float32
        drawn = gaussian_windows(centres, *maps.shape[-2:], self.sigma) if windows else None
        return Keypoints(centres, drawn)

    def forward(
        self, error_stack: torch.Tensor, windows: bool = True, images: torch.Tensor | None = None
    ) -> Keypoints:
        """(B, L, H, W) float in [0, 1] -> Keypoints with (B, K, h, w) windows (float32; None
        with ``windows=False``). ``images``: the (B, C, H, W) frames in [0, 1], needed with
        pointnet_image and ignored otherwise."""
        return self.keypoints(self.maps(error_stack, images), windows)

    def maps(self, error_stack: torch.Tensor, images: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, H, W) error stack (and the images, as `forward`) -> (B, K, h, w) keypoint
        maps, before `keypoint_map_scale` and the spatial softmax."""
        return self.head(self.encoder(self.inputs(error_stack, images))[-1])

    def loss(self, keypoints: Keypoints, error_stack: torch.Tensor) -> torch.Tensor:
        """`pointnet_loss`, plus the windows' energy outside the frame with window_border_cost
        and the distances to matched error-map peaks with peak_match.

        Args:
            keypoints: this PointNet's output for ``error_stack``.
            error_stack: (B, L, H, W) float in [0, 1] (detached).

        Returns:
            Scalar float32.
        """
        loss = pointnet_loss(keypoints.windows, error_stack)
        if self.border_cost:
            height, width = error_stack.shape[-2:]
            grid_size = keypoints.windows.shape[-1]
            outside = window_energy_outside(keypoints.centres, self.sigma, grid_size, height)
            # The loss is a mean over B * L * H * W in-frame values; the frame's outside adds
            # sum(windows^2) per channel (error 0 there), i.e. outside.sum() * L in that sum.
            loss = loss + outside.mean() / (height * width)
        if self.peak_match:
            height, width = error_stack.shape[-2:]
            peaks = error_peaks(error_stack, keypoints.centres.shape[1])  # (B, K, 2) pixels
            targets = from_pixels(peaks.float(), height, width)  # (B, K, 2) in [-1, 1]
            matched = matched_squared_distance(keypoints.centres.float(), targets)  # (B, K)
            loss = loss + self.peak_match * matched.mean()
        return loss


def pointnet_loss(windows: torch.Tensor, error_stack: torch.Tensor) -> torch.Tensor:
    """MSE between the summed windows, resized to the image, and every error-map channel.

    The windows are resized bilinearly with aligned corners: the grid's -1 and +1 then stay on
    the first and last pixel centres, as `permakey.keypoints` defines them, so each window
    keeps its centre in the image (nearest, as in the authors' code, shifts it by up to 1.5
    pixels at 21 -> 84) and stays smooth.

    Args:
        windows: (B, K, h, w) float.
        error_stack: (B, L, H, W) float in [0, 1] (detached).

    Returns:
        Scalar float32.
    """
    with _float32(windows.device):
        total = windows.float().sum(dim=1, keepdim=True)  # (B, 1, h, w)
        total = F.interpolate(
            total, size=error_stack.shape[-2:], mode="bilinear", align_corners=True
        )  # (B, 1, H, W)
        return (total - error_stack.float()).square().mean()


def window_energy_outside(
    centres: torch.Tensor, sigma: float, grid_size: int, size: int
) -> torch.Tensor:
    """Sum of squares of the windows that `pointnet_loss` compares, over the pixels of an
    unbounded canvas that lie outside the size x size frame, per image.

    A window is sampled on the grid_size x grid_size grid and resized bilinearly (aligned
    corners) to the frame; both steps are separable, so each window is the outer product of
    one profile per axis. The profiles are computed on the frame's pixel line extended by
    5 sigma on each side, from the same Gaussian samples and interpolation that the resize
    uses, and a window's energy outside is its total minus its part inside. Overlaps of two
    windows outside the frame are left out.

    Args:
        centres: (B, K, 2) float, (y, x) in [-1, 1].
        sigma: window width in grid units.
        grid_size: side of the windows' grid (the keypoint maps'), > 1.
        size: side of the frame in pixels, > 1.

    Returns:
        (B,) float32, >= 0: 0 for keypoints well inside; about two fifths of a window's energy
        for a keypoint on the outermost pixel of an edge, three fifths in a corner.
    """
    pad = math.ceil(5 * sigma * (size - 1) / 2)  # pixels; the windows are ~0 beyond
    pixels = torch.arange(-pad, size + pad, device=centres.device, dtype=torch.float32)
    source = pixels * (grid_size - 1) / (size - 1)  # (P,) position in grid cells
    low = source.floor()
    frac = source - low  # (P,)

    def sample(cell: torch.Tensor) -> torch.Tensor:  # (P,) cells -> (B, K, 2, P) Gaussian
        coord = -1.0 + 2.0 * cell / (grid_size - 1)  # (P,) grid units
        return torch.exp(-((coord - centres.float().unsqueeze(-1)) ** 2) / sigma**2)

    profile = (1 - frac) * sample(low) + frac * sample(low + 1)  # (B, K, 2, P)
    energy = profile.square()
    inside = energy[..., pad : pad + size].sum(dim=-1)  # (B, K, 2)
    total = energy.sum(dim=-1)  # (B, K, 2)
    return (total.prod(dim=-1) - inside.prod(dim=-1)).sum(dim=-1)  # (B,)


class PermaKey(nn.Module):
    """The PermaKey model: VAE, one LSP network per chosen layer, PointNet.

    Args:
        config: the architecture; `PRESETS` holds the paper's and the authors' code's.
    """

    def __init__(self, config: PermaKeyConfig) -> None:
        super().__init__()
        self.config = config
        self._inference = InferenceCache()
        self.vae = VAE(config)
        self.lsp = nn.ModuleList(
            LocalSpatialPredictor(
                config.cell_dim(layer),
                config.lsp_widths(layer),
                config.lsp_batchnorm,
                config.bn,
                config.lsp_directional,
            )
            for layer in config.lsp_layers
        )
        self.pointnet = PointNet(config)

    def _check_images(self, images: torch.Tensor) -> None:
        c, s = self.config.in_channels, self.config.image_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (c, s, s):
            raise ValueError(f"images must be (B, {c}, {s}, {s}), got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ValueError(f"images must be float in [0, 1], got dtype {images.dtype}")

    def _local_prediction(
        self, features: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per LSP layer: (B, G, h, w) float32 cell squared errors of each of the G predictions
        of a cell (`cell_errors`; G = 1 unless `lsp_directional`) and (detached) error maps."""
        squared_errors, error_maps = [], []
        for layer, lsp in zip(self.config.lsp_layers, self.lsp, strict=True):
            cells = to_cells(features[layer].detach(), self.config.patch_size)  # (B, D, h, w)
            squared, smallest = cell_errors(lsp(cells), cells)  # (B, G, h, w), (B, h, w)
            squared_errors.append(squared)
            error_maps.append(
                error_map(
                    smallest.detach(),
                    cells,
                    self.config.error_eps,
                    self.config.error_map_sqrt,
                )
            )
        return squared_errors, error_maps

    def forward(self, images: torch.Tensor) -> PermaKeyOutput:
        """Runs all three modules and computes their losses.

        Args:
            images: (B, in_channels, H, W) float in [0, 1]; any memory format.

        Returns:
            `PermaKeyOutput`; its `total` is the loss to minimise.

        Raises:
            ValueError: for images of the wrong shape or dtype.
        """
        self._check_images(images)
        vae_out = self.vae(images)
        losses = vae_losses(images, vae_out, self.config.recon_variance)
        squared_errors, error_maps = self._local_prediction(vae_out.features)
        for layer, squared in zip(self.config.lsp_layers, squared_errors, strict=True):
            losses[f"lsp/{layer}"] = squared.mean()
        losses["lsp"] = torch.stack([losses[f"lsp/{la}"] for la in self.config.lsp_layers]).sum()
        error_stack = normalised_error_stack(error_maps, self.config.image_size)
        keypoints = self.pointnet(error_stack, images=images)
        losses["pointnet"] = self.pointnet.loss(keypoints, error_stack)
        return PermaKeyOutput(
            centres=keypoints.centres,
            windows=keypoints.windows,
            error_maps=error_maps,
            error_stack=error_stack,
            reconstruction=vae_out.reconstruction,
            losses=losses,
            pointnet_images=images if self.config.pointnet_image else None,
        )

    def _inference_form(self) -> PermaKeyInference | None:
        """The folded inference form where it gives the modules' numbers: in eval mode without
        gradients; None otherwise (training mode uses batch statistics)."""
        if self.training or torch.is_grad_enabled():
            return None
        return self._inference.get(self, lambda: PermaKeyInference(self))

    @torch.no_grad()
    def detect(self, images: torch.Tensor, windows: bool = True, mixed: bool = False) -> Keypoints:
        """Keypoints only (no decoder, no losses, no gradients); call `eval()` first for inference.

        In eval mode this runs `PermaKeyInference` (BatchNorm folded, channels_last): the
        modules' eval-mode numbers up to float rounding, faster.

        Args:
            images: (B, in_channels, H, W) float in [0, 1].
            windows: draw the Gaussian windows (None in the result otherwise).
            mixed: the LSP networks' first layers (most of the arithmetic) in bf16, the rest
                in float32 (`permakey.keypoints.KeypointModel.detect`); eval mode only.

        Returns:
            `Keypoints`: centres (B, K, 2) in [-1, 1], windows (B, K, h, w), the normalised
            error stack (B, L, H, W), the per-layer error maps (B, h_l, w_l) and the feature
            maps they came from (`feature_maps`).
        """
        fast = self._inference_form()
        if fast is not None:
            self._check_images(images)
            return fast.detect(images, windows, mixed)
        check_mixed_in_eval(mixed)
        features = self.feature_maps(images)
        _, error_maps = self._local_prediction(features)
        stack = normalised_error_stack(error_maps, self.config.image_size)  # (B, L, H, W)
        keypoints = self.pointnet(stack, windows, images)
        keypoints.error_stack, keypoints.error_maps = stack, error_maps
        keypoints.feature_maps = features
        return keypoints

    def feature_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Encoder features per layer up to the last LSP layer: list of (B, C_l, H_l, W_l),
        what the LSP networks and keypoint features read (the later layers feed the VAE only).
        Channels_last from the inference form (eval mode, no gradients)."""
        self._check_images(images)
        fast = self._inference_form()
        if fast is not None:
            return run_folded(fast.encoder, images)
        return self.vae.encoder(images, blocks=max(self.config.lsp_layers) + 1)

    @property
    def inference_prefixes(self) -> tuple[str, ...]:
        """State-dict key prefixes of what `detect` and `feature_maps` use: the encoder blocks
        up to the last LSP layer, the LSP networks and the PointNet (no VAE decoder)."""
        blocks = tuple(f"vae.encoder.blocks.{i}." for i in range(max(self.config.lsp_layers) + 1))
        return (*blocks, "lsp.", "pointnet.")

    @property
    def feature_layers(self) -> tuple[int, ...]:
        """The encoder layers with an LSP network ((0, 1) in the paper: 84 x 84 x 32 and
        42 x 42 x 64): the features whose unpredictability places the keypoints."""
        return tuple(self.config.lsp_layers)

    @property
    def feature_dim(self) -> int:
        """C of the pooled keypoint features: 96 for the paper's model."""
        return sum(self.config.encoder_channels[i] for i in self.feature_layers)

    @property
    def error_layers(self) -> tuple[int, ...]:
        """The encoder layers whose error maps `detect` returns, in order."""
        return tuple(self.config.lsp_layers)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """The modules' disjoint parameter lists in update order: "vae", "lsp/<layer>" per
        LSP network, "pointnet"; together they cover all parameters."""
        groups = {"vae": list(self.vae.parameters())}
        for layer, lsp in zip(self.config.lsp_layers, self.lsp, strict=True):
            groups[f"lsp/{layer}"] = list(lsp.parameters())
        groups["pointnet"] = list(self.pointnet.parameters())
        return groups


class LSPInference:
    """A `LocalSpatialPredictor` and its layer's error map, in inference form.

    The cells are made in (i, j, c) order instead of `to_cells`' (c, i, j), since channels_last
    features give that order with one copy; the first layer's input channels and the last
    layer's outputs are permuted to match, so every prediction is the same number (the error
    is a mean over a cell's values, which order does not change). BatchNorm is folded, the
    centre mask applied once, and the 1 x 1 convs run as matrix products on the (B, h, w, D)
    cell rows (directional: as G matrix products side by side).

    Args:
        lsp: the network, in eval mode.
        channels: C of its encoder layer.
        config: the model's config (patch size, error_eps, error_map_sqrt).
    """

    def __init__(self, lsp: LocalSpatialPredictor, channels: int, config: PermaKeyConfig) -> None:
        p = self.patch = config.patch_size
        self.eps, self.sqrt = config.error_eps, config.error_map_sqrt
        # order[n] = to_cells' index of the n-th value of a cell in (i, j, c) order.
        order = torch.arange(channels * p * p).view(channels, p, p).permute(1, 2, 0).flatten()
        g = self.directions = lsp.directions
        layers = list(lsp.net)
        folded = []
        for i, layer in enumerate(layers):
            if isinstance(layer, nn.Conv2d):
                after = layers[i + 1] if i + 1 < len(layers) else None
                bn = after if isinstance(after, nn.BatchNorm2d) else None
                weight = layer.weight
                if isinstance(layer, CentreMaskedConv2d):
                    weight = weight * layer.centre_mask
                folded.append(list(fold_batchnorm(weight, layer.bias, bn)))
        folded[0][0] = folded[0][0][:, order]
        outputs = (order + order.numel() * torch.arange(g).unsqueeze(1)).flatten()  # per block
        folded[-1] = [folded[-1][0][outputs], folded[-1][1][outputs]]
        self.first = FoldedConv(*folded[0], 1, relu=len(folded) > 1)
        # The bulk of the arithmetic (a 3 x 3 conv over the cell grid): its bf16 copy for
        # mixed precision, made on first use (not every device holds bf16).
        self.first_bf16: FoldedConv | None = None
        # 1 x 1 convs of G groups as (G, out / G, in / G) matrices and (G, out / G) biases.
        self.rest = [
            (weight.view(g, -1, weight.shape[1]), bias.view(g, -1)) for weight, bias in folded[1:]
        ]

    def __call__(self, features: torch.Tensor, mixed: bool = False) -> torch.Tensor:
        """(B, C, H, W) features -> (B, H / p, W / p) float32 error map (`error_map`).

        ``mixed``: the first layer in bf16 (its output back in float32), the rest in float32.
        """
        b, c, h, w = features.shape
        p = self.patch
        rows = features.permute(0, 2, 3, 1).reshape(b, h // p, p, w // p, p, c)
        cells = rows.transpose(2, 3).reshape(b, h // p, w // p, p * p * c)  # (B, h, w, D)
        grid = cells.permute(0, 3, 1, 2)  # (B, D, h, w)
        if mixed:
            self.first_bf16 = self.first_bf16 or self.first.to(torch.bfloat16)
            x = self.first_bf16(grid.to(torch.bfloat16)).float()
        else:
            x = self.first(grid)
        x = x.permute(0, 2, 3, 1)  # (B, h, w, G * width)
        x = x.unflatten(-1, (self.directions, -1))  # (B, h, w, G, width)
        for n, (weight, bias) in enumerate(self.rest):
            if self.directions == 1:
                x = F.linear(x, weight[0], bias[0])
            else:
                x = torch.einsum("...gi,goi->...go", x, weight) + bias
            if n < len(self.rest) - 1:
                x = x.relu_()
        _, smallest = cell_errors(x, cells, dim=-1)  # (B, h, w)
        return error_map(smallest, cells, self.eps, self.sqrt, dim=-1)


class PermaKeyInference:
    """What `PermaKey.detect` runs in eval mode: its encoder blocks up to the last LSP layer,
    the LSP networks (`LSPInference`) and the PointNet, with every BatchNorm folded into its
    conv and channels_last activations (`permakey.models.blocks.FoldedConv`).

    Built from the model's tensors (new tensors; the modules and their state dict are not
    touched); gives the modules' eval-mode keypoints up to float rounding.
    """

    def __init__(self, model: PermaKey) -> None:
        config = model.config
        self.config = config
        self.pointnet = model.pointnet
        self.encoder = fold_encoder(model.vae.encoder, max(config.lsp_layers) + 1)
        self.lsp = [
            LSPInference(lsp, config.feature_shapes[layer][0], config)
            for layer, lsp in zip(config.lsp_layers, model.lsp, strict=True)
        ]
        self.points = fold_encoder(model.pointnet.encoder)
        head = model.pointnet.head
        self.head = FoldedConv(*fold_batchnorm(head.weight, head.bias, None), 1, relu=False)

    def detect(self, images: torch.Tensor, windows: bool = True, mixed: bool = False) -> Keypoints:
        """`PermaKey.detect` of (B, in_channels, H, W) float images in [0, 1]."""
        features = run_folded(self.encoder, images)
        layers = zip(self.config.lsp_layers, self.lsp, strict=True)
        error_maps = [lsp(features[layer], mixed) for layer, lsp in layers]
        stack = normalised_error_stack(error_maps, self.config.image_size)  # (B, L, H, W)
        maps = self.head(run_folded(self.points, self.pointnet.inputs(stack, images))[-1])
        keypoints = self.pointnet.keypoints(maps, windows)
        keypoints.error_stack, keypoints.error_maps = stack, error_maps
        keypoints.feature_maps = features
        return keypoints
