"""``genreason score``: referee videos against an instance, a dataset or VR-Bench levels.

Three ways to say what the videos answer:

- one video and ``--instance INSTANCE.json`` (from ``genreason puzzle`` or a dataset record);
- a folder of videos and ``--dataset DIR`` (written by ``make-dataset``): files named
  ``<uid>*.mp4``;
- a folder of videos and ``--vrbench DIR`` (VR-Bench levels,
  ``<game>/<skin>/<difficulty>/{states,images,videos}``): files named as VR-Bench names
  them, ``<difficulty>_<NNNN>[_*].mp4``, in folders named after their game and skin when
  several games share a level name (:func:`gen_reason.interop.vrbench_read.match_videos`).

Each writes ``scores.json`` (one row per video, a :class:`~gen_reason.runs.score_rows.ScoreRow`:
success, metrics, trace, reason) and a debug strip per video into its output folder, a run
folder (:class:`~gen_reason.folders.RunFolder`, :func:`open_scores`): ``config.yaml`` holds
what the rows depend on (the verifier kind and the inputs), and a rerun with another
config into the same folder is refused in one line before anything is scored; every row
is appended to ``scores.jsonl`` as it is made (a ``kill -9`` loses at most the row in
flight), so a rerun with the same config scores only what is left (:func:`score_many`);
one process at a time holds the folder. A folder is scored with a progress bar, the next
video decoded while the current one is judged. The strip: for the maze family
:func:`gen_reason.verifiers.maze.debug_strip` (the track drawn, the first violation
circled), for other tasks a filmstrip with the track. A video that cannot be read or
judged is a recorded failure with the reason, never a traceback; a level the referee cannot
read (a game it does not know) is a row marked ``skipped`` with the reason, left out of
the success rate. A path that does not exist, a file of the wrong kind, and a video paired
with another task's puzzle (one video against an instance, or a folder whose first videos
all start with another task's puzzle than the levels they are named after:
:mod:`gen_reason.runs.pairing`) are a :class:`UserError`, before anything is written.
The table printed is :func:`gen_reason.runs.score_rows.print_table`.
"""

from __future__ import annotations

import dataclasses
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from gen_reason.errors import UserError
from gen_reason.folders import JsonlLog, RunFolder, write_atomic
from gen_reason.puzzles import Instance
from gen_reason.runs.pairing import bare_name, check_pairing, task_shown_by
from gen_reason.runs.score_rows import ScoreRow

VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mov", ".gif")
#: The row log of a score folder: one ``{"key": [...], "row": {...}}`` line per video scored.
SCORES_LOG = "scores.jsonl"


def load_instance(path: Path) -> Instance:
    """An instance from a JSON file written by ``genreason puzzle`` or a dataset record."""
    if not path.exists():
        raise UserError(f"instance file not found: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a folder; give the instance JSON file (e.g. {path / 'instance.json'})")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not an instance JSON (binary content)") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is not an instance (expected a JSON object)")
    for key in ("task", "seed", "difficulty", "prompt", "solution", "spec"):
        if key not in data:
            raise UserError(f"{path} is not an instance (missing {key!r})")
    try:
        return Instance.from_dict(data)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise UserError(f"{path} is not a valid instance: {exc}") from None


def _debug_strip(instance: Instance, video, score, verifier):
    """The debug strip of one scored video, upscaled so small videos stay readable."""
    from gen_reason.runs.solve import draw_track, upscale
    from gen_reason.verifiers.framing import frame_video
    from gen_reason.verifiers.maze import MazeRuleVerifier, debug_strip
    from gen_reason.video import filmstrip

    try:
        video = frame_video(instance, video)  # the part the referee judged: the track lies on it
    except UserError:
        pass  # shown whole; the row's reason says why it could not be judged
    if isinstance(verifier, MazeRuleVerifier):
        strip = debug_strip(instance, video, score)
    else:
        strip = filmstrip(draw_track(video, score.to_dict()["trace"], instance.spec["image_size"]), 8)
    return upscale(strip[None], 96)[0]


def read_for(verifier, instance: Instance, video_path: Path):
    """Decode a video file as ``verifier`` reads it: with its own ``read_video`` where it
    has one (the maze family: straight to its working size), else whole. Raises
    :class:`UserError` when the file is unreadable."""
    from gen_reason.video import read_video

    reader = getattr(verifier, "read_video", None)
    return reader(video_path, instance) if reader is not None else read_video(video_path)


def _read(verifier, instance: Instance, video_path: Path):
    """``(video, None)`` decoded as the verifier reads it, or ``(None, failure score)``."""
    from gen_reason.verifiers.score import Score

    try:
        return read_for(verifier, instance, video_path), None
    except UserError as exc:
        return None, Score.failure(f"unreadable video: {exc}", success=0.0)


def _judge(verifier, instance: Instance, video_path: Path, decoded, out: Path | None, name: str | None) -> ScoreRow:
    """The row of one decoded video (``decoded`` as :func:`_read` returns it)."""
    from gen_reason.video import write_image

    video, failure = decoded
    score = failure if video is None else verifier.score(instance, video)
    row = ScoreRow.scored(video_path, score, uid=instance.uid, task=instance.task)
    if out is not None and video is not None:
        strip = _debug_strip(instance, video, score, verifier)
        row.debug_strip = str(write_image(out / f"{name or video_path.stem}_debug.png", strip))
    return row


def score_video(instance: Instance, video_path: Path, kind: str = "reference", out: Path | None = None,
                name: str | None = None) -> ScoreRow:
    """Score one video file; returns its row (``name`` names the debug strip in ``out``)."""
    from gen_reason.verifiers.registry import verifier_for

    verifier = verifier_for(instance.task, kind)
    return _judge(verifier, instance, video_path, _read(verifier, instance, video_path), out, name)


def _job_keys(jobs: list[tuple[Instance, Path, str | None]], kind: str) -> list[tuple]:
    """What a reused row must match for resuming, per job: the file (path, size,
    modification time; -1 where it cannot be read, so it is scored and the failure
    recorded), the instance it answers (a hash of its JSON, once per instance), the
    verifier kind and the package version."""
    import hashlib

    from gen_reason import __version__

    hashes: dict[int, str] = {}
    keys = []
    for instance, path, _ in jobs:
        if id(instance) not in hashes:
            text = json.dumps(instance.to_dict(), sort_keys=True)
            hashes[id(instance)] = hashlib.sha1(text.encode()).hexdigest()[:16]
        try:
            stat = path.stat()
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:
            size = mtime = -1
        keys.append((str(path), size, mtime, hashes[id(instance)], kind, __version__))
    return keys


@contextmanager
def open_scores(out: Path, config: dict) -> Iterator[JsonlLog]:
    """Hold ``out`` as a score run folder (:class:`~gen_reason.folders.RunFolder`) for the
    ``with`` block and yield its row log, ``scores.jsonl``.

    ``config`` says what the rows depend on (the verifier kind, the inputs); it is written
    to ``config.yaml`` with ``command: score``. A rerun with another config is refused in
    one line (:class:`UserError`) before anything is scored; a second process on the folder
    is refused while this one holds it. A block that fails before a row is stored takes
    back the ``config.yaml`` it wrote, so the corrected command is not refused.
    """
    log_path = Path(out) / SCORES_LOG
    if log_path.exists() and not log_path.is_file():
        raise UserError(f"cannot read {log_path} (the rows of an earlier run): not a file")
    with RunFolder(out, {"command": "score", **config}) as run:
        log = None
        try:
            try:
                log = run.log(SCORES_LOG)
            except OSError as exc:
                raise UserError(f"cannot read {log_path} (the rows of an earlier run): {exc.strerror or exc}") from None
            yield log
        except BaseException:
            run.discard_if_empty([log] if log is not None else [])
            raise


def _input(path: Path | None) -> str | None:
    """How ``config.yaml`` names an input path: absolute, so a rerun from another folder matches."""
    return None if path is None else str(Path(path).resolve())


def stored_rows(log: JsonlLog) -> dict[tuple, ScoreRow]:
    """The rows already in a score log, by their key (lines without one are passed over; a
    row with keys this version does not know is refused in one line)."""
    try:
        entries = log.records()
    except OSError as exc:
        raise UserError(f"cannot read {log.path} (the rows of an earlier run): {exc.strerror or exc}") from None
    return {tuple(entry["key"]): ScoreRow.from_dict(entry["row"]) for entry in entries
            if isinstance(entry, dict) and isinstance(entry.get("key"), list) and isinstance(entry.get("row"), dict)}


def score_many(jobs: list[tuple[Instance, Path, str | None]], kind: str, out: Path, log: JsonlLog,
               progress: bool = True) -> list[ScoreRow]:
    """Score ``(instance, video path, debug-strip name)`` jobs in order, one row each.

    The next video is decoded in a background thread while the current one is scored
    (decoding and scoring use the cores in turn). Each row is appended to ``log`` (the
    ``scores.jsonl`` of :func:`open_scores`) as soon as it exists, keyed by the file (path,
    size, modification time), the puzzle, the verifier kind and the package version: an
    interrupted run, started again, reuses the rows whose key still holds and scores only
    the rest. Debug strips go to ``out``. A progress bar goes to stderr (``progress=False``
    hides it).
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    from gen_reason.verifiers.registry import verifier_for

    done = stored_rows(log)
    keys = _job_keys(jobs, kind)
    todo = [i for i, key in enumerate(keys) if key not in done]
    verifiers = {task: verifier_for(task, kind) for task in {jobs[i][0].task for i in todo}}

    def read(i):
        instance, path, _ = jobs[i]
        return _read(verifiers[instance.task], instance, path)

    rows: dict[int, ScoreRow] = {}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool, \
            tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="score", unit="video",
                 disable=not progress) as bar:
        pending = pool.submit(read, todo[0]) if todo else None
        for n, i in enumerate(todo):
            decoded = pending.result()
            if n + 1 < len(todo):
                pending = pool.submit(read, todo[n + 1])
            instance, path, name = jobs[i]
            rows[i] = _judge(verifiers[instance.task], instance, path, decoded, out, name)
            log.append({"key": list(keys[i]), "row": rows[i].to_dict()})
            bar.update(1)
    return [rows[i] if i in rows else done[keys[i]] for i in range(len(jobs))]


def _write_table(out: Path, rows: list[ScoreRow]) -> None:
    """``scores.json``: every row of the run, in order (written whole, atomically)."""
    write_atomic(out / "scores.json", json.dumps([row.to_dict() for row in rows], indent=1))


def score_one(video: Path, instance_path: Path, kind: str = "reference", out: Path | None = None) -> ScoreRow:
    """Score one video file against the instance in ``instance_path``.

    Refused (:class:`UserError`) when the video's first frame clearly shows another task's
    puzzle (:func:`~gen_reason.runs.pairing.task_shown`): the video and the instance do not
    belong together. A video that cannot be decoded is a failed row, as in a folder. With
    ``out``, the folder is a score run folder (:func:`open_scores`), as for a folder of videos.
    """
    from gen_reason.verifiers.registry import verifier_for

    instance = load_instance(instance_path)
    if not video.exists():
        raise UserError(f"video not found: {video}")
    if video.is_dir():
        raise UserError(f"{video} is a folder; score a folder of videos with --dataset or --vrbench")
    verifier = verifier_for(instance.task, kind)
    decoded = _read(verifier, instance, video)
    other = task_shown_by(instance, decoded[0])
    if other is not None:
        raise UserError(f"{video} starts with a {bare_name(other)} puzzle, not the {bare_name(instance.task)} "
                        f"puzzle of {instance_path}; score it against its own instance")
    if not out:
        return _judge(verifier, instance, video, decoded, None, None)
    config = {"video": _input(video), "instance": _input(instance_path), "dataset": None, "vrbench": None,
              "kind": kind}
    with open_scores(out, config) as log:
        (key,) = _job_keys([(instance, video, None)], kind)
        row = stored_rows(log).get(key)
        if row is None:
            row = _judge(verifier, instance, video, decoded, out, None)
            log.append({"key": list(key), "row": row.to_dict()})
        _write_table(out, [row])
    return row


def _videos_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UserError(f"not a folder of videos: {folder}")
    videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    if not videos:
        raise UserError(f"no videos in {folder}")
    return videos


def score_folder(folder: Path, dataset: Path, kind: str = "reference", out: Path | None = None) -> list[ScoreRow]:
    """Score every video in ``folder`` whose name starts with a dataset instance's uid."""
    from gen_reason.datasets import iter_dataset

    videos = _videos_in(folder)
    instances = {inst.uid: inst for inst, _ in iter_dataset(dataset)}
    jobs = []
    by_length = sorted(instances, key=len, reverse=True)
    for video in videos:
        # Longest uid first, so "..._1" never claims "..._12_sample0.mp4".
        uid = next((u for u in by_length if video.stem == u or video.stem.startswith(u + "_")), None)
        if uid is not None:
            jobs.append((instances[uid], video, None))
    if not jobs:
        raise UserError(f"no video in {folder} is named after an instance of {dataset} (<uid>*.mp4)")
    out = out or folder / "scores"
    config = {"video": _input(folder), "instance": None, "dataset": _input(dataset), "vrbench": None, "kind": kind}
    with open_scores(out, config) as log:
        rows = score_many(jobs, kind, out, log)
        _write_table(out, rows)
    return rows


def score_vrbench(folder: Path, levels: Path, kind: str = "reference", out: Path | None = None) -> list[ScoreRow]:
    """Score every video under ``folder`` named after a VR-Bench level under ``levels``.

    Videos named after no level are ignored; ambiguous ones are recorded failures; levels
    the referee does not support are ``skipped`` rows (see the module docstring).
    """
    from gen_reason.interop.vrbench_read import find_levels, is_vrbench_folder, level_instances, list_videos, match_videos

    if not folder.exists():
        raise UserError(f"not a folder of videos: {folder}")
    if not is_vrbench_folder(levels):
        raise UserError(f"{levels} is not a VR-Bench folder (expected <game>/<skin>/<difficulty>/states/*.json)")
    videos = [folder] if folder.is_file() else list_videos(folder)
    if not videos:
        raise UserError(f"no videos in {folder}")
    matches, problems = match_videos(videos, find_levels(levels))
    ambiguous = [(v, why) for v, why in problems if why.startswith("ambiguous")]
    if not matches and not ambiguous:
        raise UserError(f"no video in {folder} is named after a VR-Bench level of {levels} "
                        "(<difficulty>_<NNNN>[_*].mp4)")
    base = folder if folder.is_dir() else folder.parent
    instances = level_instances(matches)
    rows: list = []
    jobs, job_rows = [], []
    for video, level in matches:
        instance = instances[level.key]
        if isinstance(instance, str):
            rows.append(ScoreRow(video=str(video), level=level.key, task=f"vrbench/{level.game}", status="skipped",
                                 success=False, metrics={}, reason=instance))
            continue
        jobs.append((instance, video, "__".join(video.relative_to(base).with_suffix("").parts)))
        job_rows.append(len(rows))
        rows.append(level.key)  # its place in the table, filled in below
    check_pairing([(instance, video) for instance, video, _ in jobs], folder, levels)
    out = out or base / "scores"
    config = {"video": _input(folder), "instance": None, "dataset": None, "vrbench": _input(levels), "kind": kind}
    with open_scores(out, config) as log:
        for place, row in zip(job_rows, score_many(jobs, kind, out, log)):
            rows[place] = dataclasses.replace(row, level=rows[place])
        for video, why in ambiguous:
            rows.append(ScoreRow(video=str(video), status="scored", success=False, metrics={"success": 0.0},
                                 reason=why))
        _write_table(out, rows)
    return rows
