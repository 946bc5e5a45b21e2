"""``maze/grid``: a perfect maze on a square grid, an agent and a goal.

Difficulties: ``easy`` / ``medium`` / ``hard`` are VR-Bench's regular maze sizes (7, 11
and 15 blocks a side, walls being blocks: 3, 5 and 7 rooms); ``"NxM"`` asks for N x M
rooms directly (2 to 40), which covers "Thinking in Frames" (3x3 to 8x8) and
out-of-distribution sizes. The stored solution is the unique (hence optimal) path.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from gen_reason.errors import UserError
from gen_reason.puzzles.instance import Instance
from gen_reason.puzzles.maze import blockgrid as bg
from gen_reason.puzzles.maze.graph import MazeGraph
from gen_reason.puzzles.skins import color_name, draw_icon, get_skin
from gen_reason.puzzles.task import Task, TaskConfig, check_range

NAMED_SIZES = {"easy": (3, 3), "medium": (5, 5), "hard": (7, 7)}
_SIZE = re.compile(r"^(\d+)x(\d+)$")

PROMPT = (
    "A top-down maze. The {agent} {icon} is the agent and the {goal} {goal_icon} is the goal. "
    "Move the agent step by step along the open corridors until it reaches the goal, never "
    "crossing a {wall} wall. The maze and the camera stay fixed; only the agent moves."
)


@dataclass(frozen=True)
class GridMazeConfig(TaskConfig):
    """How grid mazes look and are built."""

    wall_style: str = "block"  # "block": walls are full blocks (VR-Bench); "thin": walls are lines
    cell_px: int = 32  # room size in pixels
    wall_px: int | None = None  # wall thickness; None: cell_px for block style, cell_px // 6 for thin
    margin: int = 0
    algorithm: str = "dfs"  # "dfs" (long corridors) or "kruskal" (many dead ends)
    goal_placement: str = "farthest"  # "farthest" from a random start, "diameter" (longest path), "random"
    trail: bool = False  # paint visited cells, so the path stays visible

    def validate(self) -> None:
        """Check every field; raise UserError naming the first bad one."""
        super().validate()
        if self.wall_style not in ("block", "thin"):
            raise UserError(f"wall_style must be 'block' or 'thin'; got {self.wall_style!r}")
        check_range("cell_px", self.cell_px, 2, 512)
        if self.wall_px is not None:
            check_range("wall_px", self.wall_px, 1, 512)
        check_range("margin", self.margin, 0, 512)
        if self.algorithm not in ("dfs", "kruskal"):
            raise UserError(f"algorithm must be 'dfs' or 'kruskal'; got {self.algorithm!r}")
        if self.goal_placement not in ("farthest", "diameter", "random"):
            raise UserError(f"goal_placement must be farthest, diameter or random; got {self.goal_placement!r}")


def parse_size(task: str, difficulty: str, named: dict, low: int = 2, high: int = 40) -> str:
    """Accept a named difficulty or ``"NxM"``; return the normalised name."""
    d = str(difficulty).strip().lower()
    if d in named:
        return d
    m = _SIZE.match(d)
    if m and low <= int(m[1]) <= high and low <= int(m[2]) <= high:
        return f"{int(m[1])}x{int(m[2])}"
    raise UserError(
        f"unknown difficulty {difficulty!r} for task {task}; choose from {', '.join(named)} "
        f"or a size like '5x5' ({low} to {high})"
    )


def size_of(difficulty: str, named: dict) -> tuple[int, int]:
    """Rooms (rows, cols) of a normalised difficulty."""
    if difficulty in named:
        return named[difficulty]
    rows, cols = difficulty.split("x")
    return int(rows), int(cols)


class GridMaze(Task):
    """Perfect grid mazes (DFS or Kruskal) with the goal placed for long paths."""

    name = "maze/grid-v1"
    verifier_family = "maze"
    Config = GridMazeConfig
    difficulties = tuple(NAMED_SIZES)

    def parse_difficulty(self, difficulty: str) -> str:
        """``easy``/``medium``/``hard`` or ``"NxM"`` rooms."""
        return parse_size(self.name, difficulty, NAMED_SIZES)

    # geometry ---------------------------------------------------------------------
    @property
    def rooms_only(self) -> bool:
        """Thin-wall mazes have rooms as nodes; block mazes every open block."""
        return self.config.wall_style == "thin"

    def geometry(self, shape: tuple[int, int]) -> bg.BlockGeometry:
        """Pixel geometry for a block grid of ``shape`` under this config."""
        cfg = self.config
        wall = cfg.wall_px if cfg.wall_px is not None else (cfg.cell_px if cfg.wall_style == "block" else max(1, cfg.cell_px // 6))
        return bg.BlockGeometry(shape, cfg.cell_px, wall, cfg.margin)

    def _generate(self, rng: random.Random, difficulty: str, seed: int) -> Instance:
        rows, cols = size_of(difficulty, NAMED_SIZES)
        grid = bg.carve_perfect_maze(rows, cols, rng, self.config.algorithm)
        rooms = [(2 * r + 1, 2 * c + 1) for r in range(rows) for c in range(cols)]
        placement = self.config.goal_placement
        if placement == "diameter":
            start = bg.farthest(grid, rng.choice(rooms), rooms)
            goal = bg.farthest(grid, start, rooms)
        else:
            start = rng.choice(rooms)
            goal = bg.farthest(grid, start, rooms) if placement == "farthest" else rng.choice([r for r in rooms if r != start])
        return self.build(grid, start, goal, seed, difficulty)

    def build(self, grid, start, goal, seed: int, difficulty: str, extra_spec: dict | None = None,
              blocked=frozenset()) -> Instance:
        """Assemble spec, solution, prompt and first frame for a carved block grid."""
        block_path = bg.shortest_path(grid, start, goal, blocked)
        if block_path is None:
            raise RuntimeError("generated maze has no path from start to goal")
        geom = self.geometry(grid.shape)
        skin = get_skin(self.config.skin, self.config.agent_icon)
        nodes, edges, index = bg.graph_spec(grid, geom, self.rooms_only)
        node_path = [index[c] for c in block_path if c in index]
        step_px = geom.cell_px + geom.wall_px if self.rooms_only else geom.cell_px
        spec = {
            "family": "maze",
            "image_size": list(geom.image_size),
            "layout": {"grid": ["".join(str(int(v)) for v in row) for row in grid],
                       "start": list(start), "goal": list(goal)},
            "geometry": {"cell_px": geom.cell_px, "wall_px": geom.wall_px, "margin": geom.margin,
                         "rooms_only": self.rooms_only},
            "nodes": nodes,
            "edges": edges,
            "start": index[start],
            "goal": index[goal],
            "step_px": float(step_px),
            "goal_box": geom.box(goal),
            "agent": {"color": list(skin.agent), "icon": skin.agent_icon, "size_px": bg.icon_size(geom)},
            "colors": {"wall": list(skin.wall), "floor": list(skin.floor), "goal": list(skin.goal),
                       "background": list(skin.background), "trail": list(skin.trail)},
            "hazards": [],
            "trail": self.config.trail,
        }
        spec.update(extra_spec or {})
        solution = {"path": node_path, "moves": _moves(block_path, 2 if self.rooms_only else 1)}
        prompt = self.prompt(skin)
        instance = self.make_instance(seed=seed, difficulty=difficulty, prompt=prompt,
                                      first_frame=self._draw(spec, 0.0, block_path), solution=solution, spec=spec)
        return instance

    def prompt(self, skin) -> str:
        """The task prompt in this skin's colour words."""
        return PROMPT.format(agent=color_name(skin.agent), icon=skin.agent_icon, goal=color_name(skin.goal),
                             goal_icon=skin.goal_icon, wall=color_name(skin.wall))

    # rendering --------------------------------------------------------------------
    def _grid(self, spec: dict):
        import numpy as np

        return np.array([[int(ch) for ch in row] for row in spec["layout"]["grid"]], np.uint8)

    def block_path(self, instance: Instance) -> list[tuple[int, int]]:
        """The solution as a block path (thin-wall mazes include the wall-gap blocks)."""
        grid = self._grid(instance.spec)
        return bg.shortest_path(grid, tuple(instance.spec["layout"]["start"]), tuple(instance.spec["layout"]["goal"]))

    def scene(self, spec: dict):
        """The static parts of a frame: ``(geometry, skin, floor-and-walls image)``."""
        grid = self._grid(spec)
        geom = self.geometry(grid.shape)
        skin = get_skin(self.config.skin, self.config.agent_icon)
        return geom, skin, bg.render_blocks(grid, geom, skin)

    def _draw(self, spec: dict, t: float, block_path, scene=None) -> "np.ndarray":
        geom, skin, base = scene or self.scene(spec)
        img = base.copy()
        per_move = 2 if self.rooms_only else 1
        if self.config.trail:
            bg.draw_trail(img, geom, block_path, t * per_move, skin)
        bg.draw_goal(img, geom, tuple(spec["layout"]["goal"]), skin)
        self.draw_extras(img, spec, geom, skin, t)
        pos = bg.position_along(block_path, t * per_move)
        draw_icon(img, skin.agent_icon, geom.center(pos), bg.icon_size(geom), skin.agent)
        return img

    def draw_extras(self, img, spec, geom, skin, t: float) -> None:
        """Hook for subclasses (traps, boxes) drawn under the agent."""

    def num_moves(self, instance: Instance) -> int:
        """Node moves in the solution path."""
        return len(instance.solution["path"]) - 1

    def render_at(self, instance: Instance, t: float):
        """The maze with the agent ``t`` moves along the solution."""
        return self._draw(instance.spec, t, self.block_path(instance))

    def solution_video(self, instance: Instance, num_frames: int | None = None):
        """Ground-truth video; the block path is computed once, not per frame."""
        import numpy as np

        path = self.block_path(instance)
        scene = self.scene(instance.spec)
        frames = [self._draw(instance.spec, float(t), path, scene) for t in self.video_times(instance, num_frames)]
        video = np.stack(frames)
        video[0] = instance.first_frame
        return video

    # checking ---------------------------------------------------------------------
    def check_solution(self, instance: Instance, solution) -> tuple[bool, str]:
        """Legal: starts at start, every move is an edge, no hazard, ends at goal."""
        return check_node_path(instance.spec, solution.get("path", []))

    def optimal_length(self, instance: Instance) -> int:
        """Shortest path length in moves (BFS over the spec graph)."""
        return graph_distance(instance.spec, instance.spec["start"], instance.spec["goal"])


def _moves(block_path, stride: int) -> list[str]:
    names = {v: k for k, v in bg.MOVES.items()}
    moves = []
    for (r0, c0), (r1, c1) in zip(block_path[::stride], block_path[stride::stride]):
        moves.append(names[((r1 > r0) - (r1 < r0), (c1 > c0) - (c1 < c0))])
    return moves


def adjacency(spec: dict) -> dict[int, set[int]]:
    """Neighbour sets of the spec graph."""
    adj: dict[int, set[int]] = {i: set() for i in range(len(spec["nodes"]))}
    for i, j in spec["edges"]:
        adj[i].add(j)
        adj[j].add(i)
    return adj


def check_node_path(spec: dict, path: list[int]) -> tuple[bool, str]:
    """Whether ``path`` walks legally from ``spec['start']`` to ``spec['goal']``."""
    if not path:
        return False, "empty path"
    if path[0] != spec["start"]:
        return False, f"path starts at node {path[0]}, not the start {spec['start']}"
    adj = adjacency(spec)
    hazards = set(spec.get("hazards", []))
    for k, (a, b) in enumerate(zip(path, path[1:])):
        if b not in adj[a]:
            return False, f"move {k + 1} from node {a} to {b} is not a legal move"
        if b in hazards:
            return False, f"move {k + 1} enters hazard node {b}"
    if path[-1] != spec["goal"]:
        return False, f"path ends at node {path[-1]}, not the goal {spec['goal']}"
    return True, "ok"


def graph_distance(spec: dict, a: int, b: int) -> int:
    """Shortest number of legal moves from node ``a`` to ``b`` avoiding hazards (-1 if none)."""
    return MazeGraph.from_spec(spec).move_counts(a, spec.get("hazards", [])).get(b, -1)
