"""Sweep every registered task (reasoning-gym's test_dataset_common): a new task is
covered by these tests with no new test code."""

import json

import numpy as np
import pytest

from gen_reason.errors import UserError
from gen_reason.puzzles import TASKS, get_task

TASK_NAMES = TASKS.names()
SEEDS = (0, 1, 7)


def _instances(name):
    task = get_task(name)
    for difficulty in task.difficulties:
        for seed in SEEDS:
            yield task, task.generate(seed, difficulty)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_deterministic_same_bytes(name):
    task = get_task(name)
    for difficulty in task.difficulties:
        a, b = task.generate(3, difficulty), get_task(name).generate(3, difficulty)
        assert a.first_frame.tobytes() == b.first_frame.tobytes()
        assert json.dumps(a.to_dict(), sort_keys=True) == json.dumps(b.to_dict(), sort_keys=True)
        assert np.array_equal(a.solution_video(17), b.solution_video(17))


@pytest.mark.parametrize("name", TASK_NAMES)
def test_different_seeds_differ(name):
    task = get_task(name)
    hashes = {task.generate(seed, task.difficulties[-1]).first_frame.tobytes() for seed in range(4)}
    assert len(hashes) > 1


@pytest.mark.parametrize("name", TASK_NAMES)
def test_solution_is_legal_and_optimal_where_promised(name):
    for task, inst in _instances(name):
        ok, reason = task.check_solution(inst, inst.solution)
        assert ok, f"{name} {inst.difficulty} seed {inst.seed}: {reason}"
        optimal = task.optimal_length(inst)
        if optimal is not None:
            assert task.num_moves(inst) == optimal, f"{name} seed {inst.seed} not optimal"
        json.dumps(inst.spec), json.dumps(inst.solution)  # JSON-serialisable


@pytest.mark.parametrize("name", TASK_NAMES)
def test_broken_solution_is_rejected(name):
    task, inst = next(_instances(name))
    sol = inst.solution
    if isinstance(sol, dict) and "path" in sol:
        broken = {**sol, "path": sol["path"][:-1]} if len(sol["path"]) > 1 else {**sol, "path": []}
    elif isinstance(sol, dict) and "pieces" in sol:
        pieces = [dict(p) for p in sol["pieces"]]
        pieces[0]["x"] = pieces[0]["x"] + 1000
        broken = {**sol, "pieces": pieces}
    else:
        pytest.skip(f"no generic way to break a {name} solution")
    ok, _ = task.check_solution(inst, broken)
    assert not ok


@pytest.mark.parametrize("name", TASK_NAMES)
def test_first_frame_shows_agent_and_goal_distinctly(name):
    for task, inst in _instances(name):
        frame = inst.first_frame
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
        assert list(frame.shape[:2]) == list(inst.spec["image_size"])
        spec = inst.spec
        if spec.get("family") != "maze":
            continue
        agent = np.array(spec["agent"]["color"])
        goal = np.array(spec["colors"]["goal"])
        assert np.abs(agent - goal).max() > 60, "agent and goal colours must differ"
        x, y = spec["nodes"][spec["start"]]
        patch = frame[max(0, int(y) - 2): int(y) + 3, max(0, int(x) - 2): int(x) + 3].reshape(-1, 3).astype(int)
        assert np.abs(patch - agent).sum(axis=1).min() < 40, f"{name}: agent colour not at the start node"
        x0, y0, x1, y1 = spec["goal_box"]
        goal_patch = frame[y0:y1, x0:x1].reshape(-1, 3).astype(int)
        target = np.array(spec.get("box", {}).get("target_color", goal)) if "box" in spec else goal
        assert goal_patch.size and np.abs(goal_patch - target).sum(axis=1).min() < 40, f"{name}: goal not drawn"


@pytest.mark.parametrize("name", TASK_NAMES)
@pytest.mark.parametrize("num_frames", [None, 49, 81])
def test_solution_video_starts_at_puzzle_and_ends_solved(name, num_frames):
    task = get_task(name)
    inst = task.generate(5, task.difficulties[0])
    video = inst.solution_video(num_frames)
    assert video.dtype == np.uint8 and video.ndim == 4 and video.shape[1:] == inst.first_frame.shape
    if num_frames is not None:
        assert len(video) == num_frames
    assert np.array_equal(video[0], inst.first_frame)
    solved = task.render_at(inst, float(task.num_moves(inst)))
    assert np.array_equal(video[-1], solved)
    if task.num_moves(inst) > 0:
        assert not np.array_equal(video[0], video[-1])


@pytest.mark.parametrize("name", TASK_NAMES)
def test_frames_per_step_timing(name):
    task = get_task(name, frames_per_step=3, hold_frames=2)
    inst = task.generate(2, task.difficulties[0])
    assert len(inst.solution_video()) == 3 * task.num_moves(inst) + 1 + 2


@pytest.mark.parametrize("name", TASK_NAMES)
def test_skins_change_pixels_not_puzzle(name):
    from gen_reason.puzzles.skins import SKINS

    base = get_task(name).generate(4, "easy")
    for skin in SKINS:
        inst = get_task(name, skin=skin).generate(4, "easy")
        assert inst.solution == base.solution
        assert inst.canonical_hash == base.canonical_hash


@pytest.mark.parametrize("name", TASK_NAMES)
def test_bad_config_and_difficulty_are_user_errors(name):
    with pytest.raises(UserError):
        get_task(name, no_such_field=1)
    with pytest.raises(UserError):
        get_task(name, skin="no-such-skin")
    with pytest.raises(UserError):
        get_task(name).generate(0, "impossible")
    with pytest.raises(UserError):
        get_task(name).generate(-1, "easy")


@pytest.mark.parametrize("name", TASK_NAMES)
def test_instance_json_round_trip(name):
    from gen_reason.puzzles import Instance

    inst = get_task(name, skin="dark").generate(6, "medium")
    back = Instance.from_dict(json.loads(json.dumps(inst.to_dict())))
    assert back.first_frame.tobytes() == inst.first_frame.tobytes()
    assert np.array_equal(back.solution_video(9), inst.solution_video(9))
