"""Transporter (Kulkarni et al. 2019), the baseline that the PermaKey paper compares against.

Three networks, all from one `TransporterConfig`:

- ``features`` (Phi): a `ConvEncoder`; its last block's output is the feature map that is
  transported (42 x 42 x 32 for the paper's 84 x 84 input).
- ``keypointer`` (Psi): the same conv architecture plus a 1x1 conv to K maps; centres by the
  per-axis spatial softmax, Gaussian windows on the maps' grid (`permakey.keypoints`).
- ``refine`` (RefineNet): a `ConvDecoder` from the transported feature map back to an image.

Training reconstructs a target frame b from a source frame a of the same episode: Phi(a) with
the features around a's and b's keypoints removed and b's features pasted in around b's
keypoints (`transport`). Frame a's features and keypoints carry no gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from permakey.config import JsonConfig
from permakey.keypoints import Keypoints, centres_from_maps, gaussian_windows
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


@dataclass(frozen=True)
class TransporterConfig(JsonConfig):
    """Architecture of a `Transporter`; defaults are the PermaKey paper's appendix values.

    Attributes:
        image_size: height and width of the square input frames; must be divisible by
            2 ** (number of stride-2 blocks) so that RefineNet restores it.
        in_channels: channels of the input frames (3 for RGB).
        channels: output channels per conv block, shared by Phi and Psi.
        kernels: kernel size per conv block (DeepMind's code uses 7 for the first block).
        strides: stride per conv block, 1 or 2.
        num_keypoints: K, the number of keypoints (the paper sets it per game).
        gaussian_sigma: width of the Gaussian windows in grid units of [-1, 1].
        bn: BatchNorm settings of every conv block.
    """

    image_size: int = 84
    in_channels: int = 3
    channels: tuple[int, ...] = (16, 16, 32, 32)
    kernels: tuple[int, ...] = (3, 3, 3, 3)
    strides: tuple[int, ...] = (1, 1, 2, 1)
    num_keypoints: int = 25
    gaussian_sigma: float = 0.1
    bn: BatchNormConfig = field(default_factory=BatchNormConfig)

    def __post_init__(self) -> None:
        # Lists (from JSON or callers) become tuples so that configs compare and hash equal.
        for name in ("channels", "kernels", "strides"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)):
                raise ValueError(
                    f"TransporterConfig.{name} must be a sequence of ints, got {value!r}"
                )
            object.__setattr__(self, name, tuple(value))
        for name in ("image_size", "in_channels", "num_keypoints"):
            _check_positive_int(name, getattr(self, name))
        if not (len(self.channels) == len(self.kernels) == len(self.strides)) or not self.channels:
            raise ValueError(
                f"TransporterConfig channels {list(self.channels)}, kernels {list(self.kernels)} "
                f"and strides {list(self.strides)} must be non-empty and of equal length"
            )
        for name in ("channels", "kernels", "strides"):
            for value in getattr(self, name):
                _check_positive_int(name, value)
        if any(s not in (1, 2) for s in self.strides):
            raise ValueError(f"TransporterConfig.strides must be 1 or 2, got {list(self.strides)}")
        if self.image_size % self.downsampling:
            raise ValueError(
                f"TransporterConfig.image_size {self.image_size} must be divisible by "
                f"{self.downsampling} (2 ** number of stride-2 blocks) for RefineNet to restore it"
            )
        sigma = self.gaussian_sigma
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
            raise ValueError(f"TransporterConfig.gaussian_sigma must be > 0, got {sigma!r}")
        if not math.isfinite(sigma):
            raise ValueError(f"TransporterConfig.gaussian_sigma must be finite, got {sigma!r}")
        if not isinstance(self.bn, BatchNormConfig):
            raise ValueError(f"TransporterConfig.bn must be a BatchNormConfig, got {self.bn!r}")
        if not 0.0 <= self.bn.momentum <= 1.0 or not self.bn.eps > 0:
            raise ValueError(
                f"TransporterConfig.bn needs momentum in [0, 1] and eps > 0, got {self.bn!r}"
            )

    @property
    def downsampling(self) -> int:
        """Factor between the image size and the keypoint/feature grid size."""
        return 2 ** sum(s == 2 for s in self.strides)

    @property
    def grid_size(self) -> int:
        """Height and width of the feature and keypoint maps (42 for the paper)."""
        return self.image_size // self.downsampling


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"TransporterConfig.{name} must be a positive int, got {value!r}")


PRESETS: dict[str, TransporterConfig] = {
    # Appendix of the PermaKey paper (its re-implementation of Transporter).
    "paper": TransporterConfig(),
    # google-deepmind/deepmind-research transporter/transporter.py: 7x7 first kernel.
    "deepmind-code": replace(TransporterConfig(), kernels=(7, 3, 3, 3)),
}


def transport(
    source_features: Tensor,
    target_features: Tensor,
    source_windows: Tensor,
    target_windows: Tensor,
) -> Tensor:
    """Transports target features into the source feature map around the keypoints.

    Implements the sequential per-keypoint rule of method.md, which is also the loop in
    DeepMind's published code: start from ``x_0 = Phi(a)`` and for k = 1..K set
    ``x_k = (1 - h_a^k)(1 - h_b^k) x_{k-1} + h_b^k Phi(b)``. With ``m_k = (1 - h_a^k)(1 - h_b^k)``
    this has the closed form

        x_K = Phi(a) * prod_k m_k + Phi(b) * sum_k h_b^k prod_{j > k} m_j,

    computed here with one reverse cumulative product instead of a loop over K. It differs
    from the collapsed reading ``Phi(a) prod_k m_k + sum_k h_b^k Phi(b)``: a later keypoint's
    mask also attenuates what earlier keypoints pasted, so the result depends on keypoint
    order where windows overlap, and the pasted weight never exceeds 1 per pixel.

    Args:
        source_features: (B, C, h, w) Phi(a).
        target_features: (B, C, h, w) Phi(b).
        source_windows: (B, K, h, w) in [0, 1], h_a.
        target_windows: (B, K, h, w) in [0, 1], h_b.

    Returns:
        (B, C, h, w) transported features, in the promoted dtype of the inputs.
    """
    keep = (1 - source_windows) * (1 - target_windows)  # (B, K, h, w): m_k
    # inclusive[k] = prod_{j >= k} m_j
    inclusive = keep.flip(1).cumprod(dim=1).flip(1)  # (B, K, h, w)
    after = torch.cat([inclusive[:, 1:], torch.ones_like(inclusive[:, :1])], dim=1)  # prod_{j > k}
    source_weight = inclusive[:, :1]  # (B, 1, h, w)
    target_weight = (target_windows * after).sum(dim=1, keepdim=True)  # (B, 1, h, w)
    return source_features * source_weight + target_features * target_weight


@dataclass
class TransporterOutput:
    """Result of `Transporter.forward`.

    Attributes:
        reconstruction: (B, C, H, W) reconstructed target frame in [0, 1] (bf16 under autocast).
        target_centres: (B, K, 2) float32, (y, x) in [-1, 1], keypoints of the target frame.
        target_windows: (B, K, h, w) float32 in (0, 1], their Gaussian windows.
        losses: {"reconstruction": scalar float32 mean squared error against the target}.
    """

    reconstruction: Tensor
    target_centres: Tensor
    target_windows: Tensor
    losses: dict[str, Tensor]

    @property
    def total(self) -> Tensor:
        """Scalar float32 sum of all losses, the value to minimise."""
        return sum(self.losses.values())  # type: ignore[return-value]


class Keypointer(nn.Module):
    """Psi: a `ConvEncoder` followed by a 1x1 conv to one unnormalised map per keypoint.

    Args:
        config: the architecture; Psi has the same conv blocks as Phi, with its own weights.
    """

    def __init__(self, config: TransporterConfig) -> None:
        super().__init__()
        self.encoder = ConvEncoder(
            config.in_channels, config.channels, config.kernels, config.strides, bn=config.bn
        )
        self.head = nn.Conv2d(config.channels[-1], config.num_keypoints, kernel_size=1)

    def forward(self, images: Tensor) -> Tensor:
        """(B, C, H, W) float in [0, 1] -> (B, K, h, w) keypoint maps on the feature grid."""
        return self.head(self.encoder(images)[-1])


class Transporter(nn.Module):
    """Transporter: keypoints learned by reconstructing a target frame from a source frame.

    Args:
        config: the architecture.
    """

    def __init__(self, config: TransporterConfig) -> None:
        super().__init__()
        self.config = config
        self._inference = InferenceCache()
        arch = (config.channels, config.kernels, config.strides)
        self.features = ConvEncoder(config.in_channels, *arch, bn=config.bn)
        self.keypointer = Keypointer(config)
        self.refine = ConvDecoder(
            config.channels[-1], *arch, out_channels=config.in_channels, bn=config.bn
        )

    def _inference_form(self) -> TransporterInference | None:
        """The folded inference form where it gives the modules' numbers: in eval mode without
        gradients; None otherwise (training mode uses batch statistics)."""
        if self.training or torch.is_grad_enabled():
            return None
        return self._inference.get(self, lambda: TransporterInference(self))

    def feature_maps(self, images: Tensor) -> list[Tensor]:
        """Phi's per-block feature maps (channels_last from the inference form: eval mode, no
        gradients).

        Args:
            images: (B, C, H, W) float in [0, 1].

        Returns:
            One (B, C_i, H_i, W_i) map per conv block; the last is the transported one.
        """
        fast = self._inference_form()
        return self.features(images) if fast is None else run_folded(fast.features, images)

    @property
    def feature_layers(self) -> tuple[int, ...]:
        """Phi's last layer (42 x 42 x 32 in the paper): the features it transports."""
        return (len(self.config.channels) - 1,)

    @property
    def feature_dim(self) -> int:
        """C of the pooled keypoint features: 32 for the paper's model."""
        return self.config.channels[-1]

    @property
    def inference_prefixes(self) -> tuple[str, ...]:
        """State-dict key prefixes of what `detect` and `feature_maps` use (no RefineNet)."""
        return ("features.", "keypointer.")

    @property
    def error_layers(self) -> tuple[int, ...]:
        """None: Transporter has no error maps."""
        return ()

    def detect(self, images: Tensor, windows: bool = True, mixed: bool = False) -> Keypoints:
        """Keypoints of a batch of frames (the interface shared with PermaKey).

        Runs with whatever grad mode and train/eval mode the caller set; evaluation should
        call it under ``torch.no_grad()`` after ``model.eval()``, which runs the inference
        form (`TransporterInference`: the same numbers up to float rounding, faster).

        Args:
            images: (B, C, H, W) float in [0, 1], H = W = config.image_size.
            windows: draw the Gaussian windows (None in the result otherwise).
            mixed: the keypointer's conv blocks in bf16, its 1 x 1 head in float32
                (`permakey.keypoints.KeypointModel.detect`); the inference form only.

        Returns:
            `Keypoints` with centres (B, K, 2) and windows (B, K, h, w), float32.
        """
        fast = self._inference_form()
        if fast is None:
            check_mixed_in_eval(mixed)
            maps = self.keypointer(images)
        else:
            maps = fast.keypoint_maps(images, mixed)
        centres = centres_from_maps(maps)  # (B, K, 2), float32
        _, _, h, w = maps.shape
        drawn = gaussian_windows(centres, h, w, self.config.gaussian_sigma) if windows else None
        return Keypoints(centres=centres, windows=drawn)

    def forward(self, source: Tensor, target: Tensor) -> TransporterOutput:
        """Reconstructs ``target`` from ``source`` by transporting features around keypoints.

        Args:
            source: (B, C, H, W) float in [0, 1], frame a; it receives no gradient.
            target: (B, C, H, W) float in [0, 1], frame b of the same episode.

        Returns:
            `TransporterOutput`; the loss is computed in float32 even under autocast.
        """
        if source.shape != target.shape:
            raise ValueError(
                f"source {tuple(source.shape)} and target {tuple(target.shape)} differ in shape"
            )
        with torch.no_grad():
            source_features = self.features(source)[-1]
            source_windows = self.detect(source).windows
        target_features = self.features(target)[-1]
        target_keypoints = self.detect(target)
        transported = transport(
            source_features, target_features, source_windows, target_keypoints.windows
        )
        reconstruction = self.refine(transported)
        loss = F.mse_loss(reconstruction.float(), target.float())
        return TransporterOutput(
            reconstruction=reconstruction,
            target_centres=target_keypoints.centres,
            target_windows=target_keypoints.windows,
            losses={"reconstruction": loss},
        )


class TransporterInference:
    """What `Transporter.detect` and `feature_maps` run in eval mode without gradients: Phi
    and Psi with every BatchNorm folded into its conv, channels_last activations
    (`permakey.models.blocks.FoldedConv`). New tensors, built from the model's; the modules
    and their state dict are not touched.
    """

    def __init__(self, model: Transporter) -> None:
        self.features = fold_encoder(model.features)
        self.keypointer = fold_encoder(model.keypointer.encoder)
        # bf16 copies for mixed precision, made on first use (not every device holds bf16).
        self.keypointer_bf16: list[FoldedConv] | None = None
        head = model.keypointer.head
        self.head = FoldedConv(*fold_batchnorm(head.weight, head.bias, None), 1, relu=False)

    def keypoint_maps(self, images: Tensor, mixed: bool = False) -> Tensor:
        """`Keypointer.forward`: (B, C, H, W) images -> (B, K, h, w) float32 maps; ``mixed``:
        the conv blocks in bf16, the head in float32."""
        if mixed:
            if self.keypointer_bf16 is None:
                self.keypointer_bf16 = [conv.to(torch.bfloat16) for conv in self.keypointer]
            body = run_folded(self.keypointer_bf16, images.to(torch.bfloat16))[-1].float()
        else:
            body = run_folded(self.keypointer, images)[-1]
        return self.head(body)
