"""The roads of a ``maze/irregular`` map: Bezier centrelines, the clearance between two
roads, the jittered junction lattice, a random spanning set of roads, and the spec's nodes
and edges sampled along them. All in pixels of the first frame.
"""

from __future__ import annotations

import math
import random

import numpy as np

MARGIN = 0.6  # image border around the lattice, in spacings
JITTER = 0.2  # junction jitter as a share of the lattice spacing; < 0.25 keeps lattice roads from crossing
SHARED_END_CLEARANCE = 3.0  # road widths from a shared junction within which two roads may merge
GAP_ADJACENT = 1.3  # least centreline distance (road widths) of two roads beyond their shared junction
GAP_SEPARATE = 1.8  # least centreline distance (road widths) of two roads that share no junction
SAMPLE_PX = 2.0  # spacing of the dense curve samples used for drawing and clearance checks


# geometry -------------------------------------------------------------------------
def bezier(points: np.ndarray, count: int) -> np.ndarray:
    """``count`` points of the cubic Bezier curve with control ``points`` (4, 2), evenly in t."""
    t = np.linspace(0.0, 1.0, count)[:, None]
    p0, p1, p2, p3 = points
    return ((1 - t) ** 3) * p0 + 3 * ((1 - t) ** 2) * t * p1 + 3 * (1 - t) * (t ** 2) * p2 + (t ** 3) * p3


def dense_curve(start, controls, end) -> np.ndarray:
    """The road's centreline sampled about every ``SAMPLE_PX`` pixels (endpoints exact)."""
    points = np.array([start, *controls, end], float)
    hull = float(np.sum(np.linalg.norm(np.diff(points, axis=0), axis=1)))  # >= the arc length
    return bezier(points, max(8, int(math.ceil(hull / SAMPLE_PX)) + 1))


def resample(curve: np.ndarray, step: float) -> np.ndarray:
    """Points along ``curve`` at equal arc-length spacing close to ``step`` (endpoints included)."""
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(curve, axis=0), axis=1))])
    segments = max(2, int(round(arc[-1] / step)))
    at = np.linspace(0.0, arc[-1], segments + 1)
    return np.stack([np.interp(at, arc, curve[:, 0]), np.interp(at, arc, curve[:, 1])], axis=1)


def clearance_points(curve: np.ndarray) -> np.ndarray:
    """The samples of a dense curve that clearance is checked on: every other one (~4 px apart),
    plenty against gaps of a road width, and four times fewer distances to compute."""
    return curve[::2]


def _min_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Least distance between two point sets (inf when either is empty)."""
    if len(a) == 0 or len(b) == 0:
        return math.inf
    d = a[:, None, :] - b[None, :, :]
    return math.sqrt(float(np.einsum("ijk,ijk->ij", d, d).min()))


def roads_clear(curve_a: np.ndarray, ends_a: tuple[int, int], curve_b: np.ndarray, ends_b: tuple[int, int],
                junctions: np.ndarray, width: float) -> bool:
    """Whether two drawn roads stay visibly apart (so the picture shows no link the graph lacks).

    Roads that share a junction may merge near it; beyond ``SHARED_END_CLEARANCE`` road
    widths from it they keep ``GAP_ADJACENT`` widths apart. Other roads keep
    ``GAP_SEPARATE`` widths apart everywhere.
    """
    shared = set(ends_a) & set(ends_b)
    if not shared:
        return _min_distance(curve_a, curve_b) >= GAP_SEPARATE * width
    hub = junctions[shared.pop()]
    radius_sq = (SHARED_END_CLEARANCE * width) ** 2
    far_a = curve_a[np.sum((curve_a - hub) ** 2, axis=1) >= radius_sq]
    far_b = curve_b[np.sum((curve_b - hub) ** 2, axis=1) >= radius_sq]
    gap = GAP_ADJACENT * width
    return _min_distance(far_a, curve_b) >= gap and _min_distance(far_b, curve_a) >= gap


def _boxes_near(box_a, box_b, pad: float) -> bool:
    """Whether two (x0, y0, x1, y1) boxes come within ``pad`` of each other (cheap pre-check)."""
    return not (box_a[2] + pad < box_b[0] or box_b[2] + pad < box_a[0] or
                box_a[3] + pad < box_b[1] or box_b[3] + pad < box_a[1])


# layout generation ------------------------------------------------------------------
def jittered_lattice(rows: int, cols: int, spacing: float, rng: random.Random) -> list[list[float]]:
    """Junction points: a lattice with every point moved at random by up to ``JITTER`` spacings."""
    margin = MARGIN * spacing
    return [[round(margin + c * spacing + rng.uniform(-JITTER, JITTER) * spacing, 1),
             round(margin + r * spacing + rng.uniform(-JITTER, JITTER) * spacing, 1)]
            for r in range(rows) for c in range(cols)]


def candidate_pairs(rows: int, cols: int, diagonals: float, rng: random.Random) -> list[tuple[int, int]]:
    """Lattice sides plus at most one diagonal per square: straight, they never cross."""
    pairs = []
    for r in range(rows):
        for c in range(cols):
            i = r * cols + c
            if c + 1 < cols:
                pairs.append((i, i + 1))
            if r + 1 < rows:
                pairs.append((i, i + cols))
            if r + 1 < rows and c + 1 < cols and rng.random() < diagonals:
                pairs.append((i, i + cols + 1) if rng.random() < 0.5 else (i + 1, i + cols))
    return pairs


def bend_roads(junctions: list, pairs: list, size: tuple[int, int], width: float, curviness: float,
               rng: random.Random) -> list[list]:
    """Give every candidate road two control points, keeping all roads visibly apart.

    Each road tries a full bend, a half bend, then a straight line; a road that still
    comes too close to an accepted one is dropped. Returns ``[i, j, [[x, y], [x, y]]]``.
    """
    pts = np.array(junctions, float)
    h, w = size
    accepted: list[tuple[list, np.ndarray, tuple]] = []
    for i, j in pairs:
        a, b = pts[i], pts[j]
        chord = b - a
        length = float(np.linalg.norm(chord))
        normal = np.array([-chord[1], chord[0]]) / length
        for bend in (curviness, curviness / 2, 0.0):
            offsets = (rng.uniform(-bend, bend) * length, rng.uniform(-bend, bend) * length)
            controls = [a + chord * (k + 1) / 3 + normal * off for k, off in enumerate(offsets)]
            # Curves stay in their control points' hull, so clamping these keeps roads in frame.
            controls = [[round(float(np.clip(p[0], width, w - width)), 1), round(float(np.clip(p[1], width, h - width)), 1)]
                        for p in controls]
            curve = clearance_points(dense_curve(a, controls, b))
            box = (*curve.min(axis=0), *curve.max(axis=0))
            if all(roads_clear(curve, (i, j), other, (oi, oj), pts, width)
                   for (oi, oj, _), other, other_box in accepted
                   if _boxes_near(box, other_box, GAP_SEPARATE * width)):
                accepted.append(([i, j, controls], curve, box))
                break
    return [road for road, _, _ in accepted]


def spanning_roads(count: int, roads: list[list], extra: int, rng: random.Random) -> list[list] | None:
    """A random spanning tree of the candidate roads plus up to ``extra`` loop roads between
    junctions that are not dead ends; ``None`` if the candidates do not connect every junction."""
    order = list(range(len(roads)))
    rng.shuffle(order)
    parent = list(range(count))

    def find(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    tree, spare = [], []
    for k in order:
        a, b = find(roads[k][0]), find(roads[k][1])
        if a != b:
            parent[a] = b
            tree.append(k)
        else:
            spare.append(k)
    if len(tree) != count - 1:
        return None
    # Loop roads join junctions that are not dead ends, so the tree's dead ends all stay.
    degree = [0] * count
    for k in tree:
        degree[roads[k][0]] += 1
        degree[roads[k][1]] += 1
    loops = [k for k in spare if degree[roads[k][0]] >= 2 and degree[roads[k][1]] >= 2][:extra]
    return [roads[k] for k in sorted(tree + loops)]


def road_curves(layout: dict) -> list[np.ndarray]:
    """Every road's dense centreline, in layout order."""
    junctions = layout["junctions"]
    return [dense_curve(junctions[i], controls, junctions[j]) for i, j, controls in layout["roads"]]


def road_nodes(layout: dict, step: float) -> tuple[list, list]:
    """Spec ``nodes`` and ``edges`` of a road layout.

    Junctions are nodes ``0..J-1``; each road adds its interior samples in order.
    """
    junctions = layout["junctions"]
    nodes = [list(p) for p in junctions]
    edges = []
    for (i, j, _), curve in zip(layout["roads"], road_curves(layout)):
        inner = resample(curve, step)[1:-1]
        chain = [i]
        for x, y in inner:
            chain.append(len(nodes))
            nodes.append([round(float(x), 3), round(float(y), 3)])
        chain.append(j)
        edges.extend([a, b] for a, b in zip(chain, chain[1:]))
    return nodes, edges
