"""``maze/draw``: VideoThinkBench's draw-the-path maze: connect two red dots with a red line.

"Draw a red path connecting two red dots without touching the walls." The maze is a
perfect maze (a random spanning tree of the cell graph) in one of three layouts, chosen
by the config's ``shape``:

- ``"square"``: a grid of square cells with thin walls;
- ``"hexagon"``: hexagonal cells filling a hexagon-shaped board;
- ``"circle"``: a circular labyrinth: a centre disk and concentric rings cut into sectors
  (outer rings have more sectors, so cells keep roughly the same size).

Walls are dark (max channel <= 40, VideoThinkBench's wall rule), the background light,
the start dot is the pen's red and the end dot a darker red (both pass VideoThinkBench's
red test, R >= 150 and R - max(G, B) >= 70, yet read as two distinct markers). The
ground-truth video draws the red line progressively from the start dot through the door
(the middle of the shared wall) between consecutive cells to the end dot.

Difficulties ``easy`` / ``medium`` / ``hard`` set the maze size: square 5x5, 8x8, 12x12
cells; hexagon board radius 2, 4, 6 (19, 61, 127 cells); circle 3, 5, 7 rings (31, 79,
127 cells). Square mazes also take ``"NxM"`` and the other shapes a bare number (board
radius or rings). The stored solution is the unique (hence optimal) cell path.

Spec (maze-family contract, ``gen_reason.puzzles.maze``): nodes are cell centres, edges
the open passages, ``agent`` the red pen (icon ``"pen"``, size = line width), ``trail``
is true (the drawn line stays). ``spec["draw"]`` adds what the pixel referee needs:
``dots``, ``dot_radius``, ``line_width``, ``wall_px`` and ``walls`` (pixel segments
``[x0, y0, x1, y1]``, so the wall mask can be redrawn at any video resolution).
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

import cv2
import numpy as np

from gen_reason.errors import UserError
from gen_reason.puzzles.instance import Instance
from gen_reason.puzzles.maze.grid import check_node_path, graph_distance
from gen_reason.puzzles.maze.cells import door_point, farthest_cell, make_layout, rounded, spanning_tree, tree_path
from gen_reason.puzzles.task import Task, TaskConfig, check_range

SHAPES = ("square", "hexagon", "circle")
NAMED_SIZES: dict[str, dict[str, tuple[int, ...]]] = {
    "square": {"easy": (5, 5), "medium": (8, 8), "hard": (12, 12)},
    "hexagon": {"easy": (2,), "medium": (4,), "hard": (6,)},
    "circle": {"easy": (3,), "medium": (5,), "hard": (7,)},
}
_SQUARE_SIZE = re.compile(r"^(\d+)x(\d+)$")
_NUMBER = re.compile(r"^(\d+)$")

# Both dots and the pen pass VideoThinkBench's red test (R >= 150, R - max(G, B) >= 70);
# the end dot is a darker red so start and goal stay distinguishable (max channel gap 70).
PEN_RED = (250, 45, 45)
GOAL_RED = (180, 0, 0)


@dataclass(frozen=True)
class DrawPalette:
    """Background and wall colours of one skin (walls always pass the dark test)."""

    background: tuple[int, int, int]
    wall: tuple[int, int, int]


# Draw mazes keep VideoThinkBench's colour rules in every skin: light paper, dark walls,
# red ink. A skin only changes the paper and the wall tint.
PALETTES: dict[str, DrawPalette] = {
    "classic": DrawPalette((255, 255, 255), (20, 20, 20)),
    "dark": DrawPalette((222, 226, 236), (10, 14, 40)),
    "pastel": DrawPalette((248, 242, 228), (38, 24, 40)),
    "forest": DrawPalette((226, 240, 214), (16, 40, 16)),
    "tiny": DrawPalette((255, 255, 255), (0, 0, 0)),
}

PROMPT = (
    "A {shape} maze drawn with dark walls on a light background, with two red dots. Draw a "
    "continuous red path from the bright red dot to the dark red dot along the open corridors, "
    "without touching or crossing any wall. The maze and the camera stay fixed; only the red "
    "line grows, starting at one dot and ending at the other."
)
_SHAPE_WORDS = {"square": "square grid", "hexagon": "hexagonal", "circle": "circular"}


@dataclass(frozen=True)
class DrawMazeConfig(TaskConfig):
    """How draw-the-path mazes look and are built."""

    shape: str = "square"  # "square", "hexagon" or "circle"
    cell_px: int = 32  # cell size: square side, hexagon flat-to-flat width, circle ring width
    wall_px: int = 3  # wall line thickness
    line_width: int | None = None  # red pen width; None: about a sixth of a cell
    dot_radius: float | None = None  # radius of the two dots; None: a quarter of a cell
    margin: int | None = None  # blank border; None: half a cell
    algorithm: str = "dfs"  # "dfs" (long corridors) or "kruskal" (many short dead ends)
    goal_placement: str = "farthest"  # "farthest" from a random start, "diameter", or "random"

    def validate(self) -> None:
        """Check every field; raise UserError naming the first bad one."""
        super().validate()
        if self.shape not in SHAPES:
            raise UserError(f"shape must be one of {', '.join(SHAPES)}; got {self.shape!r}")
        check_range("cell_px", self.cell_px, 8, 256)
        check_range("wall_px", self.wall_px, 1, 64)
        if self.line_width is not None:
            check_range("line_width", self.line_width, 1, 64)
        if self.dot_radius is not None:
            check_range("dot_radius", self.dot_radius, 1, 128)
        if self.margin is not None:
            check_range("margin", self.margin, 0, 512)
        if self.algorithm not in ("dfs", "kruskal"):
            raise UserError(f"algorithm must be 'dfs' or 'kruskal'; got {self.algorithm!r}")
        if self.goal_placement not in ("farthest", "diameter", "random"):
            raise UserError(f"goal_placement must be farthest, diameter or random; got {self.goal_placement!r}")
        # The dot and the line must fit inside a cell without touching its walls.
        if 2 * self.resolved_dot_radius + self.wall_px + 2 > self.cell_px:
            raise UserError(
                f"dot_radius {self.resolved_dot_radius} and wall_px {self.wall_px} do not fit in cell_px "
                f"{self.cell_px} (need 2 * dot_radius + wall_px + 2 <= cell_px)"
            )
        if 2 * self.resolved_line_width + self.wall_px > self.cell_px:
            raise UserError(f"line_width {self.resolved_line_width} is too wide for cell_px {self.cell_px}")

    @property
    def resolved_line_width(self) -> int:
        """The pen width in pixels."""
        return self.line_width if self.line_width is not None else max(2, int(round(self.cell_px / 6)))

    @property
    def resolved_dot_radius(self) -> float:
        """The dot radius in pixels."""
        return float(self.dot_radius) if self.dot_radius is not None else max(2.0, self.cell_px / 4)

    @property
    def resolved_margin(self) -> int:
        """The blank border in pixels."""
        return self.margin if self.margin is not None else self.cell_px // 2


# -- carving: walls and the solution line --------------------------------------------
def _walls(layout, neighbours: dict, tree: list) -> list[list[float]]:
    """Every cell edge that is not a passage, as ``[x0, y0, x1, y1]`` (rounded)."""
    open_edges = {edge for pair in tree for edge in neighbours[pair]}
    walls = []
    for edge in sorted(layout.edge_owners(), key=lambda e: sorted(e)):
        if edge not in open_edges:
            (x0, y0), (x1, y1) = (layout.points[k] for k in sorted(edge))
            walls.append([rounded(x0), rounded(y0), rounded(x1), rounded(y1)])
    return walls


def _polyline(layout, neighbours: dict, path: list[int]) -> list[list[float]]:
    """The solution line: cell centres joined through the doors between them (rounded)."""
    polyline = [list(map(rounded, layout.centers[path[0]]))]
    for a, b in zip(path, path[1:]):
        pair = (min(a, b), max(a, b))
        polyline.append(list(map(rounded, door_point(layout, neighbours[pair]))))
        polyline.append(list(map(rounded, layout.centers[b])))
    return polyline


# -- the task --------------------------------------------------------------------------
class DrawMaze(Task):
    """Draw a red path between two red dots through a square, hexagonal or circular maze."""

    name = "maze/draw-v1"
    verifier_family = "maze/draw"
    Config = DrawMazeConfig
    difficulties = ("easy", "medium", "hard")

    def parse_difficulty(self, difficulty: str) -> str:
        """``easy``/``medium``/``hard``; square also ``"NxM"`` cells, hexagon/circle ``"N"``."""
        d = str(difficulty).strip().lower()
        shape = self.config.shape
        if d in NAMED_SIZES[shape]:
            return d
        if shape == "square":
            m = _SQUARE_SIZE.match(d)
            if m and 2 <= int(m[1]) <= 40 and 2 <= int(m[2]) <= 40:
                return f"{int(m[1])}x{int(m[2])}"
            hint = "or a size like '6x6' (2 to 40)"
        else:
            m = _NUMBER.match(d)
            if m and 1 <= int(m[1]) <= 20:
                return str(int(m[1]))
            hint = f"or a {'board radius' if shape == 'hexagon' else 'ring count'} like '3' (1 to 20)"
        raise UserError(
            f"unknown difficulty {difficulty!r} for task {self.name} (shape {shape}); "
            f"choose from {', '.join(NAMED_SIZES[shape])} {hint}"
        )

    def size_of(self, difficulty: str) -> tuple[int, ...]:
        """The maze size of a normalised difficulty for this config's shape."""
        named = NAMED_SIZES[self.config.shape]
        if difficulty in named:
            return named[difficulty]
        return tuple(int(v) for v in difficulty.split("x"))

    def palette(self) -> DrawPalette:
        """This skin's paper and wall colours."""
        return PALETTES.get(self.config.skin, PALETTES["classic"])

    def _generate(self, rng: random.Random, difficulty: str, seed: int) -> Instance:
        cfg = self.config
        size = self.size_of(difficulty)
        layout = make_layout(cfg.shape, size, float(cfg.cell_px), float(cfg.resolved_margin))
        neighbours = layout.neighbours()
        tree, start, goal = self._passages(rng, len(layout.centers), neighbours)
        path = tree_path(len(layout.centers), tree, start, goal)
        spec = self._spec(layout, size, tree, start, goal, _walls(layout, neighbours, tree))
        solution = {"path": path, "polyline": _polyline(layout, neighbours, path)}
        prompt = PROMPT.format(shape=_SHAPE_WORDS[cfg.shape])
        return self.make_instance(seed=seed, difficulty=difficulty, prompt=prompt,
                                  first_frame=self.scene(spec), solution=solution, spec=spec)

    def _passages(self, rng: random.Random, n: int, neighbours: dict) -> tuple[list, int, int]:
        """A random spanning tree of the ``n`` cells (the passages), and the start and goal
        cells as ``goal_placement`` asks."""
        cfg = self.config
        tree = spanning_tree(n, sorted(neighbours), rng, cfg.algorithm)
        if cfg.goal_placement == "diameter":
            start = farthest_cell(n, tree, rng.randrange(n))
            goal = farthest_cell(n, tree, start)
        else:
            start = rng.randrange(n)
            goal = farthest_cell(n, tree, start) if cfg.goal_placement == "farthest" else rng.choice(
                [c for c in range(n) if c != start])
        return tree, start, goal

    def _spec(self, layout, size, tree: list, start: int, goal: int, walls: list) -> dict:
        """The maze spec (the maze family's contract) with the ``draw`` section: dots, walls, widths."""
        cfg = self.config
        palette = self.palette()
        line_width = cfg.resolved_line_width
        dot_radius = cfg.resolved_dot_radius
        nodes = [[rounded(x), rounded(y)] for x, y in layout.centers]
        gx, gy = nodes[goal]
        box_half = dot_radius * 1.5
        return {
            "family": "maze",
            "image_size": list(layout.image_size),
            "layout": {"shape": cfg.shape, "size": list(size), "passages": [list(p) for p in tree],
                       "start": start, "goal": goal},
            "nodes": nodes,
            "edges": [list(p) for p in tree],
            "start": start,
            "goal": goal,
            "step_px": float(cfg.cell_px),
            "goal_box": [int(math.floor(gx - box_half)), int(math.floor(gy - box_half)),
                         int(math.ceil(gx + box_half)), int(math.ceil(gy + box_half))],
            "agent": {"color": list(PEN_RED), "icon": "pen", "size_px": float(line_width)},
            "colors": {"wall": list(palette.wall), "floor": list(palette.background),
                       "background": list(palette.background), "path": list(PEN_RED),
                       "trail": list(PEN_RED), "goal": list(GOAL_RED)},
            "hazards": [],
            "trail": True,
            "draw": {"dots": [nodes[start], nodes[goal]], "dot_radius": rounded(dot_radius),
                     "dot_colors": [list(PEN_RED), list(GOAL_RED)], "line_width": line_width,
                     "wall_px": cfg.wall_px, "walls": walls},
        }

    # rendering --------------------------------------------------------------------
    def scene(self, spec: dict) -> np.ndarray:
        """The static picture: paper, walls and both dots (the first frame)."""
        h, w = spec["image_size"]
        img = np.empty((h, w, 3), np.uint8)
        img[:] = spec["colors"]["background"]
        draw = spec["draw"]
        draw_walls(img, draw["walls"], draw["wall_px"], tuple(spec["colors"]["wall"]))
        for (x, y), color in zip(draw["dots"], draw["dot_colors"]):
            _circle(img, (x, y), draw["dot_radius"], tuple(color))
        return img

    def _draw(self, base: np.ndarray, spec: dict, polyline: list, t: float) -> np.ndarray:
        return self._paint_line(base.copy(), spec, polyline, t)

    def _paint_line(self, img: np.ndarray, spec: dict, polyline: list, t: float) -> np.ndarray:
        pts = polyline_prefix(polyline, t)
        if len(pts) >= 2:
            scale = 1 << 4
            fixed = np.round(np.asarray(pts) * scale).astype(np.int32)
            cv2.polylines(img, [fixed], False, tuple(spec["agent"]["color"]), int(spec["draw"]["line_width"]),
                          cv2.LINE_AA, 4)
        return img

    def num_moves(self, instance: Instance) -> int:
        """Cell moves in the solution path."""
        return len(instance.solution["path"]) - 1

    def render_at(self, instance: Instance, t: float) -> np.ndarray:
        """The maze with the red line drawn ``t`` moves along the solution."""
        return self._draw(self.scene(instance.spec), instance.spec, instance.solution["polyline"], t)

    def solution_video(self, instance: Instance, num_frames: int | None = None) -> np.ndarray:
        """Ground-truth video: the line grows from the start dot to the end dot."""
        times = self.video_times(instance, num_frames)
        base = self.scene(instance.spec)
        polyline = instance.solution["polyline"]
        # One allocation, frames drawn in place: per-frame copies dominate the cost otherwise.
        video = np.empty((len(times), *base.shape), np.uint8)
        video[:] = base
        for frame, t in zip(video, times):
            self._paint_line(frame, instance.spec, polyline, float(t))
        video[0] = instance.first_frame
        return video

    # checking ---------------------------------------------------------------------
    def check_solution(self, instance: Instance, solution) -> tuple[bool, str]:
        """Legal: starts at the start cell, every move is an open passage, ends at the goal."""
        if not isinstance(solution, dict):
            return False, "solution must be a dict with a 'path'"
        return check_node_path(instance.spec, solution.get("path", []))

    def optimal_length(self, instance: Instance) -> int:
        """Shortest path length in moves (unique in a perfect maze)."""
        return graph_distance(instance.spec, instance.spec["start"], instance.spec["goal"])


def polyline_prefix(polyline: list, t: float) -> list[tuple[float, float]]:
    """The drawn part of the solution line after ``t`` moves (each move: centre, door, centre).

    Within a move the pen advances at constant speed along its two segments.
    """
    moves = (len(polyline) - 1) // 2
    if t <= 0 or moves == 0:
        return [tuple(polyline[0])]
    t = min(float(t), float(moves))
    k = min(int(math.floor(t)), moves - 1)
    f = t - k
    pts = [tuple(p) for p in polyline[: 2 * k + 1]]
    c0, d, c1 = (np.asarray(polyline[2 * k + i], float) for i in range(3))
    l1, l2 = float(np.linalg.norm(d - c0)), float(np.linalg.norm(c1 - d))
    s = f * (l1 + l2)
    if s <= l1:
        p = c0 + (d - c0) * (s / l1 if l1 else 0.0)
        pts.append((float(p[0]), float(p[1])))
    else:
        p = d + (c1 - d) * ((s - l1) / l2 if l2 else 1.0)
        pts += [(float(d[0]), float(d[1])), (float(p[0]), float(p[1]))]
    return pts


def draw_walls(img: np.ndarray, walls: list, wall_px: float, color, *, antialias: bool = True,
               scale: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Draw wall segments ``[x0, y0, x1, y1]`` (pixel units, scaled by ``(sx, sy)``) in place."""
    if not walls:
        return img
    shift = 4
    sx, sy = scale
    segs = np.asarray(walls, float) * np.array([sx, sy, sx, sy])
    fixed = np.round(segs * (1 << shift)).astype(np.int32).reshape(-1, 2, 2)
    thickness = max(1, int(round(wall_px)))
    cv2.polylines(img, list(fixed), False, color, thickness, cv2.LINE_AA if antialias else cv2.LINE_8, shift)
    return img


def _circle(img: np.ndarray, center, radius: float, color) -> None:
    scale = 1 << 4
    cv2.circle(img, (int(round(center[0] * scale)), int(round(center[1] * scale))), int(round(radius * scale)),
               color, -1, cv2.LINE_AA, 4)
