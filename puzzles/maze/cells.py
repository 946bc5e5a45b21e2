"""The cell graph of a ``maze/draw`` maze: its three layouts (square, hexagon, circle), a
random spanning tree over it (the open passages of a perfect maze), paths in that tree, and
the door point between two cells.

A :class:`CellLayout` holds the cells as polygons over shared corner points (two cells
are neighbours when they share an edge) and their centres, in pixels of the first frame.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np

from gen_reason.puzzles.maze.graph import adjacency, path_to, search

# -- cell layouts ----------------------------------------------------------------------
@dataclass
class CellLayout:
    """A planar cell complex: cells as polygons over shared vertex keys.

    ``points`` maps a vertex key to its pixel position; ``polygons[i]`` lists the keys of
    cell ``i`` in order (closed implicitly). Two cells are neighbours when they share at
    least one polygon edge; every other edge is outer boundary.
    """

    centers: list[tuple[float, float]]
    polygons: list[list[tuple]]
    points: dict[tuple, tuple[float, float]]
    image_size: tuple[int, int]  # (H, W)

    def edge_owners(self) -> dict[frozenset, list[int]]:
        """``{edge: [cells]}`` for every polygon edge (one owner: boundary; two: shared)."""
        owners: dict[frozenset, list[int]] = {}
        for cell, poly in enumerate(self.polygons):
            for a, b in zip(poly, poly[1:] + poly[:1]):
                owners.setdefault(frozenset((a, b)), []).append(cell)
        return owners

    def neighbours(self) -> dict[tuple[int, int], list[frozenset]]:
        """``{(i, j): shared edges}`` for every pair of adjacent cells, ``i < j``."""
        pairs: dict[tuple[int, int], list[frozenset]] = {}
        for edge, cells in self.edge_owners().items():
            if len(cells) == 2:
                i, j = sorted(cells)
                pairs.setdefault((i, j), []).append(edge)
        return pairs


def _even_size(height: float, width: float) -> tuple[int, int]:
    # Even sizes keep H.264's 2x2 chroma blocks aligned with the image (no padding).
    h, w = int(math.ceil(height)), int(math.ceil(width))
    return h + h % 2, w + w % 2


def square_layout(rows: int, cols: int, cell: float, margin: float) -> CellLayout:
    """Square cells on a ``rows x cols`` grid; vertex keys are integer lattice corners."""
    points = {(r, c): (margin + c * cell, margin + r * cell) for r in range(rows + 1) for c in range(cols + 1)}
    polygons, centers = [], []
    for r in range(rows):
        for c in range(cols):
            polygons.append([(r, c), (r, c + 1), (r + 1, c + 1), (r + 1, c)])
            centers.append((margin + (c + 0.5) * cell, margin + (r + 0.5) * cell))
    return CellLayout(centers, polygons, points, _even_size(rows * cell + 2 * margin, cols * cell + 2 * margin))


def hexagon_layout(radius: int, cell: float, margin: float) -> CellLayout:
    """Flat-topped hexagonal cells (``cell`` = flat-to-flat width) on a hexagonal board.

    Cells are the axial coordinates ``(q, r)`` with ``max(|q|, |r|, |q + r|) <= radius``.
    Hexagon corners lie on a lattice of half a side by half a flat width, which gives
    exact integer vertex keys.
    """
    side = cell / math.sqrt(3)
    half_h = cell / 2
    width = side * (3 * radius + 2)
    height = cell * (2 * radius + 1)
    h, w = _even_size(height + 2 * margin, width + 2 * margin)
    ox, oy = w / 2, h / 2
    # Corner k of a flat-topped hexagon, in (half-side, half-height) lattice units.
    corner_offsets = [(2, 0), (1, 1), (-1, 1), (-2, 0), (-1, -1), (1, -1)]
    polygons, centers, points = [], [], {}
    for q in range(-radius, radius + 1):
        for r in range(-radius, radius + 1):
            if max(abs(q), abs(r), abs(q + r)) > radius:
                continue
            # centre in lattice units: x = 1.5 side q = 3 q half-sides; y = cell (r + q / 2) = (2 r + q) half-heights
            kx, ky = 3 * q, 2 * r + q
            poly = []
            for dx, dy in corner_offsets:
                key = (kx + dx, ky + dy)
                points[key] = (ox + key[0] * side / 2, oy + key[1] * half_h)
                poly.append(key)
            polygons.append(poly)
            centers.append((ox + kx * side / 2, oy + ky * half_h))
    return CellLayout(centers, polygons, points, (h, w))


def ring_sectors(rings: int) -> list[int]:
    """Sector counts of rings ``1..rings``: start at 6, double when cells grow too wide.

    A ring doubles its sector count when the arc of a cell at its inner radius would be at
    least one ring width (``pi * k / n >= 1``), so cells stay roughly square.
    """
    counts = []
    n = 6
    for k in range(1, rings + 1):
        if k > 1 and math.pi * k / n >= 1.0:
            n *= 2
        counts.append(n)
    return counts


def circle_layout(rings: int, cell: float, margin: float, arc_steps: int = 4) -> CellLayout:
    """A circular labyrinth: a centre disk of radius ``cell`` and ``rings`` rings of width ``cell``.

    Vertex keys are ``(boundary, angle index)``: boundary ``b`` is the circle of radius
    ``b * cell``; angles are multiples of ``2 pi / M`` with ``M`` = outermost sectors x
    ``arc_steps``. Each boundary circle is subdivided at the finer ring next to it, so the
    arcs of adjacent cells share exactly the same edges.
    """
    sectors = ring_sectors(rings)
    m = sectors[-1] * arc_steps if sectors else 6 * arc_steps
    outer = (rings + 1) * cell
    h, w = _even_size(2 * outer + 2 * margin, 2 * outer + 2 * margin)
    cx, cy = w / 2, h / 2

    def boundary_step(b: int) -> int:
        # angle-index step of the subdivision points on boundary circle b (1..rings+1)
        finer = sectors[min(b, rings) - 1] if rings else 6
        return m // (finer * arc_steps)

    points: dict[tuple, tuple[float, float]] = {}

    def key(b: int, a: int) -> tuple[int, int]:
        a %= m
        if (b, a) not in points:
            angle = 2 * math.pi * a / m - math.pi / 2  # index 0 points up
            points[(b, a)] = (cx + b * cell * math.cos(angle), cy + b * cell * math.sin(angle))
        return (b, a)

    step1 = boundary_step(1)
    polygons = [[key(1, a) for a in range(0, m, step1)]]
    centers = [(cx, cy)]
    for k in range(1, rings + 1):
        n = sectors[k - 1]
        span = m // n
        inner_step, outer_step = boundary_step(k), boundary_step(k + 1)
        for j in range(n):
            a0, a1 = j * span, (j + 1) * span
            poly = [key(k, a) for a in range(a0, a1 + 1, inner_step)]
            poly += [key(k + 1, a) for a in range(a1, a0 - 1, -outer_step)]
            polygons.append(poly)
            mid = 2 * math.pi * (a0 + a1) / 2 / m - math.pi / 2
            centers.append((cx + (k + 0.5) * cell * math.cos(mid), cy + (k + 0.5) * cell * math.sin(mid)))
    return CellLayout(centers, polygons, points, (h, w))


def make_layout(shape: str, size: tuple[int, ...], cell: float, margin: float) -> CellLayout:
    """The cell layout of ``shape`` at ``size`` (rows, cols / board radius / rings)."""
    if shape == "square":
        return square_layout(size[0], size[1], cell, margin)
    if shape == "hexagon":
        return hexagon_layout(size[0], cell, margin)
    return circle_layout(size[0], cell, margin)


# -- carving and solving ---------------------------------------------------------------
def spanning_tree(num_cells: int, pairs: list[tuple[int, int]], rng: random.Random,
                  algorithm: str) -> list[tuple[int, int]]:
    """A random spanning tree of the cell graph (the open passages of a perfect maze)."""
    tree: list[tuple[int, int]] = []
    if algorithm == "dfs":
        adj = adjacency(num_cells, pairs)
        root = rng.randrange(num_cells)
        seen, stack = {root}, [root]
        while stack:
            u = stack[-1]
            options = [v for v in adj[u] if v not in seen]
            if not options:
                stack.pop()
                continue
            v = rng.choice(options)
            seen.add(v)
            stack.append(v)
            tree.append((min(u, v), max(u, v)))
    else:
        parent = list(range(num_cells))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        shuffled = sorted(pairs)
        rng.shuffle(shuffled)
        for i, j in shuffled:
            a, b = find(i), find(j)
            if a != b:
                parent[a] = b
                tree.append((i, j))
    return sorted(tree)


def _tree_search(num_cells: int, tree: list[tuple[int, int]], start: int) -> tuple[dict, dict]:
    """BFS over the tree from ``start`` (:func:`~gen_reason.puzzles.maze.graph.search`,
    neighbours in index order): ``({cell: previous cell}, {cell: moves from start})``."""
    return search([start], adjacency(num_cells, tree).__getitem__)


def tree_paths(num_cells: int, tree: list[tuple[int, int]], start: int) -> dict[int, int | None]:
    """BFS over the tree from ``start``: ``{cell: previous cell}`` (dict order = BFS order)."""
    return _tree_search(num_cells, tree, start)[0]


def farthest_cell(num_cells: int, tree, start: int) -> int:
    """The cell farthest from ``start`` along the tree (ties: the lowest index)."""
    dist = _tree_search(num_cells, tree, start)[1]
    return max(dist, key=lambda c: (dist[c], -c))


def tree_path(num_cells: int, tree, start: int, goal: int) -> list[int]:
    """The cells from ``start`` to ``goal`` along the tree (the unique path of a perfect maze)."""
    return path_to(tree_paths(num_cells, tree, start), goal)


def door_point(layout: CellLayout, edges: list[frozenset]) -> tuple[float, float]:
    """The middle of the shared wall between two cells (halfway along its length)."""
    segs = [tuple(layout.points[k] for k in sorted(edge)) for edge in edges]
    if len(segs) == 1:
        (x0, y0), (x1, y1) = segs[0]
        return ((x0 + x1) / 2, (y0 + y1) / 2)
    # Arcs are chains of short edges: walk the chain and stop halfway.
    chain = _chain(edges)
    pts = [np.array(layout.points[k]) for k in chain]
    lengths = [float(np.linalg.norm(b - a)) for a, b in zip(pts, pts[1:])]
    half = sum(lengths) / 2
    for a, b, length in zip(pts, pts[1:], lengths):
        if half <= length:
            p = a + (b - a) * (half / length if length else 0.0)
            return (float(p[0]), float(p[1]))
        half -= length
    return (float(pts[-1][0]), float(pts[-1][1]))


def _chain(edges: list[frozenset]) -> list[tuple]:
    adj: dict[tuple, list[tuple]] = {}
    for edge in edges:
        a, b = sorted(edge)
        adj.setdefault(a, []).append(b)
        adj.setdefault(b, []).append(a)
    ends = sorted(k for k, v in adj.items() if len(v) == 1)
    chain = [ends[0] if ends else sorted(adj)[0]]
    seen = {chain[0]}
    while True:
        nxt = [k for k in adj[chain[-1]] if k not in seen]
        if not nxt:
            return chain
        chain.append(nxt[0])
        seen.add(nxt[0])


def rounded(value: float) -> float:
    """A coordinate as stored in a spec: a float rounded to 3 decimals."""
    return round(float(value), 3)
