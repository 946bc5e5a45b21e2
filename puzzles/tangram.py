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
from gen_reason.puzzles.tangram_geometry import (  # the geometry, importable from here too
    CHIRAL,
    CLASSIC_SQUARE,
    PIECES,
    SHAPES,
    SQRT2,
    SYMMETRY_DEG,
    TOTAL_AREA,
    Pose,
    _encloses_background,
    classic_square,
    convex_intersection_area,
    convex_overlap,
    fit_pose,
    grow_silhouette,
    normalize_pose,
    piece_vertices,
    polygon_area,
    rasterize,
    rotation_matrix,
    silhouette_shape,
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
        targets, silhouette, offset = self._targets(rng, poses_units, outline_units, world, unit)
        starts = self._scatter(rng, targets, world, unit, offset, step)
        return None if starts is None else (targets, starts, silhouette)

    def _targets(self, rng: random.Random, poses_units: dict, outline_units: list, world: np.ndarray,
                 unit: float) -> tuple[dict, list, np.ndarray]:
        """The target poses and the silhouette outline in pixels: the silhouette centred on the
        canvas (jittered by a quarter unit); also the offset (pixels) of the unit origin."""
        cfg = self.config
        lo, hi = world.min(axis=0), world.max(axis=0)
        jitter = 0.25 * unit
        jitter_xy = (rng.uniform(-jitter, jitter), rng.uniform(-jitter, jitter))
        offset = np.array([cfg.width / 2, cfg.height / 2]) - (lo + hi) / 2 * unit + jitter_xy
        targets = {}
        for name, shape in PIECES:
            x, y, r, flip = poses_units[name]
            r, flip = normalize_pose(shape, r, flip)
            px, py = x * unit + offset[0], y * unit + offset[1]
            targets[name] = {"x": round(float(px), 3), "y": round(float(py), 3), "rotation_deg": round(r, 3),
                             "flip": flip}
        silhouette = [[[round(float(a * unit + offset[0]), 3), round(float(b * unit + offset[1]), 3)] for a, b in poly]
                      for poly in outline_units]
        return targets, silhouette, offset

    def _scatter(self, rng: random.Random, targets: dict, world: np.ndarray, unit: float, offset: np.ndarray,
                 step: int) -> dict | None:
        """Start poses around the silhouette (rotations in multiples of ``step``, each piece's
        target mirror side): rejection sampling on an occupancy raster (the silhouette's box
        and the placed pieces, each grown by ``gap_px``), largest pieces first, as they are
        hardest to fit; ``None`` when a piece does not fit."""
        cfg = self.config
        w, h = cfg.width, cfg.height
        lo, hi = world.min(axis=0), world.max(axis=0)
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
        return starts

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
