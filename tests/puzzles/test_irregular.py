"""Task-specific tests of ``maze/irregular``: a road graph that matches the picture, optimal paths."""

import itertools
import json
import math

import numpy as np
import pytest

from gen_reason.errors import UserError
from gen_reason.puzzles.instance import Instance
from gen_reason.puzzles.maze.irregular import IrregularMaze
from gen_reason.puzzles.maze.roads import clearance_points, road_curves, road_nodes, roads_clear
from gen_reason.puzzles.registry import get_task
from gen_reason.puzzles.skins import SKINS

SEEDS = (0, 1, 7)


def _has_color_near(img, color, center, radius) -> bool:
    x, y = int(round(center[0])), int(round(center[1]))
    patch = img[max(0, y - radius): y + radius + 1, max(0, x - radius): x + radius + 1]
    return bool(np.all(patch == np.array(color, np.uint8), axis=-1).any())


def _junction_degrees(spec) -> list[int]:
    degree = [0] * len(spec["layout"]["junctions"])
    for i, j, _ in spec["layout"]["roads"]:
        degree[i] += 1
        degree[j] += 1
    return degree


def test_registered_and_deterministic():
    a = get_task("maze/irregular-v1").generate(5, "medium")
    b = IrregularMaze().generate(5, "medium")
    assert a.first_frame.tobytes() == b.first_frame.tobytes()
    assert a.spec == b.spec and a.solution == b.solution
    assert IrregularMaze().generate(6, "medium").spec["layout"] != a.spec["layout"]
    json.dumps(a.spec), json.dumps(a.solution)  # both JSON-serialisable
    again = Instance.from_dict(a.to_dict())  # regenerates and checks the stored spec
    assert again.first_frame.tobytes() == a.first_frame.tobytes()


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard", "3x6"])
@pytest.mark.parametrize("seed", SEEDS)
def test_solution_legal_and_optimal(difficulty, seed):
    task = IrregularMaze()
    inst = task.generate(seed, difficulty)
    spec, path = inst.spec, inst.solution["path"]
    assert task.check_solution(inst, inst.solution) == (True, "ok")
    assert len(path) == task.optimal_length(inst) + 1
    assert spec["hazards"] == []
    # start and goal are distinct dead ends; the junction list is the path's junctions
    degree = _junction_degrees(spec)
    assert spec["start"] != spec["goal"]
    assert degree[spec["start"]] == 1 and degree[spec["goal"]] == 1
    assert inst.solution["junctions"] == [k for k in path if k < len(spec["layout"]["junctions"])]


def test_illegal_paths_are_rejected():
    task = IrregularMaze()
    inst = task.generate(0, "easy")
    path = inst.solution["path"]
    assert not task.check_solution(inst, {"path": path[:-1]})[0]  # stops short
    assert not task.check_solution(inst, {"path": path[:3] + path[5:]})[0]  # skips nodes (a jump)
    assert not task.check_solution(inst, {"path": []})[0]


@pytest.mark.parametrize("seed", SEEDS)
def test_graph_matches_the_layout_and_the_picture(seed):
    task = IrregularMaze()
    inst = task.generate(seed, "medium")
    spec = inst.spec
    nodes, edges = road_nodes(spec["layout"], task.config.node_step)
    assert (nodes, edges) == (spec["nodes"], spec["edges"])  # the layout alone decides the graph
    # every hop is short (about step_px), so a referee can check the agent stays on the road
    hops = [math.dist(spec["nodes"][a], spec["nodes"][b]) for a, b in spec["edges"]]
    assert max(hops) <= 1.5 * spec["step_px"] and min(hops) >= 0.6 * spec["step_px"]
    # every node, and the midpoint of every hop (the agent moves along chords), sits on the
    # drawn road: checked on the map without icons
    scene = task.scene(spec)
    road = np.array(spec["colors"]["road"], np.uint8)
    midpoints = [(np.add(spec["nodes"][a], spec["nodes"][b]) / 2).tolist() for a, b in spec["edges"]]
    for x, y in spec["nodes"] + midpoints:
        assert np.array_equal(scene[int(round(y)), int(round(x))], road)
    # roads stay visibly apart (away from a shared junction) in the picture
    width = spec["road_width_px"]
    junctions = np.array(spec["layout"]["junctions"], float)
    curves = [clearance_points(c) for c in road_curves(spec["layout"])]
    for (ra, ca), (rb, cb) in itertools.combinations(zip(spec["layout"]["roads"], curves), 2):
        assert roads_clear(ca, tuple(ra[:2]), cb, tuple(rb[:2]), junctions, width)


@pytest.mark.parametrize("skin", sorted(SKINS))
def test_first_frame_shows_agent_and_goal(skin):
    inst = IrregularMaze(skin=skin).generate(3, "easy")
    spec, img = inst.spec, inst.first_frame
    assert img.shape == (*spec["image_size"], 3) and img.dtype == np.uint8
    radius = int(spec["road_width_px"] // 3)
    assert _has_color_near(img, spec["agent"]["color"], spec["nodes"][spec["start"]], radius)
    assert _has_color_near(img, spec["colors"]["goal"], spec["nodes"][spec["goal"]], radius)
    assert spec["agent"]["color"] != spec["colors"]["goal"]
    assert spec["colors"]["road"] != spec["colors"]["background"]
    x0, y0, x1, y1 = spec["goal_box"]
    gx, gy = spec["nodes"][spec["goal"]]
    assert x0 <= gx <= x1 and y0 <= gy <= y1


@pytest.mark.parametrize("trail", [False, True])
def test_solution_video(trail):
    task = IrregularMaze(trail=trail)
    inst = task.generate(4, "medium")
    video = task.solution_video(inst, 49)
    assert video.shape == (49, *inst.first_frame.shape)
    assert np.array_equal(video[0], inst.first_frame)
    spec = inst.spec
    radius = int(spec["road_width_px"] // 3)
    assert _has_color_near(video[-1], spec["agent"]["color"], spec["nodes"][spec["goal"]], radius)
    assert not _has_color_near(video[-1], spec["agent"]["color"], spec["nodes"][spec["start"]], radius)
    if trail:
        assert _has_color_near(video[-1], spec["colors"]["trail"], spec["nodes"][inst.solution["path"][1]], radius)
    # render_at interpolates: half a hop lies between two consecutive nodes
    path = inst.solution["path"]
    mid = task.render_at(inst, 0.5)
    a, b = np.array(spec["nodes"][path[0]]), np.array(spec["nodes"][path[1]])
    assert _has_color_near(mid, spec["agent"]["color"], (a + b) / 2, 1)
    # the default timing: frames_per_step per hop plus the hold
    assert len(task.solution_video(inst)) == (task.num_moves(inst) * task.config.frames_per_step + 1
                                              + task.config.hold_frames)


def test_difficulty_grows():
    task = IrregularMaze()
    stats = {}
    for difficulty in ("easy", "medium", "hard"):
        insts = [task.generate(s, difficulty) for s in SEEDS]
        stats[difficulty] = (
            np.mean([len(i.spec["layout"]["junctions"]) for i in insts]),
            np.mean([len(i.spec["layout"]["roads"]) for i in insts]),
            min(len(i.solution["junctions"]) - 1 for i in insts),
        )
    junctions, roads, shortest = zip(*stats.values())
    assert junctions == tuple(sorted(junctions)) and roads == tuple(sorted(roads))
    assert shortest[0] >= 3 and shortest[1] >= 5 and shortest[2] >= 7


def test_config_options():
    base = IrregularMaze().generate(0, "easy")
    wide = IrregularMaze(spacing_px=96, road_px=20).generate(0, "easy")
    assert wide.spec["image_size"][0] > base.spec["image_size"][0] and wide.spec["road_width_px"] == 20
    fine = IrregularMaze(step_px=5).generate(0, "easy")
    assert len(fine.solution["path"]) > len(base.solution["path"])
    straight = IrregularMaze(curviness=0.0, diagonals=0.0, extra_roads=0).generate(0, "easy")
    assert len(straight.spec["layout"]["roads"]) == len(straight.spec["layout"]["junctions"]) - 1  # a tree
    diameter = IrregularMaze(goal_placement="diameter").generate(0, "medium")
    assert IrregularMaze().check_solution(diameter, diameter.solution)[0]
    tiny = IrregularMaze(skin="tiny", spacing_px=24, road_px=4).generate(0, "2x2")
    assert IrregularMaze().check_solution(tiny, tiny.solution)[0]


@pytest.mark.parametrize("overrides", [
    {"spacing_px": 8}, {"road_px": 30}, {"road_px": 0}, {"step_px": 0}, {"step_px": 100}, {"curviness": 0.9},
    {"diagonals": 1.5}, {"extra_roads": -1}, {"extra_roads": 1.5}, {"goal_placement": "random"},
    {"trail": 1}, {"skin": "nope"}, {"frames_per_step": 0}, {"cell_px": 32},
])
def test_bad_config_raises_user_error(overrides):
    with pytest.raises(UserError):
        IrregularMaze(**overrides)


@pytest.mark.parametrize("difficulty", ["impossible", "1x4", "13x13", ""])
def test_bad_difficulty_raises_user_error(difficulty):
    with pytest.raises(UserError):
        IrregularMaze().generate(0, difficulty)
