"""Shared fixtures, and the tiny models and training options that several test files train.

Test files import the plain names (``from conftest import TINY_PERMAKEY, tiny_cfg``); the
synthetic datasets they train on come from `permakey.testing`.
"""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from permakey.models.permakey import PermaKeyConfig
from permakey.models.transporter import TransporterConfig
from permakey.training.config import PermaKeyTrainConfig

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
