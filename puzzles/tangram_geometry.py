"""Tangram geometry in *units* (the classic square is 4 units a side): the seven canonical
pieces, their poses (rotate, mirror, place, fit a pose to a polygon), convex overlap and
intersection, the classic square and grown silhouettes, and silhouettes as rasters and
outlines. Used by the ``tangram`` task (:mod:`gen_reason.puzzles.tangram`, which
re-exports these names) and its referee.
"""

from __future__ import annotations

import math
import random

import cv2
import numpy as np

SQRT2 = math.sqrt(2.0)


def _triangle(half_hypotenuse: float) -> np.ndarray:
    v = np.array([(-half_hypotenuse, 0.0), (half_hypotenuse, 0.0), (0.0, half_hypotenuse)])
    return v - v.mean(axis=0)


# Canonical shapes in units, centred on their centroid.
SHAPES: dict[str, np.ndarray] = {
    "large": _triangle(2.0),
    "medium": _triangle(SQRT2),
    "small": _triangle(1.0),
    "square": np.array([(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)]) * (SQRT2 / 2),
    "parallelogram": np.array([(0.0, 0.0), (2.0, 0.0), (3.0, 1.0), (1.0, 1.0)]) - (1.5, 0.5),
}
SYMMETRY_DEG = {"large": 360, "medium": 360, "small": 360, "square": 90, "parallelogram": 180}
CHIRAL = {"parallelogram"}
# (name, shape) in the order the ground-truth video places them: largest first.
PIECES: tuple[tuple[str, str], ...] = (
    ("large_1", "large"), ("large_2", "large"), ("medium", "medium"), ("square", "square"),
    ("parallelogram", "parallelogram"), ("small_1", "small"), ("small_2", "small"),
)
TOTAL_AREA = 16.0

# The classic square (side 4 units), each piece as its polygon; its poses are recovered
# by matching these against the canonical shapes.
CLASSIC_SQUARE: dict[str, list[tuple[float, float]]] = {
    "large_1": [(0, 0), (4, 0), (2, 2)],
    "large_2": [(0, 0), (2, 2), (0, 4)],
    "medium": [(4, 4), (2, 4), (4, 2)],
    "square": [(2, 2), (3, 3), (2, 4), (1, 3)],
    "parallelogram": [(3, 1), (4, 0), (4, 2), (3, 3)],
    "small_1": [(0, 4), (1, 3), (2, 4)],
    "small_2": [(2, 2), (3, 1), (3, 3)],
}


# -- geometry ------------------------------------------------------------------------------
def rotation_matrix(deg: float) -> np.ndarray:
    """2x2 rotation by ``deg`` (clockwise on screen, where y points down)."""
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s], [s, c]])


def piece_vertices(shape: str, x: float, y: float, rotation_deg: float, flip: bool, scale: float = 1.0,
                   vertices: np.ndarray | None = None) -> np.ndarray:
    """World vertices of a piece at a pose: mirror (``y -> -y``), rotate, scale, translate."""
    v = np.array(SHAPES[shape] if vertices is None else vertices, float)
    if flip:
        v[:, 1] = -v[:, 1]
    return (v @ rotation_matrix(rotation_deg).T) * scale + np.array([x, y], float)


def polygon_area(poly: np.ndarray) -> float:
    """Unsigned area of a simple polygon (shoelace)."""
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def convex_overlap(p: np.ndarray, q: np.ndarray, eps: float = 1e-7) -> bool:
    """Whether two convex polygons overlap with positive area (separating-axis test).

    Polygons that only touch along an edge or at a vertex do not overlap.
    """
    for poly in (p, q):
        edges = np.roll(poly, -1, axis=0) - poly
        normals = np.stack([-edges[:, 1], edges[:, 0]], axis=1)
        pp, qq = p @ normals.T, q @ normals.T
        if np.any((pp.max(axis=0) <= qq.min(axis=0) + eps) | (qq.max(axis=0) <= pp.min(axis=0) + eps)):
            return False
    return True


def convex_intersection_area(p: np.ndarray, q: np.ndarray) -> float:
    """Area of the intersection of two convex polygons (Sutherland-Hodgman clipping)."""
    def ccw(poly):
        x, y = poly[:, 0], poly[:, 1]
        return poly if float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) > 0 else poly[::-1]

    out = [tuple(v) for v in ccw(np.asarray(p, float))]
    clipper = ccw(np.asarray(q, float))
    for i in range(len(clipper)):
        a, b = clipper[i], clipper[(i + 1) % len(clipper)]
        if not out:
            break

        def side(pt):
            return (b[0] - a[0]) * (pt[1] - a[1]) - (b[1] - a[1]) * (pt[0] - a[0])

        src, out = out, []
        for j in range(len(src)):
            cur, nxt = src[j], src[(j + 1) % len(src)]
            sc, sn = side(cur), side(nxt)
            if sn >= 0:
                if sc < 0:
                    t = sc / (sc - sn)
                    out.append((cur[0] + (nxt[0] - cur[0]) * t, cur[1] + (nxt[1] - cur[1]) * t))
                out.append(nxt)
            elif sc >= 0:
                t = sc / (sc - sn)
                out.append((cur[0] + (nxt[0] - cur[0]) * t, cur[1] + (nxt[1] - cur[1]) * t))
    return polygon_area(np.array(out)) if len(out) >= 3 else 0.0


def normalize_pose(shape: str, rotation_deg: float, flip: bool) -> tuple[float, bool]:
    """The canonical ``(rotation_deg, flip)`` of a pose: symmetric pieces never flip, and the
    rotation is reduced modulo the piece's symmetry."""
    if flip and shape not in CHIRAL:
        # A mirrored achiral piece equals the unmirrored piece turned by some multiple of 90.
        target = piece_vertices(shape, 0, 0, rotation_deg, True)
        for extra in (0, 90, 180, 270):
            cand = piece_vertices(shape, 0, 0, rotation_deg + extra, False)
            if _same_vertex_set(cand, target):
                rotation_deg, flip = rotation_deg + extra, False
                break
    sym = SYMMETRY_DEG[shape]
    rotation = round(float(rotation_deg) % sym, 6) % sym
    return rotation, bool(flip)


def _same_vertex_set(a: np.ndarray, b: np.ndarray, tol: float = 1e-6) -> bool:
    return len(a) == len(b) and all(np.min(np.abs(b - v).sum(axis=1)) < tol for v in a)


def fit_pose(shape: str, polygon) -> tuple[float, float, float, bool]:
    """The pose ``(x, y, rotation_deg, flip)`` (45-degree steps) placing ``shape`` on ``polygon`` (units)."""
    poly = np.asarray(polygon, float)
    cx, cy = poly.mean(axis=0)
    for flip in (False, True):
        for rot in range(0, 360, 45):
            if _same_vertex_set(piece_vertices(shape, cx, cy, rot, flip), poly):
                return float(cx), float(cy), float(rot), flip
    raise ValueError(f"polygon {polygon} is not a {shape} piece at a 45-degree pose")


# -- silhouettes ---------------------------------------------------------------------------
Pose = tuple[float, float, float, bool]  # (x, y, rotation_deg, flip) in units


def classic_square() -> dict[str, Pose]:
    """Poses (units) of the seven pieces in the classic 4 x 4 square."""
    return {name: fit_pose(shape, CLASSIC_SQUARE[name]) for name, shape in PIECES}


def grow_silhouette(rng: random.Random, compact: bool, candidates: int = 6, tries: int = 300) -> dict[str, Pose] | None:
    """Attach the pieces one by one, edge to edge, at 45-degree rotations.

    Each new piece puts one of its edges against an edge of a placed piece (opposite
    direction with both outlines counter-clockwise, so the new piece lands outside;
    one endpoint shared), so every piece shares an edge segment with the
    figure; a placement is kept only if it overlaps no placed piece. ``compact`` keeps,
    of the first ``candidates`` valid placements, the one with the smallest convex hull;
    otherwise the first valid one. ``None`` when a piece finds no place.
    """
    names = [name for name, _ in PIECES]
    rng.shuffle(names)
    shape_of = dict(PIECES)
    first = names[0]
    pose0 = (0.0, 0.0, float(45 * rng.randrange(8)), shape_of[first] in CHIRAL and rng.random() < 0.5)
    poses = {first: pose0}
    polys = [_ccw_vertices(shape_of[first], *pose0)]
    boxes = [_box(polys[0])]
    for name in names[1:]:
        shape = shape_of[name]
        found = []
        for _ in range(tries):
            k = rng.randrange(len(polys))
            anchor = polys[k]
            i = rng.randrange(len(anchor))
            a, b = anchor[i], anchor[(i + 1) % len(anchor)]
            flip = shape in CHIRAL and rng.random() < 0.5
            base = _ccw_vertices(shape, 0, 0, 0, flip)
            j = rng.randrange(len(base))
            e = base[(j + 1) % len(base)] - base[j]
            # turn the piece so its edge j runs opposite to the anchor edge
            rot = (math.degrees(math.atan2(a[1] - b[1], a[0] - b[0])) - math.degrees(math.atan2(e[1], e[0])))
            rot = float(round(rot / 45.0) * 45 % 360)
            verts = _ccw_vertices(shape, 0, 0, rot, flip)
            c, d = verts[j], verts[(j + 1) % len(verts)]
            shift = (b - c) if rng.random() < 0.5 else (a - d)
            verts = verts + shift
            box = _box(verts)
            if any(_boxes_overlap(box, other) and convex_overlap(verts, poly) for poly, other in zip(polys, boxes)):
                continue
            hull = 0.0
            if compact:
                hull = cv2.contourArea(cv2.convexHull(np.concatenate(polys + [verts]).astype(np.float32)))
            found.append((hull, len(found), (float(shift[0]), float(shift[1]), rot, flip), verts))
            if not compact or len(found) >= candidates:
                break
        if not found:
            return None
        _, _, pose, verts = min(found, key=lambda f: (f[0], f[1]))
        poses[name] = pose
        polys.append(verts)
        boxes.append(_box(verts))
    return poses


def _ccw_vertices(shape: str, x: float, y: float, rotation_deg: float, flip: bool) -> np.ndarray:
    # Canonical outlines run counter-clockwise; a mirror reverses that, so undo it: edge
    # matching needs one orientation for every piece.
    verts = piece_vertices(shape, x, y, rotation_deg, flip)
    return verts[::-1].copy() if flip else verts


def _box(poly: np.ndarray) -> tuple[float, float, float, float]:
    xs, ys = poly[:, 0].tolist(), poly[:, 1].tolist()
    return min(xs), min(ys), max(xs), max(ys)


def _boxes_overlap(a, b, eps: float = 1e-9) -> bool:
    # a cheap reject before the separating-axis test: most placed pieces are far away
    return a[0] < b[2] - eps and b[0] < a[2] - eps and a[1] < b[3] - eps and b[1] < a[3] - eps


def rasterize(polygons, size: tuple[int, int], scale: float = 1.0, offset=(0.0, 0.0)) -> np.ndarray:
    """Boolean mask ``(H, W)`` of the union of ``polygons`` (x, y), mapped by ``p * scale + offset``."""
    mask = np.zeros(size, np.uint8)
    pts = [np.round((np.asarray(p, float) * scale + np.asarray(offset)) * 16).astype(np.int32) for p in polygons]
    cv2.fillPoly(mask, pts, 1, cv2.LINE_8, 4)
    return mask.astype(bool)


def silhouette_shape(polys: list[np.ndarray]) -> tuple[float, int, list[np.ndarray]]:
    """``(solidity, holes, outline polygons)`` of the union of edge-to-edge pieces, exactly.

    Every piece edge is split at the piece vertices lying on it; a sub-edge shared by two
    pieces is inside the figure, one owned by a single piece is outline. Chained along
    the pieces' counter-clockwise direction, outline loops run counter-clockwise and hole
    loops clockwise. ``solidity`` = figure area / convex-hull area.
    """
    polys = [p if _signed_area(p) > 0 else p[::-1] for p in (np.asarray(q, float) for q in polys)]
    points = {_key(v): v for poly in polys for v in poly}
    verts = np.array(list(points.values()))
    directed = []
    for poly in polys:
        for a, b in zip(poly, np.roll(poly, -1, axis=0)):
            d = b - a
            length2 = float(d @ d)
            rel = verts - a
            t = rel @ d / length2
            cross = rel[:, 0] * d[1] - rel[:, 1] * d[0]
            inner = (np.abs(cross) < 1e-7 * math.sqrt(length2)) & (t > 1e-9) & (t < 1 - 1e-9)
            stops = [a] + [verts[i] for i in np.argsort(t) if inner[i]] + [b]
            directed += [(_key(p), _key(q)) for p, q in zip(stops, stops[1:])]
    count: dict[frozenset, int] = {}
    for p, q in directed:
        count[frozenset((p, q))] = count.get(frozenset((p, q)), 0) + 1
    outgoing: dict[tuple, list[tuple]] = {}
    for p, q in directed:
        if count[frozenset((p, q))] == 1:
            outgoing.setdefault(p, []).append(q)
    loops = []
    while outgoing:
        start = min(outgoing)
        loop, current = [start], start
        while True:
            nxt = outgoing[current].pop()
            if not outgoing[current]:
                del outgoing[current]
            if nxt == start:
                break
            loop.append(nxt)
            current = nxt
        loops.append(_drop_collinear(np.array([points[k] for k in loop])))
    area = sum(polygon_area(p) for p in polys)
    hull = cv2.contourArea(cv2.convexHull(verts.astype(np.float32)))
    holes = sum(1 for loop in loops if _signed_area(loop) < 0)
    return area / hull, holes, loops


def _encloses_background(polys: list[np.ndarray], px: float = 16.0) -> bool:
    """Whether the figure walls in some background, counting regions closed off only at
    a single vertex (they look like holes even though the exact outline has none)."""
    allv = np.concatenate(polys)
    lo = allv.min(axis=0) - 1.0
    size = tuple(int(v) for v in np.ceil((allv.max(axis=0) - lo + 1.0) * px)[::-1])
    background = (~rasterize(polys, size, px, -lo * px)).astype(np.uint8)
    return cv2.connectedComponents(background, connectivity=4)[0] > 2


def _key(v) -> tuple[float, float]:
    return round(float(v[0]), 6) + 0.0, round(float(v[1]), 6) + 0.0  # + 0.0 folds -0.0 into 0.0


def _signed_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _drop_collinear(poly: np.ndarray) -> np.ndarray:
    keep = []
    n = len(poly)
    for i in range(n):
        a, b, c = poly[i - 1], poly[i], poly[(i + 1) % n]
        cross = (b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0])
        if abs(cross) > 1e-6:
            keep.append(b)
    return np.array(keep)
