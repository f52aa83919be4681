"""Short training runs on synthetic sprites learn what they should; torchrun trains with 2 processes.

The sprites move inside the top-left quarter of the frame over a striped, predictable
background, so an untrained model's keypoints (near the frame's centre) and random points are
both far from them: keypoints near the sprites show that training put them there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import permakey
from permakey.data.store import open_split
from permakey.models.permakey import PermaKeyConfig
from permakey.models.transporter import TransporterConfig
from permakey.testing import make_sprites_dataset
from permakey.training.config import PermaKeyTrainConfig, TransporterTrainConfig
from permakey.training.loop import train
from permakey.training.permakey import PermaKeyMethod
from permakey.training.transporter import TransporterMethod

SIZE = 84


@pytest.fixture(scope="module")
def sprites(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "sprites"
    return make_sprites_dataset(
        path, {"train": 256, "val": 64, "test": 64}, size=SIZE, sprite_size=8, area=SIZE // 2
    )


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test of this file runs on one thread (`conftest.one_thread`)."""


def sprite_truth(sprites) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Test frames (N, S, S, 3) uint8, sprite masks (N, S, S) bool, sprite centres per frame."""
    split = open_split(sprites, "test")
    frames = split.frames[()]
    masks = np.zeros(frames.shape[:3], bool)
    centres = []
    for i in range(len(frames)):
        boxes = np.stack([o.box for o in split.objects(i)]).astype(int)  # (S, 4) x, y, w, h
        for x, y, w, h in boxes:
            masks[i, y : y + h, x : x + w] = True
        centres.append(
            np.stack([boxes[:, 1] + (boxes[:, 3] - 1) / 2, boxes[:, 0] + (boxes[:, 2] - 1) / 2], 1)
        )
    return frames, masks, centres


def mean_distance(pixels: np.ndarray, centres: list[np.ndarray]) -> float:
    """Mean over frames and points of the distance (pixels) to the nearest sprite centre."""
    return float(
        np.mean(
            [
                np.linalg.norm(pixels[i][:, None] - centres[i][None], axis=-1).min(axis=1).mean()
                for i in range(len(pixels))
            ]
        )
    )


def assert_keypoints_near_sprites(loaded, frames, centres) -> None:
    pixels = loaded.keypoints(frames).pixels.numpy()  # (N, K, 2)
    rng = np.random.default_rng(0)
    random = mean_distance(rng.uniform(0, SIZE - 1, pixels.shape), centres)
    centre = mean_distance(np.full(pixels.shape, (SIZE - 1) / 2), centres)
    found = mean_distance(pixels, centres)
    assert found < 0.6 * random, (found, random)
    assert found < 0.8 * centre, (found, centre)


@pytest.mark.slow
def test_permakey_error_maps_and_keypoints_find_the_sprites(sprites, tmp_path):
    model_config = PermaKeyConfig(
        encoder_channels=(8, 16, 16, 16), latent_dim=8, lsp_hidden=(32,), num_keypoints=3
    )
    cfg = PermaKeyTrainConfig(
        data=str(sprites), batch_size=16, epochs=3, lr_lsp=3e-3, lr_pointnet=3e-3,
        workers=0, in_memory=True, progress=False, device="cpu",
    )  # fmt: skip
    train(PermaKeyMethod(), cfg, model_config, tmp_path / "run")
    loaded = permakey.load(tmp_path / "run", "last")
    frames, masks, centres = sprite_truth(sprites)
    errors = loaded.keypoints(frames, error_maps=True).error_stack.sum(dim=1).numpy()  # (N, S, S)
    # Untrained, the background's stripes err more than the sprites; trained, the sprites do.
    assert errors[masks].mean() > 3 * errors[~masks].mean()
    assert_keypoints_near_sprites(loaded, frames, centres)


@pytest.mark.slow
def test_transporter_keypoints_find_the_moving_sprites(sprites, tmp_path):
    model_config = TransporterConfig(channels=(16, 16, 16, 16), num_keypoints=3)
    cfg = TransporterTrainConfig(
        data=str(sprites), batch_size=16, epochs=10, lr=3e-3, window=16,
        workers=0, in_memory=True, progress=False, device="cpu",
    )  # fmt: skip
    train(TransporterMethod(), cfg, model_config, tmp_path / "run")
    frames, _, centres = sprite_truth(sprites)
    assert_keypoints_near_sprites(permakey.load(tmp_path / "run", "last"), frames, centres)


@pytest.mark.slow
def test_torchrun_with_two_cpu_processes_writes_one_run_folder(sprites, tmp_path):
    run = tmp_path / "runs" / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--standalone", "-m", "permakey", "train", "permakey",
        "--data", str(sprites), "--out", str(run), "--epochs", "1", "--batch-size", "16",
        "--max-steps", "4", "--val-limit", "16", "--workers", "1", "--device", "cpu",
        "--no-progress", "--num-keypoints", "3", "--pointnet-updates", "2",
        "--model", "encoder_channels=[8, 8, 8, 8]", "--model", "lsp_hidden=[16]",
    ]  # fmt: skip
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(permakey.__file__).parents[1]),
    }
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert os.listdir(tmp_path / "runs") == ["ddp"]
    info = json.loads((run / "run.json").read_text())
    assert (info["world_size"], info["status"], info["step"]) == (2, "stopped", 4)
    assert done.stdout.count("permakey: stopped at step 4") == 1  # rank 0 alone reports
    loaded = permakey.load(run, "last")
    assert loaded.keypoints(np.zeros((1, SIZE, SIZE, 3), np.uint8)).centres.shape == (1, 3, 2)
