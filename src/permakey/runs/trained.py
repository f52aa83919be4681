"""`TrainedModel`: a keypoint model with what it takes in and where it came from.

The one class that wraps a trained model. Code that consumes keypoints (evaluation, figures,
environment wrappers, collection policies) calls ``trained.keypoints(frames)`` and never asks
which method made them: what differs between methods (error maps or not, which layers give
features) is answered by the model (`permakey.keypoints.KeypointModel`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from permakey.data.frames import to_float
from permakey.devices import autocast, resolve_device
from permakey.errors import UserError
from permakey.keypoints import to_pixels
from permakey.models.registry import model_kind
from permakey.runs.folder import (
    RUN_JSON,
    FrameSpec,
    load_weights,
    read_run_json,
    run_frames,
    weights_path,
)
from permakey.runs.pretrained import is_pretrained, read_pretrained

PRECISIONS = ("fp32", "bf16", "mixed")
# Frames per forward pass of `TrainedModel.keypoints` by default. On a CPU, 16: every tensor
# of a 16-frame pass stays below glibc's largest mmap threshold (32 MiB), so its memory comes
# back from the heap on the next pass instead of being mapped and faulted in afresh, as the
# activations of 256 frames are (BENCHMARKS.md, "Keypoints of the `paper` models"); elsewhere
# 256, what fills an accelerator.
CPU_BATCH_SIZE = 16
DEVICE_BATCH_SIZE = 256


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
            window (`TrainedModel.feature_dim` gives C); None when not asked for.
        error_stack: (N, L, S, S) float32 in [0, 1], the normalised error maps the keypoints
            were placed on; None when not asked for or for models without error maps.
        error_maps: per error layer (`TrainedModel.error_layers`), (N, h_l, w_l) float32 >= 0;
            None when not asked for or for models without error maps.
    """

    centres: torch.Tensor
    pixels: torch.Tensor
    windows: torch.Tensor | None = None
    features: torch.Tensor | None = None
    error_stack: torch.Tensor | None = None
    error_maps: list[torch.Tensor] | None = None


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


# Entries of the training config that say how a run was executed, not what was trained.
_EXECUTION_ONLY = ("device", "workers", "progress", "log_every", "in_memory")


def _without_seeds(value: Any) -> Any:
    """A JSON value with every key named 'seed' removed, recursively."""
    if isinstance(value, dict):
        return {k: _without_seeds(v) for k, v in value.items() if k != "seed"}
    if isinstance(value, list):
        return [_without_seeds(v) for v in value]
    return value


def seed_group(run_info: dict[str, Any]) -> str:
    """A key equal for runs that differ only in their seeds.

    Compares the model kind, the model config and the training config of run.json, without
    any entry named "seed" and without the training config's execution details (device,
    workers, logging).
    """
    train = {k: v for k, v in run_info.get("train", {}).items() if k not in _EXECUTION_ONLY}
    setting = {"kind": run_info.get("kind"), "model": run_info.get("model"), "train": train}
    return json.dumps(_without_seeds(setting), sort_keys=True)


def check_uint8(frames: np.ndarray | torch.Tensor) -> None:
    """Checks that frames are a numpy array or dense tensor of uint8 values (0-255).

    Raises:
        ValueError: anything else, saying what it got; floats holding NaN or inf say so,
            and floats get the conversion from [0, 1] spelled out.
    """
    if isinstance(frames, torch.Tensor):
        if frames.layout != torch.strided:
            raise ValueError(f"frames must be a dense tensor, got layout {frames.layout}")
        if frames.dtype == torch.uint8:
            return
        floating = frames.is_floating_point()
        finite = not floating or bool(torch.isfinite(frames).all())
    elif isinstance(frames, np.ndarray):
        if frames.dtype == np.uint8:
            return
        floating = np.issubdtype(frames.dtype, np.floating)
        finite = not floating or bool(np.isfinite(frames).all())
    else:
        raise ValueError(
            f"frames must be a numpy array or torch tensor, got {type(frames).__name__}"
        )
    message = f"frames must be uint8 (0-255), got dtype {frames.dtype}"
    if not finite:
        message += " holding NaN or inf values"
    if floating:
        message += "; for floats in [0, 1]: (frames * 255).round().clip(0, 255) as uint8"
    raise ValueError(message)


class TrainedModel:
    """A keypoint model in eval mode, turning uint8 frames into keypoints.

    Args:
        model: a `permakey.keypoints.KeypointModel` (`PermaKey`, `Transporter`).
        frames: the frames it takes; default: S x S RGB frames resized with "area", S the
            model's ``config.image_size``.
        precision: "fp32"; "bf16" autocast; or "mixed": bf16 for the layers that carry most
            of the arithmetic and keep the keypoints within 0.5 px of float32 (PermaKey's LSP
            first layers, Transporter's keypointer blocks), float32 elsewhere. bf16 pays only
            where the device multiplies it natively (GPUs, CPUs with AVX512-BF16 or AMX).
        run: the run folder it came from, if any.
        weights: the weights file it came from, if any.
        info: the run's run.json, if any.
        name: a label for tables and figures; default: the run folder's name, else the
            model class's.

    Raises:
        ValueError: an unknown precision.
    """

    def __init__(
        self,
        model: nn.Module,
        frames: FrameSpec | None = None,
        precision: str = "fp32",
        run: Path | None = None,
        weights: Path | None = None,
        info: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        self.model = model.eval()
        self.config = model.config
        self.frames = frames or FrameSpec(model.config.image_size)
        self.precision = precision
        self.run = Path(run) if run is not None else None
        self.weights = weights
        self.info = info
        self.kind = info["kind"] if info else type(model).__name__.lower()
        self.name = name or (self.run.name if self.run else type(model).__name__)
        self.device = next(model.parameters()).device
        self._sha256: str | None = None

    @property
    def seed(self) -> int | None:
        """The training seed, where known."""
        return (self.info or {}).get("train", {}).get("seed")

    def seed_group(self) -> str | None:
        """Equal for runs that differ only in their seeds (`seed_group`); None without a run."""
        return seed_group(self.info) if self.info else None

    def identity(self) -> dict[str, Any]:
        """What identifies the model in results: kind, run folder, weights file, its sha256,
        and the run's run.json."""
        if self._sha256 is None and self.weights is not None:
            self._sha256 = hashlib.sha256(self.weights.read_bytes()).hexdigest()
        return {
            "kind": self.kind,
            "run": str(self.run.resolve()) if self.run else None,
            "weights": self.weights.name if self.weights else None,
            "sha256": self._sha256,
            "run_json": self.info,
        }

    @property
    def num_keypoints(self) -> int:
        """K."""
        return self.config.num_keypoints

    @property
    def feature_dim(self) -> int:
        """C, the length of each keypoint's feature vector: 96 for the paper's PermaKey, 32 for
        its Transporter (the model's `feature_layers`' channels, concatenated)."""
        return self.model.feature_dim

    @property
    def error_layers(self) -> tuple[int, ...]:
        """Labels of the layers whose error maps `keypoints` can return; empty for none."""
        return self.model.error_layers

    def _as_batch(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Checks frames and returns them as a (N, 3, S, S) uint8 tensor."""
        size = self.frames.size
        check_uint8(frames)
        if isinstance(frames, np.ndarray):
            # torch takes no negative strides (flipped arrays, even of one frame, which numpy
            # calls contiguous) and warns on read-only arrays (h5py slices, PIL images): a
            # copy is cheap here.
            if not frames.flags.writeable or any(stride < 0 for stride in frames.strides):
                frames = frames.copy()
            frames = torch.from_numpy(frames)
        shape = tuple(frames.shape)
        if len(shape) == 4 and shape[1:] == (size, size, 3):
            return frames.permute(0, 3, 1, 2)  # (N, 3, S, S)
        if len(shape) == 4 and shape[1:] == (3, size, size):
            return frames
        single = " (one frame: frames[None])" if shape in ((size, size, 3), (3, size, size)) else ""
        raise ValueError(
            f"frames must have shape (N, {size}, {size}, 3) or (N, 3, {size}, {size}), got "
            f"{shape}{single}"
        )

    @torch.no_grad()
    def keypoints(
        self,
        frames: np.ndarray | torch.Tensor,
        batch_size: int | None = None,
        windows: bool = True,
        features: bool = False,
        error_maps: bool = False,
    ) -> FrameKeypoints:
        """Keypoints of a batch of frames, without gradients, on the model's device.

        Args:
            frames: uint8 (N, S, S, 3) or (N, 3, S, S), numpy or torch (any device), S =
                ``frames.size`` (84), preprocessed as ``frames`` says.
            batch_size: frames per forward pass, >= 1; default `CPU_BATCH_SIZE` on a CPU,
                else `DEVICE_BATCH_SIZE` (the results do not depend on it).
            windows: also return the Gaussian windows (N * K * h * w floats: large for big N).
            features: also return per-keypoint features (`pool_features` of the model's
                ``feature_layers``, concatenated: (N, K, `feature_dim`)); from the maps
                ``detect`` returns where it computed them (PermaKey), else one more pass.
            error_maps: also return the error stack and the per-layer error maps, for models
                that have them (N * L * S * S floats: large for big N).

        Returns:
            `FrameKeypoints` on the CPU.

        Raises:
            ValueError: frames of another shape, dtype or size, or a ``batch_size`` that is
                not a positive integer.
        """
        if batch_size is None:
            batch_size = CPU_BATCH_SIZE if self.device.type == "cpu" else DEVICE_BATCH_SIZE
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        batch = self._as_batch(frames)
        keep_maps = error_maps and bool(self.error_layers)
        parts: dict[str, list] = {"centres": [], "windows": [], "features": [], "stack": []}
        layer_maps: list[list[torch.Tensor]] = [[] for _ in self.error_layers]
        for start in range(0, len(batch), batch_size):
            images = to_float(batch[start : start + batch_size], self.device)
            with autocast(self.device, self.precision):
                # Windows are drawn only where they are returned or pool the features.
                found = self.model.detect(
                    images, windows=windows or features, mixed=self.precision == "mixed"
                )
                maps = []
                if features:
                    maps = found.feature_maps or self.model.feature_maps(images)
            parts["centres"].append(found.centres.float().cpu())
            if windows:
                parts["windows"].append(found.windows.float().cpu())
            if features:  # pooled in float32, outside autocast
                pooled = [pool_features(maps[i], found.windows) for i in self.model.feature_layers]
                parts["features"].append(torch.cat(pooled, dim=2).cpu())  # (B, K, C)
            if keep_maps:
                parts["stack"].append(found.error_stack.float().cpu())
                for kept, layer in zip(layer_maps, found.error_maps, strict=True):
                    kept.append(layer.float().cpu())
        k, size = self.num_keypoints, self.frames.size
        centres = torch.cat(parts["centres"]) if len(batch) else torch.zeros(0, k, 2)
        result = FrameKeypoints(centres, to_pixels(centres, size, size))
        if windows:
            result.windows = torch.cat(parts["windows"]) if len(batch) else torch.zeros(0, k, 0, 0)
        if features:
            result.features = (
                torch.cat(parts["features"]) if len(batch) else torch.zeros(0, k, self.feature_dim)
            )
        if keep_maps and len(batch):
            result.error_stack = torch.cat(parts["stack"])
            result.error_maps = [torch.cat(layer) for layer in layer_maps]
        return result


def load(
    run: str | Path, which: str = "best", device: str = "cpu", precision: str = "fp32"
) -> TrainedModel:
    """Loads a trained model from its run folder, without importing any training code.

    Args:
        run: the run folder written by `permakey train`, or ``"pretrained:GAME"`` for a model
            that ships with the package (`permakey.runs.pretrained`; ``which`` is ignored).
        which: "best" (lowest validation loss) or "last" (last checkpoint).
        device: "cpu", "cuda", "cuda:N", "mps" or "auto".
        precision: "fp32", "bf16" or "mixed", as `TrainedModel`'s.

    Returns:
        `TrainedModel` in eval mode.

    Raises:
        UserError: missing run folder, run.json or weights file, or a corrupted one (named).
        ValueError: bad ``which`` or ``precision``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if is_pretrained(run):
        model, frames, info, path, name = read_pretrained(run)
        return TrainedModel(
            model.to(resolve_device(device)), frames, precision, weights=path, info=info, name=name
        )
    run = Path(run)
    path = weights_path(run, which)
    info = read_run_json(run)
    try:
        kind = model_kind(info["kind"])
        config = kind.config_from_dict(info["model"])
    except (ValueError, TypeError) as err:
        raise UserError(f"{run}/{RUN_JSON} is corrupted ({err})") from None
    model = kind.build(config)
    load_weights(model, path)
    frames = run_frames(run, info, config.image_size)
    return TrainedModel(
        model.to(resolve_device(device)), frames, precision, run=run, weights=path, info=info
    )


def unique_names(runs: list[str | Path]) -> list[str]:
    """Run folder names, made unique by their parent folder or an index where they clash."""
    names = [Path(run).name or str(run) for run in runs]
    for i, name in enumerate(names):
        if names.count(name) > 1:
            parent = Path(runs[i]).parent.name
            names[i] = f"{parent}/{name}" if parent else f"{name}#{i}"
    if len(set(names)) < len(names):
        names = [f"{name}#{i}" for i, name in enumerate(names)]
    return names


def load_runs(
    runs: list[str | Path], which: str = "best", device: str = "cpu", precision: str = "fp32"
) -> list[TrainedModel]:
    """Several runs, each named by its folder (`unique_names`), e.g. for one table or figure."""
    models = [load(run, which, device, precision) for run in runs]
    for model, name in zip(models, unique_names(runs), strict=True):
        model.name = name
    return models
