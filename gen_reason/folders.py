"""Writing into folders that several processes may share: unique temporary names, atomic
replacement, and one process at a time per dataset or run folder.

Every file is written under a temporary name of its own (:func:`temp_path`: the final
name, this process's id, a random suffix, ``.part``) and renamed into place with
``os.replace``, which is atomic: a reader sees the old file or the new one, never half
of one, and two processes writing the same file never write into one temporary file.

:func:`hold_folder` takes a folder's lock (the ``filelock`` library: an OS lock, which
the kernel drops when its process dies, so a ``kill -9`` leaves nothing to clean up).
A second process asking for a held folder is refused at once, in one line, rather than
doing the same work twice beside the first.
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from gen_reason.errors import UserError

#: The lock file a dataset folder holds while a process writes it.
LOCK_NAME = ".genreason.lock"
TEMP_SUFFIX = ".part"


def temp_path(path: str | os.PathLike) -> Path:
    """A temporary name beside ``path``, unique to this process and call
    (``<name>.<pid>-<random>.part``), to write into before ``os.replace(tmp, path)``."""
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}")


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text or bytes) to ``path`` under a unique temporary name, then rename
    it into place; the temporary file is removed again if the write fails."""
    path = Path(path)
    with replacing(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)
    return path


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """``with replacing(path) as tmp:`` write ``tmp`` (a :func:`temp_path` of ``path``) any
    way you like; on leaving the block it is renamed onto ``path`` (atomic), and removed
    instead if the block failed. Every atomic write of ours goes through here."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temps(folder: str | os.PathLike) -> int:
    """Delete the ``*.part`` files under ``folder`` (left by a process killed mid-write);
    returns how many. Call it only while holding the folder (:func:`hold_folder`), when no
    other process can be writing one."""
    count = 0
    for stale in Path(folder).rglob(f"*{TEMP_SUFFIX}"):
        if stale.is_file():
            stale.unlink(missing_ok=True)
            count += 1
    return count


@contextmanager
def hold_folder(folder: str | os.PathLike, lock_name: str = LOCK_NAME) -> Iterator[Path]:
    """Hold ``folder``'s lock (the file ``lock_name`` in it) for the ``with`` block.

    Raises :class:`UserError` at once, naming the folder, when another process holds
    it. The folder must exist. The lock file stays (empty) when released: deleting a
    lock file another process may be opening would let two processes hold "the" lock.
    """
    lock = acquire_folder(folder, lock_name)
    try:
        yield Path(folder)
    finally:
        lock.release()


def acquire_folder(folder: str | os.PathLike, lock_name: str = LOCK_NAME):
    """Take ``folder``'s lock and return it (a ``filelock.FileLock``; call its
    ``release()`` when done): :func:`hold_folder` for a lock that outlives one block."""
    from filelock import FileLock, Timeout

    folder = Path(folder)
    lock = FileLock(str(folder / lock_name))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UserError(f"{folder} is in use by another genreason process (it holds {folder / lock_name}); "
                        "wait for it to finish, or choose another --out") from None
    except OSError as exc:
        raise UserError(f"cannot lock {folder}: {exc.strerror or exc}") from None
    return lock
