"""Tiny synthetic datasets in the store format, for tests and benchmarks; not for research use.

A dataset of coloured sprites over a predictable background, written as `permakey collect`
writes one, for code that needs a dataset without running the emulator (training, loading,
evaluation, wrappers, benchmarks). Each episode has a few square sprites of distinct colours
that move at constant speed and bounce off the frame's edges, over a fixed background of soft
horizontal stripes (locally predictable, so a good local predictor errs on the sprites, not on
the background). The sprites are the ground-truth objects (category "Sprite", boxes in frame
pixels, the sprite's index in its episode as its identity).

This module sits in the data layer: it imports `permakey.data` and the base modules only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from permakey.data import store
from permakey.fileio import atomic_dir, write_json_atomic

COLOURS = np.array(
    [[230, 40, 40], [40, 220, 60], [60, 90, 240], [240, 220, 40], [220, 60, 220]], np.uint8
)


def background(size: int) -> np.ndarray:
    """(size, size, 3) uint8: grey horizontal stripes, 4 pixels per period."""
    rows = 60 + 20 * (np.arange(size) // 2 % 2)  # (size,)
    return np.broadcast_to(rows[:, None, None], (size, size, 3)).astype(np.uint8)


def sprite_episode(
    rng: np.random.Generator,
    length: int,
    size: int,
    sprites: int,
    sprite_size: int,
    area: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One episode.

    Args:
        area: sprites stay in the top-left ``area x area`` pixels (the whole frame if None).

    Returns:
        frames (length, size, size, 3) uint8 and boxes (length, sprites, 4) float32
        (x, y, w, h) in pixels.
    """
    top = (area or size) - sprite_size
    pos = rng.uniform(0, top, size=(sprites, 2))  # (S, 2) as (x, y)
    speed = rng.uniform(1.0, 3.0, size=(sprites, 2)) * rng.choice([-1.0, 1.0], size=(sprites, 2))
    frames = np.repeat(background(size)[None], length, axis=0)
    boxes = np.zeros((length, sprites, 4), np.float32)
    for t in range(length):
        for s in range(sprites):
            x, y = np.round(pos[s]).astype(int)
            frames[t, y : y + sprite_size, x : x + sprite_size] = COLOURS[s % len(COLOURS)]
            boxes[t, s] = (x, y, sprite_size, sprite_size)
        pos += speed
        # Bounce: reflect positions and velocities that left [0, top].
        low, high = pos < 0, pos > top
        pos[low], pos[high] = -pos[low], 2 * top - pos[high]
        speed[low | high] *= -1
    return frames, boxes


def make_sprites_dataset(
    path: str | Path,
    frames: dict[str, int] | None = None,
    episode_length: int = 64,
    size: int = 84,
    sprites: int = 3,
    sprite_size: int = 8,
    area: int | None = None,
    seed: int = 0,
) -> Path:
    """Writes a sprite dataset folder (meta.json, {train,val,test}.h5) as `permakey collect` would.

    Args:
        path: the dataset folder to create.
        frames: frames per split; default {"train": 256, "val": 64, "test": 64}.
        episode_length: frames per episode (the last episode of a split may be shorter).
        size: frame height and width.
        sprites: sprites per episode.
        sprite_size: sprite side in pixels.
        area: sprites stay in the top-left ``area x area`` pixels (the whole frame if None).
        seed: seed of the sprites' starting positions and speeds.

    Returns:
        ``path``.
    """
    frames = frames or {"train": 256, "val": 64, "test": 64}
    rng = np.random.default_rng(seed)
    path = Path(path)
    digests, episodes, episode = {}, {}, 0
    with atomic_dir(path) as tmp:
        for split in store.SPLITS:
            n = frames[split]
            writer = store.SplitWriter(store.split_path(tmp, split), n, (size, size, 3))
            written, episodes[split] = 0, 0
            while written < n:
                length = min(episode_length, n - written)
                images, boxes = sprite_episode(rng, length, size, sprites, sprite_size, area)
                for t in range(length):
                    writer.append(
                        {"frames": images[t]},
                        episode,
                        t,
                        0,
                        0.0,
                        np.zeros(sprites),
                        boxes[t],
                        object_ids=np.arange(sprites),
                    )
                written += length
                episode += 1
                episodes[split] += 1
            digests[split] = writer.close(categories_of_dataset=1)
        write_json_atomic(
            store.meta_path(tmp),
            {
                "format": store.FORMAT,
                "format_version": store.FORMAT_VERSION,
                "game": "Sprites",
                "env_id": "synthetic/Sprites",
                "seed": seed,
                "policy": "synthetic",
                "frame_size": [size, size],
                "raw_frames": False,
                "resize": "none",
                "has_objects": True,
                "objects_source": "synthetic",
                "object_ids": {"method": "slot"},
                "categories": ["Sprite"],
                "split_order": list(store.SPLITS),
                "splits": {
                    s: {"frames": frames[s], "episodes": episodes[s], "sha256": digests[s]}
                    for s in store.SPLITS
                },
            },
        )
    return path
