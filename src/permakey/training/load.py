"""`permakey.load(RUN)`: a trained model behind one interface, whichever method made it.

Code that consumes keypoints (evaluation, figures, environment wrappers) calls
``loaded.keypoints(frames)`` and never asks which model produced them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from permakey.data.datasets import to_float
from permakey.keypoints import to_pixels
from permakey.training.distributed import autocast, resolve_device
from permakey.training.run import load_weights, weights_path


@dataclass
class FrameKeypoints:
    """Keypoints of a batch of frames, on the CPU.

    Attributes:
        centres: (N, K, 2) float32, (y, x) in [-1, 1] (`permakey.keypoints`).
        pixels: (N, K, 2) float32, (row, col) in pixels of the frames.
        windows: (N, K, h, w) float32 in (0, 1], Gaussian windows on the model's keypoint-map
            grid (21 x 21 for PermaKey, 42 x 42 for Transporter at 84 x 84); None when not
            asked for.
        features: (N, K, C) float32 >= 0, each keypoint's encoder features pooled under its
            window (`LoadedModel.feature_layers` names the layers, `feature_dim` gives C);
            None when not asked for.
    """

    centres: torch.Tensor
    pixels: torch.Tensor
    windows: torch.Tensor | None
    features: torch.Tensor | None = None


def pool_features(feature_map: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """Per-keypoint feature vectors: a feature map averaged under each keypoint's window.

    Each window is resized to the feature map's grid (bilinear with aligned corners, which
    keeps the `permakey.keypoints` convention: the first and last pixel centres stay at -1 and
    +1), normalised to sum 1, and the feature map is summed with those weights.

    Args:
        feature_map: (B, C, h, w) float.
        windows: (B, K, h', w') float >= 0, not all zero, e.g. `Keypoints.windows`.

    Returns:
        (B, K, C) float32; non-negative where the feature map is (ReLU features).
    """
    h, w = feature_map.shape[-2:]
    windows = windows.float()
    if windows.shape[-2:] != (h, w):
        windows = F.interpolate(windows, size=(h, w), mode="bilinear", align_corners=True)
    weights = windows / windows.sum(dim=(2, 3), keepdim=True).clamp_min(1e-12)  # (B, K, h, w)
    return torch.einsum("bkhw,bchw->bkc", weights, feature_map.float())


class LoadedModel:
    """A model in eval mode with its config, turning uint8 frames into keypoints.

    Args:
        model: a model with ``detect(images) -> Keypoints`` and ``config.image_size``.
        kind: "permakey" or "transporter".
        config: the model's config.
        run: the run folder it came from, if any.
        weights: the weights file it came from, if any.
        precision: "fp32" or "bf16" (autocast) for inference.
    """

    def __init__(
        self,
        model: nn.Module,
        kind: str,
        config: Any,
        run: Path | None = None,
        weights: Path | None = None,
        precision: str = "fp32",
    ) -> None:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.model = model.eval()
        self.kind = kind
        self.config = config
        self.run = run
        self.weights = weights
        self.precision = precision
        self.device = next(model.parameters()).device
        self._sha256: str | None = None

    def identity(self) -> dict[str, Any]:
        """What identifies the model in results: kind, run folder, weights file and its sha256."""
        if self._sha256 is None and self.weights is not None:
            self._sha256 = hashlib.sha256(self.weights.read_bytes()).hexdigest()
        return {
            "kind": self.kind,
            "run": str(self.run.resolve()) if self.run else None,
            "weights": self.weights.name if self.weights else None,
            "sha256": self._sha256,
        }

    @property
    def feature_layers(self) -> tuple[int, ...]:
        """Indices into ``model.feature_maps(images)`` of the layers pooled into features.

        PermaKey: the VAE encoder layers that have a local spatial prediction network
        (``lsp_layers``, (0, 1) in the paper: 84 x 84 x 32 and 42 x 42 x 64), the features
        whose unpredictability places the keypoints. Transporter: Phi's last layer (42 x 42 x
        32 in the paper), the features it transports around keypoints.
        """
        if self.kind == "permakey":
            return tuple(self.config.lsp_layers)
        return (len(self.config.channels) - 1,)

    @property
    def feature_dim(self) -> int:
        """C, the length of each keypoint's feature vector: 96 for the paper's PermaKey, 32 for
        its Transporter (the pooled layers' channels, concatenated in `feature_layers` order)."""
        channels = self.config.encoder_channels if self.kind == "permakey" else self.config.channels
        return sum(channels[i] for i in self.feature_layers)

    def _as_batch(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Checks frames and returns them as a (N, 3, S, S) uint8 tensor."""
        size = self.config.image_size
        if isinstance(frames, np.ndarray):
            # torch warns on read-only arrays (h5py slices, PIL images); a copy is cheap here.
            frames = torch.from_numpy(frames if frames.flags.writeable else frames.copy())
        if not isinstance(frames, torch.Tensor):
            raise ValueError(
                f"frames must be a numpy array or torch tensor, got {type(frames).__name__}"
            )
        if frames.dtype != torch.uint8:
            raise ValueError(f"frames must be uint8 (0-255), got dtype {frames.dtype}")
        shape = tuple(frames.shape)
        if len(shape) == 4 and shape[1:] == (size, size, 3):
            return frames.permute(0, 3, 1, 2)  # (N, 3, S, S)
        if len(shape) == 4 and shape[1:] == (3, size, size):
            return frames
        raise ValueError(
            f"frames must have shape (N, {size}, {size}, 3) or (N, 3, {size}, {size}), got {shape}"
        )

    @torch.no_grad()
    def keypoints(
        self,
        frames: np.ndarray | torch.Tensor,
        batch_size: int = 256,
        windows: bool = True,
        features: bool = False,
    ) -> FrameKeypoints:
        """Keypoints of a batch of frames, without gradients, on the model's device.

        Args:
            frames: uint8 (N, S, S, 3) or (N, 3, S, S), numpy or torch (any device), S = the
                model's image size (84).
            batch_size: frames per forward pass.
            windows: also return the Gaussian windows (N * K * h * w floats: large for big N).
            features: also return per-keypoint features (`pool_features` of the
                `feature_layers`, concatenated: (N, K, `feature_dim`)). For PermaKey this runs
                the encoder a second time.

        Returns:
            `FrameKeypoints` on the CPU.

        Raises:
            ValueError: frames of another shape, dtype or size.
        """
        batch = self._as_batch(frames)
        centres, window_list, feature_list = [], [], []
        for start in range(0, len(batch), batch_size):
            images = to_float(batch[start : start + batch_size], self.device)
            with autocast(self.device, self.precision):
                found = self.model.detect(images)
                maps = self.model.feature_maps(images) if features else []
            if features:  # pooled in float32, outside autocast
                pooled = [pool_features(maps[i], found.windows) for i in self.feature_layers]
                feature_list.append(torch.cat(pooled, dim=2).cpu())  # (B, K, C)
            centres.append(found.centres.float().cpu())
            if windows:
                window_list.append(found.windows.float().cpu())
        size = self.config.image_size
        k = self.config.num_keypoints
        all_centres = torch.cat(centres) if centres else torch.zeros(0, k, 2)
        all_windows = all_features = None
        if windows:
            all_windows = torch.cat(window_list) if window_list else torch.zeros(0, k, 0, 0)
        if features:
            all_features = (
                torch.cat(feature_list) if feature_list else torch.zeros(0, k, self.feature_dim)
            )
        return FrameKeypoints(
            all_centres, to_pixels(all_centres, size, size), all_windows, all_features
        )


def load(
    run: str | Path, which: str = "best", device: str = "cpu", precision: str = "fp32"
) -> LoadedModel:
    """Loads a trained model from its run folder.

    Args:
        run: the run folder written by `permakey train`.
        which: "best" (lowest validation loss) or "last" (last checkpoint).
        device: "cpu", "cuda", "mps" or "auto".
        precision: "fp32", or "bf16" autocast for inference.

    Returns:
        `LoadedModel` in eval mode.

    Raises:
        UserError: missing run folder, run.json or weights file, or a corrupted one (named).
        ValueError: bad ``which`` or ``precision``.
    """
    from permakey.training import run_configs

    run = Path(run)
    path = weights_path(run, which)
    method, _, model_config = run_configs(run)
    model = method.build_model(model_config)
    load_weights(model, path)
    model = model.to(resolve_device(device))
    return LoadedModel(model, method.kind, model_config, run, path, precision)
