"""The models' inference forms (BatchNorm folded into the convs, channels_last; what eval-mode
``detect`` and ``feature_maps`` run): the keypoints and features of the modules themselves,
on real frames of the shipped models, with less work; training is untouched."""

from __future__ import annotations

import copy
import dataclasses

import ale_py
import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import permakey
from permakey.data.frames import resize_frame, to_float
from permakey.envs.observation import KeypointEncoder
from permakey.keypoints import centres_from_maps, gaussian_windows
from permakey.models import blocks
from permakey.models.permakey import PRESETS, PermaKey, PermaKeyConfig, normalised_error_stack
from permakey.models.transporter import Transporter, TransporterConfig
from permakey.runs import TrainedModel, pool_features
from permakey.runs.pretrained import available

gym.register_envs(ale_py)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One thread, as agents run the models (`conftest.one_thread`)."""


def plain_permakey(model: PermaKey, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The old computation, on the modules: (B, K, 2) centres and (B, K, C) pooled features."""
    with torch.no_grad():
        features = model.vae.encoder(images, blocks=max(model.config.lsp_layers) + 1)
        _, error_maps = model._local_prediction(features)
        keypoints = model.pointnet(normalised_error_stack(error_maps, model.config.image_size))
        pooled = [pool_features(features[i], keypoints.windows) for i in model.feature_layers]
    return keypoints.centres, torch.cat(pooled, dim=2)


def plain_transporter(model: Transporter, images: torch.Tensor):
    """The old computation, on the modules: centres, windows and Phi's feature maps."""
    with torch.no_grad():
        centres = centres_from_maps(model.keypointer(images))
        size = model.config.grid_size
        return centres, gaussian_windows(centres, size, size, model.config.gaussian_sigma)


def real_frames(game: str, count: int = 6) -> np.ndarray:
    """(count, 210, 160, 3) uint8 frames of a live ALE game under random actions."""
    env = gym.make(f"ALE/{game}-v5")
    frame, _ = env.reset(seed=3)
    env.action_space.seed(3)
    frames = []
    for step in range(count * 8):
        frame, *_ = env.step(env.action_space.sample())
        if step % 8 == 7:
            frames.append(frame)
    env.close()
    return np.stack(frames)


def with_batchnorm_statistics(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every BatchNorm given running statistics and an affine map far from the identity, so
    that folding them is tested (fresh models have mean 0, variance 1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
                module.running_var.copy_(torch.rand(n, generator=gen) * 2 + 0.2)
                module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                module.bias.copy_(torch.rand(n, generator=gen) - 0.5)
    return model


class OpCounter(TorchDispatchMode):
    """Counts the aten operators a block of code runs, by name (``convolution``...)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.counts[name] = self.counts.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


class ConvDtypes(TorchDispatchMode):
    """Records the input dtype of every convolution a block of code runs."""

    def __init__(self) -> None:
        super().__init__()
        self.dtypes: list[torch.dtype] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if "convolution" in func.overloadpacket.__name__:
            self.dtypes.append(args[0].dtype)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("game", available() or ["none shipped"])
def test_mixed_precision_keeps_the_shipped_models_keypoints_within_half_a_pixel(game):
    if game == "none shipped":
        pytest.skip("no pretrained models are installed")
    exact = permakey.load(f"pretrained:{game}")
    mixed = permakey.load(f"pretrained:{game}", precision="mixed")
    raw = real_frames(game, 16)
    frames = np.stack([resize_frame(f, exact.frames.size, exact.frames.resize) for f in raw])
    convs = ConvDtypes()
    with convs:
        found = mixed.keypoints(frames, windows=False).centres
    # The LSP networks' first layers ran in bf16, one per LSP layer and 16-frame pass.
    assert convs.dtypes.count(torch.bfloat16) == len(exact.model.config.lsp_layers)
    pixels = (found - exact.keypoints(frames, windows=False).centres).norm(dim=-1)
    assert pixels.max() * (exact.frames.size - 1) / 2 < 0.5


def test_mixed_precision_runs_the_transporter_keypointer_in_bf16_within_half_a_pixel():
    torch.manual_seed(0)
    model = with_batchnorm_statistics(Transporter(TransporterConfig(num_keypoints=6))).eval()
    raw = real_frames("MsPacman", 8)
    frames = np.stack([resize_frame(f, 84, "area") for f in raw])
    convs = ConvDtypes()
    with convs:
        found = TrainedModel(model, precision="mixed").keypoints(frames, windows=False).centres
    # Psi's four blocks in bf16, its 1 x 1 head in float32.
    assert convs.dtypes.count(torch.bfloat16) == 4
    assert convs.dtypes.count(torch.float32) == 1
    exact = TrainedModel(model).keypoints(frames, windows=False).centres
    assert (found - exact).norm(dim=-1).max() * 83 / 2 < 0.5


@pytest.mark.parametrize("kind", ["permakey", "transporter"])
def test_mixed_precision_outside_the_inference_form_is_refused(kind):
    model = PermaKey(CONFIGS["small"]) if kind == "permakey" else Transporter(TransporterConfig(
        image_size=16, channels=(4, 4), kernels=(3, 3), strides=(1, 2), num_keypoints=3
    ))  # fmt: skip
    with pytest.raises(ValueError, match="mixed precision is for inference"):
        model.train().detect(torch.rand(2, 3, 16, 16), mixed=True)


@pytest.mark.parametrize("game", available() or ["none shipped"])
def test_shipped_models_give_the_modules_keypoints_and_features_on_real_frames(game):
    if game == "none shipped":
        pytest.skip("no pretrained models are installed")
    trained = permakey.load(f"pretrained:{game}")
    raw = real_frames(game)
    frames = np.stack([resize_frame(f, trained.frames.size, trained.frames.resize) for f in raw])
    centres, features = plain_permakey(
        trained.model, to_float(torch.from_numpy(frames).permute(0, 3, 1, 2), "cpu")
    )
    for batch in (1, None, len(frames)):  # one environment, the default, a vector of them
        out = trained.keypoints(frames, batch_size=batch, windows=False, features=True)
        pixels = (out.centres - centres).abs().max() * (trained.frames.size - 1) / 2
        assert pixels < 0.01
        assert (out.features - features).abs().max() <= 1e-4 * features.abs().max()
        torch.testing.assert_close(out.features, features, rtol=1e-4, atol=1e-5)
    # What an agent sees: the flat observation of the raw frames.
    encoder = KeypointEncoder(trained, features=True)
    expected = torch.cat([centres.clamp(-1, 1), features], dim=2).flatten(1).numpy()
    np.testing.assert_allclose(encoder(raw), expected, rtol=1e-4, atol=1e-5)


def test_keypoints_with_features_fold_batchnorm_and_run_each_conv_once():
    trained = permakey.load(f"pretrained:{available()[0]}") if available() else None
    if trained is None:
        pytest.skip("no pretrained models are installed")
    frames = np.zeros((2, 84, 84, 3), np.uint8)
    counter = OpCounter()
    with counter:
        trained.keypoints(frames, windows=False, features=True)
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in trained.model.modules())
    decoder = sum(isinstance(m, torch.nn.Conv2d) for m in trained.model.vae.decoder.modules())
    later = len(trained.config.encoder_channels) - max(trained.config.lsp_layers) - 1
    needed = convs - decoder - later  # encoder up to the last LSP layer, LSP nets, PointNet
    assert not any("batch_norm" in name for name in counter.counts)
    # The old path ran the encoder twice (once more for the features): needed + 2 here.
    assert counter.counts.get("convolution", 0) <= needed


def test_inference_fuses_conv_and_relu_on_the_cpu_with_the_unfused_numbers(monkeypatch):
    if blocks._fused_conv_relu() is None:
        pytest.skip("this torch build has no fused oneDNN convolution")
    torch.manual_seed(0)
    model = with_batchnorm_statistics(Transporter(TransporterConfig(num_keypoints=4))).eval()
    images = torch.rand(5, 3, 84, 84)
    counter = OpCounter()
    with torch.no_grad(), counter:
        fused = model.detect(images).centres
    # Psi's four blocks: each a fused conv + ReLU; only its 1x1 head is a plain convolution.
    assert counter.counts.get("_convolution_pointwise") == 4
    assert counter.counts.get("convolution") == 1 and "relu_" not in counter.counts
    monkeypatch.setattr(blocks, "_fused_conv_relu", lambda: None)
    with torch.no_grad():
        plain = model.detect(images).centres
    torch.testing.assert_close(fused, plain, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["permakey", "transporter"])
def test_detect_without_windows_gives_the_same_centres_and_draws_none(kind):
    torch.manual_seed(0)
    model = (PermaKey(CONFIGS["small"]) if kind == "permakey" else Transporter(TransporterConfig(
        image_size=16, channels=(4, 4), kernels=(3, 3), strides=(1, 2), num_keypoints=3
    ))).eval()  # fmt: skip
    images = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        drawn, skipped = model.detect(images), model.detect(images, windows=False)
    assert skipped.windows is None and drawn.windows.shape[:2] == (2, 3)
    assert torch.equal(drawn.centres, skipped.centres)
    # TrainedModel draws them only when they are returned or pool the features.
    trained = TrainedModel(model)
    frames = (images * 255).round().to(torch.uint8)
    assert trained.keypoints(frames, windows=False).windows is None
    assert trained.keypoints(frames, windows=False, features=True).features.shape[:2] == (2, 3)


CONFIGS = {
    "small": PermaKeyConfig(
        image_size=16, encoder_channels=(4, 8), encoder_kernels=(4, 3),
        encoder_strides=(1, 2), latent_dim=4, lsp_hidden=(8, 6), num_keypoints=3,
    ),
    # The authors' LSP form (8ppC-wide first layer, BatchNorm), sqrt error maps, coordinates.
    "authors-bn-sqrt": dataclasses.replace(
        PRESETS["authors-code"], image_size=16, encoder_channels=(4, 8, 8),
        encoder_kernels=(4, 3, 3), encoder_strides=(2, 1, 1), latent_dim=4, lsp_layers=(0, 2),
        num_keypoints=3, error_map_sqrt=True, pointnet_coords=True,
    ),
    # A linear predictor (no hidden layer) and p = 4.
    "linear-p4": PermaKeyConfig(
        image_size=16, encoder_channels=(4,), encoder_kernels=(3,), encoder_strides=(1,),
        latent_dim=4, lsp_layers=(0,), lsp_hidden=(), patch_size=4, num_keypoints=2,
    ),
    # Directional LSP networks, with BatchNorm, and as linear predictors.
    "directional-bn": dataclasses.replace(
        PRESETS["authors-code"], image_size=16, encoder_channels=(4, 8), encoder_kernels=(4, 3),
        encoder_strides=(1, 2), latent_dim=4, lsp_hidden=(8, 6), num_keypoints=3,
        lsp_directional=True,
    ),
    "directional-linear": PermaKeyConfig(
        image_size=16, encoder_channels=(4,), encoder_kernels=(3,), encoder_strides=(1,),
        latent_dim=4, lsp_layers=(0,), lsp_hidden=(), num_keypoints=2, lsp_directional=True,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CONFIGS))
def test_eval_detect_matches_the_modules_and_training_mode_is_the_modules(name):
    config = CONFIGS[name]
    torch.manual_seed(0)
    model = with_batchnorm_statistics(PermaKey(config)).eval()
    images = torch.rand(3, 3, config.image_size, config.image_size)
    centres, features = plain_permakey(model, images)
    found = model.detect(images)
    torch.testing.assert_close(found.centres, centres, rtol=0, atol=1e-5)
    plain_maps = model._local_prediction(
        model.vae.encoder(images, blocks=max(config.lsp_layers) + 1)
    )[1]
    for fast, plain in zip(found.error_maps, plain_maps, strict=True):
        torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-6)
    for fast, plain in zip(found.feature_maps, model.vae.encoder(images), strict=False):
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-6)
    # Training mode (batch statistics) runs the modules, exactly.
    twin = copy.deepcopy(model).train()
    model.train()
    trained = model.detect(images)
    features_t = twin.vae.encoder(images, blocks=max(config.lsp_layers) + 1)
    with torch.no_grad():
        stack = normalised_error_stack(twin._local_prediction(features_t)[1], config.image_size)
        expected = twin.pointnet(stack)
    assert torch.equal(trained.centres, expected.centres)


def test_the_inference_form_follows_the_weights_and_leaves_the_state_alone():
    config = CONFIGS["authors-bn-sqrt"]
    torch.manual_seed(1)
    model = with_batchnorm_statistics(PermaKey(config)).eval()
    images = torch.rand(2, 3, config.image_size, config.image_size)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    before = model.detect(images).centres
    assert model.state_dict().keys() == state.keys()  # nothing added
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    # An optimizer step (in place) and a loaded state dict both reach the next detect.
    model.train()
    model(images).total.backward()
    torch.optim.SGD(model.parameters(), lr=0.5).step()
    model.eval()
    after = model.detect(images).centres
    torch.testing.assert_close(after, plain_permakey(model, images)[0], rtol=0, atol=1e-5)
    assert not torch.allclose(after, before)
    model.load_state_dict(state)
    torch.testing.assert_close(model.detect(images).centres, before, rtol=0, atol=1e-6)
    # With gradients on, eval-mode calls run the modules (the folded tensors have none).
    with torch.enable_grad():
        assert model.feature_maps(images)[0].requires_grad


def test_transporter_eval_detect_and_features_match_the_modules_with_gradients_kept():
    config = TransporterConfig(
        image_size=16, channels=(4, 8), kernels=(4, 3), strides=(1, 2), num_keypoints=3
    )
    torch.manual_seed(2)
    model = with_batchnorm_statistics(Transporter(config)).eval()
    images = torch.rand(3, 3, 16, 16)
    centres, windows = plain_transporter(model, images)
    with torch.no_grad():
        found = model.detect(images)
        features = model.feature_maps(images)
        plain = model.features(images)
    torch.testing.assert_close(found.centres, centres, rtol=0, atol=1e-5)
    torch.testing.assert_close(found.windows, windows, rtol=0, atol=1e-5)
    for fast, slow in zip(features, plain, strict=True):
        torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)
    # With gradients on (training, or eval with grad), detect runs Psi itself.
    model.detect(images).centres.sum().backward()
    assert model.keypointer.head.weight.grad is not None
