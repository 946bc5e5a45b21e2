"""Puzzle datasets on disk: written reproducibly, in parallel, resumably; read back as Instances.

Layout of a dataset folder::

    dataset.json        the arguments that made it (a rerun must match them)
    images/<uid>.png    first frames
    videos/<uid>.mp4    ground-truth solution videos (unless --no-video)
    metadata.jsonl      one line per instance: spec, solution, prompt, relative paths
    metadata.csv        video,prompt,input_image (DiffSynth-Studio / diffusers training scripts)
    records/            per-instance records; the source of truth while writing

Item ``idx`` is made from seed ``seed + idx`` (reasoning-gym style: any order, no state)
with difficulties taken round-robin, so a run can be interrupted (even by ``kill -9``),
resumed, or split across any number of worker processes, and still gives byte-identical
files, videos included (:func:`gen_reason.video.write_mp4` says what that takes of the
encoder). The train/test split is decided by the puzzle's canonical hash, so the same
puzzle can never be in both splits.

One process at a time writes a dataset folder: it holds the folder's lock
(:func:`gen_reason.folders.hold_folder`, the file ``.genreason.lock``), and a second
``make-dataset`` on the same folder is refused in one line. Every file is written under
a unique temporary name and renamed into place; temporary files a killed run left are
deleted when the next run takes the folder.

This lives in ``gen_reason`` rather than ``puzzles`` because it writes MP4s, and only
``gen_reason.video`` touches codecs (docs/ARCHITECTURE.md); ``puzzles`` imports nothing of ours.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from gen_reason.errors import UserError, writable_dir
from gen_reason.folders import hold_folder, remove_stale_temps, write_atomic
from gen_reason.puzzles import Instance, get_task

FORMAT_VERSION = 1


@dataclass(frozen=True)
class DatasetSpec:
    """Everything that determines a dataset's bytes."""

    task: str
    n: int
    difficulties: tuple[str, ...] = ("easy",)
    seed: int = 0
    num_frames: int | None = 49  # None: the task's natural frames-per-step timing
    video: bool = True
    test_fraction: float = 0.0
    dedupe: bool = False
    task_config: dict = field(default_factory=dict)
    crf: int = 18
    lossless: bool = False  # RGB H.264 (bit-exact frames; see video.write_mp4) instead of crf

    def validate(self) -> "DatasetSpec":
        """Check arguments and normalise task and difficulty names (raises UserError)."""
        task = get_task(self.task, **self.task_config)
        if not isinstance(self.n, int) or self.n < 1:
            raise UserError(f"--n must be a positive integer; got {self.n!r}")
        if self.seed < 0:
            raise UserError(f"--seed must be >= 0; got {self.seed}")
        if self.num_frames is not None and not 1 <= self.num_frames <= 2000:
            raise UserError(f"--frames must be in [1, 2000]; got {self.num_frames}")
        if isinstance(self.crf, bool) or not isinstance(self.crf, int) or not 0 <= self.crf <= 51:
            raise UserError(f"--crf must be an integer in [0, 51] (x264's range); got {self.crf!r}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise UserError(f"--test-fraction must be in [0, 1); got {self.test_fraction}")
        if not self.difficulties:
            raise UserError("give at least one difficulty")
        difficulties = tuple(task.parse_difficulty(d) for d in self.difficulties)
        return DatasetSpec(**{**asdict(self), "task": task.name, "difficulties": difficulties})

    def item(self, idx: int) -> tuple[int, str]:
        """(instance seed, difficulty) of item ``idx``."""
        return self.seed + idx, self.difficulties[idx % len(self.difficulties)]

    def split_of(self, instance: Instance) -> str:
        """``"test"`` or ``"train"``, decided by the canonical hash (never by seed)."""
        if self.test_fraction <= 0:
            return "train"
        bucket = int(instance.canonical_hash[:8], 16) / 0xFFFFFFFF
        return "test" if bucket < self.test_fraction else "train"


def _make_item(spec: DatasetSpec, out: Path, idx: int, task_cache: dict = {}) -> dict:  # noqa: B006 - per-process cache
    from gen_reason.video import write_image, write_mp4

    record_path = out / "records" / f"{idx:07d}.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    key = (spec.task, json.dumps(spec.task_config, sort_keys=True))
    if key not in task_cache:
        task_cache[key] = get_task(spec.task, **spec.task_config)
    task = task_cache[key]
    seed, difficulty = spec.item(idx)
    instance = task.generate(seed, difficulty)
    image_rel = f"images/{instance.uid}.png"
    write_image(out / image_rel, instance.first_frame)
    record = {"idx": idx, "uid": instance.uid, **instance.to_dict(), "split": spec.split_of(instance),
              "canonical_hash": instance.canonical_hash, "image": image_rel}
    if spec.video:
        video = task.solution_video(instance, spec.num_frames)
        video_rel = f"videos/{instance.uid}.mp4"
        write_mp4(out / video_rel, video, fps=task.config.fps, crf=spec.crf, lossless=spec.lossless)
        record.update(video=video_rel, num_frames=int(len(video)), fps=task.config.fps)
    # The record is written last: its presence means every file of the item is complete.
    write_atomic(record_path, json.dumps(record, sort_keys=True))
    return record


def _worker(args) -> int:
    spec, out, idx = args
    _make_item(spec, out, idx)
    return idx


def check_workers(workers: int | None) -> None:
    """:class:`UserError` unless ``workers`` is ``None`` (all cores) or a positive integer."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise UserError(f"--workers must be a positive integer; got {workers!r}")


def make_dataset(spec: DatasetSpec, out: str | os.PathLike, workers: int | None = None,
                 progress: bool = True, lock: bool = True) -> Path:
    """Write (or finish writing) the dataset described by ``spec`` into ``out``.

    Resumable: items whose record exists are skipped, so an interrupted run completes
    the rest and ends byte-identical to an uninterrupted one. A folder holding a
    different dataset is refused, and so is a folder another process is writing
    (``lock=False`` when the caller holds it already, see :func:`hold_folder`).
    """
    spec = spec.validate()
    check_workers(workers)
    out = writable_dir(out)
    if lock:
        with hold_folder(out):
            return _write_dataset(spec, out, workers, progress)
    return _write_dataset(spec, out, workers, progress)


def _write_dataset(spec: DatasetSpec, out: Path, workers: int | None, progress: bool) -> Path:
    """:func:`make_dataset`'s work, in a folder this process holds."""
    remove_stale_temps(out)
    (out / "records").mkdir(exist_ok=True)
    manifest = {"format_version": FORMAT_VERSION, **asdict(spec)}
    manifest_path = out / "dataset.json"
    if manifest_path.exists():
        existing = json.loads(manifest_path.read_text())
        if existing != json.loads(json.dumps(manifest)):
            raise UserError(f"{out} already holds a different dataset ({manifest_path}); choose another --out")
    else:
        write_atomic(manifest_path, json.dumps(manifest, indent=2, sort_keys=True))

    todo = [i for i in range(spec.n) if not (out / "records" / f"{i:07d}.json").exists()]
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    from tqdm.auto import tqdm

    bar = tqdm(total=spec.n, initial=spec.n - len(todo), desc=f"make-dataset {spec.task}", unit="inst",
               disable=not progress)
    if workers == 1:
        for idx in todo:
            _make_item(spec, out, idx)
            bar.update()
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn" if os.name == "nt" else "fork")
        with ctx.Pool(workers) as pool:
            for _ in pool.imap_unordered(_worker, [(spec, out, i) for i in todo], chunksize=8):
                bar.update()
    bar.close()
    _write_index(spec, out)
    return out


def _write_index(spec: DatasetSpec, out: Path) -> None:
    records = [json.loads((out / "records" / f"{i:07d}.json").read_text()) for i in range(spec.n)]
    if spec.dedupe:
        seen, unique = set(), []
        for record in records:
            if record["canonical_hash"] not in seen:
                seen.add(record["canonical_hash"])
                unique.append(record)
        records = unique
    lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    write_atomic(out / "metadata.jsonl", lines)
    if spec.video:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["video", "prompt", "input_image", "split"])
        for r in records:
            writer.writerow([r["video"], r["prompt"], r["image"], r["split"]])
        write_atomic(out / "metadata.csv", buffer.getvalue())


def iter_dataset(path: str | os.PathLike, split: str | None = None) -> Iterator[tuple[Instance, dict]]:
    """Yield ``(instance, record)`` for every item of a dataset folder (optionally one split).

    The first frame is read from the stored PNG, so the instance is exactly what was written.
    """
    from gen_reason.video import read_image

    path = Path(path)
    meta = path / "metadata.jsonl"
    if not meta.exists():
        raise UserError(f"{path} is not a genreason dataset (no metadata.jsonl)")
    try:
        lines = meta.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"{meta} is not a text file (binary content); not a genreason dataset?") from None
    except OSError as exc:
        raise UserError(f"cannot read {meta}: {exc.strerror or exc}") from None
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            if split and record.get("split") != split:
                continue
            first_frame = read_image(path / record["image"])
            instance = Instance.from_dict(record, first_frame=first_frame)
        except UserError as exc:
            raise UserError(f"{meta} line {number}: {exc}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"{meta} line {number} is not a dataset record ({type(exc).__name__}: {exc}); "
                            "a cut-short file? rerun make-dataset with the same arguments to rewrite it") from None
        yield instance, record
