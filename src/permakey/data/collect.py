"""Collecting a dataset: roll a policy out in ``ALE/<Game>-v5`` and store frames and objects.

Splits are by episode, never by frame. Episodes are played one after another and fill the
splits in the order test, val, train: each split takes whole episodes until the next one
would overflow it, and that last episode is cut to reach the split's exact frame count (its
remaining frames are dropped, not passed on); the next split starts a fresh episode. Filling
test first means the test and validation frames of a seed do not depend on how many training
frames are asked for.

Each stored frame is an observation the policy acted on, with that action and the reward it
earned; the final observation of an episode (nothing was done on it) is not stored.

Reproducible: the one ``seed`` seeds the environment (``reset(seed=...)``, which also seeds
the sticky actions) and the built-in policy's generator, so the same seed gives the same bytes
in every array.

Frames are resized as `permakey.data.frames` says ("area" by default). Objects carry an
identity over their episode, made as `permakey.data.identity` says for the game.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from permakey.data import store
from permakey.data.frames import FRAME_SIZE, RAW_SHAPE, RESIZE_METHODS, resize_frame, scale_boxes
from permakey.data.games import env_id as game_env_id
from permakey.data.games import resolve_game
from permakey.data.identity import GATE_PX, IdentityTracker, identity_method
from permakey.data.policies import make_policy
from permakey.errors import UserError
from permakey.fileio import atomic_dir, write_json_atomic

SPLIT_ORDER = ("test", "val", "train")


def _check_args(
    frames: int,
    val_frames: int,
    test_frames: int,
    seed: int,
    resize: str,
    sticky: float,
    frameskip: int,
) -> None:
    for name, value in (
        ("frames", frames),
        ("val_frames", val_frames),
        ("test_frames", test_frames),
    ):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise UserError(f"{name} must be a positive number of frames, got {value!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {seed!r}")
    if resize not in RESIZE_METHODS:
        raise UserError(
            f"unknown resize method {resize!r}; choose from {', '.join(RESIZE_METHODS)}"
        )
    if not 0.0 <= sticky <= 1.0:
        raise UserError(f"sticky action probability must be in [0, 1], got {sticky!r}")
    if frameskip < 1:
        raise UserError(f"frameskip must be >= 1, got {frameskip!r}")


def _prepare_out(out: Path, overwrite: bool) -> bool:
    """Checks the output folder; returns True if a complete dataset is there to keep."""
    if out.exists():
        if not out.is_dir():
            raise UserError(f"output {out} exists and is not a folder")
        if (out / "meta.json").exists():
            meta = store.read_meta(out)
            if all(store.split_path(out, s).is_file() for s in meta["splits"]):
                return not overwrite
        elif any(out.iterdir()):
            raise UserError(
                f"output folder {out} is not empty and holds no dataset; refusing to replace it"
            )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out.parent):
            pass
    except OSError as err:
        raise UserError(
            f"cannot write to output folder {out.parent}: {err.strerror or err}"
        ) from err
    return False


def _policy_name(policy: str | Callable | None) -> str:
    if policy is None or isinstance(policy, str):
        return policy or "random"
    return f"callable:{getattr(policy, '__qualname__', type(policy).__qualname__)}"


def collect(
    game: str,
    out: str | os.PathLike,
    frames: int = 85_000,
    val_frames: int = 5_000,
    test_frames: int = 5_000,
    seed: int = 0,
    policy: str | Callable[[np.ndarray], int] | None = None,
    objects: bool = True,
    resize: str = "area",
    keep_raw: bool = False,
    overwrite: bool = False,
    sticky: float = 0.25,
    frameskip: int = 4,
    progress: bool = True,
) -> Path:
    """Collects a dataset of one game into the folder ``out`` (see the module docstring).

    Args:
        game: any spelling of an ALE game name ("spaceinvaders", "MsPacman"...).
        out: the dataset folder to create (written to a temporary name, renamed when done).
        frames: training frames.
        val_frames: validation frames.
        test_frames: test frames.
        seed: seeds the environment and the built-in policy; >= 0.
        policy: "random" (default), "random-hold:N", or a callable taking the uint8
            (210, 160, 3) observation and returning an action index.
        objects: record OCAtari object ground truth (needs the ``objects`` extra).
        resize: "area" or "nearest" (see the module docstring).
        keep_raw: also store the raw (210, 160, 3) frames.
        overwrite: replace an existing complete dataset at ``out``.
        sticky: probability of repeating the previous action (0.25 in v5).
        frameskip: emulator frames per step (4 in v5).
        progress: show a progress bar with frames/s.

    Returns:
        The dataset folder.

    Raises:
        UserError: bad arguments, unknown game, unwritable or foreign output folder, or
            ``objects`` without OCAtari installed. An interrupted or failed run leaves no
            dataset behind and an existing one untouched.
    """
    _check_args(frames, val_frames, test_frames, seed, resize, sticky, frameskip)
    game = resolve_game(game)
    out = Path(out)
    if _prepare_out(out, overwrite):
        print(
            f"{out} already holds a complete dataset; nothing to do (overwrite to replace it)",
            file=sys.stderr,
        )
        return out

    import ale_py
    import gymnasium as gym
    from tqdm import tqdm

    detector = tracker = None
    if objects:
        from permakey.data.objects import ObjectDetector

        detector = ObjectDetector(game)
        tracker = IdentityTracker(identity_method(game))

    gym.register_envs(ale_py)
    env = gym.make(
        game_env_id(game),
        frameskip=frameskip,
        repeat_action_probability=sticky,
        full_action_space=False,
    )
    act = (
        policy
        if callable(policy)
        else make_policy(policy or "random", int(env.action_space.n), np.random.default_rng(seed))
    )
    env.action_space.seed(seed)
    ale = env.unwrapped.ale
    counts = {"train": int(frames), "val": int(val_frames), "test": int(test_frames)}
    size = (FRAME_SIZE, FRAME_SIZE)
    categories: list[str] = []
    category_index: dict[str, int] = {}
    episodes: dict[str, int] = {}
    writers: dict[str, store.SplitWriter] = {}
    first_reset = True
    episode = 0

    try:
        with atomic_dir(out, overwrite=out.exists()) as tmp:
            bar = tqdm(
                total=sum(counts.values()),
                unit="frame",
                desc=f"collect {game}",
                disable=not progress,
                dynamic_ncols=True,
            )
            for split in SPLIT_ORDER:
                bar.set_postfix_str(split)
                writer = store.SplitWriter(
                    store.split_path(tmp, split),
                    counts[split],
                    (*size, 3),
                    RAW_SHAPE if keep_raw else None,
                )
                writers[split] = writer
                stored = 0
                episodes[split] = 0
                while stored < counts[split]:
                    obs, _ = env.reset(seed=seed) if first_reset else env.reset()
                    first_reset = False
                    if detector is not None:
                        detector.reset()
                        tracker.reset()
                    episodes[split] += 1
                    step = 0
                    done = False
                    while not done and stored < counts[split]:
                        found = detector.detect(ale.getRAM(), obs) if detector is not None else None
                        ids = None
                        if found:
                            names, boxes, slots = found
                            for name in names:
                                if name not in category_index:
                                    category_index[name] = len(categories)
                                    categories.append(name)
                            labels = np.array([category_index[n] for n in names], np.int16)
                            boxes = scale_boxes(boxes, RAW_SHAPE[:2], size)
                            ids = tracker.assign(labels, boxes, slots)
                        else:
                            labels, boxes = np.zeros(0, np.int16), np.zeros((0, 4), np.float32)
                        images = {"frames": resize_frame(obs, FRAME_SIZE, resize)}
                        if keep_raw:
                            images["raw_frames"] = obs
                        action = int(act(obs))
                        next_obs, reward, terminated, truncated, _ = env.step(action)
                        writer.append(
                            images, episode, step, action, float(reward), labels, boxes, ids
                        )
                        obs, step, stored = next_obs, step + 1, stored + 1
                        done = terminated or truncated
                        bar.update(1)
                    episode += 1
            bar.close()
            has_objects = detector is not None and detector.available
            digests = {
                s: writers.pop(s).close(len(categories) if has_objects else None)
                for s in SPLIT_ORDER
            }
            meta = {
                "format": store.FORMAT,
                "format_version": store.FORMAT_VERSION,
                "game": game,
                "env_id": game_env_id(game),
                "seed": int(seed),
                "policy": _policy_name(policy),
                "frameskip": frameskip,
                "repeat_action_probability": sticky,
                "frame_size": list(size),
                "raw_frames": keep_raw,
                "resize": resize,
                "has_objects": has_objects,
                "objects_source": _objects_source() if has_objects else None,
                "object_ids": {"method": identity_method(game), "gate_px": GATE_PX}
                if has_objects
                else None,
                "categories": categories if has_objects else [],
                "split_order": list(SPLIT_ORDER),
                "splits": {
                    s: {"frames": counts[s], "episodes": episodes[s], "sha256": digests[s]}
                    for s in store.SPLITS
                },
                "permakey_version": _version("permakey"),
                "ale_py_version": _version("ale-py"),
            }
            write_json_atomic(store.meta_path(tmp), meta)
    finally:
        for writer in writers.values():
            writer.abort()
        env.close()
    return out


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _objects_source() -> str:
    return (
        f"ocatari {_version('ocatari')} (RAM, HUD included, boxes not drawn in the frame dropped)"
    )
