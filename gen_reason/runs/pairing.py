"""The pairing check of ``genreason score``: does a video belong to the puzzle it is scored
against?

A model's video starts from the first frame it was given, so a video made for another
task's puzzle starts far from the instance's first frame. :func:`task_shown` tells which
other task a first frame clearly shows (:func:`layout_distance`, :func:`structure`);
:func:`check_pairing` refuses a folder whose first videos all show another task than the
levels they are named after (a :class:`UserError`, before anything is written).
"""

from __future__ import annotations

import functools
from pathlib import Path

from gen_reason.errors import UserError
from gen_reason.puzzles import Instance


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


def bare_name(task: str) -> str:
    """A task's name without its version (``maze/grid-v1`` -> ``maze/grid``), as messages show it."""
    return task.rsplit("-v", 1)[0]


def task_shown_by(instance: Instance, video) -> str | None:
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
            shown.append(task_shown_by(instance, first))
            if shown[-1] is None or len(shown) == per_task:
                break
        if shown and all(shown):
            raise UserError(f"the videos in {videos} start with {bare_name(shown[0])} puzzles, not the "
                            f"{bare_name(task)} puzzles of {levels} they are named after; "
                            "are the two folders paired right?")
