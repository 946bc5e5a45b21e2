"""maze/grid specifics: sizes, wall styles, algorithms, goal placement, no torch."""

import subprocess
import sys

import numpy as np
import pytest

from gen_reason.puzzles import get_task
from gen_reason.puzzles.maze.blockgrid import OPEN, carve_perfect_maze, shortest_path


@pytest.mark.parametrize("difficulty,blocks", [("easy", 7), ("medium", 11), ("hard", 15)])
def test_vrbench_sizes(difficulty, blocks):
    inst = get_task("maze/grid").generate(0, difficulty)
    assert len(inst.spec["layout"]["grid"]) == blocks


@pytest.mark.parametrize("size", ["3x3", "8x8", "15x15", "20x12"])
def test_any_size(size):
    rows, cols = map(int, size.split("x"))
    inst = get_task("maze/grid", cell_px=8).generate(1, size)
    assert len(inst.spec["layout"]["grid"]) == 2 * rows + 1
    assert len(inst.spec["layout"]["grid"][0]) == 2 * cols + 1


@pytest.mark.parametrize("algorithm", ["dfs", "kruskal"])
def test_perfect_maze_is_a_spanning_tree(algorithm):
    import random

    grid = carve_perfect_maze(6, 7, random.Random(0), algorithm)
    rooms = 6 * 7
    passages = int((grid == OPEN).sum()) - rooms
    assert passages == rooms - 1  # a tree: connected with exactly n - 1 passages
    assert all(shortest_path(grid, (1, 1), (2 * r + 1, 2 * c + 1)) for r in range(6) for c in range(7))


def test_thin_walls_nodes_are_rooms():
    inst = get_task("maze/grid", wall_style="thin", cell_px=10).generate(0, "4x4")
    assert len(inst.spec["nodes"]) == 16
    assert len(inst.spec["edges"]) == 15


def test_diameter_goal_placement_gives_longest_path():
    from gen_reason.puzzles.maze.grid import graph_distance

    inst = get_task("maze/grid", goal_placement="diameter", wall_style="thin").generate(2, "5x5")
    spec = inst.spec
    far = max(graph_distance(spec, spec["start"], n) for n in range(len(spec["nodes"])))
    assert len(inst.solution["path"]) - 1 == far


def test_trail_paints_visited_cells():
    task = get_task("maze/grid", trail=True)
    inst = task.generate(0, "easy")
    video = inst.solution_video()
    trail = np.array(inst.spec["colors"]["trail"])
    n0 = (np.abs(video[0].astype(int) - trail).sum(-1) < 10).sum()
    n1 = (np.abs(video[-1].astype(int) - trail).sum(-1) < 10).sum()
    assert n1 > n0


def test_puzzles_import_without_torch():
    code = "import sys, gen_reason.puzzles; gen_reason.puzzles.get_task('maze/grid').generate(0); assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
