"""Frame preprocessing shared by collection, datasets, loaded models and environment wrappers.

One place says what a stored frame is, so that an agent's wrapper feeds a model exactly what
its training dataset held: raw ALE frames (210, 160, 3) uint8 RGB are resized to
`FRAME_SIZE` x `FRAME_SIZE` and stored channels-last; models take (B, 3, H, W) floats in
[0, 1] (`to_float`).

Resizing 210 x 160 -> 84 x 84: "area" (the default) averages, for each stored pixel, the raw
pixels whose centres fall in its footprint (Pillow's BOX filter). Every raw pixel contributes
to a stored pixel, so a one-pixel bullet survives as a faint blob, where "nearest" samples one
raw pixel in 2.5 x 1.9 and drops most of them. Pillow is already a dependency, where OpenCV's
INTER_AREA would tie the core install to the ``objects`` extra. "authors" is what the authors'
code did: scikit-image's ``resize(frame / 255, (84, 84), order=0)``, whose default
anti-aliasing first blurs the frame with a Gaussian of standard deviation (scale - 1) / 2 raw
pixels per axis (0.75 rows, 0.45 columns; mirrored at the border) and then samples the
nearest raw pixel of each stored pixel's centre: not the plain nearest neighbour it reads as.

Every method is linear and separable: `resize_weights` gives its matrix along one axis.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import torch

RAW_SHAPE = (210, 160, 3)
FRAME_SIZE = 84
RESIZE_METHODS = ("area", "nearest", "authors")
DEFAULT_RESIZE = "area"
# Channel order of stored frames and model inputs.
CHANNELS = "RGB"


def _pillow_filters() -> dict[str, Any]:
    from PIL import Image

    return {"area": Image.Resampling.BOX, "nearest": Image.Resampling.NEAREST}


def resize_frame(
    frame: np.ndarray, size: int = FRAME_SIZE, method: str = DEFAULT_RESIZE
) -> np.ndarray:
    """Resizes one RGB frame to size x size.

    Args:
        frame: (H, W, 3) uint8.
        size: output height and width in pixels.
        method: "area" (box average: keeps one-pixel objects faintly), "nearest", or
            "authors" (Gaussian blur, then nearest: the authors' scikit-image call).

    Returns:
        (size, size, 3) uint8.
    """
    if method == "authors":
        rows = resize_weights(method, frame.shape[0], size)  # (size, H)
        cols = resize_weights(method, frame.shape[1], size)  # (size, W)
        blurred = np.tensordot(rows, frame.astype(np.float64), axes=(1, 0))  # (size, W, 3)
        resized = np.tensordot(cols, blurred, axes=(1, 1)).transpose(1, 0, 2)  # (size, size, 3)
        return np.clip(np.rint(resized), 0, 255).astype(np.uint8)
    from PIL import Image

    resample = _pillow_filters()[method]
    return np.asarray(Image.fromarray(frame).resize((size, size), resample))


@cache
def resize_weights(method: str, source: int, target: int) -> np.ndarray:
    """The linear map of `resize_frame` along one axis: stored pixel i is the sum over raw
    pixels k of ``weights[i, k]`` times raw pixel k (before rounding to uint8).

    Pillow's methods are measured by resizing an identity matrix along that axis, so the
    matrix is exactly the one `resize_frame` applies (Pillow's own pixel centres and rounding
    of the scale included); "authors" is computed as scikit-image computes it.

    Args:
        method: one of `RESIZE_METHODS`.
        source: pixels along the axis before resizing (e.g. 210).
        target: pixels after (e.g. 84).

    Returns:
        (target, source) float64, each row >= 0 and summing to 1 (read-only, cached).
    """
    if method not in RESIZE_METHODS:
        raise ValueError(f"unknown resize method {method!r}; choose from {RESIZE_METHODS}")
    if method == "authors":
        from scipy.ndimage import gaussian_filter1d

        scale = source / target
        blur = np.eye(source)
        sigma = max(0.0, (scale - 1) / 2)
        if sigma > 0:  # column k of ``blur``: how raw pixel k spreads over the blurred axis
            blur = gaussian_filter1d(blur, sigma, axis=0, mode="mirror")
        # scikit-image samples output pixel i at source coordinate scale * (i + 0.5) - 0.5,
        # rounded to the nearest pixel.
        centres = np.floor(scale * (np.arange(target) + 0.5)).astype(np.int64)
        weights = blur[centres]
    else:
        from PIL import Image

        eye = Image.fromarray(np.eye(source, dtype=np.float32), mode="F")
        # Resized along the rows only: column k becomes the stored rows' weights of raw pixel k.
        weights = np.asarray(eye.resize((source, target), _pillow_filters()[method]), np.float64)
    weights = weights / weights.sum(axis=1, keepdims=True)
    weights.flags.writeable = False
    return weights


def scale_boxes(boxes: np.ndarray, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
    """Scales (x, y, w, h) boxes from one frame size to another.

    Args:
        boxes: (n, 4) float (x, y, w, h) in pixels of a from_hw frame.
        from_hw: (height, width) of the frame the boxes refer to, e.g. (210, 160).
        to_hw: (height, width) of the target frame, e.g. (84, 84).

    Returns:
        (n, 4) float32 boxes in pixels of the target frame.
    """
    sy, sx = to_hw[0] / from_hw[0], to_hw[1] / from_hw[1]
    return (np.asarray(boxes, np.float64).reshape(-1, 4) * [sx, sy, sx, sy]).astype(np.float32)


def to_float(
    batch: torch.Tensor, device: torch.device | str, channels_last: bool = False
) -> torch.Tensor:
    """Moves a uint8 image batch to a device and scales it to floats in [0, 1].

    Args:
        batch: (B, 3, H, W) uint8.
        device: the target device.
        channels_last: return the channels_last memory format (faster convolutions on CPU).

    Returns:
        (B, 3, H, W) float32 in [0, 1] on ``device``.
    """
    if batch.dtype != torch.uint8:
        raise ValueError(f"expected a uint8 batch, got {batch.dtype}")
    images = batch.to(device, non_blocking=True).float().div_(255.0)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images
