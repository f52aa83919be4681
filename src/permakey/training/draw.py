"""Small pictures for TensorBoard: frames with keypoints, heat maps, tiles.

A stop-gap until the visualisation room provides the shared drawing functions.
"""

from __future__ import annotations

import torch

from permakey.keypoints import to_pixels

# Distinct colours, RGB in [0, 1], cycled over keypoints.
PALETTE = torch.tensor(
    [
        [1.0, 0.1, 0.1],
        [0.1, 0.9, 0.1],
        [0.2, 0.4, 1.0],
        [1.0, 0.9, 0.1],
        [1.0, 0.1, 1.0],
        [0.1, 1.0, 1.0],
        [1.0, 0.55, 0.0],
        [1.0, 1.0, 1.0],
    ]
)


def draw_keypoints(images: torch.Tensor, centres: torch.Tensor, radius: int = 1) -> torch.Tensor:
    """Paints a filled square per keypoint onto copies of the images.

    Args:
        images: (N, 3, H, W) float in [0, 1].
        centres: (N, K, 2) float, (y, x) in [-1, 1].
        radius: half the side of the square, in pixels.

    Returns:
        (N, 3, H, W) float in [0, 1], CPU.
    """
    out = images.detach().float().cpu().clone()
    n, _, h, w = out.shape
    pixels = to_pixels(centres.detach().float().cpu(), h, w).round().long()  # (N, K, 2)
    for k in range(pixels.shape[1]):
        colour = PALETTE[k % len(PALETTE)].view(3, 1, 1)
        for i in range(n):
            row, col = pixels[i, k].tolist()
            out[
                i,
                :,
                max(row - radius, 0) : row + radius + 1,
                max(col - radius, 0) : col + radius + 1,
            ] = colour
    return out


def heatmap(maps: torch.Tensor) -> torch.Tensor:
    """Grey-scale maps as RGB images (black -> red -> yellow -> white), each min-max scaled.

    Args:
        maps: (N, H, W) float.

    Returns:
        (N, 3, H, W) float in [0, 1], CPU.
    """
    maps = maps.detach().float().cpu()
    low = maps.amin(dim=(1, 2), keepdim=True)
    high = maps.amax(dim=(1, 2), keepdim=True)
    v = (maps - low) / (high - low).clamp_min(1e-12)  # (N, H, W) in [0, 1]
    return torch.stack([(3 * v).clamp(0, 1), (3 * v - 1).clamp(0, 1), (3 * v - 2).clamp(0, 1)], 1)


def tile(rows: list[torch.Tensor], gap: int = 2) -> torch.Tensor:
    """Lays out rows of images in a grid.

    Args:
        rows: each (N, 3, H, W) float in [0, 1], all of the same shape; one row per entry.
        gap: pixels of white between images.

    Returns:
        (3, rows * (H + gap) - gap, N * (W + gap) - gap) float in [0, 1].
    """
    n, c, h, w = rows[0].shape
    out = torch.ones(c, len(rows) * (h + gap) - gap, n * (w + gap) - gap)
    for r, row in enumerate(rows):
        for i in range(n):
            out[:, r * (h + gap) : r * (h + gap) + h, i * (w + gap) : i * (w + gap) + w] = row[i]
    return out
