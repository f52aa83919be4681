"""The dataset format on disk: writing and reading (see ARCHITECTURE.md, "Dataset folder").

A dataset is a folder ``DIR`` with ``meta.json`` and one HDF5 file per split,
``DIR/{train,val,test}.h5``, each holding:

- ``frames`` (N, H, W, 3) uint8, chunked by `FRAMES_PER_CHUNK` frames and compressed;
- ``raw_frames`` (N, 210, 160, 3) uint8, only if the raw frames were kept;
- ``episode``, ``step`` (N,) int32, ``action`` (N,) int16, ``reward`` (N,) float32;
- objects as a ragged table: ``object_offsets`` (N + 1,) int64 (the objects of frame i are
  rows ``offsets[i]:offsets[i + 1]``), ``object_category`` (M,) int16 indices into
  ``meta["categories"]``, ``object_box`` (M, 4) float32 (x, y, w, h) in stored-frame pixels;
- ``object_id`` (M,) int32, each object's identity, unique within its episode (a track is the
  pair (episode, id)), in datasets collected since identities were stored; meta.json's
  ``object_ids`` says how they were made (`permakey.data.identity`), and is absent or None
  in older datasets, which stay readable (`Split.object_ids` is then None). The format
  version stays 1: a reader that does not know the array never opens it. The split's sha256
  does not cover it (ids are derived from the boxes), so it is the same with and without.

Why HDF5 (h5py) rather than zarr: one self-contained file per split (easy to copy, check and
replace atomically, where zarr writes a file per chunk), chunked and compressed with random
access by frame, and a mature wheel with no further dependency.

One frame per chunk, gzip level 1: measured on 4,000 random-policy SpaceInvaders frames
(2 shared cores, indicative), extrapolated to 95,000 frames:

| filter, frames per chunk | size | random frame reads/s | sequential frames/s |
|---|---|---|---|
| lzf, 1 | 216 MB | 16,900 | 13,600 |
| gzip 1, 1 (chosen) | 127 MB | 15,100 | 14,900 |
| gzip 1, 4 | 100 MB | 5,800 | 19,800 |
| gzip 4, 4 | 64 MB | 3,000 | 8,200 |

A shuffled read of one frame then decompresses one frame, not a block of them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from permakey.errors import UserError

FORMAT = "permakey-dataset"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
FRAMES_PER_CHUNK = 1
COMPRESSION = {"compression": "gzip", "compression_opts": 1}
_PER_FRAME = {"episode": np.int32, "step": np.int32, "action": np.int16, "reward": np.float32}
_OBJECT_TABLE = ("object_offsets", "object_category", "object_box")
# Frames per block that the writer flushes and the checksum reads at once.
_BLOCK = 256
# What readers of meta.json (summaries, identities, frame specs) count on finding.
_META_KEYS = ("game", "env_id", "seed", "policy", "resize", "has_objects", "categories", "splits")


@dataclass(frozen=True)
class GroundTruthObject:
    """One object of one frame.

    Attributes:
        category: OCAtari's category name, e.g. "Player", "Alien", "Score".
        box: (4,) float32 (x, y, w, h) in pixels of the stored frame, x from the left and y
            from the top.
    """

    category: str
    box: np.ndarray


def meta_path(path: str | os.PathLike) -> Path:
    return Path(path) / "meta.json"


def split_path(path: str | os.PathLike, split: str) -> Path:
    return Path(path) / f"{split}.h5"


AGAIN = "collect the dataset again (permakey collect ... --overwrite)"


class DatasetDamaged(UserError):
    """A dataset file that cannot be read back as written: truncated, overwritten, corrupted.

    Its message is one line naming the file. Raised in a DataLoader worker, it comes back to
    the main process rebuilt from the worker's whole traceback ("Caught DatasetDamaged in
    DataLoader worker process 0. Original Traceback ..."), whose last line is the original
    message: that line is kept, so the error stays one line naming the file.
    """

    def __init__(self, message: str):
        line = message.strip().splitlines()[-1] if message.strip() else message
        super().__init__(line.removeprefix(f"{__name__}.{type(self).__name__}: "))


class WriteFailed(UserError):
    """A dataset file could not be written (full disk, file-size limit, read-only folder).

    Attributes:
        file: the file being written.
        reason: why, in a few words ("No space left on device").
    """

    def __init__(self, file: Path, reason: str):
        super().__init__(f"cannot write dataset file {file}: {reason}")
        self.file = file
        self.reason = reason


def _meta_problem(meta: Any) -> str | None:
    """What is wrong with a parsed meta.json of this format version, or None."""
    missing = [key for key in _META_KEYS if key not in meta]
    if missing:
        return f"missing {', '.join(map(repr, missing))}"
    if not isinstance(meta["game"], str) or not isinstance(meta["has_objects"], bool):
        return "'game' or 'has_objects' of the wrong type"
    categories = meta["categories"]
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        return "'categories' is not a list of names"
    splits = meta["splits"]
    if not isinstance(splits, dict):
        return "'splits' is not a table of splits"
    for split in SPLITS:
        entry = splits.get(split)
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("frames"), int)
            and entry["frames"] >= 0
            and isinstance(entry.get("sha256"), str)
        ):
            return f"no frame count and sha256 for split {split!r}"
    return None


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Reads and checks a dataset folder's meta.json.

    Args:
        path: the dataset folder.

    Raises:
        UserError: no dataset there, or meta.json is unreadable, incomplete or not a permakey
            dataset's (names the file and what to do).
    """
    file = meta_path(path)
    if not file.is_file():
        raise UserError(f"no dataset at {path} (missing {file})")
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetDamaged(f"unreadable dataset metadata {file} ({err}); {AGAIN}") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(
            f"{file} is not a permakey dataset's metadata; give a folder written by "
            "`permakey collect`"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{file} has dataset format version {meta.get('format_version')!r}; "
            f"this permakey reads version {FORMAT_VERSION}"
        )
    problem = _meta_problem(meta)
    if problem is not None:
        raise DatasetDamaged(f"damaged dataset metadata {file} ({problem}); {AGAIN}")
    return meta


def _reason(err: BaseException) -> str:
    """One line for an h5py or OS error (HDF5's messages span lines and timestamps)."""
    errno = getattr(err, "errno", None)
    if errno:
        return os.strerror(errno)
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _file_digest(h5) -> str:
    """The sha256 of a split file's contents, hashed in the order `SplitWriter` writes them.

    Reads every chunk of every array (raw frames too, which are not hashed), so that a chunk
    that cannot be read raises OSError.
    """
    digest = hashlib.sha256()
    for name in ("frames", "raw_frames"):
        if name in h5:
            images = h5[name]
            for start in range(0, len(images), _BLOCK):
                block = images[start : start + _BLOCK]
                if name == "frames":
                    digest.update(block.tobytes())
    for name in (*_PER_FRAME, *_OBJECT_TABLE):
        digest.update(h5[name][()].tobytes())
    return digest.hexdigest()


class _GuardedFile:
    """The file under an HDF5 file being written, through h5py's file-object driver.

    HDF5 reports a failed write (full disk, file-size limit) only sometimes: from a chunk
    cache evicted while a handle is freed it prints "Exception ignored", and a file whose
    writes failed crashes the interpreter when the library shuts down (a segfault, seen with
    h5py 3.16 and HDF5 2.0 under RLIMIT_FSIZE). Here every write goes through Python: the
    first error is kept in ``error`` for the writer to raise, and later writes are dropped as
    if done, so that HDF5 closes the doomed file quietly (its folder is discarded).
    """

    def __init__(self, path: Path):
        self._file = open(path, "w+b", buffering=0)  # noqa: SIM115 (closed by close())
        self.error: OSError | None = None

    def _guard(self, call, *args, done=None):
        if self.error is None:
            try:
                return call(*args)
            except OSError as err:
                self.error = err
        return done

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        written = 0
        while written < len(view) and self.error is None:  # an unbuffered write may be short
            written += self._guard(self._file.write, view[written:], done=0) or 0
        return len(view)

    def truncate(self, size: int) -> int:
        return self._guard(self._file.truncate, size, done=size)

    def flush(self) -> None:
        """Nothing to do: writes are unbuffered (h5py calls this on every HDF5 flush)."""

    def sync(self) -> None:
        """Puts the written bytes on the disk (once, when the file is complete)."""
        self._guard(os.fsync, self._file.fileno())

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def readinto(self, buffer) -> int:
        return self._file.readinto(buffer)

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def close(self) -> None:
        self._file.close()


class SplitWriter:
    """Appends frames of one split to its HDF5 file, in blocks, hashing what it writes.

    Every write is checked (`_GuardedFile`) and every block flushed; `close` reads the
    closed file back and compares its sha256: a full disk or a file-size limit is an error
    here, never a finished-looking file with holes in it.

    Args:
        file: the .h5 file to create.
        n_frames: the exact number of frames this split will hold.
        frame_shape: (H, W, 3) of the stored frames.
        raw_shape: (210, 160, 3) to also store raw frames, or None.

    Raises:
        WriteFailed: the file cannot be written (names it and the reason, e.g. "No space
            left on device"), here or in `append` and `close`.
    """

    def __init__(
        self,
        file: Path,
        n_frames: int,
        frame_shape: tuple[int, int, int],
        raw_shape: tuple[int, int, int] | None = None,
    ):
        import h5py

        self.file = Path(file)
        self.n_frames = n_frames
        self._h5 = None
        self._images = {"frames": frame_shape}
        if raw_shape is not None:
            self._images["raw_frames"] = raw_shape
        with self._writing():
            self._file = _GuardedFile(self.file)
            self._h5 = h5py.File(self._file, "w")
            self._h5.attrs["format"] = FORMAT
            self._h5.attrs["format_version"] = FORMAT_VERSION
            self._datasets = {
                name: self._h5.create_dataset(
                    name,
                    shape=(n_frames, *shape),
                    dtype=np.uint8,
                    chunks=(min(FRAMES_PER_CHUNK, max(n_frames, 1)), *shape),
                    **COMPRESSION,
                )
                for name, shape in self._images.items()
            }
        self._columns: dict[str, list] = {name: [] for name in _PER_FRAME}
        self._blocks: dict[str, list[np.ndarray]] = {name: [] for name in self._images}
        self._n_objects = [0]
        self._object_category: list[np.ndarray] = []
        self._object_box: list[np.ndarray] = []
        self._object_id: list[np.ndarray | None] = []
        self._written = 0
        self._hash = hashlib.sha256()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Turns a failed write, raised by h5py or kept by the guarded file, into WriteFailed."""
        try:
            yield
        except (OSError, RuntimeError) as err:  # h5py raises either for a failed write
            failed = getattr(self, "_file", None)
            cause = failed.error if failed is not None and failed.error else err
            raise WriteFailed(self.file, _reason(cause)) from None
        if self._file.error is not None:
            raise WriteFailed(self.file, _reason(self._file.error))

    def append(
        self,
        images: dict[str, np.ndarray],
        episode: int,
        step: int,
        action: int,
        reward: float,
        categories: np.ndarray,
        boxes: np.ndarray,
        object_ids: np.ndarray | None = None,
    ) -> None:
        """Adds one frame.

        Args:
            images: "frames" (H, W, 3) uint8 and, if raw frames are kept, "raw_frames".
            episode: episode id (unique in the dataset).
            step: index of the frame in its episode.
            action: the action the policy took on seeing this frame.
            reward: the reward that action earned.
            categories: (n,) int indices into the dataset's category names.
            boxes: (n, 4) float32 (x, y, w, h) in stored-frame pixels.
            object_ids: (n,) int identities of the objects (`permakey.data.identity`), or
                None; the split stores ``object_id`` only if every frame had them.
        """
        for name, block in self._blocks.items():
            block.append(images[name])
        for name, value in zip(_PER_FRAME, (episode, step, action, reward), strict=True):
            self._columns[name].append(value)
        self._object_category.append(np.asarray(categories, dtype=np.int16))
        self._object_box.append(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
        self._object_id.append(
            None if object_ids is None else np.asarray(object_ids, dtype=np.int32).reshape(-1)
        )
        self._n_objects.append(len(categories))
        if len(self._blocks["frames"]) >= _BLOCK:
            self._flush()

    def _flush(self) -> None:
        count = len(self._blocks["frames"])
        if count == 0:
            return
        with self._writing():
            for name, block in self._blocks.items():
                array = np.stack(block)
                self._datasets[name][self._written : self._written + count] = array
                if name == "frames":
                    self._hash.update(array.tobytes())
                block.clear()
            self._h5.flush()
        self._written += count

    def close(self, categories_of_dataset: int | None = None) -> str:
        """Writes the per-frame columns and the object table; returns the split's sha256.

        Args:
            categories_of_dataset: None to write no objects (the dataset has none).

        Raises:
            RuntimeError: fewer or more frames were appended than announced.
            WriteFailed: the file could not be written completely (names it).
        """
        import h5py

        self._flush()
        if self._written != self.n_frames:
            raise RuntimeError(f"split has {self._written} frames, expected {self.n_frames}")
        offsets = np.cumsum(self._n_objects, dtype=np.int64)
        if categories_of_dataset is None:
            offsets[:] = 0
            category = np.zeros(0, np.int16)
            box = np.zeros((0, 4), np.float32)
        else:
            category = np.concatenate(self._object_category)
            box = np.concatenate(self._object_box)
        tables = {name: np.asarray(self._columns[name], dtype=t) for name, t in _PER_FRAME.items()}
        tables.update(object_offsets=offsets, object_category=category, object_box=box)
        ids = _object_ids(self._object_id) if categories_of_dataset is not None else None
        with self._writing():
            for name, array in tables.items():
                compressed = _maybe_compressed(array) if name in _OBJECT_TABLE[1:] else {}
                self._h5.create_dataset(name, data=array, **compressed)
                self._hash.update(array.tobytes())
            if ids is not None:
                # Not hashed: ids are derived from the boxes (meta.json says how), so a dataset
                # collected again with them keeps the sha256 that runs trained on it recorded.
                self._h5.create_dataset("object_id", data=ids, **_maybe_compressed(ids))
            digest = self._hash.hexdigest()
            self._h5.attrs["sha256"] = digest
            self._h5.close()
            self._file.sync()
            self._file.close()
            with h5py.File(self.file, "r") as h5:
                written = _file_digest(h5)
        if written != digest:
            raise WriteFailed(self.file, "it reads back other than written (a failing disk?)")
        return digest

    def abort(self) -> None:
        """Closes the file without completing it (the caller discards the folder)."""
        if self._h5 is not None:
            # A file whose writes failed may fail to close too; it is discarded either way.
            with contextlib.suppress(Exception):
                self._h5.close()
            self._file.close()


def _object_ids(per_frame: list[np.ndarray | None]) -> np.ndarray | None:
    """The (M,) int32 ids of every frame's objects; None unless every frame had them."""
    if not per_frame or any(ids is None for ids in per_frame):
        return None
    return np.concatenate(per_frame)


def _maybe_compressed(array: np.ndarray) -> dict:
    # h5py refuses chunking (hence compression) for empty datasets.
    return COMPRESSION if array.size else {}


class Split:
    """One split of a dataset, read lazily: frames stay on disk until indexed.

    The small per-frame columns are loaded at once; the object table on first use. The HDF5
    file is opened lazily in each process, so a Split (and a Dataset holding one) can be
    sent to DataLoader worker processes: an open h5py handle is never pickled.

    Use `open_split` to get one.
    """

    def __init__(self, path: str | os.PathLike, split: str):
        self.path = Path(path)
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
        self.split = split
        self.meta = read_meta(self.path)
        self.file = split_path(self.path, split)
        if not self.file.is_file():
            raise UserError(f"missing dataset file {self.file}; {AGAIN}")
        self._h5 = None
        self._pid = None
        self._table = None
        h5 = self._handle()
        try:
            attrs = dict(h5.attrs)
        except (OSError, RuntimeError) as err:
            raise self._damaged(err) from None
        if attrs.get("format") != FORMAT:
            raise UserError(
                f"{self.file} is not a permakey dataset split (foreign HDF5 file); put back the "
                f"dataset's own file or {AGAIN}"
            )
        expected = self.meta["splits"][split]
        if attrs.get("sha256") != expected["sha256"]:
            raise UserError(
                f"{self.file} does not belong to the dataset in {self.path} (another "
                f"collection's file); put back the dataset's own file or {AGAIN}"
            )
        try:
            columns = {name: h5[name][()] for name in _PER_FRAME}
            n = h5["frames"].shape[0]
        except (KeyError, OSError, RuntimeError) as err:
            raise self._damaged(err) from None
        if n != expected["frames"] or any(len(c) != n for c in columns.values()):
            raise DatasetDamaged(f"damaged dataset file {self.file} (wrong frame count); {AGAIN}")
        self.episode: np.ndarray = columns["episode"]
        self.step: np.ndarray = columns["step"]
        self.action: np.ndarray = columns["action"]
        self.reward: np.ndarray = columns["reward"]
        self.categories: list[str] = list(self.meta["categories"])
        self.has_objects: bool = bool(self.meta["has_objects"])
        self._ids: np.ndarray | None = None

    def _handle(self):
        import h5py

        if self._h5 is None or self._pid != os.getpid():
            try:
                self._h5 = h5py.File(self.file, "r")
            except OSError as err:
                raise DatasetDamaged(
                    f"unreadable dataset file {self.file} ({_reason(err)}); {AGAIN}"
                ) from None
            self._pid = os.getpid()
        return self._h5

    def _damaged(self, err: BaseException, what: str = "") -> DatasetDamaged:
        reason = f"missing {err}" if isinstance(err, KeyError) else _reason(err)
        return DatasetDamaged(f"damaged dataset file {self.file}{what} ({reason}); {AGAIN}")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_h5"] = None
        state["_pid"] = None
        return state

    def close(self) -> None:
        """Closes the HDF5 file (it is reopened on the next read)."""
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None

    def __enter__(self) -> Split:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.episode)

    @property
    def frames(self):
        """The stored frames, (N, H, W, 3) uint8, as a lazy h5py dataset (index to read)."""
        return self._handle()["frames"]

    @property
    def raw_frames(self):
        """The raw (N, 210, 160, 3) uint8 frames, if collected with ``keep_raw``, else None."""
        h5 = self._handle()
        return h5.get("raw_frames")

    def read_frames(self, indices) -> np.ndarray:
        """Reads frames by index, in the order given.

        Args:
            indices: an int, a slice, or a sequence of ints (any order, repeats allowed).

        Returns:
            (H, W, 3) or (n, H, W, 3) uint8 array.

        Raises:
            DatasetDamaged: a chunk of the frames cannot be read (names the file).
        """
        frames = self.frames
        try:
            if isinstance(indices, (int, np.integer, slice)):
                return frames[indices]
            indices = np.asarray(indices, dtype=np.int64)
            # h5py wants increasing unique indices for fancy reads.
            unique, inverse = np.unique(indices, return_inverse=True)
            if len(unique) and (unique[0] < 0 or unique[-1] >= len(self)):
                raise IndexError(f"frame index out of range for {len(self)} frames")
            return frames[unique][inverse.reshape(-1)]
        except (OSError, RuntimeError) as err:  # a damaged chunk, met when it is read
            raise self._damaged(err, f", frames {_describe(indices)}") from None

    def object_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ragged object table of the split.

        Returns:
            offsets (N + 1,) int64, category_index (M,) int16 into `categories`, and boxes
            (M, 4) float32 (x, y, w, h) in stored-frame pixels. Frame i's objects are rows
            ``offsets[i]:offsets[i + 1]``. All empty (offsets all 0) without objects.
        """
        if self._table is None:
            h5 = self._handle()
            try:
                self._table = tuple(h5[name][()] for name in _OBJECT_TABLE)
            except (KeyError, OSError, RuntimeError) as err:
                raise self._damaged(err) from None
        return self._table

    @property
    def identity_method(self) -> str | None:
        """How the stored object ids were made ("slot" or "linked"); None without ids."""
        record = self.meta.get("object_ids")
        return record["method"] if record else None

    def object_ids(self) -> np.ndarray | None:
        """(M,) int32 identity of each object of `object_table`, unique within its episode;
        None for a dataset collected without identities (or without objects)."""
        if self.identity_method is None:
            return None
        if self._ids is None:
            try:
                self._ids = self._handle()["object_id"][()]
            except KeyError as err:
                raise UserError(f"damaged dataset file {self.file}: no object_id") from err
        return self._ids

    def objects(self, i: int) -> list[GroundTruthObject]:
        """The objects drawn in frame ``i`` (empty if the dataset has no ground truth)."""
        offsets, category, box = self.object_table()
        rows = range(offsets[i], offsets[i + 1])
        return [GroundTruthObject(self.categories[category[r]], box[r]) for r in rows]

    def verify(self) -> str | None:
        """Reads the whole split back and compares its sha256 with the one meta.json records.

        Returns:
            None if the file is intact, else one line naming the file and what is wrong.
        """
        try:
            digest = _file_digest(self._handle())
        except (KeyError, OSError, RuntimeError) as err:
            return str(self._damaged(err))
        if digest != self.meta["splits"][self.split]["sha256"]:
            return (
                f"damaged dataset file {self.file} (its sha256 differs from the one in "
                f"{meta_path(self.path)}); {AGAIN}"
            )
        return None

    def identity(self) -> dict[str, Any]:
        """What identifies this split's data in results: game, seed, split, path, hash."""
        return {
            "game": self.meta["game"],
            "env_id": self.meta["env_id"],
            "seed": self.meta["seed"],
            "policy": self.meta["policy"],
            "split": self.split,
            "frames": len(self),
            "path": str(self.path.resolve()),
            "sha256": self.meta["splits"][self.split]["sha256"],
        }


def _describe(indices) -> str:
    """Frame indices for an error message: a slice or int as written, a list by its range."""
    if isinstance(indices, slice):
        return f"{indices.start or 0}:{'' if indices.stop is None else indices.stop}"
    if isinstance(indices, (int, np.integer)):
        return str(int(indices))
    indices = np.asarray(indices).reshape(-1)
    if len(indices) == 0:
        return "none"
    first, last = indices.min(), indices.max()
    return f"{first}" if first == last else f"{first}-{last}"


def open_split(path: str | os.PathLike, split: str) -> Split:
    """Opens one split of a dataset for reading.

    Args:
        path: the dataset folder (with meta.json and {train,val,test}.h5).
        split: "train", "val" or "test".

    Raises:
        UserError: unknown split; missing, truncated or foreign file (names it).
    """
    return Split(path, split)


def write_dataset(
    path: str | os.PathLike,
    splits: dict[str, dict[str, Any]],
    categories: list[str] | None = None,
    **meta: Any,
) -> Path:
    """Writes a dataset from arrays in memory: synthetic data for tests and examples.

    Its objects carry no identities, as in datasets collected before they were stored.

    Args:
        path: the dataset folder to create (atomically; it must not exist).
        splits: for each of "train", "val", "test": ``frames`` (N, H, W, 3) uint8,
            ``episode`` (N,) and optionally ``step``, ``action``, ``reward`` (N,) and
            ``objects``: a list of N lists of (category name, (x, y, w, h)) pairs.
        categories: the category names; None for a dataset without object ground truth.
        **meta: further meta.json entries (game, seed, policy...; defaults are filled in).

    Returns:
        The dataset folder.
    """
    from permakey.fileio import atomic_dir, write_json_atomic

    index = {name: i for i, name in enumerate(categories or [])}
    info = {}
    with atomic_dir(path) as tmp:
        for split in SPLITS:
            data = splits[split]
            frames = np.asarray(data["frames"], dtype=np.uint8)
            n = len(frames)
            episode = np.asarray(data["episode"])
            step = data.get("step")
            if step is None:  # count up within each run of one episode
                starts = np.r_[True, episode[1:] != episode[:-1]]
                step = np.arange(n) - np.maximum.accumulate(np.where(starts, np.arange(n), 0))
            writer = SplitWriter(split_path(tmp, split), n, frames.shape[1:])
            objects = data.get("objects") or [[] for _ in range(n)]
            for i in range(n):
                labels = np.array([index[c] for c, _ in objects[i]], dtype=np.int16)
                boxes = np.array([b for _, b in objects[i]], dtype=np.float32).reshape(-1, 4)
                writer.append(
                    {"frames": frames[i]},
                    int(episode[i]),
                    int(step[i]),
                    int(data.get("action", np.zeros(n))[i]),
                    float(data.get("reward", np.zeros(n))[i]),
                    labels,
                    boxes,
                )
            digest = writer.close(len(index) if categories is not None else None)
            info[split] = {"frames": n, "episodes": len(np.unique(episode)), "sha256": digest}
        record = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "game": "Synthetic",
            "env_id": None,
            "seed": 0,
            "policy": None,
            "resize": None,
            "frame_size": [int(s) for s in frames.shape[1:3]],
            "raw_frames": False,
            "has_objects": categories is not None,
            "categories": list(categories or []),
            "splits": info,
            **meta,
        }
        write_json_atomic(meta_path(tmp), record)
    return Path(path)
