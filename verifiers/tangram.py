"""The pixel referee of ``tangram``: find every piece by its colour, follow it, compare its pose.

Two verdicts (a rule verifier reads ``spec`` alone):

- **rule** (:func:`score_tangram_rules`, from ``spec`` only: the pieces' shapes, colours
  and start poses, the target silhouette): the first frame shows the pieces where the
  puzzle starts them (``wrong_start`` otherwise: another puzzle, a reversed video), every
  piece slides rather than jumps (``teleport``: one step between two frames longer than
  ``min_jump_units`` and than ``max_jump_fraction`` of the piece's whole move, at any
  speed), and in the final frame every piece is found whole (steps 1-3 below) with at
  least ``min_inside`` of it on the silhouette and the silhouette IoU (step 5) at least
  ``min_iou``;
- **reference** (:func:`score_tangram`): the same rules, and every piece's final pose
  against the stored solution (step 4).

``success`` is strict (every rule kept); ``success_lenient`` judges the final frame alone,
as VideoThinkBench judges a final image. A slide is seen only in a video that shows each
piece at least once on its way (two frames or more per piece move: some 15 frames for
seven pieces); in fewer frames every move is a jump. Turning is not checked frame by frame
(the final pose is): a piece that slides and snaps to its angle passes. Piece positions in every frame come from the
same segmentation on every f-th pixel, f leaving a unit 8-16 pixels wide
(:func:`track_piece_centroids`).

The final frame is resized to the puzzle's canvas (``spec["image_size"]``) when the video
has another resolution, then:

1. **Segmentation.** Every pixel takes the label of the nearest reference colour (the
   seven piece colours, the background, the silhouette gray) when that colour is within
   ``color_threshold`` (Euclidean RGB distance); farther pixels stay unlabelled. Each
   piece's mask is opened with a 3x3 kernel (blended edges between two pieces can be
   nearer a third piece's colour) and reduced to its largest connected component.
2. **Presence and shape.** ``area_ratio`` = mask area / (``area_units * unit_px**2``).
   A piece is *missing* when ``area_ratio < min_area_ratio`` (its colour is gone). It
   *changed shape* when ``|area_ratio - 1| > area_tolerance`` or when ``shape_iou`` (the
   best IoU of the piece's true shape against the mask, below) is under
   ``min_shape_iou``.
3. **Pose.** Position = the mask centroid (image moments). Orientation (and, for the
   chiral parallelogram, mirror side) = the pose maximising ``shape_iou``: the canonical
   piece is rasterised at the centroid for every rotation in steps of 3 degrees over the
   piece's symmetry period, then refined in 0.5-degree steps around the best.
4. **Errors against the target pose** (reference only: the stored solution):
   ``position_error = |centroid - target| / unit_px`` (piece units, the classic square
   being 4 units a side); ``rotation_error = min(d, sym - d)`` with ``d = (angle -
   target) mod sym`` and ``sym`` the piece's symmetry (360 triangles, 90 square, 180
   parallelogram); a parallelogram on the wrong mirror side fails. Identical pieces (the
   two large, the two small triangles) may swap places: each pair takes the assignment
   with the smaller summed cost ``position_error + rotation_error / 90``.
5. **Silhouette IoU**: the union of all pixels labelled as any piece (closed 3x3, to
   fill the seams between pieces) against the target silhouette rasterised on the canvas.

A piece is *placed* (reference) when present, unchanged in shape, ``position_error <=
position_tolerance`` and ``rotation_error <= rotation_tolerance_deg`` (right mirror
side); the final frame passes when all seven are placed and ``silhouette_iou >= min_iou``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from itertools import permutations

import cv2
import numpy as np

from gen_reason.errors import UserError
from gen_reason.puzzles.tangram import rasterize
from gen_reason.verifiers.framing import frame_video
from gen_reason.verifiers.parallel import map_chunks
from gen_reason.verifiers.score import Score
from gen_reason.verifiers.track import _undo_brightness_drift
from gen_reason.video import as_video

_KERNEL3 = np.ones((3, 3), np.uint8)


def _resize_to(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    if frame.shape[:2] == (h, w):
        return frame
    shrinking = frame.shape[0] * frame.shape[1] > h * w
    return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def segment_pieces(spec: dict, frame: np.ndarray, color_threshold: float = 60.0) -> np.ndarray:
    """Per-pixel label: piece index ``0..6``, -1 for background/silhouette/unknown colours."""
    refs = [p["color"] for p in spec["pieces"]] + [spec["colors"]["background"], spec["colors"]["silhouette"]]
    refs = np.asarray(refs, np.float32)
    pix = np.ascontiguousarray(frame.reshape(-1, 3), np.float32)
    # The nearest reference colour of every pixel and its squared distance: OpenCV's
    # brute-force nearest neighbour (exact: integer colours square and add exactly in float32).
    d2, nearest = cv2.batchDistance(pix, refs, cv2.CV_32F, normType=cv2.NORM_L2SQR, K=1)
    nearest, d2 = nearest.ravel(), d2.ravel()
    labels = np.where((d2 <= color_threshold ** 2) & (nearest < len(spec["pieces"])), nearest, -1)
    return labels.reshape(frame.shape[:2]).astype(np.int16)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    num, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if num <= 1:
        return np.zeros_like(mask, bool)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == best


def _piece_mask(labels: np.ndarray, k: int) -> np.ndarray:
    """Piece ``k``'s pixels, opened (3x3) and reduced to the largest component. Worked on
    the box around its pixels with a 2-pixel margin (the opening reaches 1 pixel, and the
    frame's own edge keeps its border handling), so it equals the whole-frame calls."""
    raw = (labels == k).view(np.uint8)
    x, y, w, h = cv2.boundingRect(raw)
    out = np.zeros(labels.shape, bool)
    if w == 0 or h == 0:
        return out
    rows = slice(max(0, y - 2), min(labels.shape[0], y + h + 2))
    cols = slice(max(0, x - 2), min(labels.shape[1], x + w + 2))
    opened = cv2.morphologyEx(np.ascontiguousarray(raw[rows, cols]), cv2.MORPH_OPEN, _KERNEL3)
    out[rows, cols] = _largest_component(opened)
    return out


def _pose_ious(piece: dict, unit: float, mask: np.ndarray, origin, cx: float, cy: float, angles, flip: bool):
    """``shape_iou`` of the piece at each of ``angles`` (degrees) on ``mask``: the piece's
    vertices for every angle at once (as :func:`piece_vertices` places them), each
    filled into one reused buffer; the intersection and the template's area counted by
    OpenCV, the union as their sum less the intersection."""
    v = np.array(piece["vertices"], float)
    if flip:
        v[:, 1] = -v[:, 1]
    rad = [math.radians(a) for a in np.asarray(angles, float).tolist()]  # as rotation_matrix computes them
    c, s = np.array([math.cos(a) for a in rad]), np.array([math.sin(a) for a in rad])
    rot_t = np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], 1)  # (n, 2, 2): each rotation_matrix(a).T
    verts = (v[None] @ rot_t) * unit + np.array([cx - origin[0], cy - origin[1]], float)
    pts = np.round(verts * 16).astype(np.int32)
    target = np.ascontiguousarray(mask, np.uint8)
    area = cv2.countNonZero(target)
    buf = np.zeros(mask.shape, np.uint8)
    both = np.empty_like(buf)
    out = np.zeros(len(pts))
    for i, poly in enumerate(pts):
        buf.fill(0)
        cv2.fillPoly(buf, [poly], 1, cv2.LINE_8, 4)
        inter = cv2.countNonZero(cv2.bitwise_and(buf, target, dst=both))
        union = cv2.countNonZero(buf) + area - inter
        out[i] = inter / union if union else 0.0
    return out


def pose_window(piece: dict, unit: float, mask: np.ndarray) -> tuple[float, float, tuple[int, int], np.ndarray]:
    """``(cx, cy, (x0, y0), crop)``: a piece mask's centroid and the part of the mask a
    pose search needs (its pixels and every pose of the piece at the centroid), with the
    crop's top-left corner."""
    mask = np.asarray(mask, bool)
    bx, by, bw, bh = cv2.boundingRect(mask.view(np.uint8))  # look for its pixels only in their box
    ys, xs = np.nonzero(mask[by:by + bh, bx:bx + bw])
    ys, xs = ys + by, xs + bx
    cx, cy = float(xs.mean()), float(ys.mean())
    radius = float(np.abs(np.asarray(piece["vertices"], float)).max()) * unit * 1.5 + 4
    x0, y0 = int(max(0, math.floor(min(xs.min(), cx - radius)))), int(max(0, math.floor(min(ys.min(), cy - radius))))
    x1 = int(min(mask.shape[1], math.ceil(max(xs.max() + 1, cx + radius))))
    y1 = int(min(mask.shape[0], math.ceil(max(ys.max() + 1, cy + radius))))
    return cx, cy, (x0, y0), mask[y0:y1, x0:x1]


def estimate_pose(piece: dict, unit: float, mask: np.ndarray) -> dict:
    """Centroid, rotation, mirror side and ``shape_iou`` of a piece's mask (see module docstring)."""
    cx, cy, (x0, y0), crop = pose_window(piece, unit, mask)
    sym = float(piece["symmetry_deg"])
    flips = (False, True) if piece.get("chiral") else (False,)
    best = (-1.0, 0.0, False)
    for flip in flips:
        angles = np.arange(0.0, sym, 3.0)
        ious = _pose_ious(piece, unit, crop, (x0, y0), cx, cy, angles, flip)
        i = int(np.argmax(ious))  # the first of equal best, as a strict ">" scan keeps
        if ious[i] > best[0]:
            best = (float(ious[i]), float(angles[i]), flip)
    _, coarse, flip = best
    angles = np.arange(coarse - 2.5, coarse + 2.51, 0.5)
    ious = _pose_ious(piece, unit, crop, (x0, y0), cx, cy, angles, flip)
    i = int(np.argmax(ious))
    if ious[i] > best[0]:
        best = (float(ious[i]), float(angles[i]) % sym, flip)
    return {"x": cx, "y": cy, "rotation_deg": best[1], "flip": best[2], "shape_iou": best[0]}


def rotation_error(angle: float, target: float, symmetry: float) -> float:
    """Smallest turn (degrees) between two orientations of a piece with this rotational symmetry."""
    d = (angle - target) % symmetry
    return min(d, symmetry - d)


def find_pieces(spec: dict, labels: np.ndarray, *, min_area_ratio: float = 0.3, area_tolerance: float = 0.3,
                min_shape_iou: float = 0.7, target_mask: np.ndarray | None = None) -> dict[str, dict]:
    """Every piece of ``spec`` in a segmentation (:func:`segment_pieces`): its
    ``area_ratio``, ``status`` (``missing``, ``shape_changed`` or ``found``, see the
    module docstring) and, unless missing, its pose (:func:`estimate_pose`), by name.
    With ``target_mask`` (the silhouette), also ``inside``: the share of the piece's
    pixels on it."""
    unit = float(spec["unit_px"])
    found: dict[str, dict] = {}
    for k, piece in enumerate(spec["pieces"]):
        mask = _piece_mask(labels, k)
        ratio = float(np.count_nonzero(mask)) / (piece["area_units"] * unit * unit)
        entry = {"area_ratio": round(ratio, 4)}
        if ratio < min_area_ratio:
            entry["status"] = "missing"
        else:
            entry.update(estimate_pose(piece, unit, mask))
            changed = abs(ratio - 1.0) > area_tolerance or entry["shape_iou"] < min_shape_iou
            entry["status"] = "shape_changed" if changed else "found"
            if target_mask is not None:
                entry["inside"] = round(float(np.count_nonzero(mask & target_mask)) / max(1, np.count_nonzero(mask)), 4)
        found[piece["name"]] = entry
    return found


def _target_mask(spec: dict) -> np.ndarray:
    h, w = spec["image_size"]
    return rasterize(spec["target"]["polygons"], (h, w))


def _label_table(spec: dict, color_threshold: float) -> np.ndarray:
    """:func:`segment_pieces`'s rule on a 32x32x32 colour grid (each cell's centre), as
    uint8 ``piece index + 1`` (0: no piece): ``table[(r >> 3) << 10 | (g >> 3) << 5 | b >> 3]``."""
    refs = [p["color"] for p in spec["pieces"]] + [spec["colors"]["background"], spec["colors"]["silhouette"]]
    return _label_table_for(tuple(tuple(int(v) for v in c) for c in refs), len(spec["pieces"]), float(color_threshold))


@lru_cache(maxsize=16)
def _label_table_for(refs: tuple, pieces: int, color_threshold: float) -> np.ndarray:
    """:func:`_label_table` for reference colours as a tuple (cached: one table per palette)."""
    levels = np.arange(32, dtype=np.float32) * 8 + 3.5
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    d2, nearest = cv2.batchDistance(grid, np.asarray(refs, np.float32), cv2.CV_32F, normType=cv2.NORM_L2SQR, K=1)
    nearest, d2 = nearest.ravel(), d2.ravel()
    table = np.where((d2 <= color_threshold ** 2) & (nearest < pieces), nearest + 1, 0).astype(np.uint8)
    table.setflags(write=False)  # shared by every call with these colours
    return table


def _every_fth_pixel(frames: np.ndarray, f: int) -> np.ndarray:
    """``frames[:, ::f, ::f]`` as a new contiguous array."""
    t, h, w = frames.shape[:3]
    if f > 1 and h % f == 0 and w % f == 0 and frames.flags.c_contiguous:
        # OpenCV's nearest resize of the frames as one tall image picks exactly those
        # pixels (~2x numpy's copy of the doubly strided view)
        return cv2.resize(frames.reshape(-1, w, 3), (w // f, t * h // f),
                          interpolation=cv2.INTER_NEAREST).reshape(t, h // f, w // f, 3)
    return np.ascontiguousarray(frames[:, ::f, ::f])


def track_piece_centroids(spec: dict, video: np.ndarray, *, color_threshold: float = 60.0,
                          min_area_ratio: float = 0.3, work_unit_px: float = 8.0) -> np.ndarray:
    """Every piece's centroid in every frame, ``(T, pieces, 2)`` in spec pixels (NaN where
    the piece is not seen: fewer pixels than ``min_area_ratio`` of its area).

    Every ``f``-th pixel of every ``f``-th row is kept, ``f`` the largest integer leaving
    a unit at least ``work_unit_px`` pixels (a centroid to an eighth of a unit is plenty to
    tell a slide from a jump, and the work costs per pixel), brightness drift since frame 0
    undone as the maze tracker undoes it. Pixels are labelled by
    :func:`segment_pieces`'s rule read from a colour table (:func:`_label_table`); a pixel
    counts only where its 3x3 neighbourhood has its label too (the thin seams where two
    pieces' colours blend into a third's drop out, as the final frame's opening drops
    them); each piece's count and centroid come from one weighted count over the frames."""
    h0, w0 = spec["image_size"]
    h, w = video.shape[1:3]
    unit = float(spec["unit_px"])
    n = len(spec["pieces"])
    f = max(1, int(unit * min(w / w0, h / h0) // work_unit_px))
    sx, sy = w / w0 / f, h / h0 / f  # working pixels per spec pixel
    areas = np.array([p["area_units"] for p in spec["pieces"]], float) * (unit * sx) * (unit * sy)
    table = _label_table(spec, color_threshold)
    out = np.full((len(video), n, 2), np.nan)
    first = _every_fth_pixel(video[:1], f)

    def chunk(lo: int, hi: int) -> None:
        # brightness drift undone against frame 0, as the maze tracker does
        q = _undo_brightness_drift(np.concatenate([first, _every_fth_pixel(video[lo:hi], f)]))[0][1:]
        np.right_shift(q, 3, out=q)
        index = q[..., 0].astype(np.uint16) << 10
        index |= q[..., 1].astype(np.uint16) << 5
        index |= q[..., 2]
        labels = np.take(table, index)
        t, hh, ww = labels.shape
        tall = np.zeros((t, hh + 1, ww), np.uint8)  # a row of 0 between frames keeps them apart
        tall[:, :hh] = labels
        tall = tall.reshape(-1, ww)
        inner = (cv2.erode(tall, _KERNEL3) == cv2.dilate(tall, _KERNEL3)).reshape(t, hh + 1, ww)[:, :hh]
        keep = inner & (labels > 0)
        frame, ys, xs = np.nonzero(keep)
        bins = frame * (n + 1) + labels[frame, ys, xs]
        count = np.bincount(bins, minlength=t * (n + 1)).reshape(t, n + 1)[:, 1:]
        mx = np.bincount(bins, xs.astype(float), minlength=t * (n + 1)).reshape(t, n + 1)[:, 1:]
        my = np.bincount(bins, ys.astype(float), minlength=t * (n + 1)).reshape(t, n + 1)[:, 1:]
        seen = count >= min_area_ratio * areas
        safe = np.maximum(count, 1)
        # a working pixel's centre is video pixel f * i + (f - 1) / 2
        cx, cy = mx / safe * f + (f - 1) / 2, my / safe * f + (f - 1) / 2
        out[lo:hi, :, 0] = np.where(seen, (cx + 0.5) * w0 / w - 0.5, np.nan)
        out[lo:hi, :, 1] = np.where(seen, (cy + 0.5) * h0 / h - 0.5, np.nan)

    map_chunks(chunk, len(video), min_size=8)
    return out


def motion_violations(spec: dict, centroids: np.ndarray, *, max_jump_fraction: float = 0.75,
                      min_jump_units: float = 1.0) -> list[dict]:
    """Pieces that jump instead of sliding: a step between two frames where the piece is
    seen (over frames where it is not, too: a piece that fades out and reappears in place
    jumps) longer than ``min_jump_units`` and than ``max_jump_fraction`` of the piece's
    whole move (first seen to last seen position). Speed does not matter: a piece may cross
    the canvas in two frames, but not in one. One entry per jumping piece (its first jump):
    ``{"frame", "rule": "teleport", "piece", "detail"}``."""
    unit = float(spec["unit_px"])
    found = []
    for k, piece in enumerate(spec["pieces"]):
        seen = np.flatnonzero(~np.isnan(centroids[:, k, 0]))
        if len(seen) < 2:
            continue
        pts = centroids[seen, k]
        whole = float(np.linalg.norm(pts[-1] - pts[0]))
        steps = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        jumps = np.flatnonzero((steps > min_jump_units * unit) & (steps > max_jump_fraction * whole))
        if len(jumps):
            i = int(jumps[0])
            share = steps[i] / whole if whole > 0 else math.inf
            found.append({"frame": int(seen[i + 1]), "rule": "teleport", "piece": piece["name"],
                          "detail": (f"{piece['name']} jumps {steps[i] / unit:.1f} units between frames "
                                     f"{int(seen[i])} and {int(seen[i + 1])} ({min(share, 9.99):.0%} of its move): "
                                     "pieces must slide, not appear in place")})
    return found


def start_violations(spec: dict, centroids0: np.ndarray, start_tolerance: float = 1.0) -> list[dict]:
    """Pieces not where the puzzle starts them in the video's first frame (missing, or their
    centroid more than ``start_tolerance`` units from ``spec``'s start pose): the video does
    not show this puzzle (another puzzle's video, a reversed one)."""
    unit = float(spec["unit_px"])
    out = []
    for k, piece in enumerate(spec["pieces"]):
        start = np.array([piece["start"]["x"], piece["start"]["y"]], float)
        if np.isnan(centroids0[k, 0]):
            detail = f"{piece['name']} is not in the first frame"
        else:
            dist = float(np.linalg.norm(centroids0[k] - start)) / unit
            if dist <= start_tolerance:
                continue
            detail = f"{piece['name']} starts {dist:.1f} units from where the puzzle puts it"
        out.append({"frame": 0, "rule": "wrong_start", "piece": piece["name"], "detail": detail})
    return out


def _judge_rules(spec: dict, video: np.ndarray, opts: dict) -> dict:
    """Everything a rule verdict needs, from ``spec`` and the video alone."""
    h, w = spec["image_size"]
    # the final frame with any brightness drift since frame 0 undone
    final = _undo_brightness_drift(np.stack([_resize_to(video[0], (h, w)), _resize_to(video[-1], (h, w))]))[0][1]
    labels = segment_pieces(spec, final, opts["color_threshold"])
    target = _target_mask(spec)
    found = find_pieces(spec, labels, min_area_ratio=opts["min_area_ratio"], area_tolerance=opts["area_tolerance"],
                        min_shape_iou=opts["min_shape_iou"], target_mask=target)
    union = cv2.morphologyEx((labels >= 0).astype(np.uint8), cv2.MORPH_CLOSE, _KERNEL3).astype(bool)
    total = np.count_nonzero(union | target)
    iou = np.count_nonzero(union & target) / total if total else 0.0
    centroids = track_piece_centroids(spec, video, color_threshold=opts["color_threshold"],
                                      min_area_ratio=opts["min_area_ratio"])
    violations = start_violations(spec, centroids[0], opts["start_tolerance"]) + motion_violations(
        spec, centroids, max_jump_fraction=opts["max_jump_fraction"], min_jump_units=opts["min_jump_units"])
    violations.sort(key=lambda v: v["frame"])
    on_silhouette = {name: e["status"] == "found" and e.get("inside", 0.0) >= opts["min_inside"]
                     for name, e in found.items()}
    return {"found": found, "labels": labels, "iou": float(iou), "centroids": centroids, "violations": violations,
            "on_silhouette": on_silhouette}


_DEFAULTS = dict(color_threshold=60.0, min_iou=0.9, min_area_ratio=0.3, area_tolerance=0.3, min_shape_iou=0.7,
                 min_inside=0.8, start_tolerance=1.0, max_jump_fraction=0.75, min_jump_units=1.0)


def _rule_trace(spec: dict, judged: dict, video: np.ndarray) -> dict:
    centroids = judged["centroids"]
    tracks = {p["name"]: [None if math.isnan(x) else [round(x, 1), round(y, 1)] for x, y in centroids[:, k].tolist()]
              for k, p in enumerate(spec["pieces"])}
    return {"piece_positions": tracks, "violations": judged["violations"],
            "first_violation": judged["violations"][0] if judged["violations"] else None,
            "silhouette_iou": judged["iou"], "frame_size": list(video.shape[1:3]),
            "image_size": list(spec["image_size"])}


def _read_video(instance, video) -> np.ndarray | Score:
    """The video's frames showing the puzzle (the puzzle's part of a stretched or
    letterboxed video), or the failure :class:`Score` for one that cannot be judged."""
    try:
        return frame_video(instance, as_video(video))
    except (ValueError, UserError) as exc:
        return Score.failure(f"cannot judge the video: {exc}", success=0.0, success_lenient=0.0)


def _verdict_metrics(spec: dict, judged: dict, *, success: bool, final_ok: bool, placed: int) -> dict[str, float]:
    """The metrics both verdicts report: success, the final frame's pieces and silhouette,
    and the motion rules broken."""
    found, violations = judged["found"], judged["violations"]
    return {
        "success": float(success),
        "success_lenient": float(final_ok),
        "silhouette_iou": float(judged["iou"]),
        "pieces_placed": float(placed),
        "pieces_placed_frac": placed / len(spec["pieces"]),
        "pieces_missing": float(sum(e["status"] == "missing" for e in found.values())),
        "pieces_shape_changed": float(sum(e["status"] == "shape_changed" for e in found.values())),
        "starts_right": float(not any(v["rule"] == "wrong_start" for v in violations)),
        "num_teleports": float(sum(v["rule"] == "teleport" for v in violations)),
        "first_violation_frame": float(violations[0]["frame"]) if violations else -1.0,
    }


def _violation_reason(violation: dict) -> str:
    return f"{violation['rule']} at frame {violation['frame']}: {violation['detail']}"


def score_tangram_rules(instance, video, **options) -> Score:
    """The *rule* verdict on a tangram video, from ``instance.spec`` alone (never the
    stored solution): see the module docstring. Options (defaults in ``_DEFAULTS``):
    ``color_threshold``, ``min_iou``, ``min_area_ratio``, ``area_tolerance``,
    ``min_shape_iou``, ``min_inside``, ``start_tolerance``, ``max_jump_fraction``,
    ``min_jump_units``.

    Metrics: ``success`` (strict), ``success_lenient`` (the final frame alone, as
    VideoThinkBench judges a final image), ``silhouette_iou``, ``pieces_placed`` /
    ``pieces_placed_frac`` (pieces found whole and lying on the silhouette),
    ``pieces_missing``, ``pieces_shape_changed``, ``starts_right``, ``num_teleports``,
    ``first_violation_frame`` (-1 when none).
    """
    spec = instance.spec
    opts = {**_DEFAULTS, **options}
    video = _read_video(instance, video)
    if isinstance(video, Score):
        return video
    judged = _judge_rules(spec, video, opts)
    found, on, violations = judged["found"], judged["on_silhouette"], judged["violations"]
    final_ok = all(on.values()) and judged["iou"] >= opts["min_iou"]
    success = final_ok and not violations
    metrics = _verdict_metrics(spec, judged, success=success, final_ok=final_ok, placed=sum(on.values()))
    trace = _rule_trace(spec, judged, video)
    trace["pieces"] = {name: {k: (round(v, 3) if isinstance(v, float) else v) for k, v in e.items()}
                       for name, e in found.items()}
    if success:
        reason = ""
    elif violations:
        reason = _violation_reason(violations[0])
    else:
        off = [name for name, ok in on.items() if not ok]
        reason = "; ".join(f"{name} {_off_reason(found[name])}" for name in off) if off else \
            f"the pieces cover the silhouette with IoU {judged['iou']:.3f} < {opts['min_iou']}"
    return Score(success=bool(success), metrics=metrics, trace=trace, reason=reason)


def _off_reason(entry: dict) -> str:
    if entry["status"] == "missing":
        return "missing (its colour is not in the final frame)"
    if entry["status"] == "shape_changed":
        return f"changed shape (area ratio {entry['area_ratio']:.2f}, shape IoU {entry['shape_iou']:.2f})"
    return f"lies off the silhouette ({entry.get('inside', 0.0):.0%} of it on the gray shape)"


def score_tangram(instance, video, *, position_tolerance: float = 0.35, rotation_tolerance_deg: float = 12.0,
                  **options) -> Score:
    """The *reference* verdict on a tangram video: the rule checks of
    :func:`score_tangram_rules` plus every piece's pose on the final frame against the
    stored solution (see the module docstring).

    Metrics: ``success`` (strict: every rule kept and every piece placed),
    ``success_lenient`` (the final frame alone: every piece placed and the silhouette
    covered, whatever the motion), ``silhouette_iou``, ``pieces_placed`` (count) and
    ``pieces_placed_frac``, ``pieces_missing``, ``pieces_shape_changed``, ``starts_right``,
    ``num_teleports``, ``first_violation_frame``, ``mean_position_error`` /
    ``max_position_error`` (units, over pieces found; NaN when none),
    ``max_rotation_error_deg``, and per piece ``<name>_placed``, ``<name>_position_error``,
    ``<name>_rotation_error``. The trace lists every piece's estimate, errors and status,
    ``failed_pieces``, any swapped identical pieces, the per-frame piece positions and the
    rules broken.
    """
    spec = instance.spec
    opts = {**_DEFAULTS, **options}
    video = _read_video(instance, video)
    if isinstance(video, Score):
        return video
    judged = _judge_rules(spec, video, opts)
    targets = {p["piece"]: p for p in instance.solution["pieces"]}
    assigned = _assign_identical_pieces(spec, judged["found"], targets)
    poses = _judge_poses(spec, judged["found"], targets, assigned, position_tolerance=position_tolerance,
                         rotation_tolerance_deg=rotation_tolerance_deg)
    iou, violations, failed = judged["iou"], judged["violations"], poses["failed"]
    final_ok = poses["placed"] == len(spec["pieces"]) and iou >= opts["min_iou"]
    success = final_ok and not violations
    pos_errors, finite_rot = poses["position_errors"], [r for r in poses["rotation_errors"] if math.isfinite(r)]
    metrics = {**poses["metrics"], **_verdict_metrics(spec, judged, success=success, final_ok=final_ok,
                                                      placed=poses["placed"])}
    metrics.update({
        "mean_position_error": float(np.mean(pos_errors)) if pos_errors else math.nan,
        "max_position_error": float(np.max(pos_errors)) if pos_errors else math.nan,
        "max_rotation_error_deg": float(max(finite_rot)) if finite_rot else math.nan,
    })
    if success:
        reason = ""
    elif failed:
        reason = "; ".join(f"{name} {poses['pieces'][name]['why']}" for name in failed)
    elif not final_ok:
        reason = f"the pieces cover the silhouette with IoU {iou:.3f} < {opts['min_iou']}"
    else:
        reason = _violation_reason(violations[0])
    trace = _rule_trace(spec, judged, video)
    trace.update({"pieces": poses["pieces"], "failed_pieces": failed, "swapped": poses["swapped"]})
    return Score(success=bool(success), metrics=metrics, trace=trace, reason=reason)


def _pose_errors(piece: dict, entry: dict, target: dict, unit: float) -> tuple[float, float]:
    """A found piece's position error (units) and rotation error (degrees) against ``target``;
    infinite for a missing piece, and the rotation for a chiral piece on the wrong mirror side."""
    if entry["status"] == "missing":
        return math.inf, math.inf
    pos = math.hypot(entry["x"] - target["x"], entry["y"] - target["y"]) / unit
    rot = rotation_error(entry["rotation_deg"], target["rotation_deg"], piece["symmetry_deg"])
    if piece.get("chiral") and bool(entry["flip"]) != bool(target.get("flip", False)):
        rot = math.inf  # the mirror image cannot be reached by sliding and turning
    return pos, rot


def _assign_identical_pieces(spec: dict, found: dict, targets: dict) -> dict[str, str]:
    """Each piece's target: identical pieces may trade places, so each group of one shape
    takes its cheapest assignment (``position_error + rotation_error / 90``)."""
    unit = float(spec["unit_px"])
    by_shape: dict[str, list[dict]] = {}
    for piece in spec["pieces"]:
        by_shape.setdefault(piece["shape"], []).append(piece)
    assigned: dict[str, str] = {}
    for group in by_shape.values():
        names = [p["name"] for p in group]
        best = None
        for perm in permutations(names):
            cost = 0.0
            for piece, target_name in zip(group, perm):
                pos, rot = _pose_errors(piece, found[piece["name"]], targets[target_name], unit)
                cost += min(pos, 1e6) + min(rot, 1e6) / 90.0
            if best is None or cost < best[0] - 1e-9:
                best = (cost, perm)
        assigned.update(zip(names, best[1]))
    return assigned


def _judge_poses(spec: dict, found: dict, targets: dict, assigned: dict[str, str], *, position_tolerance: float,
                 rotation_tolerance_deg: float) -> dict:
    """Every piece's final pose against its assigned target: the per-piece metrics and
    trace entries, the pieces placed and failed, swapped pairs, and the errors of the
    pieces found."""
    unit = float(spec["unit_px"])
    metrics: dict[str, float] = {}
    trace_pieces, failed, swapped = {}, [], []
    pos_errors, rot_errors = [], []
    placed = 0
    for piece in spec["pieces"]:
        name = piece["name"]
        entry = found[name]
        target_name = assigned[name]
        if target_name != name:
            swapped.append([name, target_name])
        pos, rot = _pose_errors(piece, entry, targets[target_name], unit)
        ok = entry["status"] == "found" and pos <= position_tolerance and rot <= rotation_tolerance_deg
        if entry["status"] != "found" or ok:
            why = "" if ok else _off_reason(entry)
        else:
            why = (f"{pos:.2f} units and {rot:.1f} degrees from its place" if math.isfinite(rot)
                   else f"{pos:.2f} units from its place and mirrored")
        if entry["status"] != "missing":
            pos_errors.append(pos)
            rot_errors.append(rot)
        placed += ok
        if not ok:
            failed.append(name)
        metrics[f"{name}_placed"] = float(ok)
        metrics[f"{name}_position_error"] = pos if math.isfinite(pos) else math.nan
        metrics[f"{name}_rotation_error"] = rot if math.isfinite(rot) else math.nan
        trace_pieces[name] = {**{k: (round(v, 3) if isinstance(v, float) else v) for k, v in entry.items()},
                              "target": target_name, "position_error": pos if math.isfinite(pos) else None,
                              "rotation_error": rot if math.isfinite(rot) else None, "placed": ok, "why": why}
    return {"metrics": metrics, "pieces": trace_pieces, "failed": failed, "swapped": swapped, "placed": placed,
            "position_errors": pos_errors, "rotation_errors": rot_errors}
