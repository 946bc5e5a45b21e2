"""Task-specific tests of ``maze/3d-v1``: graph, optimality, node separation, drawing, config errors."""

from collections import deque

import numpy as np
import pytest

from gen_reason.errors import UserError
from gen_reason.puzzles.maze.maze3d import Maze3D, size_of
from gen_reason.puzzles.skins import SKINS

DIFFICULTIES = ("easy", "medium", "hard")


def pixel(frame, xy):
    x, y = xy
    return tuple(int(v) for v in frame[int(round(y)), int(round(x))])


def bfs_length(spec):
    """Independent BFS over the spec graph."""
    adj = {i: [] for i in range(len(spec["nodes"]))}
    for i, j in spec["edges"]:
        adj[i].append(j)
        adj[j].append(i)
    dist = {spec["start"]: 0}
    queue = deque([spec["start"]])
    while queue:
        u = queue.popleft()
        for v in adj[u]:
            if v not in dist:
                dist[v] = dist[u] + 1
                queue.append(v)
    return dist[spec["goal"]]


def test_same_seed_same_bytes_and_spec():
    a = Maze3D().generate(11, "hard")
    b = Maze3D().generate(11, "hard")
    assert a.first_frame.tobytes() == b.first_frame.tobytes()
    assert a.spec == b.spec and a.solution == b.solution
    assert Maze3D().generate(12, "hard").spec["layout"] != a.spec["layout"]


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_stored_solution_is_legal_optimal_and_climbs(difficulty):
    task = Maze3D()
    floors, rooms = size_of(difficulty)
    for seed in range(6):
        inst = task.generate(seed, difficulty)
        spec, sol = inst.spec, inst.solution
        assert task.check_solution(inst, sol) == (True, "ok")
        assert len(sol["path"]) - 1 == task.optimal_length(inst) == bfs_length(spec) == len(sol["moves"])
        assert spec["layout"]["start"][0] == 0 and spec["layout"]["goal"][0] == floors - 1
        assert sol["moves"].count("climb") - sol["moves"].count("descend") > 0
        assert len(spec["layout"]["levels"]) == floors and len(spec["layout"]["levels"][0]) == 2 * rooms + 1
        assert len(spec["nodes"]) == len(spec["nodes_3d"])


@pytest.mark.parametrize("overrides", [{}, {"level_gap_px": 0}, {"cell_px": 16}, {"ladders": 3},
                                       {"algorithm": "kruskal", "level_gap_px": 300}])
@pytest.mark.parametrize("difficulty", ["easy", "hard", "2x2", "4x6"])
def test_nodes_are_well_separated_and_moves_are_short(overrides, difficulty):
    """The referee maps the agent to the nearest node: distinct nodes must be far apart in
    pixels, and one move must not jump far (ladders are split into steps)."""
    task = Maze3D(**overrides)
    for seed in range(3):
        spec = task.generate(seed, difficulty).spec
        nodes = np.array(spec["nodes"])
        step = spec["step_px"]
        gaps = np.sqrt(((nodes[:, None] - nodes[None]) ** 2).sum(-1))
        np.fill_diagonal(gaps, np.inf)
        assert gaps.min() >= 0.85 * step
        edges = np.array(spec["edges"])
        lengths = np.sqrt(((nodes[edges[:, 0]] - nodes[edges[:, 1]]) ** 2).sum(-1))
        assert lengths.max() <= 1.5 * step
        h, w = spec["image_size"]
        assert (nodes >= 0).all() and (nodes[:, 0] < w).all() and (nodes[:, 1] < h).all()


def test_ladders_cross_only_empty_space():
    """No room other than a ladder's two ends lies near the screen segment the ladder covers."""
    task = Maze3D()
    for seed in range(4):
        spec = task.generate(seed, "hard").spec
        rooms = spec["layout"]["rooms"]
        room_count = spec["layout"]["floors"] * rooms * rooms
        nodes = np.array(spec["nodes"])
        for ladder in spec["layout"]["ladders"]:
            ends = [(z * rooms + r) * rooms + c for z, r, c in (ladder["bottom"], ladder["top"])]
            (x0, y0), (x1, y1) = nodes[ends[0]], nodes[ends[1]]
            assert abs(x0 - x1) < 1e-6 and y1 < y0  # straight up on screen
            for i in range(room_count):
                if i in ends:
                    continue
                x, y = nodes[i]
                dy = max(y1 - y, 0, y - y0)
                assert np.hypot(x - x0, dy) >= 0.85 * spec["step_px"]


def test_first_frame_shows_agent_and_goal():
    task = Maze3D()
    inst = task.generate(3, "medium")
    spec, frame = inst.spec, inst.first_frame
    assert pixel(frame, spec["nodes"][spec["start"]]) == tuple(spec["agent"]["color"])
    x0, y0, x1, y1 = spec["goal_box"]
    assert pixel(frame, ((x0 + x1) / 2, (y0 + y1) / 2)) == tuple(spec["colors"]["goal"])
    assert np.linalg.norm(np.subtract(spec["agent"]["color"], spec["colors"]["goal"])) > 60


def test_agent_is_drawn_above_everything():
    task = Maze3D()
    inst = task.generate(5, "hard")
    nodes, path = inst.spec["nodes"], inst.solution["path"]
    agent = tuple(inst.spec["agent"]["color"])
    for t in np.arange(0, len(path) - 1, 0.5):
        frame = task.render_at(inst, float(t))
        k = int(t)
        a, b = np.array(nodes[path[k]]), np.array(nodes[path[min(k + 1, len(path) - 1)]])
        assert pixel(frame, a + (b - a) * (t - k)) == agent


def test_solution_video_ends_at_the_goal():
    task = Maze3D()
    inst = task.generate(8, "hard")
    video = inst.solution_video(49)
    assert video.shape[0] == 49 and video.dtype == np.uint8
    assert np.array_equal(video[0], inst.first_frame)
    assert np.array_equal(video[-1], task.render_at(inst, task.num_moves(inst)))
    assert pixel(video[-1], inst.spec["nodes"][inst.spec["goal"]]) == tuple(inst.spec["agent"]["color"])
    assert pixel(video[0], inst.spec["nodes"][inst.spec["goal"]]) != tuple(inst.spec["agent"]["color"])


def test_check_solution_rejects_illegal_answers():
    task = Maze3D()
    inst = task.generate(2, "easy")
    spec, path = inst.spec, inst.solution["path"]
    rooms = spec["layout"]["rooms"]
    assert task.check_solution(inst, {"path": []})[0] is False
    assert task.check_solution(inst, {"path": path[:-1]})[0] is False
    # Straight up to the room above, without a ladder.
    z, r, c = spec["layout"]["start"]
    above = ((z + 1) * rooms + r) * rooms + c
    assert task.check_solution(inst, {"path": [spec["start"], above]})[0] is False
    # Through a wall: two rooms side by side with no edge between them.
    edges = {tuple(sorted(e)) for e in spec["edges"]}
    walled = next((i, i + 1) for i in range(rooms * rooms - 1) if (i + 1) % rooms and (i, i + 1) not in edges)
    assert task.check_solution(inst, {"path": list(walled)})[0] is False


def test_every_skin_renders_and_keeps_the_puzzle():
    layouts = set()
    for skin in SKINS:
        inst = Maze3D(skin=skin).generate(4, "easy")
        layouts.add(str(inst.spec["layout"]))
        colors = inst.spec["colors"]
        assert np.linalg.norm(np.subtract(colors["ladder"], inst.spec["agent"]["color"])) >= 90
        assert np.linalg.norm(np.subtract(colors["floor"], colors["background"])) >= 20
    assert len(layouts) == 1


def test_custom_size_difficulty():
    inst = Maze3D().generate(0, "4x2")
    assert inst.difficulty == "4x2"
    assert inst.spec["layout"]["floors"] == 4 and inst.spec["layout"]["rooms"] == 2


@pytest.mark.parametrize("overrides", [{"cell_px": 8}, {"margin": -3}, {"level_gap_px": "wide"}, {"ladders": 0},
                                       {"algorithm": "prim"}, {"skin": "nope"}, {"colour": 1}])
def test_bad_config_raises_user_error(overrides):
    with pytest.raises(UserError):
        Maze3D(**overrides)


@pytest.mark.parametrize("difficulty", ["tiny", "1x3", "6x3", "3x11", "3x1", "3"])
def test_bad_difficulty_raises_user_error(difficulty):
    with pytest.raises(UserError):
        Maze3D().generate(0, difficulty)


def test_too_many_ladders_for_the_floor_size_is_a_user_error():
    with pytest.raises(UserError):
        Maze3D(ladders=5).generate(0, "2x2")
