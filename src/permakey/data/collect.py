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

import errno
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
from permakey.locks import hold_folder

SPLIT_ORDER = ("test", "val", "train")
# Writes that fail for want of room or rights: the user's to fix, reported in one line.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}


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


def _differences(meta: dict, settings: dict, counts: dict, objects: bool) -> list[str]:
    """What differs between an existing dataset's meta.json and the collection asked for."""
    differ = [
        f"{key} {meta.get(key)!r} there, {value!r} asked"
        for key, value in settings.items()
        if meta.get(key) != value
    ]
    for split, frames in counts.items():
        there = meta["splits"][split]["frames"]
        if there != frames:
            differ.append(f"{split} frames {there} there, {frames} asked")
    # A dataset without objects may be one OCAtari could not give them for: only objects
    # there that were not asked for is a difference.
    if meta["has_objects"] and not objects:
        differ.append("objects there, --no-objects asked")
    return differ


def _prepare_out(out: Path, overwrite: bool, settings: dict, counts: dict, objects: bool) -> bool:
    """Checks the output folder; returns True if a complete dataset is there to keep.

    Raises:
        UserError: ``out`` is a file, a folder of other things, or (without ``overwrite``) a
            dataset of another game or other settings (naming what differs).
    """
    if out.exists():
        if not out.is_dir():
            raise UserError(f"output {out} exists and is not a folder")
        if (out / "meta.json").exists():
            meta = store.read_meta(out)
            if all(store.split_path(out, s).is_file() for s in meta["splits"]):
                if overwrite:
                    return False
                differ = _differences(meta, settings, counts, objects)
                if differ:
                    raise UserError(
                        f"output {out} holds another dataset ({'; '.join(differ)}); choose "
                        "another --out, or pass --overwrite to replace it"
                    )
                return True
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


def _restore_interrupted_replace(out: Path) -> None:
    """Puts back the dataset that a replace killed between its two renames left aside.

    `permakey.fileio.atomic_dir` replaces a folder by renaming it to ``.NAME.old`` and the
    new one onto ``NAME``: a kill in between leaves no dataset at ``out``. The replace did not
    happen, so the old dataset is the one to keep (called under the dataset's lock).
    """
    old = out.with_name(f".{out.name}.old")
    if out.exists() or not old.is_dir():
        return
    try:
        meta = store.read_meta(old)
    except UserError:
        return  # not a complete dataset: the next replace removes it
    if all(store.split_path(old, s).is_file() for s in meta["splits"]):
        os.replace(old, out)
        print(f"restored the dataset in {out} that an interrupted replace left", file=sys.stderr)


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
        resize: "area", "nearest" or "authors" (`permakey.data.frames`).
        keep_raw: also store the raw (210, 160, 3) frames.
        overwrite: replace an existing complete dataset at ``out``.
        sticky: probability of repeating the previous action (0.25 in v5).
        frameskip: emulator frames per step (4 in v5).
        progress: show a progress bar with frames/s.

    Returns:
        The dataset folder.

    Raises:
        UserError: bad arguments, unknown game, unwritable or foreign output folder, a
            dataset of another game or other settings at ``out`` (without ``overwrite``),
            a full disk or file-size limit met while writing, or ``objects`` without
            OCAtari installed. An interrupted or failed run leaves no dataset behind and an
            existing one untouched.
        permakey.locks.FolderLocked: another process is writing the dataset at ``out``.
    """
    _check_args(frames, val_frames, test_frames, seed, resize, sticky, frameskip)
    game = resolve_game(game)
    out = Path(out)
    counts = {"train": int(frames), "val": int(val_frames), "test": int(test_frames)}
    # What meta.json records of the collection's settings; an existing dataset must match.
    settings = {
        "game": game,
        "seed": int(seed),
        "policy": _policy_name(policy),
        "frameskip": frameskip,
        "repeat_action_probability": sticky,
        "resize": resize,
        "raw_frames": keep_raw,
    }
    # One writer per dataset: a second collect to the same folder is refused, naming the
    # holder; the kernel drops the lock of a killed one.
    with hold_folder(out, "dataset"):
        _restore_interrupted_replace(out)
        if _prepare_out(out, overwrite, settings, counts, objects):
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
            else make_policy(
                policy or "random", int(env.action_space.n), np.random.default_rng(seed)
            )
        )
        env.action_space.seed(seed)
        ale = env.unwrapped.ale
        size = (FRAME_SIZE, FRAME_SIZE)
        categories: list[str] = []
        category_index: dict[str, int] = {}
        episodes: dict[str, int] = {}
        writers: dict[str, store.SplitWriter] = {}
        first_reset = True
        episode = 0

        existed = out.exists()
        try:
            with atomic_dir(out, overwrite=existed) as tmp:
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
                            found = (
                                detector.detect(ale.getRAM(), obs) if detector is not None else None
                            )
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
                    s: writers[s].close(len(categories) if has_objects else None)
                    for s in SPLIT_ORDER
                }
                meta = {
                    "format": store.FORMAT,
                    "format_version": store.FORMAT_VERSION,
                    **settings,
                    "env_id": game_env_id(game),
                    "frame_size": list(size),
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
        except (store.WriteFailed, OSError) as err:
            if isinstance(err, store.WriteFailed):
                what, reason = err.file.name, err.reason
            elif err.errno in _WRITE_ERRNOS:
                what, reason = Path(err.filename or out).name, err.strerror
            else:
                raise
            kept = f"; the dataset in {out} is unchanged" if existed else ""
            raise UserError(
                f"cannot write dataset {out} ({what}: {reason}); nothing was written{kept}"
            ) from None
        finally:
            for writer in writers.values():  # closing a completed writer again does nothing
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
