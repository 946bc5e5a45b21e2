"""The run store: a run is a folder (docs/ARCHITECTURE.md).

    config.yaml            the resolved config (a rerun must match it)
    shards/<rank>.jsonl    results as they come, one line per instance x solver, per process
    results.jsonl          all shards merged in canonical order (written once the run is complete,
                           by rank 0 alone when several processes share the run: see runner.py)
    videos/                chosen videos, one per result line
    report.md, plots/      written by ``genreason report``

Each result line is appended with one ``write`` and fsynced, so a kill loses at most
the line in flight; a torn last line is cut off when the shard is reopened. A rerun of
the same config skips every key already stored.

One process per rank: a store holds the lock ``.genreason-rank<rank>.lock`` in the run
folder while it is open (:func:`gen_reason.folders.hold_folder`; the OS drops it when its
process dies, even by ``kill -9``), so a second ``eval`` into a folder that a running one
is filling is refused in one line instead of doing all the work a second time. The
processes of one multi-process launch hold different ranks and share the folder.

A run that stores nothing leaves nothing that would refuse the corrected command:
:meth:`RunStore.discard_if_empty` (the runner calls it when an evaluation fails) takes
back the ``config.yaml`` this store wrote while no result line exists.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable, Iterator

import yaml

from gen_reason.errors import UserError
from gen_reason.folders import acquire_folder, write_atomic


@dataclass
class ResultRow:
    """One result line of a run: an instance solved by one solver and judged by the
    reference verifier. On disk (:meth:`to_dict`) it is one JSON object with these keys
    (``video`` only when the run saves videos); :meth:`from_dict` reads it back."""

    key: str
    order: list
    task: str
    difficulty: str
    seed: int
    uid: str
    solver: str
    model: str
    success: bool
    metrics: dict
    reason: str
    attempt: dict
    reference_trace: dict
    seconds: float
    video: str | None = None

    def to_dict(self) -> dict:
        """The JSON record (the same keys every run has written)."""
        record = {f.name: getattr(self, f.name) for f in fields(self)}
        if record["video"] is None:
            del record["video"]
        return record

    @classmethod
    def from_dict(cls, record: dict) -> "ResultRow":
        """A row from its JSON record (unknown keys of a newer writer are refused in one line)."""
        known = {f.name for f in fields(cls)}
        extra = sorted(set(record) - known)
        if extra:
            raise UserError(f"result row has unknown key(s) {', '.join(extra)}")
        return cls(**record)

    @property
    def score(self):
        """The reference verdict as a :class:`~gen_reason.verifiers.score.Score`."""
        from gen_reason.verifiers.score import Score

        return Score.from_dict({"success": self.success, "metrics": self.metrics, "trace": self.reference_trace,
                                "reason": self.reason})


class RunStore:
    """Append-only, resumable storage of one run's results.

    Holds the run folder for its rank until :meth:`close` (or the end of a ``with``
    block); a second store of the same folder and rank, in any process, is refused with
    a :class:`UserError` meanwhile.
    """

    def __init__(self, root: str | os.PathLike, config: dict, rank: int = 0) -> None:
        self.root = Path(root)
        self.rank = rank
        self.wrote_config = False
        self._made: list[Path] = []  # the subfolders this store made (taken back by discard_if_empty)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot write to run folder {self.root}: {exc.strerror or exc}") from None
        self._lock = acquire_folder(self.root, f".genreason-rank{rank}.lock")
        try:
            for folder in (self.root / "shards", self.root / "videos"):
                if not folder.is_dir():
                    folder.mkdir()
                    self._made.append(folder)
            self._check_config(config)
            self.shard = self.root / "shards" / f"{rank}.jsonl"
            _cut_torn_tail(self.shard)
        except BaseException as exc:
            self.close()
            if isinstance(exc, OSError):
                raise UserError(f"cannot write to run folder {self.root}: {exc.strerror or exc}") from None
            raise

    def close(self) -> None:
        """Let go of the run folder (another process may open it now)."""
        lock, self._lock = getattr(self, "_lock", None), None
        if lock is not None:
            lock.release()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def discard_if_empty(self) -> bool:
        """Take back what this store wrote when no result line is stored (by any process):
        the ``config.yaml`` it wrote, an empty shard, the empty folders it made. Returns
        whether it did; the lock file stays (see :func:`gen_reason.folders.hold_folder`)."""
        if any(size for size in self.shard_sizes().values()):
            return False
        self.shard.unlink(missing_ok=True)
        if self.wrote_config:
            (self.root / "config.yaml").unlink(missing_ok=True)
        for folder in self._made:  # the run folder itself keeps the lock file
            try:
                folder.rmdir()
            except OSError:
                pass  # not empty: someone else's
        return True

    def _check_config(self, config: dict) -> None:
        path = self.root / "config.yaml"
        text = yaml.safe_dump(config, sort_keys=True)
        if path.exists():
            if yaml.safe_load(path.read_text()) != yaml.safe_load(text):
                raise UserError(
                    f"{self.root} holds a run with a different config (see {path}); "
                    "rerun with the same config to resume, or choose another --out"
                )
            return
        # Every rank writes it (the same text, atomically, under a temporary name of its own):
        # a shard must never exist in a folder without the config that made it, even when
        # rank 0 dies before it gets this far.
        write_atomic(path, text)
        self.wrote_config = True

    def records(self) -> Iterator[dict]:
        """Every stored result line of every shard (complete lines only)."""
        for shard in sorted((self.root / "shards").glob("*.jsonl")):
            yield from read_jsonl(shard)

    def done_keys(self) -> set[str]:
        """Keys of results already stored (by any process)."""
        return {r["key"] for r in self.records()}

    def shard_sizes(self) -> dict[str, int]:
        """Byte size of every shard file (cheap to poll: a shard that grew has new lines)."""
        sizes = {}
        for shard in (self.root / "shards").glob("*.jsonl"):
            try:
                sizes[shard.name] = shard.stat().st_size
            except FileNotFoundError:  # appeared in the listing, gone since: count it as absent
                continue
        return sizes

    def append(self, record: "ResultRow | dict") -> None:
        """Append one result line durably."""
        if isinstance(record, ResultRow):
            record = record.to_dict()
        line = json.dumps(record, sort_keys=True, allow_nan=False) + "\n"
        with open(self.shard, "a") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def video_path(self, key: str) -> Path:
        """Where the chosen video of result ``key`` is stored."""
        safe = key.replace("/", "-").replace("|", "__")
        return self.root / "videos" / f"{safe}.mp4"

    def merge(self) -> Path:
        """Write ``results.jsonl``: every shard's lines, deduplicated by key, in canonical order."""
        merged = {}
        for record in self.records():
            merged.setdefault(record["key"], record)
        ordered = sorted(merged.values(), key=lambda r: tuple(r.get("order", [0])))
        path = self.root / "results.jsonl"
        # A temporary name of this process's own: two merges at once (two launches on one
        # folder) must not write into one half-finished file; os.replace is atomic.
        return write_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in ordered))


def read_jsonl(path: str | os.PathLike) -> Iterable[dict]:
    """Complete JSON lines of a file (a torn last line is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    with open(path) as fh:
        for line in fh:
            if not line.endswith("\n"):
                break
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return out


def _cut_torn_tail(path: Path) -> None:
    """Truncate a shard after its last complete line (a kill mid-write leaves a partial one)."""
    if not path.exists():
        return
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end != len(data):
        with open(path, "r+b") as fh:
            fh.truncate(end)


def load_results(run: str | os.PathLike) -> list[dict]:
    """All results of a run folder (merged file if complete, else the shards)."""
    run = Path(run)
    if not (run / "config.yaml").exists():
        raise UserError(f"{run} is not a run folder (no config.yaml)")
    if (run / "results.jsonl").exists():
        return list(read_jsonl(run / "results.jsonl"))
    merged = {}
    for shard in sorted((run / "shards").glob("*.jsonl")):
        for r in read_jsonl(shard):
            merged.setdefault(r["key"], r)
    return sorted(merged.values(), key=lambda r: tuple(r.get("order", [0])))
