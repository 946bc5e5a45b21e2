"""``genreason score``: referee videos against an instance, a dataset or VR-Bench levels.

Three ways to say what the videos answer:

- one video and ``--instance INSTANCE.json`` (from ``genreason puzzle`` or a dataset record);
- a folder of videos and ``--dataset DIR`` (written by ``make-dataset``): files named
  ``<uid>*.mp4``;
- a folder of videos and ``--vrbench DIR`` (VR-Bench levels,
  ``<game>/<skin>/<difficulty>/{states,images,videos}``): files named as VR-Bench names
  them, ``<difficulty>_<NNNN>[_*].mp4``, in folders named after their game and skin when
  several games share a level name (:func:`gen_reason.interop.vrbench_read.match_videos`).

Each writes ``scores.json`` (one row per video: success, metrics, trace, reason) and a
debug strip per video; a folder is scored with a progress bar, the next video decoded while
the current one is judged, and every row also appended to ``scores.jsonl`` as it is made,
so an interrupted run started again scores only what is left (:func:`score_many`). The strip: for the maze family
:func:`gen_reason.verifiers.maze.debug_strip` (the track drawn, the first violation
circled), for other tasks a filmstrip with the track. A video that cannot be read or
judged is a recorded failure with the reason, never a traceback; a level the referee cannot
read (a game it does not know) is a row marked ``skipped`` with the reason, left out of
the success rate. A path that does not exist, a file of the wrong kind, and a video paired
with another task's puzzle (one video against an instance, or a folder whose first videos
all start with another task's puzzle than the levels they are named after:
:func:`task_shown`, :func:`check_pairing`) are a :class:`UserError`, before anything is
written.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from gen_reason.errors import UserError, writable_dir
from gen_reason.puzzles import Instance

VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mov", ".gif")


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


def _judge(verifier, instance: Instance, video_path: Path, decoded, out: Path | None, name: str | None) -> dict:
    """The row of one decoded video (``decoded`` as :func:`_read` returns it)."""
    from gen_reason.video import write_image

    video, failure = decoded
    score = failure if video is None else verifier.score(instance, video)
    row = {"video": str(video_path), "uid": instance.uid, "task": instance.task, "status": "scored",
           **score.to_dict()}
    if out is not None and video is not None:
        strip = _debug_strip(instance, video, score, verifier)
        row["debug_strip"] = str(write_image(out / f"{name or video_path.stem}_debug.png", strip))
    return row


def score_video(instance: Instance, video_path: Path, kind: str = "reference", out: Path | None = None,
                name: str | None = None) -> dict:
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


def score_many(jobs: list[tuple[Instance, Path, str | None]], kind: str, out: Path,
               progress: bool = True) -> list[dict]:
    """Score ``(instance, video path, debug-strip name)`` jobs in order, one row each.

    The next video is decoded in a background thread while the current one is scored
    (decoding and scoring use the cores in turn). Each row is appended to
    ``out/scores.jsonl`` as soon as it exists, keyed by the file (path, size, modification
    time), the puzzle, the verifier kind and the package version: an interrupted run,
    started again, reuses the rows whose key still holds and scores only the rest. A
    progress bar goes to stderr (``progress=False`` hides it).
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    from gen_reason.verifiers.registry import verifier_for

    log = out / "scores.jsonl"
    done: dict[tuple, dict] = {}
    try:
        data = log.read_bytes() if log.exists() else b""
    except OSError as exc:
        raise UserError(f"cannot read {log} (the rows of an earlier run): {exc.strerror or exc}") from None
    for line in data.splitlines():
        try:
            entry = json.loads(line)
            done[tuple(entry["key"])] = entry["row"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            continue  # a line cut short by the interruption
    if data and not data.endswith(b"\n"):
        with log.open("a") as sink:
            sink.write("\n")  # end the line an interruption cut short: the next row starts clean
    keys = _job_keys(jobs, kind)
    todo = [i for i, key in enumerate(keys) if key not in done]
    verifiers = {task: verifier_for(task, kind) for task in {jobs[i][0].task for i in todo}}

    def read(i):
        instance, path, _ = jobs[i]
        return _read(verifiers[instance.task], instance, path)

    rows: dict[int, dict] = {}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool, log.open("a") as sink, \
            tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="score", unit="video",
                 disable=not progress) as bar:
        pending = pool.submit(read, todo[0]) if todo else None
        for n, i in enumerate(todo):
            decoded = pending.result()
            if n + 1 < len(todo):
                pending = pool.submit(read, todo[n + 1])
            instance, path, name = jobs[i]
            rows[i] = _judge(verifiers[instance.task], instance, path, decoded, out, name)
            sink.write(json.dumps({"key": list(keys[i]), "row": rows[i]}) + "\n")
            sink.flush()
            bar.update(1)
    return [rows[i] if i in rows else done[keys[i]] for i in range(len(jobs))]


def layout_distance(reference, frame) -> float:
    """How unlike ``reference`` (a puzzle's first frame) ``frame`` looks, in [0, 1].

    ``frame`` is stretched to the reference's size (as the referee reads a video of another
    size), both are averaged into 12 x 12 blocks, and the distance is the share of blocks
    whose colour differs by more than 60 (of 255) in some channel: blur, H.264, noise,
    colour jitter, resizing and a small model's rendering move few blocks; another layout
    or palette moves many.
    """
    import cv2
    import numpy as np

    height, width = reference.shape[:2]
    stretched = cv2.resize(np.ascontiguousarray(frame), (width, height), interpolation=cv2.INTER_AREA)
    blocks = [cv2.resize(img.astype(np.float32), (12, 12), interpolation=cv2.INTER_AREA)
              for img in (reference, stretched)]
    return float((np.abs(blocks[0] - blocks[1]).max(axis=2) > 60).mean())


def structure(frame) -> float:
    """How much a frame shows at all: the spread (standard deviation, 0-255) of its gray
    level over 12 x 12 blocks. A black, white, gray or noise frame is near 0; every
    puzzle's first frame is well above it."""
    import cv2
    import numpy as np

    gray = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(cv2.resize(gray, (12, 12), interpolation=cv2.INTER_AREA).std())


def task_shown(instance: Instance, frame) -> str | None:
    """The task whose puzzle ``frame`` (a video's first frame) clearly shows, when it is
    not ``instance``'s task; ``None`` when it may well be ``instance``'s, or shows nothing.

    A model's video starts from the first frame it was given, so a video made for another
    task's puzzle starts far from this instance's first frame. Distances alone cannot tell
    that from a poor rendering of the right puzzle (a tiny blurry video moves about as many
    blocks as another task's frame), so the frame is compared with puzzles of every other
    registered task as well (default settings, each difficulty, the instance's seed and
    the next two): it shows another task only when one of those is clearly nearer than
    the instance (:func:`layout_distance` at most half the instance's, 0.1 below it and
    at most 0.35) and the frame shows something (:func:`structure` at least 5: a black,
    white or noise frame is the model's failure, not another puzzle). Both sides are
    checked on every task in ``tests/test_bad_inputs.py``: heavily degraded videos of the
    right puzzle (H.264 at CRF 40, 1/7 size, blur, noise, colour jitter, letterboxing)
    and blank frames are never refused, and most pairings with another task's first frame
    are. A video of another puzzle of the same task is not refused: a model that redraws
    the maze makes such a video, and that is a verdict.
    """
    from gen_reason.puzzles import TASKS, get_task

    own = layout_distance(instance.first_frame, frame)
    if own <= 0.1 or structure(frame) < 5.0:
        return None
    limit = min(0.5 * own, own - 0.1, 0.35)
    mine = TASKS.canonical(instance.task) if instance.task in TASKS else None  # VR-Bench levels: none of ours
    for name in TASKS.names():
        if TASKS.canonical(name) == mine:
            continue
        for difficulty in get_task(name).difficulties:
            for seed in range(instance.seed, instance.seed + 3):
                if layout_distance(_first_frame_of(name, seed, difficulty), frame) <= limit:
                    return name
    return None


@functools.lru_cache(maxsize=256)
def _first_frame_of(task: str, seed: int, difficulty: str):
    """The first frame of ``task``'s puzzle (default settings), kept for the next video."""
    from gen_reason.puzzles import get_task

    return get_task(task).generate(seed, difficulty).first_frame


def _bare(task: str) -> str:
    return task.rsplit("-v", 1)[0]


def _task_shown_by(instance: Instance, video) -> str | None:
    """:func:`task_shown` for a decoded video (``None`` for a video with no frames), on the
    part of its first frame where the referee finds the puzzle."""
    from gen_reason.verifiers.framing import frame_video

    if video is None or not len(video):
        return None
    try:  # where the puzzle lies in a video of another shape, as the referee finds it
        first = frame_video(instance, video[:1])[0]
    except UserError:
        first = video[0]  # no placement shows this puzzle: compare the whole frame
    return task_shown(instance, first)


def check_pairing(pairs: list[tuple[Instance, Path]], videos: Path, levels: Path, per_task: int = 3) -> None:
    """Refuse (:class:`UserError`) a folder of videos paired with levels of another task:
    for each task among the levels, its first ``per_task`` readable videos all start with
    another task's puzzle (:func:`task_shown`). One odd video among them is a verdict on
    the model and leaves the folder to be scored."""
    from gen_reason.video import read_video

    by_task: dict[str, list] = {}
    for instance, path in pairs:
        by_task.setdefault(instance.task, []).append((instance, path))
    for task, items in by_task.items():
        shown = []
        for instance, path in items:
            try:
                first = read_video(path, max_frames=1)
            except UserError:
                continue  # a broken video says nothing about the pairing
            shown.append(_task_shown_by(instance, first))
            if shown[-1] is None or len(shown) == per_task:
                break
        if shown and all(shown):
            raise UserError(f"the videos in {videos} start with {_bare(shown[0])} puzzles, not the {_bare(task)} "
                            f"puzzles of {levels} they are named after; are the two folders paired right?")


def score_one(video: Path, instance_path: Path, kind: str = "reference", out: Path | None = None) -> dict:
    """Score one video file against the instance in ``instance_path``.

    Refused (:class:`UserError`) when the video's first frame clearly shows another task's
    puzzle (:func:`task_shown`): the video and the instance do not belong together. A video
    that cannot be decoded is a failed row, as in a folder.
    """
    from gen_reason.verifiers.registry import verifier_for

    instance = load_instance(instance_path)
    if not video.exists():
        raise UserError(f"video not found: {video}")
    if video.is_dir():
        raise UserError(f"{video} is a folder; score a folder of videos with --dataset or --vrbench")
    verifier = verifier_for(instance.task, kind)
    decoded = _read(verifier, instance, video)
    other = _task_shown_by(instance, decoded[0])
    if other is not None:
        raise UserError(f"{video} starts with a {_bare(other)} puzzle, not the {_bare(instance.task)} puzzle of "
                        f"{instance_path}; score it against its own instance")
    if out:
        writable_dir(out)
    row = _judge(verifier, instance, video, decoded, out, None)
    if out:
        (out / "scores.json").write_text(json.dumps([row], indent=1))
    return row


def _videos_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UserError(f"not a folder of videos: {folder}")
    videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    if not videos:
        raise UserError(f"no videos in {folder}")
    return videos


def score_folder(folder: Path, dataset: Path, kind: str = "reference", out: Path | None = None) -> list[dict]:
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
    out = writable_dir(out or folder / "scores")
    rows = score_many(jobs, kind, out)
    (out / "scores.json").write_text(json.dumps(rows, indent=1))
    return rows


def score_vrbench(folder: Path, levels: Path, kind: str = "reference", out: Path | None = None) -> list[dict]:
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
            rows.append({"video": str(video), "level": level.key, "task": f"vrbench/{level.game}",
                         "status": "skipped", "success": False, "metrics": {}, "trace": {}, "reason": instance})
            continue
        jobs.append((instance, video, "__".join(video.relative_to(base).with_suffix("").parts)))
        job_rows.append(len(rows))
        rows.append(level.key)  # its place in the table, filled in below
    check_pairing([(instance, video) for instance, video, _ in jobs], folder, levels)
    out = writable_dir(out or base / "scores")
    for place, row in zip(job_rows, score_many(jobs, kind, out)):
        rows[place] = {"level": rows[place], **row}
    for video, why in ambiguous:
        rows.append({"video": str(video), "status": "scored", "success": False, "metrics": {"success": 0.0},
                     "trace": {}, "reason": why})
    (out / "scores.json").write_text(json.dumps(rows, indent=1))
    return rows


def _headline(metrics: dict) -> str:
    """The few numbers a table line shows for a row, by what its verifier measures: PR and
    EM for the maze family, silhouette IoU and pieces placed for tangram, none for draw."""
    if "precision_rate" in metrics:
        pr = metrics["precision_rate"]
        return f"PR={pr if pr is None else round(pr, 3)} EM={metrics.get('exact_match')}"
    if "silhouette_iou" in metrics:
        return f"IoU={round(metrics['silhouette_iou'], 3)} placed={metrics.get('pieces_placed_frac', 0.0):.0%}"
    return ""


def print_table(rows: list[dict]) -> None:
    """Print one line per video and the success rate (strict; beside it the lenient rate
    over the rows that have one: VR-Bench's SR for the maze family, the final frame alone
    for draw and tangram)."""
    for row in rows:
        verdict = "SKIP" if row.get("status") == "skipped" else ("PASS" if row["success"] else "FAIL")
        label = row.get("level") or Path(row["video"]).name
        print(" ".join(part for part in (f"{verdict}  {label:40s}", _headline(row["metrics"]), row.get("reason", ""))
                       if part).rstrip())
    scored = [r for r in rows if r.get("status") != "skipped"]
    if len(rows) > 1 and scored:
        skipped = len(rows) - len(scored)
        with_lenient = [r for r in scored if "success_lenient" in r["metrics"]]
        lenient = sum(bool(r["metrics"]["success_lenient"]) for r in with_lenient)
        # draw and tangram rows judge their final frame alone, as VideoThinkBench does
        final_frame = any("silhouette_iou" in r["metrics"] or "touches_start" in r["metrics"] for r in with_lenient)
        anchor = "VR-Bench's SR for mazes, the final frame alone for draw and tangram" if final_frame \
            else "as VR-Bench's SR"
        print(f"success {sum(r['success'] for r in scored)}/{len(scored)}"
              + (f" (lenient, {anchor}: {lenient}/{len(with_lenient)})" if with_lenient else "")
              + (f"; {skipped} skipped" if skipped else ""))
