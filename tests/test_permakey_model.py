"""Tests of the PermaKey model: shapes, the LSP efficient form, module isolation, config."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from permakey.keypoints import (
    Keypoints,
    centres_from_maps,
    from_pixels,
    gaussian_windows,
    matched_squared_distance,
    to_pixels,
)
from permakey.models.blocks import BatchNormConfig, SameConv2d
from permakey.models.permakey import (
    DIRECTION_PAIRS,
    LSP_WIDE,
    NEIGHBOUR_OFFSETS,
    PRESETS,
    CentreMaskedConv2d,
    LocalSpatialPredictor,
    PermaKey,
    PermaKeyConfig,
    PointNet,
    cell_errors,
    normalised_error_stack,
    pointnet_loss,
    window_energy_outside,
)

SMALL = PermaKeyConfig(
    image_size=16,
    encoder_channels=(4, 8),
    encoder_kernels=(3, 3),
    encoder_strides=(1, 2),
    latent_dim=4,
    lsp_layers=(0, 1),
    patch_size=2,
    lsp_hidden=(16, 8),
    num_keypoints=3,
)
SMALL_BN = dataclasses.replace(SMALL, lsp_hidden=(LSP_WIDE, 8), lsp_batchnorm=True)


def make_model(config: PermaKeyConfig, seed: int = 0) -> PermaKey:
    torch.manual_seed(seed)
    return PermaKey(config)


def images_for(config: PermaKeyConfig, batch: int = 2, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    size = (batch, config.in_channels, config.image_size, config.image_size)
    return torch.rand(size, generator=gen)


def plain_lsp(lsp: LocalSpatialPredictor, cells: torch.Tensor) -> torch.Tensor:
    """The plain form: concatenate the 8 neighbour cells (zero beyond the border), apply the MLP.

    The MLP's weights are the conv weights read as linear layers: the first layer's input
    block n holds neighbour NEIGHBOUR_OFFSETS[n], i.e. conv tap (1 + dy, 1 + dx).

    Args:
        cells: (B, D, h, w).

    Returns:
        (B, D, h, w) predictions.
    """
    b, d, h, w = cells.shape
    padded = F.pad(cells, (1, 1, 1, 1))
    neighbours = torch.cat(
        [padded[:, :, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in NEIGHBOUR_OFFSETS],
        dim=1,
    )  # (B, 8 * D, h, w)
    x = neighbours.permute(0, 2, 3, 1).reshape(b * h * w, 8 * d)  # one row per cell
    first, *rest = list(lsp.net)
    weight = torch.cat([first.weight[:, :, 1 + dy, 1 + dx] for dy, dx in NEIGHBOUR_OFFSETS], 1)
    x = x @ weight.T + first.bias
    for layer in rest:
        if isinstance(layer, nn.BatchNorm2d):
            stats = (None, None) if layer.training else (layer.running_mean, layer.running_var)
            x = F.batch_norm(x, *stats, layer.weight, layer.bias, layer.training, 0.0, layer.eps)
        elif isinstance(layer, nn.ReLU):
            x = x.relu()
        else:
            x = x @ layer.weight[:, :, 0, 0].T + layer.bias
    return x.view(b, h, w, d).permute(0, 3, 1, 2)


def plain_directional(lsp: LocalSpatialPredictor, cells: torch.Tensor) -> torch.Tensor:
    """The plain form of a directional LSP: for each pair g of `DIRECTION_PAIRS`, an MLP on the
    two opposite neighbour cells concatenated, read from block g of every layer's weights.

    Args:
        cells: (B, D, h, w).

    Returns:
        (B, G, D, h, w) predictions.
    """
    b, d, h, w = cells.shape
    padded = F.pad(cells, (1, 1, 1, 1))
    first, *rest = list(lsp.net)
    groups = len(DIRECTION_PAIRS)
    out = []
    for g, (dy, dx) in enumerate(DIRECTION_PAIRS):
        taps = [(dy, dx), (-dy, -dx)]
        pair = torch.cat(
            [padded[:, :, 1 + y : 1 + y + h, 1 + x : 1 + x + w] for y, x in taps], dim=1
        )  # (B, 2 * D, h, w)
        x = pair.permute(0, 2, 3, 1).reshape(b * h * w, 2 * d)  # one row per cell
        block = first.weight.shape[0] // groups
        weight = torch.cat([first.weight[:, :, 1 + y, 1 + x] for y, x in taps], 1)
        x = x @ weight[g * block : (g + 1) * block].T + first.bias[g * block : (g + 1) * block]
        for layer in rest:
            if isinstance(layer, nn.BatchNorm2d):
                part = slice(g * x.shape[1], (g + 1) * x.shape[1])
                stats = (
                    (None, None)
                    if layer.training
                    else (layer.running_mean[part], layer.running_var[part])
                )
                x = F.batch_norm(
                    x, *stats, layer.weight[part], layer.bias[part], layer.training, 0.0, layer.eps
                )
            elif isinstance(layer, nn.ReLU):
                x = x.relu()
            else:
                block = layer.weight.shape[0] // groups
                part = slice(g * block, (g + 1) * block)
                x = x @ layer.weight[part, :, 0, 0].T + layer.bias[part]
        out.append(x.view(b, h, w, d).permute(0, 3, 1, 2))
    return torch.stack(out, dim=1)


def plain_cells(features: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C * p * p, H / p, W / p) cells, written out without pixel_unshuffle."""
    b, c, hh, ww = features.shape
    x = features.view(b, c, hh // p, p, ww // p, p)
    return x.permute(0, 1, 3, 5, 2, 4).reshape(b, c * p * p, hh // p, ww // p)


# --- shapes -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["paper", "authors-code", "cpu-track", "small"])
def test_forward_shapes_and_losses(name: str) -> None:
    config = SMALL if name == "small" else PRESETS[name]
    model = make_model(config)
    images = images_for(config)
    out = model(images)
    b, k, s, m = 2, config.num_keypoints, config.image_size, config.keypoint_map_size
    assert out.centres.shape == (b, k, 2)
    assert out.windows.shape == (b, k, m, m)
    assert out.reconstruction.shape == images.shape
    assert out.reconstruction.min() >= 0.0 and out.reconstruction.max() <= 1.0
    assert out.error_stack.shape == (b, len(config.lsp_layers), s, s)
    sizes = [config.feature_shapes[layer][1] // config.patch_size for layer in config.lsp_layers]
    assert [tuple(e.shape) for e in out.error_maps] == [(b, n, n) for n in sizes]
    layer_keys = [f"lsp/{layer}" for layer in config.lsp_layers]
    expected = {"vae/recon", "vae/kl", "vae", "lsp", "pointnet", *layer_keys}
    assert set(out.losses) == expected
    for key, loss in out.losses.items():
        assert loss.shape == () and loss.dtype == torch.float32 and torch.isfinite(loss), key
    losses = out.losses
    torch.testing.assert_close(losses["vae"], losses["vae/recon"] + losses["vae/kl"])
    torch.testing.assert_close(losses["lsp"], sum(losses[key] for key in layer_keys))
    torch.testing.assert_close(out.total, losses["vae"] + losses["lsp"] + losses["pointnet"])


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "pad"),
    [
        (21, 3, 1, (1, 1)),
        (84, 4, 1, (1, 2)),  # even kernel
        (84, 3, 2, (0, 1)),  # stride 2 on an even size
        (21, 3, 2, (1, 1)),  # stride 2 on an odd size
        (84, 1, 1, (0, 0)),
    ],
)
def test_same_conv_pads_as_tensorflow_and_gives_its_gradients(size, kernel, stride, pad) -> None:
    """TensorFlow's "same": ceil(size / stride) outputs, (before, after) zeros as listed."""
    torch.manual_seed(0)
    conv = SameConv2d(3, 5, kernel, stride)
    x = torch.randn(2, 3, size, size, requires_grad=True)
    y = conv(x)
    assert y.shape == (2, 5, -(-size // stride), -(-size // stride))
    x_ref = x.detach().clone().requires_grad_(True)
    before, after = pad
    y_ref = F.conv2d(F.pad(x_ref, (before, after, before, after)), conv.weight, conv.bias, stride)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad((y * y_ref.detach()).sum(), (x, conv.weight))
    grads_ref = torch.autograd.grad((y_ref * y_ref.detach()).sum(), (x_ref, conv.weight))
    for got, want in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_paper_sizes() -> None:
    config = PRESETS["paper"]
    assert config.feature_shapes == [(32, 84, 84), (64, 42, 42), (64, 21, 21), (128, 21, 21)]
    assert config.keypoint_map_size == 21
    wider = dataclasses.replace(config, pointnet_strides=(1, 2, 1, 1))
    assert wider.keypoint_map_size == 42
    assert make_model(wider).detect(images_for(wider)).windows.shape == (2, 7, 42, 42)


def test_authors_code_preset() -> None:
    config = PRESETS["authors-code"]
    assert config.lsp_widths(0) == (8 * 2 * 2 * 32, 512, 256)
    assert config.lsp_widths(1) == (8 * 2 * 2 * 64, 512, 256)
    assert config.gaussian_sigma == 0.12
    model = make_model(config)
    norms = [m for m in model.lsp.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 6
    everywhere = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(n.momentum == 0.01 and n.eps == 1e-3 for n in everywhere)
    assert not any(
        isinstance(m, nn.BatchNorm2d) for m in make_model(PRESETS["paper"]).lsp.modules()
    )


# --- the LSP network ------------------------------------------------------------------


@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_lsp_efficient_form_equals_plain_form(batchnorm: bool, training: bool) -> None:
    torch.manual_seed(0)
    lsp = LocalSpatialPredictor(12, (20, 10), batchnorm, BatchNormConfig())
    if batchnorm:  # non-trivial running statistics for eval mode
        lsp(torch.rand(4, 12, 5, 6))
    lsp.train(training)
    cells = torch.rand(3, 12, 5, 6)
    torch.testing.assert_close(lsp(cells)[:, 0], plain_lsp(lsp, cells), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_directional_lsp_is_one_mlp_per_pair_of_opposite_neighbours(
    batchnorm: bool, training: bool
) -> None:
    torch.manual_seed(0)
    lsp = LocalSpatialPredictor(12, (20, 10), batchnorm, BatchNormConfig(), directional=True)
    if batchnorm:  # non-trivial running statistics for eval mode
        lsp(torch.rand(4, 12, 5, 6))
    lsp.train(training)
    cells = torch.rand(3, 12, 5, 6)
    predictions = lsp(cells)
    assert predictions.shape == (3, len(DIRECTION_PAIRS), 12, 5, 6)
    torch.testing.assert_close(predictions, plain_directional(lsp, cells), atol=1e-5, rtol=1e-5)
    # Each network sees its own two neighbours and nothing else, even after an update.
    predictions.square().sum().backward()
    with torch.no_grad():
        for p in lsp.parameters():
            p.sub_(0.1 * p.grad)
    changed = cells.clone()
    changed[0, :, 2, 3] += 5.0
    lsp.eval()
    diff = (lsp(changed) - lsp(cells)).abs().sum(dim=2)[0]  # (G, 5, 6)
    for g, (dy, dx) in enumerate(DIRECTION_PAIRS):
        seen = torch.zeros(5, 6, dtype=torch.bool)
        seen[2 + dy, 3 + dx] = seen[2 - dy, 3 - dx] = True
        assert torch.all(diff[g][seen] > 0.0), (dy, dx)
        assert torch.all(diff[g][~seen] == 0.0), (dy, dx)


def test_directional_error_finds_a_line_predictable_and_an_object_not() -> None:
    """Linear predictors that average their neighbours, on random cells crossed by a uniform
    horizontal line with one bright object cell: the left-right pair predicts the line's cells
    exactly (the smallest error is 0 there), averaging all 8 neighbours does not, and the
    object is unpredictable either way."""
    d = 3
    cells = torch.rand(1, d, 7, 9, generator=torch.Generator().manual_seed(0))
    cells[0, :, 3] = torch.tensor([0.9, 0.2, 0.5]).view(d, 1)  # the line, row 3
    cells[0, :, 1, 4] = 5.0  # the object
    directional = LocalSpatialPredictor(d, (), False, BatchNormConfig(), directional=True)
    everything = LocalSpatialPredictor(d, (), False, BatchNormConfig())
    with torch.no_grad():
        for lsp, share in ((directional, 0.5), (everything, 1 / 8)):
            conv = lsp.net[0]
            conv.bias.zero_()
            # Output channel g * D + c takes `share` of input channel c at each tap it sees.
            conv.weight.copy_(share * torch.eye(d).repeat(lsp.directions, 1)[..., None, None])
            conv.weight.mul_(conv.centre_mask)
        squared, smallest = cell_errors(directional(cells), cells)  # (1, 4, 7, 9), (1, 7, 9)
        _, mean_of_all = cell_errors(everything(cells), cells)  # (1, 7, 9)
    assert squared.shape == (1, len(DIRECTION_PAIRS), 7, 9)
    torch.testing.assert_close(smallest, squared.amin(dim=1))
    interior = smallest[0, 3, 1:-1]  # the line's cells with two line neighbours
    assert torch.all(interior < 1e-10)
    assert torch.all(mean_of_all[0, 3, 1:-1] > 0.01)
    assert smallest[0, 1, 4] > 10.0 and mean_of_all[0, 1, 4] > 10.0


def test_centre_cell_does_not_predict_itself() -> None:
    torch.manual_seed(0)
    lsp = LocalSpatialPredictor(8, (16,), False, BatchNormConfig())
    cells = torch.rand(1, 8, 6, 6)
    changed = cells.clone()
    changed[0, :, 2, 3] += 5.0
    diff = (lsp(changed) - lsp(cells)).abs().sum(dim=(1, 2))[0]  # (6, 6)
    assert diff[2, 3] == 0.0
    for dy, dx in NEIGHBOUR_OFFSETS:
        assert diff[2 + dy, 3 + dx] > 0.0
    far = torch.ones(6, 6, dtype=torch.bool)
    far[1:4, 2:5] = False
    assert torch.all(diff[far] == 0.0)
    conv = lsp.net[0]
    assert isinstance(conv, CentreMaskedConv2d)
    lsp(cells).square().sum().backward()
    assert torch.all(conv.weight.grad[:, :, 1, 1] == 0.0)
    assert torch.all(conv.weight[:, :, 1, 1] == 0.0)


SMALL_DIRECTIONAL = dataclasses.replace(SMALL_BN, lsp_directional=True)


@pytest.mark.parametrize(
    "config", [SMALL, SMALL_BN, SMALL_DIRECTIONAL], ids=["small", "small-bn", "directional"]
)
def test_model_error_maps_and_lsp_losses_match_plain_form(config: PermaKeyConfig) -> None:
    """Error maps: each cell's smallest error over its predictions (one, or one per neighbour
    pair), over the cell's mean; the LSP loss: the mean of every prediction's error, so that
    each directional network learns from every cell, not only where it is the best."""
    model = make_model(config).eval()
    images = images_for(config, batch=3)
    out = model(images)
    features = model.feature_maps(images)
    for i, layer in enumerate(config.lsp_layers):
        cells = plain_cells(features[layer], config.patch_size)  # (B, D, h, w)
        if config.lsp_directional:
            predictions = plain_directional(model.lsp[i], cells)  # (B, 4, D, h, w)
        else:
            predictions = plain_lsp(model.lsp[i], cells).unsqueeze(1)  # (B, 1, D, h, w)
        squared = (predictions - cells.unsqueeze(1)).square()
        expected = squared.mean(dim=2).amin(dim=1) / (cells.mean(dim=1) + 1e-3)
        torch.testing.assert_close(out.error_maps[i], expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.losses[f"lsp/{layer}"], squared.mean())


def test_error_map_sqrt_option() -> None:
    base = make_model(SMALL).eval()
    root = make_model(dataclasses.replace(SMALL, error_map_sqrt=True)).eval()
    images = images_for(SMALL)
    a, b = base(images), root(images)
    features = base.feature_maps(images)
    cells = plain_cells(features[0], 2)
    denominator = cells.mean(dim=1) + 1e-3
    torch.testing.assert_close(
        b.error_maps[0], (a.error_maps[0] * denominator).sqrt() / denominator
    )


# --- losses and isolation -------------------------------------------------------------


@pytest.mark.parametrize("config", [SMALL, SMALL_BN], ids=["small", "small-bn"])
def test_each_loss_reaches_only_its_own_module(config: PermaKeyConfig) -> None:
    model = make_model(config).train()
    out = model(images_for(config, batch=3))
    modules = {"vae": model.vae, "pointnet": model.pointnet}
    modules.update({f"lsp/{layer}": model.lsp[i] for i, layer in enumerate(config.lsp_layers)})
    params = {name: list(module.parameters()) for name, module in modules.items()}
    for loss_name in modules:
        everything = [p for ps in params.values() for p in ps]
        grads = torch.autograd.grad(
            out.losses[loss_name], everything, retain_graph=True, allow_unused=True
        )
        by_param = dict(zip(map(id, everything), grads, strict=True))
        for owner, owned in params.items():
            got = [by_param[id(p)] for p in owned]
            nonzero = any(g is not None and g.abs().sum() > 0 for g in got)
            assert nonzero == (owner == loss_name), (loss_name, owner)


def test_param_groups_are_disjoint_and_cover_the_model() -> None:
    model = make_model(SMALL_BN)
    groups = model.param_groups()
    lsp = [f"lsp/{layer}" for layer in model.config.lsp_layers]
    assert list(groups) == ["vae", *lsp, "pointnet"]  # the update order
    ids = [id(p) for group in groups.values() for p in group]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}


def test_vae_losses_follow_the_documented_formulas() -> None:
    model = make_model(SMALL).eval()
    images = images_for(SMALL)
    out = model(images)
    recon = ((out.reconstruction - images) ** 2).mean(dim=(1, 2, 3)) / 0.2
    torch.testing.assert_close(out.losses["vae/recon"], recon.mean())
    features = model.feature_maps(images)
    top = features[-1].permute(0, 2, 3, 1).flatten(1)
    mean, raw = model.vae.to_latent(top).chunk(2, dim=1)
    posterior = torch.distributions.Normal(mean, F.softplus(raw))
    prior = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    kl = torch.distributions.kl_divergence(posterior, prior).sum(dim=1).mean()
    torch.testing.assert_close(out.losses["vae/kl"], kl)


def test_vae_samples_in_training_and_uses_the_mean_in_eval() -> None:
    model = make_model(SMALL)
    images = images_for(SMALL)
    model.eval()
    torch.testing.assert_close(model(images).reconstruction, model(images).reconstruction)
    model.train()
    assert not torch.allclose(model(images).reconstruction, model(images).reconstruction)


def test_pointnet_loss_compares_summed_windows_with_every_channel() -> None:
    model = make_model(SMALL).eval()
    out = model(images_for(SMALL))
    s = SMALL.image_size
    summed = F.interpolate(
        out.windows.sum(1, keepdim=True), (s, s), mode="bilinear", align_corners=True
    )
    expected = ((summed - out.error_stack) ** 2).mean()
    torch.testing.assert_close(out.losses["pointnet"], expected)


# (y, x) keypoints in [-1, 1]: the centre, near an edge, on an edge, in a corner; all on
# samples of a 21-point grid (a resized window's energy depends on its offset from them).
PLACES = torch.tensor([[0.0, 0.0], [0.0, 0.9], [0.0, 1.0], [-1.0, 1.0]])


def test_window_energy_outside_equals_the_resized_window_on_a_larger_canvas() -> None:
    # 21 -> 81 pixels puts grid cells exactly 4 pixels apart, so a grid extended by 5 cells
    # each side resizes to the frame extended by 20 pixels each side, pixel for pixel.
    grid_size, size, sigma, extra = 21, 81, 0.1, 5
    for centre in PLACES:
        cells = -1.0 - 0.1 * extra + 0.1 * torch.arange(grid_size + 2 * extra)  # grid units
        profile = torch.exp(-((cells.view(1, -1) - centre.view(2, 1)) ** 2) / sigma**2)
        window = profile[0].view(-1, 1) * profile[1].view(1, -1)  # (31, 31)
        canvas = F.interpolate(
            window[None, None], size=(121, 121), mode="bilinear", align_corners=True
        )
        frame = canvas[0, 0, 20:101, 20:101]
        brute = canvas.square().sum() - frame.square().sum()
        closed = window_energy_outside(centre.view(1, 1, 2), sigma, grid_size, size)
        torch.testing.assert_close(closed, brute.view(1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("border_cost", [False, True])
def test_window_border_cost_takes_away_the_border_as_a_cheap_parking_place(border_cost) -> None:
    # On error maps that are zero everywhere, a window costs the sum of its squares in the frame.
    config = dataclasses.replace(
        PRESETS["cpu-track"], num_keypoints=1, window_border_cost=border_cost
    )  # 21 x 21 windows
    pointnet = PointNet(config)
    stack = torch.zeros(1, 2, config.image_size, config.image_size)
    size = config.keypoint_map_size
    cost = {}
    for centre, name in zip(PLACES, ["centre", "near", "edge", "corner"], strict=True):
        centres = centre.view(1, 1, 2)
        keypoints = Keypoints(centres, gaussian_windows(centres, size, size, config.gaussian_sigma))
        cost[name] = pointnet.loss(keypoints, stack).item()
    if border_cost:  # the same everywhere: the part outside the frame is counted too (up to
        # 3%: 21 -> 84 puts grid cells 4.15 pixels apart, so windows alias a little by place)
        for name in ("near", "edge", "corner"):
            assert cost[name] == pytest.approx(cost["centre"], rel=0.04)
    else:  # cheaper on an edge, cheaper still in a corner
        assert cost["edge"] < 0.7 * cost["centre"]
        assert cost["corner"] < 0.45 * cost["centre"]


def test_matched_squared_distance_gives_each_centre_a_target_of_its_own() -> None:
    centres = torch.tensor([[[0.0, 0.0], [0.1, 0.0], [1.0, 1.0]]])
    # Both first centres are closest to target 0; the one closer gets it, the other target 2.
    targets = torch.tensor([[[0.05, 0.0], [1.0, 0.9], [0.5, 0.0]]])
    matched = matched_squared_distance(centres, targets)
    torch.testing.assert_close(matched, torch.tensor([[0.05**2, 0.4**2, 0.1**2]]))
    assert matched_squared_distance(targets, targets).abs().max() == 0.0


def test_peak_match_adds_the_distance_to_the_error_maps_peaks() -> None:
    config = dataclasses.replace(
        PRESETS["cpu-track"], num_keypoints=2, peak_match=0.5, window_border_cost=False
    )
    plain = PointNet(dataclasses.replace(config, peak_match=0.0))
    pointnet = PointNet(config)
    size = config.image_size
    stack = torch.zeros(1, 2, size, size)
    stack[0, :, 20, 30] = 1.0
    stack[0, :, 60, 10] = 0.8
    peaks = from_pixels(torch.tensor([[[20.0, 30.0], [60.0, 10.0]]]), size, size)
    grid_size = config.keypoint_map_size
    costs = {}
    for name, centres in (("on", peaks.flip(1)), ("off", peaks + 0.1)):
        keypoints = Keypoints(
            centres, gaussian_windows(centres, grid_size, grid_size, config.gaussian_sigma)
        )
        costs[name] = pointnet.loss(keypoints, stack) - plain.loss(keypoints, stack)
    # On the peaks in any order: nothing added; 0.1 off in y and x: 0.5 * 0.02 per keypoint.
    assert costs["on"].item() == pytest.approx(0.0, abs=1e-6)
    assert costs["off"].item() == pytest.approx(0.5 * 0.02, rel=1e-4)


def test_a_pointnet_with_peak_match_learns_to_put_a_keypoint_on_every_blob() -> None:
    torch.manual_seed(0)
    config = dataclasses.replace(
        SMALL,
        image_size=32,
        num_keypoints=3,
        pointnet_channels=(8, 16),
        pointnet_strides=(1, 2),
        peak_match=1.0,
    )
    pointnet = PointNet(config)
    stack = torch.zeros(4, 2, 32, 32)
    blobs = torch.tensor([[5.0, 6.0], [20.0, 25.0], [27.0, 8.0]])
    for (row, col), strength in zip(blobs.long().tolist(), (1.0, 0.9, 0.8), strict=True):
        stack[:, :, row - 1 : row + 2, col - 1 : col + 2] = strength
    optimizer = torch.optim.Adam(pointnet.parameters(), lr=3e-3)
    for _ in range(150):
        optimizer.zero_grad()
        pointnet.loss(pointnet(stack), stack).backward()
        optimizer.step()
    pointnet.eval()
    with torch.no_grad():
        found = to_pixels(pointnet(stack[:1]).centres[0], 32, 32)  # (3, 2) pixels
    distance = (found.unsqueeze(0) - blobs.unsqueeze(1)).norm(dim=-1)  # (blob, keypoint)
    assert distance.amin(dim=1).max() <= 2.0
    assert len(set(distance.argmin(dim=1).tolist())) == 3  # a keypoint of its own for each


def test_keypoint_map_scale_puts_a_two_blob_map_on_the_stronger_blob() -> None:
    config = dataclasses.replace(PRESETS["cpu-track"], num_keypoints=1)
    size = config.keypoint_map_size  # 21
    maps = torch.zeros(1, 1, size, size)
    maps[0, 0, 3:6, 3:6] = 1.0  # 3 x 3 blobs: each adds 3 / 21 to its rows' and columns' means
    maps[0, 0, 15:18, 15:18] = 0.8
    on = {}
    for scale in (1.0, 100.0):
        pointnet = PointNet(dataclasses.replace(config, keypoint_map_scale=scale))
        centre = to_pixels(pointnet.keypoints(maps, windows=False).centres[0, 0], size, size)
        on[scale] = (centre - torch.tensor([4.0, 4.0])).abs().max().item()
    assert on[1.0] > 4.0  # the paper's softmax: near the middle of the map, on neither blob
    assert on[100.0] < 1.0  # sharpened: on the stronger blob


@pytest.mark.parametrize("softmax", ["axes", "joint"])
def test_joint_softmax_puts_a_small_bright_blob_s_centre_on_it(softmax) -> None:
    # A 2 x 2 blob of logit 6 near the top right: averaged into its rows and columns it adds
    # 6 * 2 / 21 to two of 21 logits, so the per-axis softmax stays nearly flat and the centre
    # near the middle; one softmax over the 441 cells gives the blob about 0.8 of the mass.
    config = dataclasses.replace(PRESETS["cpu-track"], num_keypoints=1, keypoint_softmax=softmax)
    size = config.keypoint_map_size  # 21
    maps = torch.zeros(1, 1, size, size)
    maps[0, 0, 2:4, 16:18] = 6.0
    centre = to_pixels(PointNet(config).keypoints(maps, windows=False).centres[0, 0], size, size)
    off = (centre - torch.tensor([2.5, 16.5])).abs().max().item()  # grid cells
    if softmax == "joint":
        assert off < 2.0, off
    else:
        assert off > 5.0, off


def test_joint_softmax_is_the_expectation_under_one_softmax_over_the_cells() -> None:
    maps = torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    prob = torch.softmax(maps.flatten(2), dim=-1).view(2, 3, 5, 7)  # (B, K, H, W)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 5), torch.linspace(-1, 1, 7), indexing="ij")
    expected = torch.stack([(prob * ys).sum((2, 3)), (prob * xs).sum((2, 3))], dim=-1)
    assert torch.allclose(centres_from_maps(maps, joint=True), expected, atol=1e-6)


def test_peak_match_map_scale_and_softmax_are_checked() -> None:
    for bad in (-0.1, True, "1"):
        with pytest.raises(ValueError, match="peak_match"):
            dataclasses.replace(PRESETS["cpu-track"], peak_match=bad)
    with pytest.raises(ValueError, match="keypoint_map_scale"):
        dataclasses.replace(PRESETS["cpu-track"], keypoint_map_scale=0.0)
    with pytest.raises(ValueError, match="keypoint_softmax.*'both'"):
        dataclasses.replace(PRESETS["cpu-track"], keypoint_softmax="both")


# --- error stack, detection -----------------------------------------------------------


def test_error_stack_is_min_max_normalised_per_image_and_channel() -> None:
    out = make_model(SMALL)(images_for(SMALL, batch=3))
    stack = out.error_stack
    assert not stack.requires_grad
    torch.testing.assert_close(stack.amin(dim=(2, 3)), torch.zeros(3, 2))
    torch.testing.assert_close(stack.amax(dim=(2, 3)), torch.ones(3, 2))
    # Nearest resize: each 2 x 2 cell of layer 0 fills a 2 x 2 block of the 16 x 16 image.
    block = stack[:, 0].unfold(1, 2, 2).unfold(2, 2, 2)  # (B, 8, 8, 2, 2)
    assert torch.all(block == block[..., :1, :1])


def test_error_stack_of_constant_maps_is_zero() -> None:
    maps = [torch.full((2, 4, 4), 3.0), torch.rand(2, 2, 2)]
    stack = normalised_error_stack(maps, 8)
    assert torch.all(stack[:, 0] == 0.0)
    torch.testing.assert_close(stack[:, 1].amax(dim=(1, 2)), torch.ones(2))


def test_detect_matches_forward_in_eval_mode() -> None:
    model = make_model(PRESETS["paper"]).eval()
    images = images_for(PRESETS["paper"])
    keypoints = model.detect(images)
    assert keypoints.centres.shape == (2, 7, 2)
    assert keypoints.centres.abs().max() <= 1.0
    assert not keypoints.centres.requires_grad
    out = model(images)
    torch.testing.assert_close(keypoints.centres, out.centres)
    torch.testing.assert_close(keypoints.windows, out.windows)
    torch.testing.assert_close(model.detect(images).error_stack, out.error_stack)


@pytest.mark.parametrize("shape", [(2, 3, 16), (2, 1, 16, 16), (2, 3, 17, 16)])
def test_bad_images_raise(shape: tuple[int, ...]) -> None:
    model = make_model(SMALL)
    with pytest.raises(ValueError, match="images must be"):
        model(torch.rand(shape))
    with pytest.raises(ValueError, match="float"):
        model.detect(torch.zeros(2, 3, 16, 16, dtype=torch.uint8))


def test_bf16_autocast_keeps_losses_and_error_maps_in_float32() -> None:
    model = make_model(SMALL).eval()
    images = images_for(SMALL)
    reference = model(images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images)
    assert all(loss.dtype == torch.float32 for loss in out.losses.values())
    assert all(e.dtype == torch.float32 for e in out.error_maps)
    assert out.error_stack.dtype == out.windows.dtype == out.centres.dtype == torch.float32
    assert out.reconstruction.dtype == torch.float32
    torch.testing.assert_close(
        out.losses["vae/recon"], reference.losses["vae/recon"], rtol=0.05, atol=0
    )


def test_channels_last_gives_the_same_result() -> None:
    model = make_model(SMALL_BN).eval()
    images = images_for(SMALL_BN)
    reference = model(images)
    model = model.to(memory_format=torch.channels_last)
    out = model(images.contiguous(memory_format=torch.channels_last))
    for key, loss in reference.losses.items():
        torch.testing.assert_close(out.losses[key], loss, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.centres, reference.centres, atol=1e-5, rtol=1e-4)


# --- config ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        PRESETS["paper"],
        PRESETS["authors-code"],
        SMALL_BN,
        dataclasses.replace(SMALL, pointnet_strides=(1, 1)),
        dataclasses.replace(SMALL, pointnet_coords=True),
    ],
)
def test_config_round_trip(config: PermaKeyConfig) -> None:
    d = config.to_dict()
    assert PermaKeyConfig.from_dict(d) == config
    assert PermaKeyConfig.from_dict(json.loads(json.dumps(d))) == config
    assert json.loads(json.dumps(d)) == d  # JSON-safe: only lists, dicts and scalars


def test_pointnet_defaults_follow_the_encoder() -> None:
    config = dataclasses.replace(SMALL, encoder_kernels=(5, 3))
    assert config.pointnet_stack == ((4, 8), (5, 3), (1, 2))
    model = make_model(config)
    assert model.pointnet.encoder.blocks[0][0].kernel_size == (5, 5)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"lsp_layers": (0, 4)}, "4"),
        ({"lsp_layers": ()}, "lsp_layers"),
        ({"patch_size": 5}, "5"),
        ({"num_keypoints": 0}, "num_keypoints"),
        ({"gaussian_sigma": 0.0}, "gaussian_sigma"),
        ({"gaussian_sigma": -0.1}, "-0.1"),
        ({"lsp_hidden": (512, "wide")}, "wide"),
        ({"encoder_strides": (1, 3, 2, 1)}, "3"),
        ({"encoder_kernels": (4, 3, 3)}, "differ in length"),
        ({"image_size": 86}, "86"),
        ({"recon_variance": 0}, "recon_variance"),
        ({"pointnet_strides": (1, 2)}, "pointnet"),
        ({"error_eps": 0.0}, "error_eps"),
        ({"bn": BatchNormConfig(momentum=1.5)}, "1.5"),
        ({"pointnet_coords": 1}, "pointnet_coords"),
    ],
)
def test_bad_configs_raise_naming_the_value(changes: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        PermaKeyConfig(**changes)


def test_from_dict_rejects_unknown_keys() -> None:
    d = PRESETS["paper"].to_dict()
    with pytest.raises(ValueError, match="num_keypoint_s"):
        PermaKeyConfig.from_dict({**d, "num_keypoint_s": 3})
    with pytest.raises(ValueError, match="momentun"):
        PermaKeyConfig.from_dict({**d, "bn": {"momentun": 0.1}})


# --- learning -------------------------------------------------------------------------


def sprite_batch(n: int, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A 4 x 4 magenta sprite at a random place over smooth periodic stripes of random phase.

    Returns:
        images (n, 3, size, size) float in [0, 1], sprite mask (n, size, size) bool.
    """
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    phase = torch.rand(n, 1, 1, generator=gen) * 2 * math.pi
    images = torch.stack(
        [
            0.5 + 0.3 * torch.sin(2 * math.pi * xx / 8 + phase),
            0.5 + 0.3 * torch.cos(2 * math.pi * yy / 8 + phase),
            torch.full((n, size, size), 0.3),
        ],
        dim=1,
    )
    mask = torch.zeros(n, size, size, dtype=torch.bool)
    corners = torch.randint(0, size - 4, (n, 2), generator=gen)
    for i, (r, c) in enumerate(corners.tolist()):
        images[i, :, r : r + 4, c : c + 4] = torch.tensor([1.0, 0.1, 0.9])[:, None, None]
        mask[i, r : r + 4, c : c + 4] = True
    return images, mask


def sprite_contrast(model: PermaKey, images: torch.Tensor, mask: torch.Tensor) -> list[float]:
    """Per LSP layer: mean error on sprite cells / mean error on cells 3+ cells away from it."""
    with torch.no_grad():
        error_maps = model.eval()(images).error_maps
    model.train()
    ratios = []
    for error in error_maps:
        cell = images.shape[-1] // error.shape[-1]
        on_sprite = F.max_pool2d(mask[:, None].float(), cell)[:, 0] > 0  # (B, h, w)
        near = F.max_pool2d(on_sprite[:, None].float(), 5, 1, 2)[:, 0] > 0
        ratios.append((error[on_sprite].mean() / error[~near].mean()).item())
    return ratios


@pytest.mark.slow
def test_error_maps_learn_to_light_up_an_unpredictable_sprite(one_thread) -> None:
    config = PermaKeyConfig(
        image_size=32,
        encoder_channels=(8, 16),
        encoder_kernels=(3, 3),
        encoder_strides=(1, 2),
        latent_dim=8,
        lsp_layers=(0, 1),
        lsp_hidden=(32,),
        num_keypoints=2,
    )
    model = make_model(config)
    gen = torch.Generator().manual_seed(0)
    test_images, test_mask = sprite_batch(64, 32, gen)
    before = sprite_contrast(model, test_images, test_mask)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(100):
        images, _ = sprite_batch(16, 32, gen)
        loss = model(images).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = sprite_contrast(model, test_images, test_mask)
    # Untrained, sprite and background cells err alike (ratio about 1).
    assert min(after) > 2.0, (before, after)
    assert all(a > 1.5 * b for a, b in zip(after, before, strict=True)), (before, after)


def two_blob_stacks(
    batch: int, size: int, gen: torch.Generator
) -> tuple[torch.Tensor, None, torch.Tensor]:
    """Error stacks with two identical 3 x 3 blobs, one in the top and one in the bottom band,
    each at a random column; no images; and their centres (B, 2, 2), top first, in [-1, 1]."""
    stacks = torch.zeros(batch, 1, size, size)
    rows = torch.tensor([size // 4, 3 * size // 4])
    cols = torch.randint(4, size - 4, (batch, 2), generator=gen)
    for b in range(batch):
        for i in range(2):
            r, c = int(rows[i]), int(cols[b, i])
            stacks[b, 0, r - 1 : r + 2, c - 1 : c + 2] = 1.0
    pixels = torch.stack([rows.expand(batch, 2), cols], dim=-1).float()  # (B, 2, 2)
    return stacks, None, from_pixels(pixels, size, size)


BLOB_MODEL = PermaKeyConfig(
    image_size=32,
    encoder_channels=(16, 16),
    encoder_kernels=(3, 3),
    encoder_strides=(1, 1),
    lsp_layers=(0,),
    num_keypoints=2,
)
"""The model whose PointNet the two-blob tests train (one error-map channel, K = 2)."""


def blob_hit_rate(config: PermaKeyConfig, blobs) -> float:
    """Trains a PointNet of ``config`` (600 Adam updates, batches of 16) on the frames of
    ``blobs(batch, 32, generator) -> (stacks, images or None, (B, 2, 2) blob centres)`` and
    returns the share of blobs of 64 new frames with a keypoint within 2 px."""
    torch.manual_seed(0)
    pointnet = PointNet(config)
    gen = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(pointnet.parameters(), lr=3e-3)
    for _ in range(600):
        stacks, images, _ = blobs(16, 32, gen)
        loss = pointnet_loss(pointnet(stacks, images=images).windows, stacks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    pointnet.eval()
    stacks, images, centres = blobs(64, 32, gen)
    with torch.no_grad():
        found = pointnet(stacks, images=images).centres  # (B, 2, 2)
    # Distance in pixels from each blob to its nearest keypoint.
    distance = torch.cdist(to_pixels(centres, 32, 32), to_pixels(found, 32, 32)).amin(dim=-1)
    return (distance < 2.0).float().mean().item()


@pytest.mark.parametrize("coords", [False, True])
def test_pointnet_coords_let_a_keypoint_choose_a_blob_by_position(one_thread, coords) -> None:
    # Two identical blobs: a keypoint map can only keep to one of them by knowing where it
    # is. With the coordinate channels each keypoint follows its own blob; without them, a
    # translation-equivariant PointNet sees the two alike and its keypoints fall between.
    hit = blob_hit_rate(dataclasses.replace(BLOB_MODEL, pointnet_coords=coords), two_blob_stacks)
    if coords:
        assert hit > 0.9, hit
    else:
        assert hit < 0.5, hit


def coloured_blob_pairs(
    batch: int, size: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Error stacks with two identical 3 x 3 blobs anywhere (at least 8 px apart), and RGB
    images with a red square at the first and a green one at the second.

    Returns:
        stacks (B, 1, S, S), images (B, 3, S, S) in [0, 1], centres (B, 2, 2) red first, in
        [-1, 1].
    """
    stacks, images = torch.zeros(batch, 1, size, size), torch.zeros(batch, 3, size, size)
    pixels = torch.zeros(batch, 2, 2)
    for b in range(batch):
        while (pixels[b, 0] - pixels[b, 1]).abs().max() < 8:
            pixels[b] = torch.randint(3, size - 3, (2, 2), generator=gen).float()
        for colour, (r, c) in enumerate(pixels[b].long().tolist()):
            stacks[b, 0, r - 1 : r + 2, c - 1 : c + 2] = 1.0
            images[b, colour, r - 1 : r + 2, c - 1 : c + 2] = 1.0
    return stacks, images, from_pixels(pixels, size, size)


@pytest.mark.parametrize("image", [False, True])
def test_pointnet_image_lets_a_keypoint_choose_a_blob_by_colour(one_thread, image) -> None:
    # Two blobs alike in the error maps, anywhere in the frame, told apart only by their
    # colour in the image: with the image each keypoint keeps to one colour; without it the
    # two keypoint maps answer to both blobs and their centres fall between them.
    config = dataclasses.replace(
        BLOB_MODEL,
        pointnet_channels=(16, 32, 32),
        pointnet_kernels=(3, 3, 3),
        pointnet_strides=(1, 2, 1),
        pointnet_image=image,
        gaussian_sigma=0.2,  # 3 px on this 32 px frame, as 0.1 is 4 px on 84 px
    )
    hit = blob_hit_rate(config, coloured_blob_pairs)
    if image:
        assert hit > 0.9, hit
    else:
        assert hit < 0.5, hit


def test_a_pointnet_with_the_image_asks_for_it() -> None:
    pointnet = PointNet(dataclasses.replace(SMALL, pointnet_image=True))
    stack = torch.zeros(1, len(SMALL.lsp_layers), SMALL.image_size, SMALL.image_size)
    with pytest.raises(ValueError, match="needs the images"):
        pointnet(stack)
