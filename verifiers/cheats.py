"""Shortcut videos built from a ground-truth video: what a strict referee must never pass.

Each cheat keeps the ground truth's length and size, so it differs from a legal answer only
in what it shows happening:

- ``static``: the first frame repeated (nothing happens);
- ``end_state_only``: the first frame, then the solved last frame held (the answer appears
  in one frame: on ``maze/draw`` the whole path drawn at once, on ``tangram`` every piece
  teleported into place);
- ``reversed``: the video played backwards (it starts solved);
- ``stopped_halfway``: the ground truth up to the middle of its motion, that frame held;
- ``other_puzzle``: the ground truth of another puzzle of the same task;
- ``one_by_one_teleport`` (tangram): each piece jumps into place in one frame, one after
  another.

They serve the shortcut tests and the referee's robustness bench.
"""

from __future__ import annotations

import numpy as np

CHEATS = ("static", "end_state_only", "reversed", "stopped_halfway", "other_puzzle")


def _held(frames: np.ndarray, length: int) -> np.ndarray:
    """``frames`` followed by its last frame repeated up to ``length`` frames."""
    if len(frames) >= length:
        return np.ascontiguousarray(frames[:length])
    return np.concatenate([frames, np.repeat(frames[-1:], length - len(frames), axis=0)])


def _fit(video: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``video`` at ``like``'s length and frame size (nearest resize, frames held or cut)."""
    import cv2

    h, w = like.shape[1:3]
    if video.shape[1:3] != (h, w):
        video = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_NEAREST) for f in video])
    return _held(video, len(like))


def make_cheat(name: str, video: np.ndarray, *, other: np.ndarray | None = None,
               motion_end: int | None = None) -> np.ndarray:
    """The cheat ``name`` (see the module docstring) built from the ground truth ``video``.

    ``other`` is another puzzle's ground-truth video (``other_puzzle``); ``motion_end`` is
    the frame where the ground truth's motion ends (default: the last frame that differs
    from the last frame, plus one), so ``stopped_halfway`` stops halfway through the motion
    rather than halfway through the hold.
    """
    video = np.asarray(video)
    t = len(video)
    if name == "static":
        return np.repeat(video[:1], t, axis=0)
    if name == "end_state_only":
        return np.concatenate([video[:1], np.repeat(video[-1:], t - 1, axis=0)])
    if name == "reversed":
        return np.ascontiguousarray(video[::-1])
    if name == "stopped_halfway":
        if motion_end is None:
            moving = np.flatnonzero([not np.array_equal(f, video[-1]) for f in video])
            motion_end = int(moving[-1]) + 1 if len(moving) else t
        return _held(video[: max(1, motion_end // 2) + 1], t)
    if name == "other_puzzle":
        if other is None:
            raise ValueError("other_puzzle needs another puzzle's video (other=...)")
        return _fit(np.asarray(other), video)
    raise ValueError(f"unknown cheat {name!r}; known: {', '.join(CHEATS)}")


def tangram_teleport_video(task, instance, num_frames: int) -> np.ndarray:
    """A tangram video whose pieces each jump into place in one frame, one after another
    (every piece's move happens between two consecutive frames)."""
    moves = task.num_moves(instance)
    per = max(1, (num_frames - 1) // (moves + 1))
    times = [min(moves, float(k // per)) for k in range(num_frames)]
    video = np.stack([task.render_at(instance, t) for t in times])
    video[0] = instance.first_frame
    return video
