"""Fixtures and helpers shared by several test modules.

Test files import the plain names (``from conftest import TINY_PERMAKEY, tiny_cfg``); the
synthetic datasets they train on come from `permakey.testing`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from permakey.models.permakey import PermaKeyConfig
from permakey.models.transporter import TransporterConfig
from permakey.runs import FrameSpec
from permakey.training import get_method
from permakey.training.config import PermaKeyTrainConfig
from permakey.training.run import RunFolder

# A PermaKey and a Transporter small enough to train for a few epochs in seconds on one core.
TINY_PERMAKEY = PermaKeyConfig(
    image_size=32, encoder_channels=(8, 8, 8, 8), latent_dim=4, lsp_hidden=(16,), num_keypoints=3
)
TINY_TRANSPORTER = TransporterConfig(image_size=32, channels=(8, 8, 8, 8), num_keypoints=3)


def tiny_cfg(data: str | Path, **changes) -> PermaKeyTrainConfig:
    """Training options for a tiny run on CPU: batch 8, 2 epochs, no workers, no progress bar.

    Args:
        data: the dataset folder.
        changes: fields to change.
    """
    base = PermaKeyTrainConfig(
        data=str(data), batch_size=8, epochs=2, workers=0, progress=False, device="cpu", log_every=4
    )
    return replace(base, **changes)


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from a second thread on a 2-core machine; contention costs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_run(
    folder: Path, kind: str, model_config: Any, seed: int, frames: bool = True, **train: Any
) -> Path:
    """A real run folder of an untrained model, as `permakey train` writes it.

    ``best`` holds the initial weights (step 0), ``last`` weights that differ from them
    (step 1). ``frames=False`` writes run.json as it was before it recorded its frames;
    ``train`` sets training options of its run.json (e.g. the bars it trained on).
    """
    method = get_method(kind)
    torch.manual_seed(seed)
    model = method.build_model(model_config)
    run = RunFolder(folder)
    info = {
        "kind": kind,
        "model": model_config.to_dict(),
        "train": method.config_class(seed=seed, **train).to_dict(),
    }
    if frames:
        info["frames"] = FrameSpec(model_config.image_size).to_json()
    run.create(info, model, {"step": 0}, overwrite=False)  # a state to load, not to resume
    run.save_best(model, 0)
    with torch.no_grad():  # last weights that differ from the best ones
        next(model.parameters()).add_(1.0)
    run.save_checkpoint(model, {"step": 1})
    return folder


def write_status(run: Path, status, checkpoint=False):
    """A run folder's run.json with ``status`` and, optionally, a checkpoint folder (empty files)."""
    run.mkdir(parents=True, exist_ok=True)
    info = {"format": "permakey-run", "kind": "permakey", "model": {}, "train": {}}
    (run / "run.json").write_text(json.dumps({**info, "status": status, "step": 3}))
    if checkpoint:
        folder = run / "checkpoints" / "step-00000003"
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("last.safetensors", "state.pt"):
            (folder / name).write_bytes(b"")


class FakeSteps:
    """Plays each step's effect on the folders instead of running it."""

    def __init__(self):
        self.calls = []

    def __call__(self, step, log):
        self.calls.append(step)
        kwargs = step.kwargs
        if step.kind == "collect":
            Path(kwargs["out"]).mkdir(parents=True)
            (Path(kwargs["out"]) / "meta.json").write_text("{}")
        elif step.kind in ("train", "resume"):
            write_status(Path(kwargs.get("out") or kwargs["run"]), "stopped", checkpoint=True)
        elif step.kind == "show":
            Path(kwargs["out"]).mkdir(parents=True)
        elif step.kind == "evaluate":
            return 1  # no real evaluation here
        return 0


def emulator_frames(game: str, seed: int, steps: int, every: int, action) -> np.ndarray:
    """Raw (F, 210, 160, 3) uint8 frames of ``ALE/<game>-v5``: every ``every``-th of ``steps``
    steps, taking ``action(t)`` at step t."""
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    env = gym.make(f"ALE/{game}-v5")
    env.reset(seed=seed)
    frames = []
    for t in range(steps):
        obs, *_ = env.step(action(t))
        if t % every == every - 1:
            frames.append(obs)
    env.close()
    return np.stack(frames)
