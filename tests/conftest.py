"""Fixtures and helpers shared by several test modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from permakey.runs import FrameSpec
from permakey.training import get_method
from permakey.training.run import RunFolder


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from a second thread on a 2-core machine; contention costs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_run(folder: Path, kind: str, model_config: Any, seed: int, frames: bool = True) -> Path:
    """A real run folder of an untrained model, as `permakey train` writes it.

    ``best`` holds the initial weights (step 0), ``last`` weights that differ from them
    (step 1). ``frames=False`` writes run.json as it was before it recorded its frames.
    """
    method = get_method(kind)
    torch.manual_seed(seed)
    model = method.build_model(model_config)
    run = RunFolder(folder)
    info = {
        "kind": kind,
        "model": model_config.to_dict(),
        "train": method.config_class(seed=seed).to_dict(),
    }
    if frames:
        info["frames"] = FrameSpec(model_config.image_size).to_json()
    run.create(info, model, overwrite=False)
    run.save_weights("best", model, 0)
    with torch.no_grad():  # last weights that differ from the best ones
        next(model.parameters()).add_(1.0)
    run.save_weights("last", model, 1)
    return folder
