"""maze/draw specifics: three layouts, perfect mazes, VideoThinkBench colours, the growing red line."""

import json

import numpy as np
import pytest

from gen_reason.errors import UserError
from gen_reason.puzzles import get_task
from gen_reason.puzzles.maze.cells import ring_sectors
from gen_reason.puzzles.maze.draw import PALETTES, polyline_prefix

SHAPES = ("square", "hexagon", "circle")
CELLS = {"square": (25, 64, 144), "hexagon": (19, 61, 127), "circle": (31, 79, 127)}


def _red(pixels):
    pixels = np.asarray(pixels).astype(int)
    return (pixels[..., 0] >= 150) & (pixels[..., 0] - np.maximum(pixels[..., 1], pixels[..., 2]) >= 70)


@pytest.mark.parametrize("shape", SHAPES)
def test_same_seed_same_bytes(shape):
    a = get_task("maze/draw", shape=shape).generate(11, "medium")
    b = get_task("maze/draw", shape=shape).generate(11, "medium")
    assert a.first_frame.tobytes() == b.first_frame.tobytes()
    assert json.dumps(a.to_dict(), sort_keys=True) == json.dumps(b.to_dict(), sort_keys=True)
    assert a.solution_video(49).tobytes() == b.solution_video(49).tobytes()
    c = get_task("maze/draw", shape=shape).generate(12, "medium")
    assert c.spec["layout"] != a.spec["layout"]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("level", [0, 1, 2])
def test_perfect_maze_and_optimal_solution(shape, level):
    difficulty = ("easy", "medium", "hard")[level]
    task = get_task("maze/draw", shape=shape)
    inst = task.generate(3, difficulty)
    spec = inst.spec
    n = len(spec["nodes"])
    assert n == CELLS[shape][level]
    assert len(spec["edges"]) == n - 1  # a spanning tree: connected with n - 1 passages
    reach = {spec["start"]}
    frontier = [spec["start"]]
    while frontier:
        u = frontier.pop()
        for i, j in spec["edges"]:
            for a, b in ((i, j), (j, i)):
                if a == u and b not in reach:
                    reach.add(b)
                    frontier.append(b)
    assert len(reach) == n
    ok, reason = task.check_solution(inst, inst.solution)
    assert ok, reason
    assert task.num_moves(inst) == task.optimal_length(inst) > 0
    assert len(inst.solution["polyline"]) == 2 * task.num_moves(inst) + 1
    assert inst.solution["polyline"][0] == spec["draw"]["dots"][0] == spec["nodes"][spec["start"]]
    assert inst.solution["polyline"][-1] == spec["draw"]["dots"][1] == spec["nodes"][spec["goal"]]
    json.dumps(spec), json.dumps(inst.solution)


def test_illegal_paths_are_rejected():
    task = get_task("maze/draw")
    inst = task.generate(0, "easy")
    path = inst.solution["path"]
    assert not task.check_solution(inst, {"path": path[:-1]})[0]
    assert not task.check_solution(inst, {"path": [path[0], path[-1]]})[0]
    assert not task.check_solution(inst, path)[0]


@pytest.mark.parametrize("shape", SHAPES)
def test_first_frame_shows_two_red_dots_dark_walls_light_paper(shape):
    inst = get_task("maze/draw", shape=shape).generate(5, "easy")
    frame, spec = inst.first_frame, inst.spec
    assert list(frame.shape[:2]) == spec["image_size"]
    for (x, y), color in zip(spec["draw"]["dots"], spec["draw"]["dot_colors"]):
        assert _red(frame[int(round(y)), int(round(x))])
        assert np.abs(frame[int(round(y)), int(round(x))].astype(int) - color).max() <= 2
    # start and goal are both red but distinguishable
    start_color, goal_color = spec["draw"]["dot_colors"]
    assert np.abs(np.array(start_color) - goal_color).max() > 60
    # a wall's midpoint is dark (VideoThinkBench wall rule), the paper light, and no red path yet
    x0, y0, x1, y1 = spec["draw"]["walls"][0]
    assert frame[int(round((y0 + y1) / 2)), int(round((x0 + x1) / 2))].max() <= 40
    assert frame[1, 1].min() >= 200
    dots_px = np.count_nonzero(_red(frame))
    r = spec["draw"]["dot_radius"]
    assert dots_px < 2 * (2 * np.pi * r * r)


@pytest.mark.parametrize("shape", SHAPES)
def test_solution_video_draws_the_line_progressively(shape):
    task = get_task("maze/draw", shape=shape)
    inst = task.generate(2, "medium")
    video = inst.solution_video(49)
    assert video.shape == (49, *inst.first_frame.shape)
    assert np.array_equal(video[0], inst.first_frame)
    assert np.array_equal(video[-1], task.render_at(inst, float(task.num_moves(inst))))
    red = _red(video).reshape(49, -1).sum(axis=1)
    assert np.all(np.diff(red) >= 0)  # the line only grows
    assert red[-1] > 3 * red[0]
    # every door and cell centre of the solution is inked in the last frame
    for x, y in inst.solution["polyline"]:
        assert _red(video[-1][int(round(y)), int(round(x))])


def test_polyline_prefix_is_monotone():
    line = [[0, 0], [1, 0], [2, 0], [2, 1], [2, 2]]
    assert polyline_prefix(line, 0) == [(0, 0)]
    assert polyline_prefix(line, 0.5)[-1] == pytest.approx((1.0, 0.0))
    assert polyline_prefix(line, 2)[-1] == pytest.approx((2.0, 2.0))
    assert polyline_prefix(line, 5)[-1] == pytest.approx((2.0, 2.0))


def test_ring_sectors_double_when_cells_get_wide():
    assert ring_sectors(8) == [6, 12, 12, 24, 24, 24, 24, 48]


@pytest.mark.parametrize("skin", sorted(PALETTES))
def test_every_skin_keeps_videothinkbench_colours(skin):
    inst = get_task("maze/draw", skin=skin).generate(1, "easy")
    assert max(inst.spec["colors"]["wall"]) <= 40
    assert min(inst.spec["colors"]["background"]) >= 200
    assert _red(np.array(inst.spec["agent"]["color"]))
    assert _red(np.array(inst.spec["colors"]["goal"]))


def test_sizes_and_bad_configs():
    assert len(get_task("maze/draw").generate(0, "3x4").spec["nodes"]) == 12
    assert len(get_task("maze/draw", shape="hexagon").generate(0, "1").spec["nodes"]) == 7
    assert len(get_task("maze/draw", shape="circle").generate(0, "2").spec["nodes"]) == 1 + 6 + 12
    with pytest.raises(UserError):
        get_task("maze/draw", shape="triangle")
    with pytest.raises(UserError):
        get_task("maze/draw", cell_px=16, dot_radius=8)
    with pytest.raises(UserError):
        get_task("maze/draw", shape="circle").generate(0, "5x5")
    with pytest.raises(UserError):
        get_task("maze/draw").generate(0, "41x2")


@pytest.mark.parametrize("placement", ["diameter", "random"])
def test_goal_placements(placement):
    task = get_task("maze/draw", shape="hexagon", goal_placement=placement, algorithm="kruskal")
    inst = task.generate(4, "medium")
    assert inst.spec["start"] != inst.spec["goal"]
    assert task.check_solution(inst, inst.solution)[0]


