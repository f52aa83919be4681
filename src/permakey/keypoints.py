"""The keypoint convention, defined once for every model, metric, figure and wrapper.

A keypoint centre is a pair ``(y, x)`` in ``[-1, 1]``: ``y`` runs from the top row (-1) to the
bottom row (+1), ``x`` from the left column (-1) to the right column (+1). In an ``H x W``
image the centre ``(y, x)`` lies at pixel ``(row, col) = ((y + 1) / 2 * (H - 1),
(x + 1) / 2 * (W - 1))``, i.e. -1 and +1 are the centres of the first and last pixels.

Centres are computed from keypoint feature maps by the per-axis spatial softmax of
Jakab et al. (2018) (or, as an option, one softmax over the whole map), and drawn back as
isotropic Gaussian windows on a grid of the same convention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F


@dataclass
class Keypoints:
    """What every keypoint model returns from ``detect``; all that consumers may rely on.

    Attributes:
        centres: (B, K, 2) float, (y, x) in [-1, 1].
        windows: (B, K, h, w) float in [0, 1], Gaussian windows on the model's map grid; None
            where ``detect`` was asked not to draw them (``windows=False``).
        error_stack: (B, L, H, W) float32 in [0, 1], the normalised error maps the keypoints
            were placed on (PermaKey); None for models without error maps.
        error_maps: per error layer (`KeypointModel.error_layers`), (B, h_l, w_l) float32 >= 0
            on the layer's own grid; None for models without error maps.
        feature_maps: what ``feature_maps(images)`` gives, where ``detect`` computed it on the
            way (PermaKey: its LSP networks read them), so that pooling keypoint features
            needs no second pass; None otherwise.
    """

    centres: torch.Tensor
    windows: torch.Tensor | None
    error_stack: torch.Tensor | None = None
    error_maps: list[torch.Tensor] | None = None
    feature_maps: list[torch.Tensor] | None = None


class KeypointModel(Protocol):
    """What a keypoint model answers, so that no consumer asks which method made it.

    Both `permakey.models.permakey.PermaKey` and `permakey.models.transporter.Transporter`
    implement it; a new keypoint method implements it too (ARCHITECTURE.md).

    Attributes:
        config: the model's config, with ``image_size`` (S) and ``num_keypoints`` (K).
        feature_layers: indices into ``feature_maps(images)`` of the layers pooled into
            per-keypoint features.
        feature_dim: C, the pooled layers' channels summed.
        error_layers: labels of the layers whose error maps ``detect`` returns (PermaKey's
            LSP layers); empty for models without error maps.
        inference_prefixes: state-dict key prefixes of the parameters and buffers that
            ``detect`` and ``feature_maps`` use (what a pretrained model ships).
    """

    config: Any
    feature_layers: tuple[int, ...]
    feature_dim: int
    error_layers: tuple[int, ...]
    inference_prefixes: tuple[str, ...]

    def detect(self, images: torch.Tensor, windows: bool = True, mixed: bool = False) -> Keypoints:
        """Keypoints of (B, 3, S, S) float images in [0, 1]; ``windows=False`` skips drawing
        their Gaussian windows (``Keypoints.windows`` is None). ``mixed``: bf16 for the
        layers that carry most of the arithmetic and keep the keypoints within 0.5 px of
        float32, float32 elsewhere (eval mode without gradients; a ValueError otherwise)."""

    def feature_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer feature maps (B, C_l, H_l, W_l) of (B, 3, S, S) float images."""


def to_pixels(centres: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Converts centres in [-1, 1] to pixel coordinates.

    Args:
        centres: (..., 2) float, (y, x) in [-1, 1].
        height: image height H in pixels.
        width: image width W in pixels.

    Returns:
        (..., 2) float, (row, col) with row in [0, H - 1] and col in [0, W - 1].
    """
    scale = centres.new_tensor([height - 1, width - 1])
    return (centres + 1.0) / 2.0 * scale


def from_pixels(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of `to_pixels`: (..., 2) (row, col) in pixels -> (..., 2) (y, x) in [-1, 1]."""
    scale = pixels.new_tensor([height - 1, width - 1])
    return pixels / scale * 2.0 - 1.0


def grid(size: int, device: torch.device | None = None, dtype=torch.float32) -> torch.Tensor:
    """(size,) coordinates of pixel centres along one axis, from -1 to 1."""
    return torch.linspace(-1.0, 1.0, size, device=device, dtype=dtype)


def axis_distributions(
    maps: torch.Tensor, joint: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The distributions over rows and over columns whose expectations are the centres.

    Per axis (Jakab et al. 2018; the default): for each axis the map is averaged over the
    other axis and turned into a distribution by a softmax. ``joint``: one softmax over all
    H * W cells (Finn et al. 2016), summed over the other axis; a small bright blob then weighs
    its own logit instead of its logit averaged with a whole row's, and two blobs cannot pull
    the centre to the row of one and the column of the other.

    Args:
        maps: (B, K, H, W) float, one unnormalised map per keypoint.
        joint: one softmax over the whole map instead of one per axis.

    Returns:
        (B, K, H) and (B, K, W) float32, each summing to 1 over its last axis.
    """
    maps = maps.float()
    b, k, h, w = maps.shape
    if joint:
        prob = F.softmax(maps.flatten(2), dim=-1).view(b, k, h, w)  # (B, K, H, W)
        return prob.sum(dim=3), prob.sum(dim=2)
    return F.softmax(maps.mean(dim=3), dim=-1), F.softmax(maps.mean(dim=2), dim=-1)


def centres_from_maps(maps: torch.Tensor, joint: bool = False) -> torch.Tensor:
    """Keypoint centres from feature maps: the expected (y, x) under `axis_distributions`.

    Args:
        maps: (B, K, H, W) float, one unnormalised map per keypoint.
        joint: one softmax over the whole map instead of one per axis.

    Returns:
        (B, K, 2) float32, (y, x) in [-1, 1].
    """
    prob_y, prob_x = axis_distributions(maps, joint)  # (B, K, H), (B, K, W)
    y = (prob_y * grid(prob_y.shape[-1], maps.device)).sum(dim=-1)  # (B, K)
    x = (prob_x * grid(prob_x.shape[-1], maps.device)).sum(dim=-1)  # (B, K)
    return torch.stack([y, x], dim=-1)


def gaussian_windows(centres: torch.Tensor, height: int, width: int, sigma: float) -> torch.Tensor:
    """Isotropic Gaussian windows around keypoint centres.

    ``window[b, k, i, j] = exp(-((y_i - mu_y)^2 + (x_j - mu_x)^2) / sigma^2)`` with grid
    coordinates in [-1, 1] (note: ``sigma^2``, not ``2 sigma^2``, as in the paper). Computed as
    the outer product of the two axes' factors, so K * (H + W) exponentials instead of
    K * H * W (the same values up to float rounding).

    Args:
        centres: (B, K, 2) float, (y, x) in [-1, 1].
        height: grid height.
        width: grid width.
        sigma: window width in grid units (the paper's 0.1).

    Returns:
        (B, K, height, width) float in (0, 1], 1 at the centre.
    """
    ys = grid(height, centres.device, centres.dtype)  # (H,)
    xs = grid(width, centres.device, centres.dtype)  # (W,)
    along_y = torch.exp(-((ys.view(1, 1, -1) - centres[..., 0:1]) ** 2) / sigma**2)  # (B, K, H)
    along_x = torch.exp(-((xs.view(1, 1, -1) - centres[..., 1:2]) ** 2) / sigma**2)  # (B, K, W)
    return along_y.unsqueeze(-1) * along_x.unsqueeze(-2)  # (B, K, H, W)


# Minimum separation of error-map peaks (Chebyshev distance in pixels of the 84 x 84 frame):
# about the size of a small sprite, so that one object does not take several peaks.
PEAK_SEPARATION_PX = 4


def peak_score(error_stack: torch.Tensor) -> torch.Tensor:
    """(B, L, H, W) normalised error maps -> (B, H, W) float32, what `error_peaks` ranks: the
    summed maps smoothed by a 3 x 3 mean, plus a thousandth of the raw sum to break ties."""
    summed = error_stack.float().sum(dim=1, keepdim=True)  # (B, 1, H, W)
    smoothed = F.avg_pool2d(summed, 3, stride=1, padding=1, count_include_pad=False)
    return (smoothed + 1e-3 * summed)[:, 0]  # (B, H, W)


def error_peaks(
    error_stack: torch.Tensor, num_peaks: int, separation: int = PEAK_SEPARATION_PX
) -> torch.Tensor:
    """The strongest local maxima of the summed, normalised error maps of each frame.

    The maps of all layers are summed and smoothed by a 3 x 3 mean (the maps are resized by
    nearest neighbour from coarse cell grids, so they are blocky; smoothing moves a peak from
    the corner of a block towards its centre); a thousandth of the raw map breaks the
    remaining ties at the raw maximum. Peaks are then taken greedily: the strongest pixel,
    then the strongest outside a ``(2 * separation + 1)`` square around every peak taken so
    far, ``num_peaks`` times. Ties go to the first pixel in row-major order. A map that runs
    out of pixels first (only possible for a huge count) gives pixel (0, 0) for the rest. No
    gradient flows; the work stays on the maps' device.

    Args:
        error_stack: (B, L, H, W) float, normalised error maps, values in [0, 1].
        num_peaks: P.
        separation: minimum Chebyshev distance in pixels between two peaks.

    Returns:
        (B, P, 2) int64, (row, col) pixels, strongest peak first.
    """
    with torch.no_grad():
        score = peak_score(error_stack)  # (B, H, W)
        b, h, w = score.shape
        rows = torch.arange(h, device=score.device).view(1, h, 1)
        cols = torch.arange(w, device=score.device).view(1, 1, w)
        peaks = []
        for _ in range(num_peaks):
            index = score.reshape(b, -1).argmax(dim=1)  # (B,)
            row, col = index // w, index % w
            peaks.append(torch.stack([row, col], dim=-1))
            near = ((rows - row.view(b, 1, 1)).abs() <= separation) & (
                (cols - col.view(b, 1, 1)).abs() <= separation
            )  # (B, H, W)
            score = score.masked_fill(near, float("-inf"))
        return torch.stack(peaks, dim=1)  # (B, P, 2)


def matched_squared_distance(centres: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Squared distance of each centre to a target of its own, matched greedily one to one.

    The closest remaining (centre, target) pair is matched first, until every centre has a
    target; the matching itself is not differentiated (the distances are).

    Args:
        centres: (B, K, 2) float, (y, x).
        targets: (B, K, 2) float, (y, x), in the same units.

    Returns:
        (B, K) float, the squared distance of centre k to its matched target.
    """
    distance = (centres.unsqueeze(2) - targets.unsqueeze(1)).square().sum(-1)  # (B, K, K)
    b, k, _ = distance.shape
    with torch.no_grad():
        free = distance.detach().clone()
        match = torch.empty(b, k, dtype=torch.long, device=centres.device)
        batch = torch.arange(b, device=centres.device)
        for _ in range(k):
            index = free.reshape(b, -1).argmin(dim=1)  # (B,)
            centre, target = index // k, index % k
            match[batch, centre] = target
            free[batch, centre, :] = float("inf")
            free[batch, :, target] = float("inf")
    return distance.gather(2, match.unsqueeze(-1)).squeeze(-1)  # (B, K)
