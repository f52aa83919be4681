"""Atomic writes: a file or folder is either complete under its final name or absent.

Every writer in the package (datasets, checkpoints, metrics, reports) goes through these
helpers, so that an interrupted or failed run never leaves a finished-looking artefact.

- A file or folder is written under a hidden temporary name beside its target,
  ``.NAME.PID-TOKEN.tmp`` (files) or ``.NAME.PID-TOKEN.partial`` (folders), flushed to disk,
  then renamed onto ``NAME``.
- Temporary files and folders get ordinary modes: 0666 and 0777 less the process's umask
  (0644 and 0755 under umask 022), like any file the process creates, so that a dataset or
  run folder on a shared machine is as readable as its user's other files.
- What a killed writer left (a temporary of a process that no longer runs, by the PID in its
  name) is removed by the next write of the same target (`remove_leftovers` removes every
  one in a folder, for a writer that holds the folder's lock).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# A temporary: a file being written (.tmp), a folder being written (.partial) or removed
# (.removing), named after its target and the PID of its writer (none in older versions).
_TEMPORARY = re.compile(
    r"^\.(?P<name>.+)\.(?:(?P<pid>\d+)-)?[A-Za-z0-9_]+\.(?:tmp|partial|removing)$"
)


def _fsync(path: Path) -> None:
    """Flushes a file's or folder's (its entries') data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (True where that cannot be told)."""
    if pid <= 0 or pid == os.getpid():
        return pid > 0
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process
    return True


def _temporary(path: Path, suffix: str, make: Callable[[Path], None]) -> Path:
    """Creates (with ``make``) a fresh temporary beside ``path``, named after it and this PID."""
    while True:
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.{suffix}")
        try:
            make(tmp)
        except FileExistsError:
            continue
        return tmp


def _create_file(path: Path) -> None:
    # Mode 0666: the kernel takes the umask off, as for any file this process creates.
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def leftovers(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Temporaries in ``folder`` that no running writer owns (of target ``name``, or of any).

    A temporary belongs to the process whose PID its name holds; one of a process that no
    longer runs (killed while writing), or named without a PID (older versions), is a leftover.
    """
    folder = Path(folder)
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    found = []
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match is None or (name is not None and match["name"] != name):
            continue
        if match["pid"] is None or not process_alive(int(match["pid"])):
            found.append(entry)
    return sorted(found)


def remove_leftovers(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Removes the leftover temporaries in ``folder`` (of target ``name``, or of any:
    `leftovers`); returns what it removed."""
    found = leftovers(folder, name)
    for path in found:
        _delete(path)
    return found


def remove_tree(path: str | os.PathLike) -> None:
    """Removes folder ``path`` so that it is never seen half-removed under its own name.

    It is first renamed to a hidden ``.removing`` temporary, then deleted; a kill in between
    leaves only that temporary, which the next write beside it removes.
    """
    path = Path(path)
    if not path.exists():
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.removing")
    os.replace(path, tmp)
    shutil.rmtree(tmp, ignore_errors=True)


def _clean_beside(path: Path) -> None:
    """Removes the leftovers of earlier writes of ``path``, and the old copy of a replace."""
    remove_leftovers(path.parent, path.name)
    old = path.with_name(f".{path.name}.old")  # the previous folder of a finished replace
    if old.exists() and path.exists():
        _delete(old)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renames it onto ``path`` on success.

    The caller writes a file at the yielded path (an empty file exists there already). On an
    exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_beside(path)
    tmp_path = _temporary(path, "tmp", _create_file)
    try:
        yield tmp_path
        _fsync(tmp_path)
        os.replace(tmp_path, path)
        _fsync(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Writes ``obj`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _fsync_tree(folder: Path) -> None:
    """Flushes every file and folder under ``folder`` to disk (before it is renamed into place)."""
    for root, _, files in os.walk(folder):
        for name in files:
            _fsync(Path(root, name))
        _fsync(Path(root))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yields a temporary folder beside ``path``; renames it onto ``path`` on success.

    Args:
        path: the final folder.
        overwrite: replace an existing ``path`` (only once the new folder is complete).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists (pass --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_beside(path)
    tmp = _temporary(path, "partial", lambda p: p.mkdir(0o777))
    try:
        yield tmp
        _fsync_tree(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            _delete(old)
            os.replace(path, old)
            os.replace(tmp, path)
            _delete(old)
        else:
            os.replace(tmp, path)
        _fsync(path.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
