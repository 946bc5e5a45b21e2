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

from gen_reason.errors import UserError
from gen_reason.folders import RunFolder, from_record, read_jsonl, write_atomic


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
        """A row from its JSON record (unknown keys of a newer writer, or missing ones, are
        refused in one line)."""
        return from_record(cls, record, "result row")

    @property
    def attempt_record(self):
        """The solver's attempt as an :class:`~gen_reason.solvers.attempt.Attempt` (records
        keep no video: its ``video`` is ``None``)."""
        from gen_reason.solvers.attempt import Attempt

        return Attempt.from_dict(self.attempt)

    @property
    def score(self):
        """The reference verdict as a :class:`~gen_reason.verifiers.score.Score`."""
        from gen_reason.verifiers.score import Score

        return Score.from_dict({"success": self.success, "metrics": self.metrics, "trace": self.reference_trace,
                                "reason": self.reason})


class RunStore(RunFolder):
    """Append-only, resumable storage of one evaluation run's results: a
    :class:`~gen_reason.folders.RunFolder` with a result log per process (``shards/<rank>.jsonl``)
    and a ``videos/`` folder.

    Holds the run folder for its rank until :meth:`close` (or the end of a ``with``
    block); a second store of the same folder and rank, in any process, is refused with
    a :class:`UserError` meanwhile.
    """

    def __init__(self, root: str | os.PathLike, config: dict, rank: int = 0) -> None:
        super().__init__(root, config, rank=rank, subfolders=("shards", "videos"))
        self._shard = self.log(f"shards/{rank}.jsonl")
        self.shard = self._shard.path

    def discard_if_empty(self, logs=None) -> bool:
        """Take back what this store wrote when no result line is stored (by any process):
        the ``config.yaml`` it wrote, its empty shard, the empty folders it made."""
        if any(self.shard_sizes().values()):
            return False
        return super().discard_if_empty([self._shard])

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
        self._shard.append(record.to_dict() if isinstance(record, ResultRow) else record)

    def video_path(self, key: str) -> Path:
        """Where the chosen video of result ``key`` is stored."""
        safe = key.replace("/", "-").replace("|", "__")
        return self.root / "videos" / f"{safe}.mp4"

    def merge(self) -> Path:
        """Write ``results.jsonl``: every shard's lines, deduplicated by key, in canonical order."""
        ordered = _in_order(self.records())
        path = self.root / "results.jsonl"
        # A temporary name of this process's own: two merges at once (two launches on one
        # folder) must not write into one half-finished file; os.replace is atomic.
        return write_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in ordered))


def load_results(run: str | os.PathLike) -> list[dict]:
    """All results of a run folder (merged file if complete, else the shards)."""
    run = Path(run)
    if not (run / "config.yaml").exists():
        raise UserError(f"{run} is not a run folder (no config.yaml)")
    if (run / "results.jsonl").exists():
        return list(read_jsonl(run / "results.jsonl"))
    return _in_order(record for shard in sorted((run / "shards").glob("*.jsonl")) for record in read_jsonl(shard))


def _in_order(records: Iterable[dict]) -> list[dict]:
    """Result lines deduplicated by key (the first line of a key kept), in canonical order."""
    merged: dict = {}
    for record in records:
        merged.setdefault(record["key"], record)
    return sorted(merged.values(), key=lambda r: tuple(r.get("order", [0])))
