"""Property: a legal solution passes at any speed (hypothesis).

Real generators compress and stretch time freely: the agent may cross several cells
between two frames, stop, crawl, and stand at the goal for the rest of the clip. Every
maze kind's solution is rendered (the task's own ``render_at``) at a random time warp:
8-200 frames, a random share of pauses, speeds that vary threefold within a clip,
frames held at the start and after the goal, then a random size and H.264 quality. The
referee must call each one a strict success: no ``wall_crossing`` or ``teleport`` for a
move an open path explains.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gen_reason.puzzles.registry import get_task
from gen_reason.verifiers.degrade import h264
from gen_reason.verifiers.maze import MazeRuleVerifier

KINDS = ("maze/grid", "maze/irregular", "maze/trapfield", "maze/sokoban", "maze/3d")
RULES = MazeRuleVerifier()
SETTINGS = settings(max_examples=12, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@functools.lru_cache(maxsize=None)
def instance(kind: str, seed: int, difficulty: str):
    """A generated instance and its task (cached: the same puzzle serves many warps)."""
    task = get_task(kind)
    return task, task.generate(seed, difficulty)


def render(task, inst, times: np.ndarray) -> np.ndarray:
    """The solution at solution times ``times`` (moves); frame 0 is the puzzle's first frame."""
    cache: dict[float, np.ndarray] = {}
    frames = []
    for t in np.round(times, 4):
        if float(t) not in cache:
            cache[float(t)] = task.render_at(inst, float(t))
        frames.append(cache[float(t)])
    video = np.stack(frames)
    if times[0] == 0:
        video[0] = inst.first_frame
    return video


@st.composite
def time_warps(draw, moves: int) -> np.ndarray:
    """Monotone solution times ``[0 .. moves]`` over 8-200 frames: holds at both ends,
    pauses inside, and speeds that vary up to threefold from frame to frame."""
    total = draw(st.integers(8, 200))
    head = draw(st.integers(0, total // 6))
    tail = draw(st.integers(0, total // 4))
    middle = total - head - tail - 1
    pause_share = draw(st.sampled_from([0.0, 0.1, 0.25]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    # Pauses are runs of repeated frames (a paused agent), at least 2 frames of motion between.
    weights = rng.uniform(1.0, 3.0, middle)
    pause = rng.random(middle) < pause_share
    pause[: 2] = False
    weights[pause] = 0.0
    times = np.cumsum(weights)
    times = moves * times / times[-1]
    return np.concatenate([np.zeros(head + 1), times, np.full(tail, float(moves))])


def degrade(video: np.ndarray, scale: float, crf: int | None) -> np.ndarray:
    """Resize by ``scale`` (even sizes) and pass through H.264 at ``crf`` (None: lossless)."""
    if scale != 1.0:
        h, w = video.shape[1:3]
        size = (2 * max(8, round(w * scale / 2)), 2 * max(8, round(h * scale / 2)))
        video = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
                          for f in video])
    return h264(video, crf=crf) if crf is not None else video


@SETTINGS
@given(kind=st.sampled_from(KINDS), seed=st.integers(0, 5), difficulty=st.sampled_from(["easy", "medium"]),
       data=st.data())
def test_solution_at_any_speed_passes(kind, seed, difficulty, data):
    task, inst = instance(kind, seed, difficulty)
    times = data.draw(time_warps(task.num_moves(inst)), label="times")
    video = render(task, inst, times)
    score = RULES.score(inst, video)
    assert score.success, (kind, seed, difficulty, len(video), score.reason)


@SETTINGS
@given(kind=st.sampled_from(KINDS), seed=st.integers(0, 5), data=st.data(),
       scale=st.sampled_from([0.75, 1.0, 1.5]), crf=st.sampled_from([None, 18, 28, 34]))
def test_solution_at_any_speed_size_and_quality_passes(kind, seed, data, scale, crf):
    task, inst = instance(kind, seed, "easy")
    times = data.draw(time_warps(task.num_moves(inst)), label="times")
    video = degrade(render(task, inst, times), scale, crf)
    score = RULES.score(inst, video)
    assert score.success, (kind, seed, len(video), scale, crf, score.reason)


@SETTINGS
@given(kind=st.sampled_from(KINDS), seed=st.integers(0, 5), keep=st.sampled_from([2, 3, 4]),
       repeat=st.sampled_from([1, 2, 3]))
def test_ground_truth_subsampled_or_repeated_passes(kind, seed, keep, repeat):
    """The issue's own cases: every 2nd-4th frame of a resampled ground truth, each kept
    frame repeated (a model that stutters), the last frame always kept."""
    _, inst = instance(kind, seed, "medium")
    gt = inst.solution_video(num_frames=81)
    picks = np.unique(np.append(np.arange(0, len(gt), keep), len(gt) - 1))
    video = np.repeat(gt[picks], repeat, axis=0)
    score = RULES.score(inst, video)
    assert score.success, (kind, seed, keep, repeat, score.reason)
