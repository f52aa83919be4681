"""Frame preprocessing shared by collection, datasets, loaded models and environment wrappers.

One place says what a stored frame is, so that an agent's wrapper feeds a model exactly what
its training dataset held: raw ALE frames (210, 160, 3) uint8 RGB are resized to
`FRAME_SIZE` x `FRAME_SIZE` and stored channels-last; models take (B, 3, H, W) floats in
[0, 1] (`to_float`).

Resizing 210 x 160 -> 84 x 84: "area" (the default) averages, for each stored pixel, the raw
pixels whose centres fall in its footprint (Pillow's BOX filter). Every raw pixel contributes
to a stored pixel, so a one-pixel bullet survives as a faint blob, where "nearest" (what the
authors used) samples one raw pixel in 2.5 x 1.9 and drops most of them. Pillow is already a
dependency, where OpenCV's INTER_AREA would tie the core install to the ``objects`` extra.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

RAW_SHAPE = (210, 160, 3)
FRAME_SIZE = 84
RESIZE_METHODS = ("area", "nearest")
DEFAULT_RESIZE = "area"
# Channel order of stored frames and model inputs.
CHANNELS = "RGB"


def _resize_methods() -> dict[str, Any]:
    from PIL import Image

    return {"area": Image.Resampling.BOX, "nearest": Image.Resampling.NEAREST}


def resize_frame(
    frame: np.ndarray, size: int = FRAME_SIZE, method: str = DEFAULT_RESIZE
) -> np.ndarray:
    """Resizes one RGB frame to size x size.

    Args:
        frame: (H, W, 3) uint8.
        size: output height and width in pixels.
        method: "area" (box average: keeps one-pixel objects faintly) or "nearest".

    Returns:
        (size, size, 3) uint8.
    """
    from PIL import Image

    resample = _resize_methods()[method]
    return np.asarray(Image.fromarray(frame).resize((size, size), resample))


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
