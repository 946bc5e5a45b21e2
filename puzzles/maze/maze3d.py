"""``maze/3d``: an isometric maze of stacked floors joined by ladders (VR-Bench's maze3d).

Every floor is a perfect maze of ``n x n`` rooms (thin walls between rooms, carved by
``blockgrid.carve_perfect_maze``), drawn as a floating isometric platform: rhombus floor
tiles, walls as raised slabs on the tile edges, the platform's front faces shaded. Floor
``z + 1`` is drawn above floor ``z`` with a gap, so no floor hides another. Ladders rise
from a room on the back edge of floor ``z`` to the room on the front edge of floor ``z + 1``
straight above it on screen, so a ladder crosses only empty space.

Spec: the maze-family contract (``gen_reason.puzzles.maze``). ``nodes`` are the projected
pixel centres of every room, then the points along every ladder (about ``step_px`` apart),
because the referee maps the agent's pixel position to the nearest node: a climbing agent
must map to the ladder, never to a room it happens to pass in front of. By construction no
two nodes lie closer than ``0.89 * step_px``. ``layout`` holds the floors' block grids,
the ladders and start and goal as ``[floor, row, col]``; ``nodes_3d`` the 3D coordinates of
every node (ladder points have fractional coordinates).

The agent starts on the bottom floor, the goal is the top-floor room farthest from it. The
stored solution is a shortest node path (BFS), hence **optimal in node moves** (ladder
points count as moves). Difficulties ``easy`` / ``medium`` / ``hard``: 2 floors of 3x3
rooms, 3 of 3x3, 3 of 4x4; ``"FxN"`` asks for F floors (2 to 5) of N x N rooms (2 to 10).
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

import numpy as np

from gen_reason.errors import UserError
from gen_reason.puzzles.instance import Instance
from gen_reason.puzzles.maze import blockgrid as bg
from gen_reason.puzzles.maze.graph import adjacency, bfs, shortest_path
from gen_reason.puzzles.maze.grid import check_node_path, graph_distance
from gen_reason.puzzles.maze.isometric import IsoGeometry, Room, agent_size, draw_floor, draw_ladder, goal_size, mix
from gen_reason.puzzles.maze.sokoban import contrasting_color
from gen_reason.puzzles.skins import Skin, color_name, draw_icon, get_skin
from gen_reason.puzzles.task import Task, TaskConfig, check_range

NAMED_SIZES = {"easy": (2, 3), "medium": (3, 3), "hard": (3, 4)}  # (floors, rooms a side)
_SIZE = re.compile(r"^(\d+)x(\d+)$")
FLOORS_RANGE, ROOMS_RANGE = (2, 5), (2, 10)

PROMPT = (
    "An isometric 3D maze of {floors} stacked floors joined by {ladder} ladders. The {agent} {icon} "
    "is the agent and the {goal} {goal_icon} on another floor is the goal. Move the agent step by step "
    "along the open floor tiles, never through a {wall} wall, and climb the ladders to change floors, "
    "until it reaches the goal. The maze and the camera stay fixed; only the agent moves."
)


@dataclass(frozen=True)
class Maze3DConfig(TaskConfig):
    """How isometric multi-floor mazes look and are built."""

    cell_px: int = 56  # width of one floor tile (a rhombus half as tall as wide)
    margin: int = 12
    level_gap_px: int = 28  # empty space between a floor's lowest point and the next floor's highest
    ladders: int | None = None  # ladders between neighbouring floors; None: 1 for 3x3 floors or smaller, else 2
    algorithm: str = "dfs"  # per-floor maze carving: "dfs" or "kruskal"

    def validate(self) -> None:
        """Check every field; raise UserError naming the first bad one."""
        super().validate()
        check_range("cell_px", self.cell_px, 16, 512)
        check_range("margin", self.margin, 0, 512)
        check_range("level_gap_px", self.level_gap_px, 0, 1024)
        if self.ladders is not None:
            check_range("ladders", self.ladders, 1, 2 * ROOMS_RANGE[1] - 1)
        if self.algorithm not in ("dfs", "kruskal"):
            raise UserError(f"algorithm must be 'dfs' or 'kruskal'; got {self.algorithm!r}")


def parse_size(task: str, difficulty: str) -> str:
    """Accept a named difficulty or ``"FxN"`` (F floors of N x N rooms); return the normalised name."""
    d = str(difficulty).strip().lower()
    if d in NAMED_SIZES:
        return d
    m = _SIZE.match(d)
    if m and FLOORS_RANGE[0] <= int(m[1]) <= FLOORS_RANGE[1] and ROOMS_RANGE[0] <= int(m[2]) <= ROOMS_RANGE[1]:
        return f"{int(m[1])}x{int(m[2])}"
    raise UserError(
        f"unknown difficulty {difficulty!r} for task {task}; choose from {', '.join(NAMED_SIZES)} or "
        f"'FxN' for F floors ({FLOORS_RANGE[0]} to {FLOORS_RANGE[1]}) of N x N rooms "
        f"({ROOMS_RANGE[0]} to {ROOMS_RANGE[1]}), e.g. '3x4'"
    )


def size_of(difficulty: str) -> tuple[int, int]:
    """(floors, rooms a side) of a normalised difficulty."""
    if difficulty in NAMED_SIZES:
        return NAMED_SIZES[difficulty]
    floors, rooms = difficulty.split("x")
    return int(floors), int(rooms)


def ladder_ends(column: int, rooms: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The (row, col) of a ladder's bottom room (back edge of the lower floor) and top room
    (front edge of the upper floor) for a screen ``column`` ``c - r`` in ``[-(n-1), n-1]``.

    Both project to the same screen x, and no other room of either floor lies on the
    vertical between them, so the ladder crosses only empty space.
    """
    right, left = max(0, column), max(0, -column)
    return (left, right), (rooms - 1 - right, rooms - 1 - left)


class Maze3D(Task):
    """Stacked perfect-maze floors joined by ladders, drawn isometrically; optimal BFS paths."""

    name = "maze/3d-v1"
    verifier_family = "maze"
    Config = Maze3DConfig
    difficulties = tuple(NAMED_SIZES)

    def parse_difficulty(self, difficulty: str) -> str:
        """``easy``/``medium``/``hard`` or ``"FxN"`` (F floors of N x N rooms)."""
        return parse_size(self.name, difficulty)

    def geometry(self, floors: int, rooms: int) -> IsoGeometry:
        """Pixel geometry for ``floors`` floors of ``rooms x rooms`` under this config."""
        cfg = self.config
        return IsoGeometry(floors, rooms, cfg.cell_px, cfg.margin, cfg.level_gap_px)

    def ladder_count(self, rooms: int) -> int:
        """Ladders between each pair of neighbouring floors."""
        count = self.config.ladders if self.config.ladders is not None else (1 if rooms <= 3 else 2)
        if count > 2 * rooms - 1:
            raise UserError(f"ladders={count} is too many for {rooms}x{rooms} floors (at most {2 * rooms - 1})")
        return count

    # generation -----------------------------------------------------------------------
    def _generate(self, rng: random.Random, difficulty: str, seed: int) -> Instance:
        floors, rooms = size_of(difficulty)
        count = self.ladder_count(rooms)
        grids = [bg.carve_perfect_maze(rooms, rooms, rng, self.config.algorithm) for _ in range(floors)]
        columns = list(range(-(rooms - 1), rooms))
        ladders, previous = [], []
        for z in range(floors - 1):
            # A column used just below would line two ladders up into what looks like one
            # long ladder through a floor; avoid it when there are columns to spare.
            fresh = [c for c in columns if c not in previous]
            previous = sorted(rng.sample(fresh if len(fresh) >= count else columns, count))
            for column in previous:
                bottom, top = ladder_ends(column, rooms)
                ladders.append(((z, *bottom), (z + 1, *top)))
        layout = {
            "floors": floors,
            "rooms": rooms,
            "levels": [["".join(str(int(v)) for v in row) for row in grid] for grid in grids],
            "ladders": [{"bottom": list(b), "top": list(t)} for b, t in ladders],
        }
        geom = self.geometry(floors, rooms)
        nodes_3d, edges = build_graph(layout, geom)
        start_room = (0, rng.randrange(rooms), rng.randrange(rooms))
        start = room_index(start_room, rooms)
        dist = _bfs_distances(len(nodes_3d), edges, start)
        top_floor = [room_index((floors - 1, r, c), rooms) for r in range(rooms) for c in range(rooms)]
        goal = max(top_floor, key=lambda i: (dist[i], -i))
        layout["start"], layout["goal"] = list(start_room), [int(v) for v in nodes_3d[goal]]
        return self.build(layout, nodes_3d, edges, start, goal, seed, difficulty)

    def build(self, layout: dict, nodes_3d: list, edges: list, start: int, goal: int, seed: int,
              difficulty: str) -> Instance:
        """Assemble spec, solution, prompt and first frame."""
        geom = self.geometry(layout["floors"], layout["rooms"])
        skin = get_skin(self.config.skin, self.config.agent_icon)
        nodes = [[round(v, 3) for v in geom.project(*p)] for p in nodes_3d]
        gx, gy = nodes[goal]
        half = geom.hh
        colors = self.colors(skin)
        spec = {
            "family": "maze",
            "image_size": list(geom.image_size),
            "layout": layout,
            "geometry": {"projection": "isometric", "tile_px": geom.tile_px, "tile_height_px": 2 * geom.hh,
                         "floor_offset_px": geom.dz, "wall_height_px": geom.wall_px, "margin": geom.margin},
            "nodes": nodes,
            "nodes_3d": [[round(v, 4) for v in p] for p in nodes_3d],
            "edges": edges,
            "start": start,
            "goal": goal,
            "step_px": round(geom.step_px, 3),
            "goal_box": [int(math.floor(gx - half)), int(math.floor(gy - half)),
                         int(math.ceil(gx + half)), int(math.ceil(gy + half))],
            "agent": {"color": list(skin.agent), "icon": skin.agent_icon, "size_px": agent_size(geom)},
            "colors": colors,
            "hazards": [],
            "trail": False,
        }
        path = shortest_node_path(len(nodes), edges, start, goal)
        solution = {"path": path, "moves": move_names(path, nodes_3d)}
        prompt = PROMPT.format(floors=layout["floors"], ladder=color_name(colors["ladder"]),
                               agent=color_name(skin.agent), icon=skin.agent_icon, goal=color_name(skin.goal),
                               goal_icon=skin.goal_icon, wall=color_name(skin.wall))
        first = self._draw(spec, 0.0, path, self.scene(spec))
        return self.make_instance(seed=seed, difficulty=difficulty, prompt=prompt, first_frame=first,
                                  solution=solution, spec=spec)

    def colors(self, skin: Skin) -> dict:
        """The scene's named colours. Floors always differ from the background (the platforms
        must read as objects), and ladders avoid the agent's and goal's colour."""
        floor = skin.floor
        for shade in (0.12, 0.2, 0.3, 0.45):
            if np.linalg.norm(np.subtract(floor, skin.background)) >= 24:
                break
            floor = mix(skin.floor, skin.wall, shade)
        ladder = contrasting_color(skin.accent, [skin.agent, skin.goal, skin.wall, floor])
        return {"wall": list(skin.wall), "floor": list(floor), "goal": list(skin.goal),
                "background": list(skin.background), "trail": list(skin.trail), "ladder": ladder}

    # rendering ------------------------------------------------------------------------
    def scene(self, spec: dict):
        """The static parts of a frame: ``(skin, image of floors, ladders and goal)``."""
        layout = spec["layout"]
        geom = self.geometry(layout["floors"], layout["rooms"])
        skin = get_skin(self.config.skin, self.config.agent_icon)
        colors = spec["colors"]
        h, w = geom.image_size
        img = np.empty((h, w, 3), np.uint8)
        img[:] = colors["background"]
        goal_room = tuple(layout["goal"])
        for z, rows in enumerate(layout["levels"]):
            grid = np.array([[int(ch) for ch in row] for row in rows], np.uint8)
            draw_floor(img, geom, z, grid, colors, skin, goal_room)
        for ladder in layout["ladders"]:
            draw_ladder(img, geom, ladder, colors["ladder"])
        gx, gy = geom.project(*goal_room)
        draw_icon(img, skin.goal_icon, (gx, gy), goal_size(geom), skin.goal)
        return skin, img

    def _draw(self, spec: dict, t: float, path: list[int], scene) -> np.ndarray:
        skin, base = scene
        img = base.copy()
        # Drawn last, above walls and ladders, so the agent is visible on every floor.
        draw_icon(img, skin.agent_icon, bg.node_position_along(spec["nodes"], path, t), spec["agent"]["size_px"], skin.agent)
        return img

    def num_moves(self, instance: Instance) -> int:
        """Node moves in the solution path (ladder points included)."""
        return len(instance.solution["path"]) - 1

    def render_at(self, instance: Instance, t: float) -> np.ndarray:
        """The maze with the agent ``t`` moves along the solution."""
        return self._draw(instance.spec, t, instance.solution["path"], self.scene(instance.spec))

    def solution_video(self, instance: Instance, num_frames: int | None = None) -> np.ndarray:
        """Ground-truth video; the scene is drawn once, not per frame."""
        scene = self.scene(instance.spec)
        path = instance.solution["path"]
        frames = [self._draw(instance.spec, float(t), path, scene) for t in self.video_times(instance, num_frames)]
        video = np.stack(frames)
        video[0] = instance.first_frame
        return video

    # checking -------------------------------------------------------------------------
    def check_solution(self, instance: Instance, solution) -> tuple[bool, str]:
        """Legal: starts at start, every move is an edge (a corridor step or a ladder step), ends at goal."""
        path = solution.get("path", []) if isinstance(solution, dict) else []
        return check_node_path(instance.spec, path)

    def optimal_length(self, instance: Instance) -> int:
        """Shortest path length in node moves (BFS over the spec graph)."""
        return graph_distance(instance.spec, instance.spec["start"], instance.spec["goal"])


# -- graph ---------------------------------------------------------------------------------
def room_index(room: Room, rooms: int) -> int:
    """Node index of a room: floors first, then rows, then columns."""
    z, r, c = room
    return (z * rooms + r) * rooms + c


def build_graph(layout: dict, geom: IsoGeometry) -> tuple[list[tuple[float, float, float]], list[list[int]]]:
    """3D positions of every node (rooms, then ladder points) and the legal moves between them.

    A ladder gets intermediate points about ``step_px`` apart on screen (0.7 to 1.5 of it),
    so climbing looks like walking to the referee: one ladder move is about one corridor step.
    """
    rooms = layout["rooms"]
    nodes: list[tuple[float, float, float]] = []
    edges: list[list[int]] = []
    for z, rows in enumerate(layout["levels"]):
        for r in range(rooms):
            for c in range(rooms):
                nodes.append((z, r, c))
                here = room_index((z, r, c), rooms)
                # the wall block between two rooms of the (2n+1)-block grid decides the edge
                if c + 1 < rooms and rows[2 * r + 1][2 * c + 2] == "0":
                    edges.append([here, here + 1])
                if r + 1 < rooms and rows[2 * r + 2][2 * c + 1] == "0":
                    edges.append([here, here + rooms])
    for ladder in layout["ladders"]:
        bottom, top = np.array(ladder["bottom"], float), np.array(ladder["top"], float)
        length = geom.project(*bottom)[1] - geom.project(*top)[1]
        segments = max(1, int(round(length / geom.step_px)))
        previous = room_index(tuple(ladder["bottom"]), rooms)
        for k in range(1, segments):
            nodes.append(tuple(float(v) for v in bottom + (top - bottom) * k / segments))
            edges.append([previous, len(nodes) - 1])
            previous = len(nodes) - 1
        edges.append([previous, room_index(tuple(ladder["top"]), rooms)])
    return nodes, edges


def _bfs_distances(count: int, edges: list[list[int]], start: int) -> list[float]:
    """Fewest moves from ``start`` to every node (``inf`` where unreachable)."""
    dist, _ = bfs(adjacency(count, edges), start)
    return [math.inf if d < 0 else d for d in dist]


def shortest_node_path(count: int, edges: list[list[int]], start: int, goal: int) -> list[int]:
    """A shortest node path from ``start`` to ``goal`` (BFS; neighbours in index order)."""
    path = shortest_path(adjacency(count, edges), start, goal)
    if path is None:
        raise RuntimeError("generated 3D maze has no path from start to goal")
    return path


def move_names(path: list[int], nodes_3d: list) -> list[str]:
    """Compass names of corridor moves (rows run north-south) and ``climb``/``descend`` on ladders."""
    names = []
    for a, b in zip(path, path[1:]):
        (z0, r0, c0), (z1, r1, c1) = nodes_3d[a], nodes_3d[b]
        if z1 != z0:
            names.append("climb" if z1 > z0 else "descend")
        elif r1 != r0:
            names.append("south" if r1 > r0 else "north")
        else:
            names.append("east" if c1 > c0 else "west")
    return names
