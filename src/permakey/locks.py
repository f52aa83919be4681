"""One writer per folder: an exclusive ``flock`` on a lock file beside the folder.

A run folder or dataset folder ``PARENT/NAME`` is locked through ``PARENT/.NAME.lock``. The
lock file sits beside the folder, not in it, because writers replace the folder as a whole
(`permakey.fileio.atomic_dir`, ``--overwrite``): a lock inside it would go with the old folder.
Usage::

    with hold_folder(run, "run folder"):
        ...  # create, train, resume: no other process writes RUN meanwhile

- A second process gets `FolderLocked` (a `UserError`, one line) naming the holder: its pid,
  host and start time, read from the lock file.
- The kernel releases a ``flock`` when its process dies (SIGKILL included), so a lock left by
  a killed process never blocks: the next writer takes it and rewrites the holder.
- Within one process the lock is re-entrant (the experiment runner holds a run while it
  trains it in the same process).
- A child process can be lent a held lock (`lend`): it gets the open file descriptor and an
  environment variable naming it, and `hold_folder` there borrows the parent's lock instead of
  failing against it (the runner's subprocess workers).
- A process forked from a holder shares its lock until it exits; `drop_inherited`, called in
  such a child (DataLoader workers), lets go of its share, so that the lock ends with the
  holder itself.
- On release the lock file is removed (while still locked; an acquirer re-checks that the
  file it locked is still the one at the path, so removal never lets two processes in).

``flock`` works on local file systems; on NFS it depends on the server (Linux clients map it
to byte-range locks, which NFSv4 servers honour).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from permakey.errors import UserError
from permakey.fileio import process_alive

# The environment variable that lends locks to a child: "LOCKFILE=FD" entries joined by os.pathsep.
LENT_ENV = "PERMAKEY_LENT_LOCKS"


class FolderLocked(UserError):
    """Another process holds the folder's lock; the message names it (pid, host, start)."""


class _Held:
    """A lock this process holds: its file descriptor, nesting depth, and whether it is lent."""

    def __init__(self, fd: int, borrowed: bool) -> None:
        self.fd = fd
        self.depth = 0
        self.borrowed = borrowed  # a parent's lock: never unlocked or removed here


_HELD: dict[str, _Held] = {}


def lock_file(folder: str | os.PathLike) -> Path:
    """The lock file of ``folder``: ``.NAME.lock`` beside it (symbolic links resolved)."""
    real = Path(os.path.realpath(folder))
    return real.parent / f".{real.name}.lock"


def holder(folder: str | os.PathLike) -> dict | None:
    """The holder recorded in ``folder``'s lock file ({pid, host, since}); None if unknown."""
    try:
        info = json.loads(lock_file(folder).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _describe(info: dict | None) -> str:
    if not info:
        return "another process (it has not written its name yet)"
    since = info.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "?"
    holder = f"pid {info.get('pid')} on host {info.get('host')} (since {when})"
    pid = info.get("pid")
    if info.get("host") == socket.gethostname() and isinstance(pid, int) and not process_alive(pid):
        # The lock outlives its process only while processes it forked still run.
        holder += ", which has ended: processes it started still hold the lock; try again"
    return holder


def _borrowed(path: Path) -> int | None:
    """The descriptor a parent lent for lock file ``path``, if it is really that file's lock."""
    for entry in os.environ.get(LENT_ENV, "").split(os.pathsep):
        name, sep, fd = entry.rpartition("=")
        if not sep or name != str(path) or not fd.isdigit():
            continue
        try:
            st, cur = os.fstat(int(fd)), os.stat(path)
            if (st.st_dev, st.st_ino) != (cur.st_dev, cur.st_ino):
                return None
            # The same open file description as the parent's: taking it again succeeds only
            # if it is the one holding the lock (a stale number fails against the holder).
            fcntl.flock(int(fd), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return None
        return int(fd)
    return None


def _acquire(path: Path, folder: Path, what: str) -> int:
    """Locks ``path`` (created if absent) without waiting; returns its descriptor."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(
            f"cannot create {path.parent} for {what} {folder}: {err.strerror}"
        ) from None
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as err:
            raise UserError(
                f"cannot create the lock file {path} of {what} {folder}: {err.strerror}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = holder(folder)
            os.close(fd)
            raise FolderLocked(
                f"{what} {folder} is in use by {_describe(info)}: wait for it to end "
                f"(lock file {path})"
            ) from None
        try:
            same = (os.fstat(fd).st_ino, os.fstat(fd).st_dev) == (
                os.stat(path).st_ino,
                os.stat(path).st_dev,
            )
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed this file as we opened it: lock the new one


def _record(fd: int) -> None:
    """Writes this process as the holder into the lock file (best effort: it is for messages)."""
    text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode() + b"\n", 0)


@contextlib.contextmanager
def hold_folder(folder: str | os.PathLike, what: str = "folder") -> Iterator[Path]:
    """Holds ``folder``'s lock for the block; yields the lock file's path.

    The folder itself need not exist (a run folder about to be created is locked first).

    Args:
        folder: the folder written under the lock.
        what: what the folder is, for messages ("run folder", "dataset").

    Raises:
        FolderLocked: another process holds the lock.
        UserError: the lock file cannot be created (read-only parent folder...).
    """
    path = lock_file(folder)
    key = str(path)
    held = _HELD.get(key)
    if held is None:
        fd = _borrowed(path)
        if fd is not None:
            held = _Held(fd, borrowed=True)
        else:
            held = _Held(_acquire(path, Path(folder), what), borrowed=False)
            _record(held.fd)
        _HELD[key] = held
    held.depth += 1
    try:
        yield path
    finally:
        held.depth -= 1
        if held.depth == 0:
            del _HELD[key]
            if not held.borrowed:
                with contextlib.suppress(OSError):
                    path.unlink()  # while still locked, so nobody else holds this file
                os.close(held.fd)


def held(folder: str | os.PathLike) -> bool:
    """Whether this process holds (or borrowed) ``folder``'s lock."""
    return str(lock_file(folder)) in _HELD


def drop_inherited() -> None:
    """In a process forked from a holder: lets go of the inherited locks (without unlocking
    them: the parent still holds them), so that they are released when the parent ends."""
    for held_lock in _HELD.values():
        with contextlib.suppress(OSError):
            os.close(held_lock.fd)
    _HELD.clear()


def lend(folders: Iterable[str | os.PathLike]) -> tuple[dict[str, str], list[int]]:
    """What a child process needs to borrow the locks this process holds on ``folders``.

    Returns:
        (environment entries, file descriptors): pass both to the child, e.g.
        ``subprocess.call(..., env={**os.environ, **env}, pass_fds=fds)``.

    Raises:
        ValueError: this process does not hold one of the locks.
    """
    entries, fds = [], []
    for folder in folders:
        path = lock_file(folder)
        held = _HELD.get(str(path))
        if held is None:
            raise ValueError(f"this process does not hold the lock of {folder}")
        entries.append(f"{path}={held.fd}")
        fds.append(held.fd)
    return {LENT_ENV: os.pathsep.join(entries)}, fds
