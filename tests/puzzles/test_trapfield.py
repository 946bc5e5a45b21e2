"""Task-specific tests of ``maze/trapfield``: traps matter, never sit on the path, and look distinct."""

import json

import numpy as np
import pytest

from gen_reason.errors import UserError
from gen_reason.puzzles.instance import Instance
from gen_reason.puzzles.maze.trapfield import TrapField, hazard_color, shortest_path_load
from gen_reason.puzzles.registry import get_task
from gen_reason.puzzles.skins import SKINS

SEEDS = (0, 1, 7)


def _manhattan(spec) -> int:
    (r0, c0), (r1, c1) = spec["layout"]["start"], spec["layout"]["goal"]
    return abs(r0 - r1) + abs(c0 - c1)


def _has_color_near(img, color, center, radius) -> bool:
    x, y = int(round(center[0])), int(round(center[1]))
    patch = img[max(0, y - radius): y + radius + 1, max(0, x - radius): x + radius + 1]
    return bool(np.all(patch == np.array(color, np.uint8), axis=-1).any())


def test_registered_and_deterministic():
    a = get_task("maze/trapfield-v1").generate(5, "medium")
    b = TrapField().generate(5, "medium")
    assert a.first_frame.tobytes() == b.first_frame.tobytes()
    assert a.spec == b.spec and a.solution == b.solution
    assert TrapField().generate(6, "medium").spec != a.spec
    json.dumps(a.spec), json.dumps(a.solution)  # both JSON-serialisable
    again = Instance.from_dict(a.to_dict())  # regenerates and checks the stored spec
    assert again.first_frame.tobytes() == a.first_frame.tobytes()


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard", "5x7"])
@pytest.mark.parametrize("seed", SEEDS)
def test_solution_legal_optimal_and_off_traps(difficulty, seed):
    task = TrapField()
    inst = task.generate(seed, difficulty)
    spec, path = inst.spec, inst.solution["path"]
    assert task.check_solution(inst, inst.solution) == (True, "ok")
    assert len(path) == task.optimal_length(inst) + 1
    assert not set(path) & set(spec["hazards"])
    # hazards are exactly the layout's trap cells, as node indices
    trap_centres = {tuple(spec["nodes"][k]) for k in spec["hazards"]}
    geom = task.geometry((len(spec["layout"]["grid"]), len(spec["layout"]["grid"][0])))
    assert trap_centres == {tuple(round(v, 3) for v in geom.center(tuple(c))) for c in spec["layout"]["traps"]}
    assert spec["start"] not in spec["hazards"] and spec["goal"] not in spec["hazards"]
    assert inst.solution["num_shortest_paths"] >= 1
    assert len(inst.solution["moves"]) == len(path) - 1


@pytest.mark.parametrize("seed", SEEDS)
def test_traps_force_a_detour(seed):
    task = TrapField()
    for difficulty, detour in (("medium", 2), ("hard", 4)):
        inst = task.generate(seed, difficulty)
        assert task.optimal_length(inst) >= _manhattan(inst.spec) + detour
    # easy: no forced detour, but some trap still lies on a trap-free shortest path
    inst = task.generate(seed, "easy")
    (r0, c0), (r1, c1) = inst.spec["layout"]["start"], inst.spec["layout"]["goal"]
    assert any(min(r0, r1) <= r <= max(r0, r1) and min(c0, c1) <= c <= max(c0, c1)
               for r, c in inst.spec["layout"]["traps"])


def test_a_path_through_a_trap_is_rejected():
    task = TrapField()
    inst = task.generate(2, "hard")
    spec = inst.spec
    # walk the trap-free BFS path: with hard traps it must cross a trap
    grid = np.array([[int(ch) for ch in row] for row in spec["layout"]["grid"]])
    free_length, _, _ = shortest_path_load(grid, tuple(spec["layout"]["start"]), tuple(spec["layout"]["goal"]), set())
    assert free_length < task.optimal_length(inst)
    hazard = spec["hazards"][0]
    neighbour = next(b if a == hazard else a for a, b in spec["edges"] if hazard in (a, b))
    ok, reason = task.check_solution(inst, {"path": [spec["start"], neighbour, hazard]})
    assert not ok


@pytest.mark.parametrize("skin", sorted(SKINS))
def test_first_frame_shows_agent_goal_and_traps(skin):
    task = TrapField(skin=skin)
    inst = task.generate(3, "medium")
    spec, img = inst.spec, inst.first_frame
    assert img.shape == (*spec["image_size"], 3) and img.dtype == np.uint8
    radius = int(spec["step_px"] // 2)
    assert _has_color_near(img, spec["agent"]["color"], spec["nodes"][spec["start"]], radius)
    assert _has_color_near(img, spec["colors"]["goal"], spec["nodes"][spec["goal"]], radius)
    for k in spec["hazards"]:
        assert _has_color_near(img, spec["colors"]["trap"], spec["nodes"][k], radius)
    trap = np.array(spec["colors"]["trap"], float)
    for name in ("agent", "goal"):
        other = spec["agent"]["color"] if name == "agent" else spec["colors"]["goal"]
        assert np.linalg.norm(trap - np.array(other, float)) >= 100, f"trap colour too close to the {name}"
    assert spec["agent"]["color"] != spec["colors"]["goal"]


def test_hazard_color_avoids_scene_colors():
    for skin in SKINS.values():
        color = np.array(hazard_color(skin), float)
        for other in (skin.agent, skin.goal, skin.floor, skin.wall):
            assert np.linalg.norm(color - np.array(other, float)) >= 100, skin.name


@pytest.mark.parametrize("trail", [False, True])
def test_solution_video(trail):
    task = TrapField(trail=trail)
    inst = task.generate(4, "medium")
    video = task.solution_video(inst, 49)
    assert video.shape == (49, *inst.first_frame.shape)
    assert np.array_equal(video[0], inst.first_frame)
    spec = inst.spec
    radius = int(spec["step_px"] // 3)
    assert _has_color_near(video[-1], spec["agent"]["color"], spec["nodes"][spec["goal"]], radius)
    assert not _has_color_near(video[-1], spec["agent"]["color"], spec["nodes"][spec["start"]], radius)
    # traps stay drawn throughout
    for k in spec["hazards"]:
        assert _has_color_near(video[-1], spec["colors"]["trap"], spec["nodes"][k], radius)
    # the default timing: frames_per_step per move plus the hold
    natural = task.solution_video(inst)
    assert len(natural) == task.num_moves(inst) * task.config.frames_per_step + 1 + task.config.hold_frames


def test_grid_sizes_grow_with_difficulty():
    task = TrapField()
    sizes = [task.generate(0, d).spec["image_size"][0] for d in ("easy", "medium", "hard")]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3
    traps = [np.mean([len(task.generate(s, d).spec["hazards"]) for s in SEEDS]) for d in ("easy", "medium", "hard")]
    assert traps == sorted(traps)


@pytest.mark.parametrize("overrides", [
    {"trap_density": 0.9}, {"trap_density": -0.1}, {"min_detour": 3}, {"min_detour": -2}, {"min_detour": 2.0},
    {"cell_px": 1}, {"skin": "nope"}, {"agent_icon": "nope"}, {"wall_style": "thin"}, {"trail": "yes"},
])
def test_bad_config_raises_user_error(overrides):
    with pytest.raises(UserError):
        TrapField(**overrides)


@pytest.mark.parametrize("difficulty", ["impossible", "2x2", "41x5", ""])
def test_bad_difficulty_raises_user_error(difficulty):
    with pytest.raises(UserError):
        TrapField().generate(0, difficulty)


def test_config_overrides_apply():
    inst = TrapField(trap_density=0.0, min_detour=0).generate(0, "hard")
    # with no scattered traps only the few cutting traps remain (one suffices for "traps matter")
    assert 1 <= len(inst.spec["hazards"]) <= 3
    inst = TrapField(min_detour=6).generate(0, "hard")
    assert TrapField().optimal_length(inst) >= _manhattan(inst.spec) + 6
