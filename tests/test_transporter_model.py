"""Tests of the Transporter model: shapes, the transport equation, gradient flow, config, learning."""

from __future__ import annotations

import json
import re

import pytest
import torch

from permakey.keypoints import to_pixels
from permakey.models.blocks import BatchNormConfig
from permakey.models.transporter import (
    PRESETS,
    Keypoints,
    Transporter,
    TransporterConfig,
    transport,
)

SMALL = TransporterConfig(
    image_size=32,
    channels=(4, 4, 8, 8),
    kernels=(7, 3, 3, 3),
    strides=(1, 2, 1, 2),
    num_keypoints=3,
)


def transport_loop(source_features, target_features, source_windows, target_windows):
    """The sequential rule of method.md, written as a plain loop over keypoints."""
    out = source_features
    for k in range(source_windows.shape[1]):
        h_a = source_windows[:, k : k + 1]
        h_b = target_windows[:, k : k + 1]
        out = (1 - h_a) * (1 - h_b) * out + h_b * target_features
    return out


@pytest.mark.parametrize(
    ("config", "feature_shapes"),
    [
        (PRESETS["paper"], [(16, 84, 84), (16, 84, 84), (32, 42, 42), (32, 42, 42)]),
        (SMALL, [(4, 32, 32), (4, 16, 16), (8, 16, 16), (8, 8, 8)]),
    ],
)
def test_shapes(config, feature_shapes):
    torch.manual_seed(0)
    model = Transporter(config)
    size, k, grid = config.image_size, config.num_keypoints, config.grid_size
    source, target = torch.rand(2, 2, 3, size, size)
    out = model(source, target)
    assert out.reconstruction.shape == (2, 3, size, size)
    assert out.reconstruction.min() >= 0 and out.reconstruction.max() <= 1
    assert out.target_centres.shape == (2, k, 2)
    assert out.target_windows.shape == (2, k, grid, grid)
    assert set(out.losses) == {"reconstruction"}
    assert out.total.shape == () and torch.isfinite(out.total)
    assert [tuple(f.shape[1:]) for f in model.feature_maps(source)] == feature_shapes


def test_window_of_ones_copies_target_features_and_zeros_keep_source():
    source_features = torch.full((1, 2, 6, 6), 1.0)
    target_features = torch.full((1, 2, 6, 6), 5.0)
    source_windows = torch.zeros(1, 1, 6, 6)
    target_windows = torch.zeros(1, 1, 6, 6)
    target_windows[..., 1:3, 2:5] = 1.0
    out = transport(source_features, target_features, source_windows, target_windows)
    region = target_windows[0, 0].bool()
    assert torch.equal(out[0, :, region], torch.full((2, int(region.sum())), 5.0))
    assert torch.equal(out[0, :, ~region], torch.full((2, int((~region).sum())), 1.0))


def test_source_window_suppresses_source_features():
    source_windows = torch.zeros(1, 1, 4, 4)
    source_windows[..., 0, 0] = 1.0
    out = transport(
        torch.ones(1, 1, 4, 4), torch.ones(1, 1, 4, 4), source_windows, 0 * source_windows
    )
    assert out[0, 0, 0, 0] == 0 and torch.all(out.flatten()[1:] == 1)


def test_transport_is_the_sequential_rule_not_the_collapsed_one():
    # Two keypoints whose target windows are 0.5 on the same pixel: the second one halves
    # what the first pasted, so Phi(b) gets weight 0.75 (the collapsed form would give 1.0).
    half = torch.full((1, 2, 1, 1), 0.5)
    out = transport(torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1), torch.zeros_like(half), half)
    assert out.item() == pytest.approx(0.75)


def test_vectorised_transport_equals_loop_with_overlapping_keypoints():
    g = torch.Generator().manual_seed(0)
    source_features, target_features = torch.randn(2, 2, 4, 7, 7, generator=g, dtype=torch.float64)
    source_windows, target_windows = torch.rand(2, 2, 5, 7, 7, generator=g, dtype=torch.float64)
    target_windows[:, 1:3, 2:4, 2:4] = 1.0  # overlapping saturated windows (zero keep factors)
    args = (source_features, target_features, source_windows, target_windows)
    torch.testing.assert_close(transport(*args), transport_loop(*args), rtol=1e-12, atol=1e-12)


def test_source_receives_no_gradient_and_keypointer_learns_through_target():
    torch.manual_seed(0)
    model = Transporter(SMALL)
    source, target = torch.rand(2, 4, 3, 32, 32).unbind(0)
    source.requires_grad_(True)
    target.requires_grad_(True)
    model(source, target).total.backward()
    assert source.grad is None
    assert target.grad is not None and target.grad.abs().sum() > 0
    for net in (model.features, model.keypointer, model.refine):
        assert sum(p.grad.abs().sum() for p in net.parameters()) > 0


def test_detect_centres_in_range_and_windows_on_the_grid():
    torch.manual_seed(0)
    model = Transporter(SMALL).eval()
    with torch.no_grad():
        keypoints = model.detect(torch.rand(5, 3, 32, 32))
    assert isinstance(keypoints, Keypoints)
    assert keypoints.centres.shape == (5, 3, 2) and keypoints.centres.dtype == torch.float32
    assert keypoints.centres.abs().max() <= 1
    assert keypoints.windows.shape == (5, 3, 8, 8)
    assert keypoints.windows.min() >= 0 and keypoints.windows.max() <= 1


def test_loss_is_float32_under_bf16_autocast_and_channels_last():
    torch.manual_seed(0)
    model = Transporter(SMALL).to(memory_format=torch.channels_last)
    source, target = torch.rand(2, 2, 3, 32, 32).unbind(0)
    source = source.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(source, target)
    loss = out.losses["reconstruction"]
    assert loss.dtype == torch.float32
    expected = ((out.reconstruction.float() - target) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("config", [*PRESETS.values(), SMALL])
def test_config_round_trip_through_json(config):
    restored = TransporterConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config


def test_presets_and_defaults():
    assert PRESETS["paper"] == TransporterConfig()
    assert PRESETS["deepmind-code"].kernels == (7, 3, 3, 3)
    assert TransporterConfig.from_dict({"num_keypoints": 7}).num_keypoints == 7
    assert TransporterConfig(channels=[8, 8, 16, 16]).channels == (8, 8, 16, 16)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"image_size": 85}, "85"),
        ({"image_size": 0}, "0"),
        ({"in_channels": True}, "True"),
        ({"channels": (16, 16, 32)}, "[16, 16, 32]"),
        ({"channels": (16, -4, 32, 32)}, "-4"),
        ({"kernels": (3, 0, 3, 3)}, "0"),
        ({"strides": (1, 3, 2, 1)}, "[1, 3, 2, 1]"),
        ({"strides": (1, 1.0, 2, 1)}, "1.0"),
        ({"num_keypoints": 0}, "0"),
        ({"gaussian_sigma": -0.1}, "-0.1"),
        ({"gaussian_sigma": float("nan")}, "nan"),
        ({"bn": BatchNormConfig(eps=0.0)}, "eps=0.0"),
    ],
)
def test_bad_config_raises_value_error_naming_the_value(overrides, named):
    with pytest.raises(ValueError, match=f"{next(iter(overrides))}.*{re.escape(named)}"):
        TransporterConfig(**overrides)


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"num_keypoints": 5, "sigma": 0.1}, "['sigma']"),
        ({"bn": {"momentum": 0.1, "epsilon": 1e-3}}, "['epsilon']"),
        ([("num_keypoints", 5)], "num_keypoints"),
    ],
)
def test_from_dict_rejects_unknown_keys_naming_them(data, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        TransporterConfig.from_dict(data)


def test_forward_rejects_mismatched_frames():
    model = Transporter(SMALL)
    with pytest.raises(ValueError, match=r"\(1, 3, 32, 32\).*\(2, 3, 32, 32\)"):
        model(torch.rand(1, 3, 32, 32), torch.rand(2, 3, 32, 32))


SPRITE = 5


def sprite_frames(count: int, background: torch.Tensor, g: torch.Generator):
    """Frames with one red 5x5 sprite at a random place; returns frames and sprite centres (px)."""
    size = background.shape[-1]
    frames = background.expand(count, -1, -1, -1).clone()
    corners = torch.randint(0, size - SPRITE + 1, (count, 2), generator=g)
    for frame, (row, col) in zip(frames, corners.tolist(), strict=True):
        frame[:, row : row + SPRITE, col : col + SPRITE] = torch.tensor([1.0, 0.1, 0.1]).view(
            3, 1, 1
        )
    return frames, corners.float() + (SPRITE - 1) / 2


@pytest.mark.slow
def test_short_training_puts_keypoints_on_the_moving_sprite(one_thread):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    size = 32
    ramp = torch.linspace(0.2, 0.4, size)
    background = torch.stack(
        [
            ramp.view(1, -1).expand(size, size),
            ramp.view(-1, 1).expand(size, size),
            torch.full((size, size), 0.5),
        ]
    )
    background[:, ::8] = 0.7  # static stripes: structure that needs no keypoint
    config = TransporterConfig(
        image_size=size, channels=(8, 8, 16, 16), num_keypoints=4, gaussian_sigma=0.15
    )
    model = Transporter(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(200):
        (source, _), (target, _) = (
            sprite_frames(16, background, g),
            sprite_frames(16, background, g),
        )
        loss = model(source, target).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    frames, sprites = sprite_frames(64, background, g)
    with torch.no_grad():
        keypoints = to_pixels(model.eval().detect(frames).centres, size, size)  # (64, 4, 2)
    random_points = torch.rand(64, 4, 2, generator=g) * (size - 1)
    nearest = (keypoints - sprites[:, None]).norm(dim=-1).min(dim=1).values.mean()
    nearest_random = (random_points - sprites[:, None]).norm(dim=-1).min(dim=1).values.mean()
    assert nearest < 2.0, f"nearest keypoint {nearest:.2f} px from the sprite"
    assert nearest < 0.3 * nearest_random
