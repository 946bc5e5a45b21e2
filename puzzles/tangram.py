"""``tangram``: move the seven tangram pieces so that they exactly cover a gray silhouette.

The seven classic pieces (cut from a 4 x 4 square, in *units*): two large right
triangles (legs 2 sqrt 2, area 4), one medium (legs 2, area 2), two small (legs sqrt 2,
area 1), a square (side sqrt 2, area 2) and a parallelogram (sides 2 and sqrt 2, area 2).
The first frame shows the target silhouette in gray in the middle and the pieces
scattered around it, each in its own colour; the ground-truth video moves the pieces
into place one after another (largest first), each by a straight translation and the
shortest rotation modulo its symmetry. Pieces only move rigidly: a piece's start pose
has the same mirror side (``flip``) as its target pose, so no flip is ever needed.

Difficulties (the silhouette, then a random rigid transform of it, then the scatter):

- ``easy``: the classic square, turned by a multiple of 90 degrees (maybe mirrored);
  pieces start at multiples of 90 degrees.
- ``medium``: a compact silhouette (convex-hull fill >= 0.8) grown by attaching pieces
  edge to edge at 45-degree steps, greedily keeping the hull small; turned by a multiple
  of 45 degrees; pieces start at multiples of 45 degrees.
- ``hard``: a free-form silhouette (random edge-to-edge attachment, fill < 0.8: limbs,
  notches), turned by any whole degree; pieces start at any whole-degree rotation.

Every silhouette is built from valid piece poses (no overlap: separating-axis test on
the convex pieces; connected: every piece shares an edge segment with an earlier one; no
holes: checked on a raster), so a solution always exists; the stored one is the one the
silhouette was built from. Other decompositions of the same silhouette may exist;
``check_solution`` accepts any (union IoU >= 0.99, no overlaps).

Poses are ``{"piece", "x", "y", "rotation_deg", "flip"}``: the piece's canonical
vertices (``spec["pieces"][k]["vertices"]``, units, centred on the centroid) are
mirrored (``y -> -y``) when ``flip``, rotated by ``rotation_deg`` (clockwise on screen:
image y points down), scaled by ``spec["unit_px"]`` and moved to the centroid ``(x, y)``
in pixels. ``rotation_deg`` is stored modulo the piece's symmetry (360 triangles, 90
square, 180 parallelogram); ``flip`` is false for every piece but the (chiral)
parallelogram.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import cv2
import numpy as np

from gen_reason.errors import UserError
from gen_reason.puzzles.instance import Instance
from gen_reason.puzzles.task import Task, TaskConfig, check_range

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
PIECE_COLORS: dict[str, tuple[int, int, int]] = {
    "large_1": (230, 50, 50),  # red
    "large_2": (50, 100, 225),  # blue
    "medium": (40, 170, 70),  # green
    "square": (245, 200, 30),  # yellow
    "parallelogram": (155, 60, 190),  # purple
    "small_1": (245, 135, 30),  # orange
    "small_2": (20, 190, 200),  # teal
}
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


@dataclass(frozen=True)
class TangramPalette:
    """Paper and silhouette colours of one skin (piece colours are shared by all skins)."""

    background: tuple[int, int, int]
    silhouette: tuple[int, int, int]


PALETTES: dict[str, TangramPalette] = {
    "classic": TangramPalette((255, 255, 255), (150, 150, 150)),
    "dark": TangramPalette((30, 30, 40), (125, 125, 135)),
    "pastel": TangramPalette((248, 242, 228), (160, 155, 150)),
    "forest": TangramPalette((214, 234, 200), (140, 150, 135)),
    "tiny": TangramPalette((255, 255, 255), (128, 128, 128)),
}

PROMPT = (
    "A tangram puzzle. The gray shape in the middle is the target silhouette; the seven colored "
    "pieces around it (two large triangles, a medium triangle, two small triangles, a square and "
    "a parallelogram) must be slid and rotated, one at a time, until together they cover the gray "
    "shape exactly with no overlaps. Pieces keep their size, shape and color; the camera stays fixed."
)

_ROTATION_STEP = {"easy": 90, "medium": 45, "hard": 1}  # degrees: silhouette turn and start rotations
_SOLIDITY = {"medium": (0.8, 1.01), "hard": (0.0, 0.8)}  # convex-hull fill band of the silhouette
MAX_ATTEMPTS = 200


@dataclass(frozen=True)
class TangramConfig(TaskConfig):
    """Canvas and piece scale of tangram puzzles."""

    width: int = 640
    height: int = 480
    max_unit_px: float = 36.0  # pixels per unit at most (the classic square is 4 units a side)
    min_unit_px: float = 12.0  # pixels per unit at least; smaller silhouettes are rejected
    gap_px: int = 6  # free space kept between scattered pieces and around the silhouette

    def validate(self) -> None:
        """Check every field; raise UserError naming the first bad one."""
        super().validate()
        check_range("width", self.width, 160, 4096)
        check_range("height", self.height, 120, 4096)
        check_range("max_unit_px", self.max_unit_px, 4, 512)
        check_range("min_unit_px", self.min_unit_px, 2, 512)
        check_range("gap_px", self.gap_px, 0, 64)
        if self.min_unit_px > self.max_unit_px:
            raise UserError(f"min_unit_px ({self.min_unit_px}) must not exceed max_unit_px ({self.max_unit_px})")


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


# -- the task -----------------------------------------------------------------------------
class Tangram(Task):
    """Cover a silhouette with the seven tangram pieces (see the module docstring)."""

    name = "tangram-v1"
    verifier_family = "tangram"
    Config = TangramConfig
    difficulties = ("easy", "medium", "hard")

    def palette(self) -> TangramPalette:
        """This skin's paper and silhouette colours."""
        return PALETTES.get(self.config.skin, PALETTES["classic"])

    # generation -------------------------------------------------------------------
    def _silhouette(self, rng: random.Random, difficulty: str) -> dict[str, Pose]:
        shape_of = dict(PIECES)
        if difficulty == "easy":
            return classic_square()
        low, high = _SOLIDITY[difficulty]
        for _ in range(MAX_ATTEMPTS):
            poses = grow_silhouette(rng, compact=difficulty == "medium")
            if poses is None:
                continue
            polys = [piece_vertices(shape_of[n], *poses[n]) for n, _ in PIECES]
            span = np.ptp(np.concatenate(polys), axis=0)
            if span.max() > 8.5:
                continue  # too sprawling to fit the canvas at a useful scale
            solidity, holes, _ = silhouette_shape(polys)
            if holes == 0 and low <= solidity < high and not _encloses_background(polys):
                return poses
        raise RuntimeError(f"no {difficulty} tangram silhouette found in {MAX_ATTEMPTS} attempts")

    def _generate(self, rng: random.Random, difficulty: str, seed: int) -> Instance:
        step = _ROTATION_STEP[difficulty]
        poses_units, outline_units, world = self._target_in_units(rng, difficulty, step)
        unit, (targets, starts, silhouette) = self._fit_layout(rng, difficulty, poses_units, outline_units, world,
                                                               step)
        spec = self._spec(unit, starts, silhouette)
        solution = {"pieces": [{"piece": name, **targets[name]} for name, _ in PIECES]}
        first = self._draw(self.scene(spec), spec, solution, 0.0)
        return self.make_instance(seed=seed, difficulty=difficulty, prompt=PROMPT, first_frame=first,
                                  solution=solution, spec=spec)

    def _target_in_units(self, rng: random.Random, difficulty: str, step: int) -> tuple[dict, list, np.ndarray]:
        """A random silhouette of the seven pieces, turned (by a multiple of ``step``) and maybe
        mirrored about its area centroid: each piece's pose ``(x, y, rotation, flip)`` in units,
        the silhouette's outline loops, and every piece's vertices (all in units)."""
        shape_of = dict(PIECES)
        unit_poses = self._silhouette(rng, difficulty)
        turn = float(step * rng.randrange(360 // step))
        mirror = rng.random() < 0.5

        # Rigid transform in units about the silhouette's area centroid: mirror x, then turn.
        polys = {n: piece_vertices(shape_of[n], *unit_poses[n]) for n, _ in PIECES}
        centroid = sum(polygon_area(p) * p.mean(axis=0) for p in polys.values()) / TOTAL_AREA
        rot = rotation_matrix(turn)

        def to_world(points: np.ndarray) -> np.ndarray:
            rel = np.asarray(points, float) - centroid
            return (rel * (-1, 1) if mirror else rel) @ rot.T

        _, _, outline = silhouette_shape(list(polys.values()))
        outline_units = [to_world(loop) for loop in outline]
        poses_units = {}
        for name, shape in PIECES:
            x, y, r, flip = unit_poses[name]
            c = np.array([x, y]) - centroid
            if mirror:
                # mirror(x) o R(r) o F(flip) = R(180 - r) o F(not flip)
                c, r, flip = c * (-1, 1), 180.0 - r, not flip
            c = rot @ c
            poses_units[name] = (float(c[0]), float(c[1]), r + turn, flip)
        world = np.concatenate([piece_vertices(shape_of[n], *poses_units[n]) for n, _ in PIECES])
        return poses_units, outline_units, world

    def _fit_layout(self, rng: random.Random, difficulty: str, poses_units: dict, outline_units: list,
                    world: np.ndarray, step: int) -> tuple[float, tuple]:
        """The largest unit (pixels, at most ``max_unit_px``, shrinking by 10% while the
        pieces do not fit) at which :meth:`_place` lays out the target and the start poses;
        a :class:`UserError` below ``min_unit_px``."""
        cfg = self.config
        span = world.max(axis=0) - world.min(axis=0)
        unit = min(cfg.max_unit_px, 0.40 * cfg.width / span[0], 0.62 * cfg.height / span[1])
        while True:
            if unit < cfg.min_unit_px:
                raise UserError(
                    f"the canvas {cfg.width}x{cfg.height} is too small for a {difficulty} tangram at "
                    f"min_unit_px {cfg.min_unit_px}; enlarge width/height or lower min_unit_px"
                )
            unit = round(unit, 4)  # the spec stores it rounded; place with exactly that value
            layout = self._place(rng, poses_units, outline_units, world, unit, step)
            if layout is not None:
                return unit, layout
            unit *= 0.9

    def _spec(self, unit: float, starts: dict, silhouette: list) -> dict:
        """The instance's spec: canvas, unit, every piece (shape, colour, vertices, area,
        symmetry, start pose), the target silhouette and the colours."""
        cfg = self.config
        palette = self.palette()
        return {
            "family": "tangram",
            "image_size": [cfg.height, cfg.width],
            "unit_px": unit,
            "pieces": [
                {"name": name, "shape": shape, "color": list(PIECE_COLORS[name]),
                 "vertices": [[round(float(a), 6), round(float(b), 6)] for a, b in SHAPES[shape]],
                 "area_units": round(polygon_area(SHAPES[shape]), 6), "symmetry_deg": SYMMETRY_DEG[shape],
                 "chiral": shape in CHIRAL, "start": starts[name]}
                for name, shape in PIECES
            ],
            "target": {"polygons": silhouette, "area_px": round(TOTAL_AREA * unit * unit, 3)},
            "colors": {"background": list(palette.background), "silhouette": list(palette.silhouette)},
            "layout": {"silhouette": silhouette, "start": [starts[name] for name, _ in PIECES]},
        }

    def _place(self, rng: random.Random, poses_units: dict, outline_units: list, world: np.ndarray, unit: float,
               step: int):
        """Target poses (pixels), scattered start poses and the silhouette outline; ``None``
        when the pieces cannot be scattered at this ``unit`` scale."""
        cfg = self.config
        w, h = cfg.width, cfg.height
        lo, hi = world.min(axis=0), world.max(axis=0)
        jitter = 0.25 * unit
        jitter_xy = (rng.uniform(-jitter, jitter), rng.uniform(-jitter, jitter))
        offset = np.array([w / 2, h / 2]) - (lo + hi) / 2 * unit + jitter_xy
        targets = {}
        for name, shape in PIECES:
            x, y, r, flip = poses_units[name]
            r, flip = normalize_pose(shape, r, flip)
            px, py = x * unit + offset[0], y * unit + offset[1]
            targets[name] = {"x": round(float(px), 3), "y": round(float(py), 3), "rotation_deg": round(r, 3),
                             "flip": flip}
        silhouette = [[[round(float(a * unit + offset[0]), 3), round(float(b * unit + offset[1]), 3)] for a, b in poly]
                      for poly in outline_units]

        # Scatter: rejection sampling on an occupancy raster (silhouette box and placed
        # pieces, each grown by gap_px); largest pieces first, as they are hardest to fit.
        occupied = np.zeros((h, w), np.uint8)
        g = cfg.gap_px
        bx0, by0 = (lo * unit + offset).astype(int) - 2 * g
        bx1, by1 = (hi * unit + offset).astype(int) + 2 * g
        occupied[max(0, by0): by1 + 1, max(0, bx0): bx1 + 1] = 1
        kernel = np.ones((2 * g + 1, 2 * g + 1), np.uint8) if g else None
        starts = {}
        for name, shape in PIECES:
            flip = targets[name]["flip"]
            for _ in range(300):
                rot = float(step * rng.randrange(360 // step))
                rot, _ = normalize_pose(shape, rot, flip)
                verts = piece_vertices(shape, 0, 0, rot, flip, unit)
                vlo, vhi = verts.min(axis=0), verts.max(axis=0)
                if np.any(vhi - vlo + 2 * g >= (w, h)):
                    return None
                x = rng.uniform(g - vlo[0], w - g - vhi[0])
                y = rng.uniform(g - vlo[1], h - g - vhi[1])
                x, y = round(x, 3), round(y, 3)
                verts = piece_vertices(shape, x, y, rot, flip, unit)
                # work in the piece's box (grown by the gap) rather than the whole canvas
                x0, y0 = (np.floor(verts.min(axis=0)) - g - 1).astype(int)
                x1, y1 = (np.ceil(verts.max(axis=0)) + g + 2).astype(int)
                x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
                mask = rasterize([verts], (y1 - y0, x1 - x0), offset=(-x0, -y0)).astype(np.uint8)
                if kernel is not None:
                    mask = cv2.dilate(mask, kernel)
                if not np.any(mask & occupied[y0:y1, x0:x1]):
                    occupied[y0:y1, x0:x1] |= mask
                    starts[name] = {"x": x, "y": y, "rotation_deg": round(rot, 3), "flip": flip}
                    break
            else:
                return None
        return targets, starts, silhouette

    # rendering --------------------------------------------------------------------
    def scene(self, spec: dict) -> np.ndarray:
        """The static picture: paper and the gray silhouette."""
        h, w = spec["image_size"]
        img = np.empty((h, w, 3), np.uint8)
        img[:] = spec["colors"]["background"]
        pts = [np.round(np.asarray(p, float) * 16).astype(np.int32) for p in spec["target"]["polygons"]]
        cv2.fillPoly(img, pts, tuple(spec["colors"]["silhouette"]), cv2.LINE_AA, 4)
        return img

    def poses_at(self, spec: dict, solution: dict, t: float) -> list[tuple[dict, dict, bool]]:
        """``(piece spec, pose, moving)`` of every piece at time ``t`` (piece k moves in [k, k+1])."""
        targets = {p["piece"]: p for p in solution["pieces"]}
        out = []
        for k, piece in enumerate(spec["pieces"]):
            start, target = piece["start"], targets[piece["name"]]
            if t <= k:
                out.append((piece, start, False))
            elif t >= k + 1:
                out.append((piece, target, False))
            else:
                f = t - k
                sym = piece["symmetry_deg"]
                # the target rotation's representative nearest the start: the shortest turn
                delta = (target["rotation_deg"] - start["rotation_deg"]) % sym
                if delta > sym / 2:
                    delta -= sym
                if abs(delta) > 180:
                    delta -= math.copysign(360, delta)
                pose = {"x": start["x"] + (target["x"] - start["x"]) * f,
                        "y": start["y"] + (target["y"] - start["y"]) * f,
                        "rotation_deg": start["rotation_deg"] + delta * f, "flip": target["flip"]}
                out.append((piece, pose, True))
        return out

    def _draw(self, base: np.ndarray, spec: dict, solution: dict, t: float) -> np.ndarray:
        return self._paint_pieces(base.copy(), spec, solution, t)

    def _paint_pieces(self, img: np.ndarray, spec: dict, solution: dict, t: float) -> np.ndarray:
        unit = spec["unit_px"]
        poses = self.poses_at(spec, solution, t)
        # The moving piece is drawn last, so it slides over the others.
        for piece, pose, _ in sorted(poses, key=lambda item: item[2]):
            verts = piece_vertices(piece["shape"], pose["x"], pose["y"], pose["rotation_deg"], pose["flip"], unit,
                                   vertices=np.asarray(piece["vertices"], float))
            cv2.fillPoly(img, [np.round(verts * 16).astype(np.int32)], tuple(piece["color"]), cv2.LINE_AA, 4)
        return img

    def num_moves(self, instance: Instance) -> int:
        """One move per piece."""
        return len(instance.spec["pieces"])

    def render_at(self, instance: Instance, t: float) -> np.ndarray:
        """The canvas after ``t`` piece moves."""
        return self._draw(self.scene(instance.spec), instance.spec, instance.solution, t)

    def solution_video(self, instance: Instance, num_frames: int | None = None) -> np.ndarray:
        """Ground-truth video: the pieces move into place one after another."""
        times = self.video_times(instance, num_frames)
        base = self.scene(instance.spec)
        # One allocation, frames drawn in place: per-frame copies dominate the cost otherwise.
        video = np.empty((len(times), *base.shape), np.uint8)
        video[:] = base
        for frame, t in zip(video, times):
            self._paint_pieces(frame, instance.spec, instance.solution, float(t))
        video[0] = instance.first_frame
        return video

    # checking ---------------------------------------------------------------------
    def check_solution(self, instance: Instance, solution, min_iou: float = 0.99) -> tuple[bool, str]:
        """Legal: every piece once, no two overlapping (exact convex intersection < 1% of a
        small piece), and the union covers the silhouette (raster IoU >= ``min_iou``)."""
        spec = instance.spec
        items = solution.get("pieces") if isinstance(solution, dict) else solution
        if not isinstance(items, list):
            return False, "solution must be {'pieces': [pose, ...]}"
        by_name = {}
        for item in items:
            if not isinstance(item, dict) or "piece" not in item:
                return False, f"bad pose {item!r}"
            by_name[item["piece"]] = item
        names = [p["name"] for p in spec["pieces"]]
        if sorted(by_name) != sorted(names) or len(items) != len(names):
            return False, f"the solution must place each of {', '.join(names)} exactly once"
        unit = spec["unit_px"]
        polys = {}
        try:
            for piece in spec["pieces"]:
                pose = by_name[piece["name"]]
                polys[piece["name"]] = piece_vertices(piece["shape"], float(pose["x"]), float(pose["y"]),
                                                      float(pose["rotation_deg"]), bool(pose.get("flip", False)),
                                                      unit, vertices=np.asarray(piece["vertices"], float))
        except (KeyError, TypeError, ValueError) as exc:
            return False, f"bad pose: {exc}"
        tol = 0.01 * unit * unit
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                area = convex_intersection_area(polys[a], polys[b])
                if area > tol:
                    return False, f"pieces {a} and {b} overlap ({area / unit ** 2:.3f} square units)"
        h, w = spec["image_size"]
        up = 2.0  # rasterise at twice the canvas resolution for a sharper IoU
        union = rasterize(list(polys.values()), (int(h * up), int(w * up)), up)
        target = rasterize(spec["target"]["polygons"], (int(h * up), int(w * up)), up)
        inter, total = np.count_nonzero(union & target), np.count_nonzero(union | target)
        iou = inter / total if total else 0.0
        if iou < min_iou:
            return False, f"the pieces cover the silhouette with IoU {iou:.3f} < {min_iou}"
        return True, "ok"
