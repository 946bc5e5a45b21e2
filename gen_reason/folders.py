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

:class:`RunFolder` is the one layout of a run (eval, score, probe, training): the resolved
``config.yaml`` a rerun must match, per-row :class:`JsonlLog` files appended atomically and
resumed by their keys, ``checkpoints/``, and the folder's lock.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

from gen_reason.errors import UserError

#: The lock file a dataset folder holds while a process writes it.
LOCK_NAME = ".genreason.lock"
TEMP_SUFFIX = ".part"
T = TypeVar("T")


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


# -- the run folder: one layout under every command that runs for long ------------------------
class JsonlLog:
    """An append-only JSON-lines file, one record per line, that survives ``kill -9``.

    Each record is appended with one ``write``, flushed and fsynced, so a kill loses at
    most the line in flight; opening a log for writing (:meth:`repair`) cuts such a torn
    last line off. Readers (:meth:`records`) take complete lines only.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def repair(self) -> "JsonlLog":
        """Cut a torn last line (a kill mid-write) off the file; returns the log."""
        if self.path.exists():
            data = self.path.read_bytes()
            end = data.rfind(b"\n") + 1
            if end != len(data):
                with open(self.path, "r+b") as fh:
                    fh.truncate(end)
        return self

    def append(self, record: dict) -> None:
        """Append one record durably (``NaN`` and infinities are refused: not JSON)."""
        line = json.dumps(record, sort_keys=True, allow_nan=False) + "\n"
        with open(self.path, "a") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def records(self) -> list[dict]:
        """Every complete record (a torn or unreadable last line ends the list)."""
        out: list[dict] = []
        if not self.path.is_file():
            return out
        with open(self.path) as fh:  # a binary file is a UnicodeDecodeError, not a silently empty log
            for line in fh:
                if not line.endswith("\n"):
                    break
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    break
        return out

    def values(self, field: str) -> set:
        """The values of ``field`` over the stored records (e.g. the keys already done)."""
        return {r.get(field) for r in self.records() if isinstance(r, dict)}

    def truncate_after(self, step: int, field: str = "step") -> None:
        """Keep only the complete records whose ``field`` is at most ``step`` (the kept lines
        byte for byte, rewritten atomically): rows written after the checkpoint a run
        resumes from were lost with the kill and are written again."""
        self.keep(lambda row: int(row.get(field, 0)) <= step)

    def keep(self, wanted: Callable[[dict], bool]) -> None:
        """Keep only the complete records for which ``wanted(record)`` is true (the kept lines
        byte for byte, rewritten atomically): rows of a unit of work that a kill left
        unfinished are dropped, and written again when the unit is redone."""
        if not self.path.is_file():
            return
        text = self.path.read_text(errors="replace")
        kept = []
        for line in text.splitlines(keepends=True):
            if not line.endswith("\n"):
                continue
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and wanted(row):
                kept.append(line)
        new = "".join(kept)
        if new != text:
            write_atomic(self.path, new)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The complete records of a JSON-lines file (none when it does not exist)."""
    return JsonlLog(path).records()


def from_record(cls: type[T], record: dict, what: str) -> T:
    """Dataclass ``cls`` from its JSON record ``record`` (a row of a run folder): a key it does
    not know (a newer writer's) or a field without default that is missing is refused in one
    :class:`UserError` line naming the record (``what``: "result row", ...)."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    extra = sorted(set(record) - set(known))
    if extra:
        raise UserError(f"{what} has unknown key(s) {', '.join(extra)}")
    missing = [name for name, f in known.items() if name not in record
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise UserError(f"{what} lacks {', '.join(missing)}")
    return cls(**record)


class RunFolder:
    """A run is a folder, whichever command makes it (eval, score, probe, training)::

        config.yaml       the resolved config; a rerun must match it (refused in one line if not)
        <name>.jsonl      per-row logs (:meth:`log`), appended atomically, resumed by their keys
        checkpoints/      a trainer's ``step-*/`` folders
        .genreason-rank<r>.lock   held while a process of rank ``r`` works in it

    ``may_change`` names config fields a rerun may change without changing what the run
    computes (a longer run, another logging interval): they are left out of the
    comparison, and ``config.yaml`` is rewritten with the new values. ``defaults`` gives
    the value a field added since the folder was written had then.

    The folder is held (:func:`acquire_folder`) until :meth:`close` or the end of a
    ``with`` block, so a second process on the same folder and rank is refused at once.
    :meth:`discard_if_empty` takes back what a run that stored nothing wrote, so that a
    mistake never leaves a ``config.yaml`` that refuses the corrected command.
    """

    CONFIG = "config.yaml"

    def __init__(self, root: str | os.PathLike, config: dict, *, rank: int = 0,
                 may_change: Iterable[str] = (), defaults: dict | None = None,
                 subfolders: Iterable[str] = ()) -> None:
        self.root = Path(root)
        self.rank = rank
        self.wrote_config = False
        self._made: list[Path] = []  # folders this run made (taken back by discard_if_empty)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot write to run folder {self.root}: {exc.strerror or exc}") from None
        self._lock = acquire_folder(self.root, f".genreason-rank{rank}.lock")
        try:
            self._check_config(config, set(may_change), defaults or {})  # a refused rerun makes nothing
            for name in subfolders:
                folder = self.root / name
                if not folder.is_dir():
                    folder.mkdir(parents=True)
                    self._made.append(folder)
        except BaseException as exc:
            self.close()
            if isinstance(exc, OSError):
                raise UserError(f"cannot write to run folder {self.root}: {exc.strerror or exc}") from None
            raise

    @property
    def checkpoints(self) -> Path:
        """The folder of a trainer's checkpoints (``checkpoints/step-*/``)."""
        return self.root / "checkpoints"

    def log(self, name: str) -> JsonlLog:
        """The per-row log ``<root>/<name>`` (a torn last line cut off)."""
        return JsonlLog(self.root / name).repair()

    def close(self) -> None:
        """Let go of the run folder (another process may open it now)."""
        lock, self._lock = getattr(self, "_lock", None), None
        if lock is not None:
            lock.release()

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def discard_if_empty(self, logs: Iterable[JsonlLog]) -> bool:
        """Take back what this run wrote when none of ``logs`` holds a row: the
        ``config.yaml`` it wrote, the empty logs, the empty folders it made. Returns whether
        it did; the lock file stays (see :func:`hold_folder`)."""
        logs = list(logs)
        if any(log.path.is_file() and log.path.stat().st_size for log in logs):
            return False
        for log in logs:
            log.path.unlink(missing_ok=True)
        if self.wrote_config:
            (self.root / self.CONFIG).unlink(missing_ok=True)
        for folder in reversed(self._made):  # the run folder itself keeps the lock file
            try:
                folder.rmdir()
            except OSError:
                pass  # not empty: someone else's
        return True

    def _check_config(self, config: dict, may_change: set, defaults: dict) -> None:
        import yaml

        path = self.root / self.CONFIG
        text = yaml.safe_dump(config, sort_keys=True)
        if path.exists():
            try:
                saved = yaml.safe_load(path.read_text())
            except (yaml.YAMLError, UnicodeDecodeError):
                raise UserError(f"{path} is not a readable run config; choose another --out") from None
            current = yaml.safe_load(text)
            if not isinstance(saved, dict):
                raise UserError(f"{path} is not a readable run config; choose another --out")
            changed = sorted(k for k in set(saved) | set(current)
                             if saved.get(k, defaults.get(k)) != current.get(k) and k not in may_change)
            if changed:
                raise UserError(
                    f"{self.root} holds a run with a different config ({', '.join(map(str, changed))}: see {path}); "
                    "rerun with the same config to resume, or choose another --out")
            if saved == current:
                return
        existed = path.exists()
        # Every rank writes it (the same text, atomically, under a temporary name of its own):
        # a row must never exist in a folder without the config that made it.
        write_atomic(path, text)
        self.wrote_config = not existed
