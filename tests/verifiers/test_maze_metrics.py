"""VR-Bench metrics on hand-built cases, and the sweep: every GT video of every maze task and
skin scores success and EM = 1, clean and after every degradation."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from gen_reason.errors import UserError
from gen_reason.puzzles.registry import TASKS, get_task
from gen_reason.puzzles.skins import HELD_OUT_ICONS, SKINS
from gen_reason.verifiers import metrics as M
from gen_reason.verifiers.degrade import DEGRADATIONS
from gen_reason.verifiers.maze import MazeReferenceVerifier

REF = MazeReferenceVerifier()
SKIN_NAMES = list(SKINS)


# ----------------------------------------------------------------------------- hand-built metric cases
L_PATH = np.array([[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]])


def test_pr_identical_paths_is_one():
    assert M.precision_rate(L_PATH, L_PATH) == 1.0
    dense = np.array([[0.1 + 0.4 * t, 0.1] for t in np.linspace(0, 1, 37)] + [[0.5, 0.1 + 0.4 * t] for t in np.linspace(0, 1, 23)])
    assert M.precision_rate(L_PATH, dense) == 1.0  # sampling density does not matter


def test_pr_is_the_followed_prefix():
    half = np.array([[0.1, 0.1], [0.5, 0.1]])  # stops at the corner, half of the length
    pr = M.precision_rate(L_PATH, half)
    assert 0.49 <= pr <= 0.52
    wrong_turn = np.array([[0.1, 0.1], [0.5, 0.1], [0.9, 0.1]])  # goes straight on
    assert 0.49 <= M.precision_rate(L_PATH, wrong_turn) <= 0.52


def test_pr_eps_and_samples_are_parameters():
    shifted = L_PATH + [0.02, 0.0]
    assert M.precision_rate(L_PATH, shifted) == 0.0  # first sample already 0.02 > 0.01 away
    assert M.precision_rate(L_PATH, shifted, eps=0.05, samples=1000) == 1.0  # VR-Bench script's setting
    assert M.precision_rate(L_PATH, L_PATH[:1]) == 0.0  # fewer than two points


def test_success_is_any_point_in_the_goal_box():
    assert M.reached_box(L_PATH, [0.45, 0.45, 0.55, 0.55])
    assert not M.reached_box(L_PATH[:2], [0.45, 0.45, 0.55, 0.55])
    assert M.reached_box([[0.55, 0.55]], [0.45, 0.45, 0.55, 0.55])  # the border counts
    assert not M.reached_box(np.zeros((0, 2)), [0, 0, 1, 1])


def test_step_deviation_and_exact_match():
    detour = np.array([[0.1, 0.1], [0.5, 0.1], [0.5, 0.3], [0.5, 0.1], [0.5, 0.5]])
    sd = M.step_deviation(L_PATH, detour, success=True)
    assert sd == pytest.approx(0.4 / 0.8)
    assert math.isnan(M.step_deviation(L_PATH, detour, success=False))
    assert M.step_deviation(L_PATH, L_PATH, True) == 0.0
    assert M.exact_match(True, 1.0, 0.05)
    assert not M.exact_match(True, 0.97, 0.0)
    assert not M.exact_match(True, 1.0, 0.2)
    assert not M.exact_match(False, 1.0, 0.0)
    # VR-Bench reports a negative SD as N/A and its EM treats it as 0.
    assert M.exact_match(True, 1.0, -0.3)
    assert not M.exact_match(True, 1.0, -0.3, negative_sd_as_zero=False)


def test_maze_fidelity():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, size=(40, 40, 3), dtype=np.uint8)
    video = np.repeat(frame[None], 21, axis=0)
    box = [0, 0, 4, 4]
    assert M.maze_fidelity(video, [[20, 20]], box, box, (4, 4)) == 1.0
    changed = video.copy()
    changed[5:, 20:30, 20:30] = 255 - changed[5:, 20:30, 20:30]  # 100 of 1600 pixels, from frame 5 on
    mf = M.maze_fidelity(changed, [[2, 2]], box, box, (4, 4))
    assert mf == pytest.approx(1 - 100 / (1600 - 16), abs=0.01)
    # The agent's own box is masked out.
    assert M.maze_fidelity(changed, [[25, 25]], box, box, (10, 10)) == 1.0
    assert math.isnan(M.maze_fidelity(video[:3], [[2, 2]], box, box, (4, 4)))  # no frame sampled


def _maze_fidelity_per_frame(frames, traj, start_box, goal_box, agent_wh, frame_step=5, pixel_threshold=5):
    """VR-Bench's MF written as its plain per-frame loop (int16 gray differences, boolean masks)."""
    t, h, w = frames.shape[:3]
    traj = np.asarray(traj, np.float64).reshape(-1, 2)

    def clear(mask, box):
        x0, y0, x1, y1 = (int(v) for v in box)
        mask[max(0, y0):min(h, max(0, y1)), max(0, x0):min(w, max(0, x1))] = False

    base = np.ones((h, w), bool)
    clear(base, start_box)
    clear(base, goal_box)
    first = cv2.cvtColor(frames[0], cv2.COLOR_RGB2GRAY).astype(np.int16)
    scores = []
    for k in range(frame_step, t, frame_step):
        valid = base.copy()
        if len(traj):
            px, py = traj[min(int(k / t * (len(traj) - 1)), len(traj) - 1)]
            aw, ah = agent_wh
            clear(valid, [int(px - aw / 2), int(py - ah / 2), int(px - aw / 2) + int(aw), int(py - ah / 2) + int(ah)])
        if not valid.any():
            scores.append(1.0)
            continue
        gray = cv2.cvtColor(frames[k], cv2.COLOR_RGB2GRAY).astype(np.int16)
        scores.append(1.0 - float((np.abs(gray - first)[valid] > pixel_threshold).mean()))
    return float(np.mean(scores)) if scores else math.nan


def test_maze_fidelity_equals_the_per_frame_loop():
    rng = np.random.default_rng(7)
    for trial in range(40):
        t, h, w = int(rng.integers(6, 40)), int(rng.integers(8, 50)), int(rng.integers(8, 50))
        base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        video = np.repeat(base[None], t, axis=0)
        noise = rng.integers(-12, 13, video.shape) * (rng.random(video.shape[:3]) < rng.random())[..., None]
        video = np.clip(video.astype(int) + noise, 0, 255).astype(np.uint8)
        traj = rng.uniform(-10, max(h, w) + 10, (int(rng.integers(0, 8)), 2))
        boxes = [sorted(rng.integers(-5, w + 5, 2).tolist()) + sorted(rng.integers(-5, h + 5, 2).tolist())
                 for _ in range(2)]
        boxes = [[b[0], b[2], b[1], b[3]] for b in boxes]
        if trial % 10 == 0:
            boxes[0] = [-1, -1, w + 1, h + 1]  # nothing left to compare
        agent = (float(rng.uniform(0, w + 3)), float(rng.uniform(0, h + 3)))
        for step, threshold in ((5, 5), (2, 0), (3, 30)):
            got = M.maze_fidelity(video, traj, *boxes, agent, frame_step=step, pixel_threshold=threshold)
            want = _maze_fidelity_per_frame(video, traj, *boxes, agent, frame_step=step, pixel_threshold=threshold)
            assert got == want or (math.isnan(got) and math.isnan(want)), (trial, step, got, want)


def test_normalise_and_resample():
    norm = M.normalise([[100, 50]], 200, 100)
    assert norm.tolist() == [[0.5, 0.5]]
    rs = M.resample_by_length(L_PATH, 5)
    assert np.allclose(rs[0], L_PATH[0]) and np.allclose(rs[-1], L_PATH[-1])
    assert np.allclose(rs[2], [0.5, 0.1])


# ----------------------------------------------------------------------------- GT sweep
def maze_tasks() -> list[str]:
    """Every registered maze task with a spec graph (maze/draw has its own verifier)."""
    names = []
    for name in TASKS.names():
        if not name.startswith("maze/") or name.startswith("maze/draw"):
            continue
        try:
            get_task(name)
        except (ImportError, UserError, AttributeError):
            continue  # not written yet
        names.append(name)
    return names


TASK_NAMES = maze_tasks()


def _variants(task_name: str) -> list[dict]:
    if task_name.startswith("maze/grid"):
        return [{}, {"wall_style": "thin"}, {"trail": True}, {"wall_style": "thin", "trail": True}]
    return [{}]


def test_all_maze_tasks_found():
    assert any(n.startswith("maze/grid") for n in TASK_NAMES)


@pytest.mark.parametrize("task_name", TASK_NAMES)
@pytest.mark.parametrize("skin", SKIN_NAMES)
def test_ground_truth_scores_success_and_exact_match(task_name, skin):
    for k, variant in enumerate(_variants(task_name)):
        for difficulty in ("easy", "medium"):
            task = get_task(task_name, skin=skin, **variant)
            inst = task.generate(11 + k, difficulty)
            score = REF.score(inst, inst.solution_video())
            m = score.metrics
            where = f"{task_name} {skin} {variant} {difficulty}: {score.reason}"
            assert score.success, where
            assert m["success_lenient"] == 1.0 and m["exact_match"] == 1.0 and m["exact_match_strict"] == 1.0, where
            assert m["precision_rate"] == 1.0 and abs(m["step_deviation"]) < 0.02, (where, m)
            assert m["num_violations"] == 0.0 and m["track_coverage"] == 1.0, where


@pytest.mark.parametrize("task_name", TASK_NAMES)
@pytest.mark.parametrize("icon", HELD_OUT_ICONS)
def test_held_out_icons(task_name, icon):
    inst = get_task(task_name, agent_icon=icon).generate(4, "easy")
    score = REF.score(inst, inst.solution_video())
    assert score.success and score.metrics["exact_match"] == 1.0, score.reason


def test_fixed_frame_budgets():
    # 49- and 81-frame videos (generator budgets) of a medium maze.
    inst = get_task("maze/grid").generate(5, "easy")
    for n in (49, 81):
        score = REF.score(inst, inst.solution_video(n))
        assert score.success and score.metrics["exact_match"] == 1.0, (n, score.reason)


@pytest.mark.parametrize("degradation", list(DEGRADATIONS))
@pytest.mark.parametrize("task_name", TASK_NAMES)
def test_ground_truth_survives_degradation(task_name, degradation):
    # Skins rotate with the degradation so every skin meets several degradations.
    d = list(DEGRADATIONS).index(degradation)
    for k in range(2):
        skin = SKIN_NAMES[(d + 2 * k + TASK_NAMES.index(task_name)) % len(SKIN_NAMES)]
        variant = _variants(task_name)[(d + k) % len(_variants(task_name))]
        inst = get_task(task_name, skin=skin, **variant).generate(20 + d, "easy")
        video = DEGRADATIONS[degradation](inst.solution_video())
        score = REF.score(inst, video)
        where = f"{task_name} {skin} {variant} {degradation}: {score.reason}"
        assert score.success, where
        assert score.metrics["exact_match"] == 1.0, (where, score.metrics["precision_rate"],
                                                     score.metrics["step_deviation"])


@pytest.mark.parametrize("degradation", list(DEGRADATIONS))
def test_tiny_videos_survive_degradation(degradation):
    # The embedded model's scale: 28-38 px videos, agents of 4-6 px.
    for config in ({"cell_px": 4, "skin": "tiny"}, {"cell_px": 6, "wall_px": 2, "margin": 2}):
        inst = get_task("maze/grid", **config).generate(1, "4x4")
        score = REF.score(inst, DEGRADATIONS[degradation](inst.solution_video()))
        assert score.success and score.metrics["exact_match"] == 1.0, (config, score.reason)


def test_decoded_long_video_scores_success(tmp_path):
    # Speed is measured by bench/bench_referee.py, never asserted in tests (shared machines).
    from gen_reason.video import read_video, write_mp4

    inst = get_task("maze/grid").generate(1, "hard")
    path = write_mp4(tmp_path / "gt.mp4", inst.solution_video())
    score = REF.score(inst, read_video(path))
    assert score.success and score.metrics["exact_match"] == 1.0
