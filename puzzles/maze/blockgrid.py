"""Mazes on a grid of blocks (walls are blocks, as in VR-Bench's UnifiedState ``grid.data``).

Shared by ``maze/grid``, ``maze/trapfield`` and ``maze/sokoban``: carving, shortest
paths, the pixel geometry (wall blocks may be drawn thin), the spec graph, and drawing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from gen_reason.puzzles.maze.graph import search
from gen_reason.puzzles.skins import Skin, draw_icon, floor_texture

WALL, OPEN = 1, 0
MOVES = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}


def carve_perfect_maze(rows: int, cols: int, rng: random.Random, algorithm: str = "dfs") -> np.ndarray:
    """A perfect maze (exactly one path between any two rooms) on a ``(2r+1, 2c+1)`` block grid.

    Rooms sit at odd coordinates. ``algorithm`` is ``"dfs"`` (recursive backtracker: long
    winding corridors) or ``"kruskal"`` (randomised Kruskal: many short dead ends).
    """
    grid = np.ones((2 * rows + 1, 2 * cols + 1), np.uint8)
    grid[1::2, 1::2] = OPEN
    if algorithm == "dfs":
        seen = {(0, 0)}
        stack = [(0, 0)]
        while stack:
            r, c = stack[-1]
            options = [(r + dr, c + dc) for dr, dc in MOVES.values()
                       if 0 <= r + dr < rows and 0 <= c + dc < cols and (r + dr, c + dc) not in seen]
            if not options:
                stack.pop()
                continue
            nr, nc = rng.choice(options)
            grid[r + nr + 1, c + nc + 1] = OPEN  # the wall block between (r, c) and (nr, nc)
            seen.add((nr, nc))
            stack.append((nr, nc))
    elif algorithm == "kruskal":
        parent = list(range(rows * cols))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        walls = [(r, c, r + dr, c + dc) for r in range(rows) for c in range(cols)
                 for dr, dc in ((0, 1), (1, 0)) if r + dr < rows and c + dc < cols]
        rng.shuffle(walls)
        for r, c, nr, nc in walls:
            a, b = find(r * cols + c), find(nr * cols + nc)
            if a != b:
                parent[a] = b
                grid[r + nr + 1, c + nc + 1] = OPEN
    else:
        raise ValueError(f"unknown maze algorithm {algorithm!r}")
    return grid


def bfs(grid: np.ndarray, start: tuple[int, int], blocked: set[tuple[int, int]] = frozenset()) -> dict:
    """Breadth-first search over open blocks: ``{cell: previous cell}`` for every reachable cell."""
    return search([start], lambda cell: open_neighbours(grid, cell, blocked))[0]


def open_neighbours(grid: np.ndarray, cell: tuple[int, int], blocked=frozenset()) -> list[tuple[int, int]]:
    """The open, unblocked blocks one move from ``cell``, in :data:`MOVES` order."""
    h, w = grid.shape
    r, c = cell
    return [n for dr, dc in MOVES.values()
            if 0 <= (n := (r + dr, c + dc))[0] < h and 0 <= n[1] < w and grid[n] == OPEN and n not in blocked]


def shortest_path(grid: np.ndarray, start: tuple[int, int], goal: tuple[int, int],
                  blocked: set[tuple[int, int]] = frozenset()) -> list[tuple[int, int]] | None:
    """The shortest block path from ``start`` to ``goal`` (inclusive), or ``None``."""
    prev = bfs(grid, start, blocked)
    if goal not in prev:
        return None
    path = [goal]
    while path[-1] != start:
        path.append(prev[path[-1]])
    return path[::-1]


def farthest(grid: np.ndarray, start: tuple[int, int], candidates=None) -> tuple[int, int]:
    """The reachable cell (among ``candidates`` if given) with the longest shortest path."""
    prev = bfs(grid, start)
    dist = {start: 0}
    for cell in _bfs_order(prev, start):
        if prev[cell] is not None:
            dist[cell] = dist[prev[cell]] + 1
    pool = [c for c in dist if candidates is None or c in candidates]
    return max(pool, key=lambda c: (dist[c], c))


def _bfs_order(prev: dict, start) -> list:
    # dict insertion order is BFS order, so parents come before children
    return list(prev)


@dataclass(frozen=True)
class BlockGeometry:
    """Pixel geometry of a block grid: wall rows/columns (even indices) may be thinner.

    ``cell_px`` is the size of a room block (odd index), ``wall_px`` of a wall block.
    With ``wall_px == cell_px`` every block is square (VR-Bench look).
    """

    shape: tuple[int, int]
    cell_px: int
    wall_px: int
    margin: int = 0

    def _edges(self, n: int) -> np.ndarray:
        sizes = [self.wall_px if i % 2 == 0 else self.cell_px for i in range(n)]
        return self.margin + np.concatenate([[0], np.cumsum(sizes)])

    @cached_property
    def row_edges(self) -> np.ndarray:
        """Pixel y of the top of every block row (and the bottom of the last)."""
        return self._edges(self.shape[0])

    @cached_property
    def col_edges(self) -> np.ndarray:
        """Pixel x of the left of every block column (and the right of the last)."""
        return self._edges(self.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the rendered image."""
        return int(self.row_edges[-1] + self.margin), int(self.col_edges[-1] + self.margin)

    def center(self, cell: tuple[float, float]) -> tuple[float, float]:
        """Pixel centre (x, y) of block ``(row, col)``; fractional cells interpolate."""
        r, c = cell
        return (float(np.interp(c + 0.5, np.arange(len(self.col_edges)), self.col_edges)),
                float(np.interp(r + 0.5, np.arange(len(self.row_edges)), self.row_edges)))

    def box(self, cell: tuple[int, int]) -> list[int]:
        """Pixel box ``[x0, y0, x1, y1]`` (exclusive end) of block ``(row, col)``."""
        r, c = cell
        return [int(self.col_edges[c]), int(self.row_edges[r]), int(self.col_edges[c + 1]), int(self.row_edges[r + 1])]


def open_cells(grid: np.ndarray, rooms_only: bool) -> list[tuple[int, int]]:
    """Open blocks in row-major order; ``rooms_only`` keeps odd-odd blocks (thin-wall mazes)."""
    cells = [tuple(map(int, rc)) for rc in np.argwhere(grid == OPEN)]
    if rooms_only:
        cells = [(r, c) for r, c in cells if r % 2 == 1 and c % 2 == 1]
    return cells


def graph_spec(grid: np.ndarray, geom: BlockGeometry, rooms_only: bool) -> tuple[list, list, dict]:
    """Nodes (pixel centres), edges, and ``{cell: node index}`` of the open blocks.

    With ``rooms_only`` (thin walls), nodes are rooms and an edge joins two rooms whose
    wall block between them is open; otherwise every open block is a node.
    """
    cells = open_cells(grid, rooms_only)
    index = {cell: i for i, cell in enumerate(cells)}
    step = 2 if rooms_only else 1
    edges = []
    for (r, c), i in index.items():
        for dr, dc in ((0, step), (step, 0)):
            n = (r + dr, c + dc)
            if n in index and (step == 1 or grid[r + dr // 2, c + dc // 2] == OPEN):
                edges.append([i, index[n]])
    nodes = [[round(x, 3), round(y, 3)] for x, y in (geom.center(cell) for cell in cells)]
    return nodes, edges, index


def render_blocks(grid: np.ndarray, geom: BlockGeometry, skin: Skin) -> np.ndarray:
    """Draw floor and walls of a block grid."""
    h, w = geom.image_size
    img = floor_texture((h, w), skin, geom.cell_px)
    img[: geom.margin], img[h - geom.margin:] = skin.background, skin.background
    img[:, : geom.margin], img[:, w - geom.margin:] = skin.background, skin.background
    re, ce = geom.row_edges, geom.col_edges
    for r, c in np.argwhere(grid == WALL):
        img[re[r]: re[r + 1], ce[c]: ce[c + 1]] = skin.wall
    return img


def icon_size(geom: BlockGeometry) -> float:
    """Agent/goal icon size: most of a room block, the whole block when it is tiny."""
    return geom.cell_px * (0.7 if geom.cell_px >= 8 else 1.0)


def draw_goal(img: np.ndarray, geom: BlockGeometry, cell: tuple[int, int], skin: Skin) -> None:
    """Draw the goal marker in ``cell``."""
    draw_icon(img, skin.goal_icon, geom.center(cell), geom.cell_px * (0.8 if geom.cell_px >= 8 else 1.0), skin.goal)


def position_along(path: list[tuple[int, int]], t: float) -> tuple[float, float]:
    """The (fractional) block position at time ``t`` moving one path step per unit time."""
    if t <= 0 or len(path) == 1:
        return path[0]
    if t >= len(path) - 1:
        return path[-1]
    k = int(np.floor(t))
    f = t - k
    (r0, c0), (r1, c1) = path[k], path[k + 1]
    return (r0 + (r1 - r0) * f, c0 + (c1 - c0) * f)


def node_position_along(nodes: list, path: list[int], t: float) -> tuple[float, float]:
    """Pixel (x, y) at time ``t`` moving one node hop per unit time along ``path``
    (straight lines between node centres; fractions interpolate)."""
    if t <= 0 or len(path) == 1:
        return tuple(nodes[path[0]])
    if t >= len(path) - 1:
        return tuple(nodes[path[-1]])
    k = int(np.floor(t))
    f = t - k
    (x0, y0), (x1, y1) = nodes[path[k]], nodes[path[k + 1]]
    return (x0 + (x1 - x0) * f, y0 + (y1 - y0) * f)


def draw_trail(img: np.ndarray, geom: BlockGeometry, path: list[tuple[int, int]], t: float, skin: Skin) -> None:
    """Paint the blocks visited up to time ``t`` (including the block being entered)."""
    upto = min(len(path), int(np.floor(t)) + 1)
    for cell in path[:upto]:
        x0, y0, x1, y1 = geom.box(cell)
        img[y0:y1, x0:x1] = skin.trail


def resize_nearest(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an image to (H, W) with nearest-neighbour sampling (keeps colours exact)."""
    return cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
