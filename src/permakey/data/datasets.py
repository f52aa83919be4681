"""Torch datasets of stored frames: single frames (PermaKey) and frame pairs (Transporter).

Items hold uint8 tensors (3, H, W); `permakey.data.frames.to_float` turns a batch into floats in [0, 1] on the
training device (moving uint8 is 4x cheaper than moving floats). Noisy Atari bars are painted
on the fly and returned with the frame (on a share of the frames, ``noise_share``; every frame
by default, as in the paper); the objects of a frame are at ``dataset.split.objects(item["index"])``.
`dataset_noise` makes the `NoiseConfig` of a dataset from the options that describe the bars.

Memory: with ``in_memory=False`` frames are read from the HDF5 file chunk by chunk as items
are asked for, so a 95,000-frame dataset needs little RAM; ``in_memory=True`` loads the
split's frames into one numpy array (about 2 GB for 95,000 frames of 84 x 84 x 3), which is
faster on CPU. Either way the datasets work with DataLoader worker processes: each process
opens the file itself.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from permakey.data.frames import RESIZE_METHODS
from permakey.data.noise import NoiseConfig, frame_bars, paint_bars
from permakey.data.store import Split, open_split, read_meta
from permakey.errors import UserError

NO_NOISE = NoiseConfig()


def dataset_noise(
    data: str | os.PathLike,
    kind: str = "none",
    width: int = 5,
    colour: tuple[int, int, int] = (128, 0, 255),
    random_colour: bool = False,
    before_resize: bool = False,
) -> NoiseConfig:
    """The Noisy Atari bars of a dataset: painted on its stored frames, or (``before_resize``)
    as if on the raw frames before the dataset's own resize (see `permakey.data.noise`).

    Args:
        data: the dataset folder (its meta.json is read only for ``before_resize``).
        kind: "none", "horizontal", "vertical" or "both".
        width: bar thickness in stored pixels (>= 1).
        colour: RGB, each 0-255.
        random_colour: a fresh colour per frame instead of ``colour``.
        before_resize: paint before the resize.

    Raises:
        UserError: ``before_resize`` on a dataset whose frames were not resized from raw ALE
            frames by a known method (e.g. the synthetic test datasets), or bad values.
    """
    resize = None
    if before_resize and kind != "none":
        resize = read_meta(data).get("resize")
        if resize not in RESIZE_METHODS:
            raise UserError(
                f"bars before the resize need frames resized from raw ALE frames, and {data} "
                f"has resize {resize!r} (not one of {', '.join(RESIZE_METHODS)})"
            )
    try:
        return NoiseConfig(kind, width, tuple(colour), random_colour, resize)
    except ValueError as err:
        raise UserError(str(err)) from None


class _NoisyFrames(Dataset):
    """Reads frames of one split, with Noisy Atari bars painted per (seed, epoch, index)."""

    def __init__(
        self,
        path: str | os.PathLike,
        split: str,
        noise: NoiseConfig,
        noise_seed: int,
        in_memory: bool,
        noise_share: float,
    ):
        if noise_seed < 0:
            raise ValueError(f"noise_seed must be >= 0, got {noise_seed}")
        if not 0.0 <= noise_share <= 1.0:
            raise ValueError(f"noise_share must be in [0, 1], got {noise_share}")
        self.split: Split = open_split(path, split)
        resize = self.split.meta.get("resize")
        if noise.before_resize not in (None, resize):
            raise ValueError(
                f"bars painted before a {noise.before_resize!r} resize, but {path} was resized "
                f"with {resize!r}"
            )
        self.noise = noise
        self.noise_seed = noise_seed
        self.noise_share = noise_share
        self.epoch = 0
        self._memory = self.split.read_frames(slice(None)) if in_memory else None
        self.height, self.width = self.split.frames.shape[1:3]
        # Each process (DataLoader workers included) reopens the file on first read.
        self.split.close()

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose noise to draw: fresh bars each training epoch.

        Leave it at 0 for validation and test, whose noise then stays the same.
        """
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def _read(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames (n, 3, H, W) uint8 with bars painted, and their bars (n, 2) (see
        `permakey.data.noise.draw_bars`; -1 for a clean frame)."""
        frames = (
            self._memory[indices] if self._memory is not None else self.split.read_frames(indices)
        )
        bars = frame_bars(
            self.noise_seed,
            self.epoch,
            indices,
            self.height,
            self.width,
            self.noise,
            self.noise_share,
        )
        if self.noise.kind != "none":
            frames = paint_bars(frames, bars, self.noise)
        images = torch.from_numpy(
            np.ascontiguousarray(frames.transpose(0, 3, 1, 2))
        )  # (n, 3, H, W)
        return images, torch.from_numpy(bars)


def _check_index(index: int, length: int) -> int:
    if not 0 <= index < length:
        raise IndexError(f"index {index} out of range for {length} items")
    return int(index)


class FrameDataset(_NoisyFrames):
    """Single frames of one split.

    Args:
        path: the dataset folder.
        split: "train", "val" or "test".
        noise: Noisy Atari bars to paint (none by default).
        noise_seed: seed of the bars; with the epoch and frame index it fixes them.
        in_memory: load all frames of the split into RAM at once.
        noise_share: the probability in [0, 1] that a frame has bars (1: all, the paper's).

    Items are dicts: ``frame`` (3, H, W) uint8 tensor, ``index`` int (frame index in the
    split), ``bars`` (2,) tensor (see `permakey.data.noise`).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        split: str,
        noise: NoiseConfig = NO_NOISE,
        noise_seed: int = 0,
        in_memory: bool = False,
        noise_share: float = 1.0,
    ):
        super().__init__(path, split, noise, noise_seed, in_memory, noise_share)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> dict:
        index = _check_index(index, len(self))
        images, bars = self._read([index])
        return {"frame": images[0], "index": index, "bars": bars[0]}


class PairDataset(_NoisyFrames):
    """Pairs of frames from one episode: a source and a later target (Transporter).

    Item i is a window of ``window`` consecutive frames of one episode (the whole episode if
    it is shorter; episodes of fewer than 2 frames are skipped), one per frame that can start
    such a window. The source is drawn uniformly from the window's first half, the target
    from its second half (the longer half when the window is odd), both from
    (seed, epoch, i) alone. Frames of two episodes are never paired.

    Args:
        path: the dataset folder.
        split: "train", "val" or "test".
        window: frames per window (>= 2); 100 in the paper.
        noise: Noisy Atari bars to paint (none by default).
        noise_seed: seed of the bars (a frame gets the same bars as in `FrameDataset`).
        in_memory: load all frames of the split into RAM at once.
        seed: seed of the pair sampling.
        noise_share: the probability in [0, 1] that a frame has bars (source and target each).

    Items are dicts: ``source``, ``target`` (3, H, W) uint8 tensors, ``source_index``,
    ``target_index`` ints, ``source_bars``, ``target_bars`` (2,) tensors.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        split: str,
        window: int = 100,
        noise: NoiseConfig = NO_NOISE,
        noise_seed: int = 0,
        in_memory: bool = False,
        seed: int = 0,
        noise_share: float = 1.0,
    ):
        if window < 2:
            raise ValueError(f"window must be >= 2 frames, got {window}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        super().__init__(path, split, noise, noise_seed, in_memory, noise_share)
        self.window = window
        self.seed = seed
        episode = self.split.episode
        # Runs of equal episode id: [begin, end) in frame indices.
        cuts = np.flatnonzero(np.diff(episode)) + 1
        begins = np.concatenate([[0], cuts]).astype(np.int64)
        ends = np.concatenate([cuts, [len(episode)]]).astype(np.int64)
        starts, sizes = [], []
        for begin, end in zip(begins, ends, strict=True):
            length = end - begin
            if length < 2:
                continue
            size = min(window, length)
            starts.append(np.arange(begin, end - size + 1))
            sizes.append(np.full(length - size + 1, size))
        self.starts = np.concatenate(starts) if starts else np.zeros(0, np.int64)
        self.sizes = np.concatenate(sizes) if sizes else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.starts)

    def pair(self, index: int) -> tuple[int, int]:
        """The (source, target) frame indices of item ``index`` in the current epoch."""
        index = _check_index(index, len(self))
        start, size = int(self.starts[index]), int(self.sizes[index])
        half = size // 2
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return start + int(rng.integers(half)), start + half + int(rng.integers(size - half))

    def __getitem__(self, index: int) -> dict:
        source, target = self.pair(index)
        images, bars = self._read([source, target])
        return {
            "source": images[0],
            "target": images[1],
            "source_index": source,
            "target_index": target,
            "source_bars": bars[0],
            "target_bars": bars[1],
        }
