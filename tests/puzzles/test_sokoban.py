"""Task-specific tests of ``maze/sokoban-v1``: rules, optimality, drawing, config errors."""

import numpy as np
import pytest

from gen_reason.errors import UserError
from gen_reason.puzzles.maze import blockgrid as bg
from gen_reason.puzzles.maze.sokoban import LEVELS, Sokoban, distances_to_solved, forward_path, solve
from gen_reason.puzzles.skins import SKINS

DIFFICULTIES = ("easy", "medium", "hard")


def cells_of(instance):
    """Open blocks in node order (node i is cells[i])."""
    grid = np.array([[int(ch) for ch in row] for row in instance.spec["layout"]["grid"]], np.uint8)
    return grid, bg.open_cells(grid, rooms_only=False)


def pixel(frame, xy):
    x, y = xy
    return tuple(int(v) for v in frame[int(round(y)), int(round(x))])


def hand_built(rows, agent, box, target):
    """A Sokoban instance built from a picture: '#' wall, '.' floor."""
    grid = np.array([[1 if ch == "#" else 0 for ch in row] for row in rows], np.uint8)
    dist = distances_to_solved(grid, target)
    states = forward_path(grid, (agent, box), dist)
    return Sokoban().build(grid, states, target, seed=0, difficulty="easy")


def test_same_seed_same_bytes_and_spec():
    a = Sokoban().generate(7, "medium")
    b = Sokoban().generate(7, "medium")
    assert a.first_frame.tobytes() == b.first_frame.tobytes()
    assert a.spec == b.spec and a.solution == b.solution
    c = Sokoban().generate(8, "medium")
    assert c.spec["layout"] != a.spec["layout"]


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_stored_solution_is_legal_optimal_and_fits_the_difficulty(difficulty):
    task = Sokoban()
    level = LEVELS[difficulty]
    for seed in range(6):
        inst = task.generate(seed, difficulty)
        sol = inst.solution
        assert task.check_solution(inst, sol) == (True, "ok")
        moves = len(sol["path"]) - 1
        assert moves == task.optimal_length(inst) == len(sol["moves"])
        assert level.moves[0] <= moves <= level.moves[1]
        assert sol["pushes"] >= level.min_pushes
        assert len(sol["box_path"]) == len(sol["path"])
        assert sol["box_path"][0] == inst.spec["box"]["start"]
        assert sol["box_path"][-1] == inst.spec["box"]["target"] == inst.spec["goal"]
        assert inst.spec["box"]["target"] not in sol["box_path"][:-1]  # solved exactly at the end


def test_hand_built_corridor_needs_two_pushes():
    inst = hand_built(["######", "#....#", "######"], agent=(1, 1), box=(1, 2), target=(1, 4))
    assert len(inst.solution["path"]) - 1 == 2
    assert inst.solution["moves"] == ["right", "right"]
    assert inst.solution["pushes"] == 2


def test_hand_built_room_where_the_agent_must_walk_around_the_box():
    # Box must go up, but the agent starts above it: walk around (4 moves), then push once.
    rows = ["#####", "#...#", "#...#", "#...#", "#####"]
    inst = hand_built(rows, agent=(1, 2), box=(2, 2), target=(1, 2))
    task = Sokoban()
    assert task.optimal_length(inst) == len(inst.solution["path"]) - 1 == 5
    assert inst.solution["pushes"] == 1


def test_forward_and_backward_searches_agree():
    task = Sokoban()
    for seed in range(4):
        inst = task.generate(seed, "easy")
        grid, cells = cells_of(inst)
        target = cells[inst.spec["box"]["target"]]
        dist = distances_to_solved(grid, target)
        start = (cells[inst.spec["start"]], cells[inst.spec["box"]["start"]])
        assert dist[start] == solve(grid, start, target)


def test_check_solution_rejects_illegal_answers():
    task = Sokoban()
    inst = task.generate(3, "easy")
    path = inst.solution["path"]
    grid, cells = cells_of(inst)
    assert task.check_solution(inst, {"path": []})[0] is False
    assert task.check_solution(inst, {"path": path[:-1]})[0] is False  # box not on target yet
    assert task.check_solution(inst, {"path": [path[0], path[2]] + path[3:]})[0] is False  # a two-block jump
    assert task.check_solution(inst, {"path": path[1:]})[0] is False  # wrong start
    assert task.check_solution(inst, {"path": path, "box_path": [inst.spec["box"]["start"]] * len(path)})[0] is False
    assert task.check_solution(inst, {"path": path + [10_000]})[0] is False
    assert task.check_solution(inst, {"path": path})[0] is True  # box_path is optional

    # Pushing the box into a wall is refused.
    corridor = hand_built(["######", "#....#", "######"], agent=(1, 1), box=(1, 2), target=(1, 4))
    ok, reason = task.check_solution(corridor, {"path": [0, 1, 2, 3]})
    assert not ok and "wall" in reason


def test_first_frame_shows_agent_box_and_target_distinctly():
    task = Sokoban()
    inst = task.generate(2, "medium")
    spec, frame = inst.spec, inst.first_frame
    geom = task.geometry((len(spec["layout"]["grid"]), len(spec["layout"]["grid"][0])))
    assert pixel(frame, spec["nodes"][spec["start"]]) == tuple(spec["agent"]["color"])
    bx, by = spec["nodes"][spec["box"]["start"]]
    assert pixel(frame, (bx + geom.cell_px * 0.2, by)) == tuple(spec["box"]["color"])
    x0, y0, x1, y1 = spec["goal_box"]
    assert pixel(frame, ((x0 + x1) / 2, (y0 + y1) / 2)) == tuple(spec["colors"]["target"])
    colors = [spec["agent"]["color"], spec["box"]["color"], spec["colors"]["target"]]
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.linalg.norm(np.subtract(colors[i], colors[j])) > 60


def test_solution_video_ends_with_the_box_on_the_target():
    task = Sokoban()
    inst = task.generate(5, "medium")
    video = inst.solution_video(49)
    assert video.shape[0] == 49 and video.dtype == np.uint8
    assert np.array_equal(video[0], inst.first_frame)
    last = video[-1]
    assert np.array_equal(last, task.render_at(inst, task.num_moves(inst)))
    spec = inst.spec
    tx, ty = spec["nodes"][spec["box"]["target"]]
    cell = spec["geometry"]["cell_px"]
    assert pixel(last, (tx + cell * 0.2, ty)) == tuple(spec["box"]["color"])
    x0, y0, _, _ = spec["goal_box"]
    assert pixel(last, (x0 + cell * 0.12, y0 + cell * 0.12)) == tuple(spec["colors"]["target"])  # rim shows
    assert pixel(last, spec["nodes"][inst.solution["path"][-1]]) == tuple(spec["agent"]["color"])


def test_box_moves_only_when_pushed_in_the_video():
    task = Sokoban()
    inst = task.generate(1, "easy")
    box_path = inst.solution["box_path"]
    nodes = inst.spec["nodes"]
    cell = inst.spec["geometry"]["cell_px"]
    for k in range(len(box_path) - 1):
        if box_path[k] == box_path[k + 1]:
            frame = task.render_at(inst, k + 0.5)
            bx, by = nodes[box_path[k]]
            assert pixel(frame, (bx + cell * 0.2, by)) == tuple(inst.spec["box"]["color"])


def test_every_skin_renders_and_keeps_the_puzzle():
    layouts = set()
    for skin in SKINS:
        inst = Sokoban(skin=skin).generate(4, "easy")
        layouts.add(str(inst.spec["layout"]))
        assert np.linalg.norm(np.subtract(inst.spec["box"]["color"], inst.spec["agent"]["color"])) >= 90
    assert len(layouts) == 1


def test_custom_size_difficulty():
    task = Sokoban(cell_px=16)
    inst = task.generate(0, "5x7")
    assert inst.difficulty == "5x7"
    assert inst.first_frame.shape == (7 * 16, 9 * 16, 3)
    assert task.check_solution(inst, inst.solution)[0]


@pytest.mark.parametrize("overrides", [{"cell_px": 0}, {"cell_px": "big"}, {"margin": -1}, {"skin": "nope"},
                                       {"no_such_field": 1}])
def test_bad_config_raises_user_error(overrides):
    with pytest.raises(UserError):
        Sokoban(**overrides)


@pytest.mark.parametrize("difficulty", ["impossible", "2x2", "17x4", "4"])
def test_bad_difficulty_raises_user_error(difficulty):
    with pytest.raises(UserError):
        Sokoban().generate(0, difficulty)
