"""One side of the trainers' before/after bench: the trainers of one source tree, in their own process.

    python bench/trainer_driver.py SOURCE_ROOT

``SOURCE_ROOT`` is a folder laid out like the repository (this checkout, or an older
revision unpacked by ``revisions.tree_at``); its packages are imported from there alone
(``referee_driver.use_source``), so the two sides of the bench never share a module. The
driver imports nothing of the project at the top: it is the same file for every revision,
and it speaks to each revision in the names that revision knows (:func:`embedded_config`).

It answers on stdout, one JSON object per line: first ``{"ready": ...}`` (where its modules
came from), then one answer per request read from stdin:

- ``{"id", "kind": "embedded", "out", "steps", "settings", "renamed"}``: train the embedded
  model ``steps`` steps into the fresh folder ``out`` from ``settings`` (a config in today's
  names; ``renamed`` maps older names to today's, ``TrainingConfig.RENAMED``; one loss row
  per step). Answer: the trainer's own step seconds (``train_seconds``: what each revision's
  timer counts), the seconds from the first loss row to the last as seen from outside
  (``rows_seconds``, :class:`RowClock`), the wall and CPU seconds of the call, the settings
  that revision does not have (left at its default) and the loss rows.
- ``{"id", "kind": "lora", "model", "data", "out", "steps", "batch", "size", "frames",
  "options"}``: one LoRA run as ``bench/bench_lora.py`` trains it (``options``: its cache
  mode). Answer: the training loop's seconds (the last row of losses.jsonl), wall and CPU
  seconds of the call and the loss rows.

CPU seconds are this process's plus those of its children that ended and were waited for
(the embedded trainer's data worker). Anything the side's code raises is answered as
``{"id", "error"}``; the driver carries on.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from referee_driver import serve  # noqa: E402  (imports nothing of the project)


def cpu_seconds() -> float:
    """CPU seconds of this process and of its children that ended (user + system)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def embedded_config(settings: dict, renamed: dict, out: Path):
    """This revision's ``EmbeddedTrainConfig`` for ``settings`` (today's names), written as
    YAML beside ``out`` and read back by its own ``from_yaml``; and the settings it lacks.

    A name this revision knew otherwise (``renamed``: older -> today's) is written under its
    older name; a setting it did not have yet is left out: at its default it does what that
    version did."""
    import yaml

    from gen_reason.train.embedded import EmbeddedTrainConfig

    fields = {f.name for f in dataclasses.fields(EmbeddedTrainConfig)}
    older = {new: old for old, new in renamed.items() if new not in fields}
    kept = {older.get(k, k): v for k, v in settings.items() if older.get(k, k) in fields}
    path = out.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(kept))
    return EmbeddedTrainConfig.from_yaml(path), sorted(k for k in settings if older.get(k, k) not in fields)


def lora_entry_points():
    """``(load_lora_config, train_lora)`` of this revision (the config loader has moved between modules)."""
    lora = importlib.import_module("gen_reason.train.lora")
    try:
        load = importlib.import_module("gen_reason.train.lora_config").load_lora_config
    except ImportError:
        load = lora.load_lora_config
    return load, lora.train_lora


def loss_rows(path: Path) -> list[dict]:
    """The rows of a run's losses.jsonl."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class RowClock:
    """Notes when each row of a growing losses.jsonl appears (a thread polling its size every
    ``interval`` seconds): the steps' wall time seen from outside the trainer, the same way
    for every revision (whatever its own step timer counts)."""

    def __init__(self, path: Path, interval: float = 0.002) -> None:
        self.path, self.interval, self.times = path, interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        size = -1
        while True:
            stopping = self._stop.is_set()  # one last look after the run ended
            now = time.perf_counter()
            try:
                current = self.path.stat().st_size
            except FileNotFoundError:
                current = 0
            if current != size:
                size = current
                rows = self.path.read_bytes().count(b"\n") if current else 0
                self.times += [now] * (rows - len(self.times))
            if stopping:
                return
            time.sleep(self.interval)

    def __enter__(self) -> "RowClock":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def timed(fn):
    """``(result, wall seconds, CPU seconds)`` of ``fn()``."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = fn()
    return result, time.perf_counter() - wall, cpu_seconds() - cpu


def embedded(request: dict) -> dict:
    """Train the embedded model as the request says; its timings and loss rows."""
    from gen_reason.train.embedded import train_embedded

    out = Path(request["out"])
    config, missing = embedded_config(request["settings"], request["renamed"], out)
    with RowClock(out / "losses.jsonl") as clock:
        result, wall, cpu = timed(lambda: train_embedded(config, out, progress=False, validate=False,
                                                         stop_after_steps=request["steps"]))
    rows = [{k: v for k, v in row.items() if k != "train_minutes"} for row in loss_rows(out / "losses.jsonl")]
    return {"train_seconds": float(result["train_seconds"]), "rows_seconds": clock.times[-1] - clock.times[0],
            "rows_seen": len(clock.times), "wall": wall, "cpu": cpu, "not_in_this_version": missing, "losses": rows}


def lora(request: dict) -> dict:
    """One LoRA run as bench/bench_lora.py trains it; its loop seconds, timings and loss rows."""
    load_lora_config, train_lora = lora_entry_points()
    out = Path(request["out"])
    config = load_lora_config(None, dict(model=request["model"], data=request["data"], output_dir=str(out), rank=8,
                                         max_steps=request["steps"], batch_size=request["batch"],
                                         height=request["size"], width=request["size"],
                                         num_frames=request["frames"], checkpoint_every=0, **request["options"]))
    _, wall, cpu = timed(lambda: train_lora(config, progress=False))
    rows = loss_rows(out / "losses.jsonl")
    return {"loop_seconds": float(rows[-1]["seconds"]), "wall": wall, "cpu": cpu,
            "losses": [{k: v for k, v in row.items() if k != "seconds"} for row in rows]}


def start() -> tuple:
    """The trainer side: torch on at most two threads, and the embedded or LoRA run to answer with."""
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    runs = {"embedded": embedded, "lora": lora}
    return (lambda request: {"id": request["id"], **runs[request["kind"]](request)}), {}


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:], start, error_chars=500))
