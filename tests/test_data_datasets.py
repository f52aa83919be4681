"""Torch datasets: frame content, noise with its bars, pairs within one episode, workers."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from permakey.data.datasets import FrameDataset, PairDataset, dataset_noise
from permakey.data.frames import to_float
from permakey.data.noise import NoiseConfig, bar_mask
from permakey.data.store import write_dataset
from permakey.errors import UserError

LENGTHS = [1, 3, 150, 7, 2]  # episodes of the train split, in order


def _frames_encoding(index, episode):
    """Frames whose pixels say which frame (R, G) and episode (B) they are."""
    frames = np.zeros((len(index), 84, 84, 3), np.uint8)
    frames[..., 0] = (index % 256)[:, None, None]
    frames[..., 1] = (index // 256)[:, None, None]
    frames[..., 2] = episode[:, None, None]
    return frames


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    splits = {}
    for split, lengths in (("train", LENGTHS), ("val", [4]), ("test", [5])):
        episode = np.repeat(np.arange(len(lengths)) + 10 * len(splits), lengths)
        splits[split] = {
            "frames": _frames_encoding(np.arange(len(episode)), episode),
            "episode": episode,
        }
    return write_dataset(tmp_path_factory.mktemp("datasets") / "ds", splits, None)


def _decode(image):
    """(3, H, W) uint8 tensor -> (frame index, episode), read from an unpainted corner pixel."""
    r, g, b = image[:, 0, 0].tolist()
    return r + 256 * g, b


def test_frame_items_are_the_stored_frames(path):
    data = FrameDataset(path, "train")
    assert len(data) == sum(LENGTHS)
    item = data[42]
    assert item["frame"].shape == (3, 84, 84) and item["frame"].dtype == torch.uint8
    assert item["index"] == 42 and _decode(item["frame"]) == (42, 2)
    assert item["bars"].tolist() == [-1, -1]
    with pytest.raises(IndexError):
        data[len(data)]


def test_noise_is_painted_where_the_bars_say_and_reproducible(path):
    cfg = NoiseConfig(kind="both", width=5)
    data = FrameDataset(path, "train", noise=cfg, noise_seed=7)
    item = data[10]
    mask = torch.from_numpy(bar_mask(item["bars"].numpy()[None], 84, 84, cfg)[0])
    colour = torch.tensor(cfg.colour, dtype=torch.uint8)[:, None]
    assert (item["frame"][:, mask] == colour).all()
    assert (item["frame"][:, ~mask] == torch.tensor([10, 0, 2], dtype=torch.uint8)[:, None]).all()
    assert torch.equal(
        FrameDataset(path, "train", noise=cfg, noise_seed=7)[10]["bars"], item["bars"]
    )
    changed = 0
    for epoch in (1, 2, 3):
        data.set_epoch(epoch)
        changed += not torch.equal(data[10]["bars"], item["bars"])
    assert changed >= 2  # fresh bars each epoch (a repeat has probability ~1/80 per epoch)


def test_pairs_stay_in_one_episode_and_respect_the_window_halves(path):
    window = 10
    data = PairDataset(path, "train", window=window, seed=3)
    # One item per frame that can start a window; episodes of 1 frame are skipped and
    # shorter ones give a single window of their whole length.
    assert len(data) == 0 + 1 + (150 - window + 1) + 1 + 1
    episode = data.split.episode
    for epoch in (0, 1):
        data.set_epoch(epoch)
        for i in range(len(data)):
            item = data[i]
            source, target = item["source_index"], item["target_index"]
            assert episode[source] == episode[target]
            assert _decode(item["source"]) == (source, episode[source])
            assert _decode(item["target"]) == (target, episode[target])
            start, size = data.starts[i], data.sizes[i]
            assert start <= source < start + size // 2 <= target < start + size
    fresh = PairDataset(path, "train", window=window, seed=3)
    data.set_epoch(0)
    assert [data.pair(i) for i in range(len(data))] == [fresh.pair(i) for i in range(len(data))]
    fresh.set_epoch(1)
    assert [data.pair(i) for i in range(len(data))] != [fresh.pair(i) for i in range(len(data))]


def test_workers_and_in_memory_give_the_same_batches(path):
    cfg = NoiseConfig(kind="horizontal")
    on_disk = FrameDataset(path, "train", noise=cfg, noise_seed=1)
    in_memory = FrameDataset(path, "train", noise=cfg, noise_seed=1, in_memory=True)
    loader = DataLoader(on_disk, batch_size=16, num_workers=2)
    batches = list(loader)
    frames = torch.cat([b["frame"] for b in batches])
    assert frames.shape == (len(on_disk), 3, 84, 84)
    expected = torch.stack([in_memory[i]["frame"] for i in range(len(in_memory))])
    assert torch.equal(frames, expected)
    pairs = next(
        iter(DataLoader(PairDataset(path, "train", window=20), batch_size=8, num_workers=2))
    )
    assert pairs["source"].shape == (8, 3, 84, 84) and pairs["source_bars"].shape == (8, 2)


def test_to_float_scales_to_unit_range():
    batch = torch.tensor([0, 128, 255], dtype=torch.uint8).reshape(1, 3, 1, 1).expand(2, 3, 4, 4)
    images = to_float(batch, "cpu", channels_last=True)
    assert images.dtype == torch.float32 and images.is_contiguous(memory_format=torch.channels_last)
    assert images.min() == 0.0 and images.max() == 1.0
    assert torch.allclose(images[0, 1], torch.full((4, 4), 128 / 255))
    with pytest.raises(ValueError):
        to_float(images, "cpu")


def test_bad_window_is_refused(path):
    with pytest.raises(ValueError):
        PairDataset(path, "train", window=1)


def test_noise_share_leaves_the_other_frames_clean_and_reaches_pairs(path):
    cfg = NoiseConfig(kind="both")
    data = FrameDataset(path, "train", noise=cfg, noise_seed=2, noise_share=0.5)
    noisy = [bool((data[i]["bars"] >= 0).all()) for i in range(len(data))]
    assert 0.3 < np.mean(noisy) < 0.7
    for i, has_bars in enumerate(noisy):
        if not has_bars:  # a clean frame is the stored frame
            assert _decode(data[i]["frame"]) == (i, data.split.episode[i] % 256)
            assert (data[i]["frame"] == data[i]["frame"][:, :1, :1]).all()
    again = FrameDataset(path, "train", noise=cfg, noise_seed=2, noise_share=0.5)
    assert [bool((again[i]["bars"] >= 0).all()) for i in range(len(data))] == noisy
    pairs = PairDataset(path, "train", window=20, noise=cfg, noise_seed=2, noise_share=0.0)
    assert (pairs[0]["source_bars"] == -1).all() and (pairs[0]["target_bars"] == -1).all()
    with pytest.raises(ValueError, match="noise_share"):
        FrameDataset(path, "train", noise=cfg, noise_share=2.0)


def test_bars_before_the_resize_need_a_dataset_resized_from_raw_frames(path):
    # This dataset was written directly at 84 x 84: it has no resize to paint before.
    with pytest.raises(UserError, match="resize None"):
        dataset_noise(path, "both", before_resize=True)
    assert dataset_noise(path, "none", before_resize=True) == NoiseConfig()
    assert dataset_noise(path, "both", 3, (1, 2, 3), True) == NoiseConfig(
        "both", 3, (1, 2, 3), True
    )
    with pytest.raises(UserError, match="width"):
        dataset_noise(path, "both", width=0)
    with pytest.raises(ValueError, match="resized with None"):
        FrameDataset(path, "train", noise=NoiseConfig("both", before_resize="area"))
