"""The pixel referee of ``tangram``: find every piece by its colour and compare its pose.

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
4. **Errors against the target pose** (the stored solution: this is a *reference*
   metric): ``position_error = |centroid - target| / unit_px`` (piece units, the classic
   square being 4 units a side); ``rotation_error = min(d, sym - d)`` with ``d = (angle -
   target) mod sym`` and ``sym`` the piece's symmetry (360 triangles, 90 square, 180
   parallelogram); a parallelogram on the wrong mirror side fails. Identical pieces (the
   two large, the two small triangles) may swap places: each pair takes the assignment
   with the smaller summed cost ``position_error + rotation_error / 90``.
5. **Silhouette IoU**: the union of all pixels labelled as any piece (closed 3x3, to
   fill the seams between pieces) against the target silhouette rasterised on the canvas.

A piece is *placed* when present, unchanged in shape, ``position_error <=
position_tolerance`` and ``rotation_error <= rotation_tolerance_deg`` (right mirror
side). ``success`` = all seven placed and ``silhouette_iou >= min_iou``.
"""

from __future__ import annotations

import math
from itertools import permutations

import cv2
import numpy as np

from gen_reason.puzzles.tangram import piece_vertices, rasterize
from gen_reason.verifiers.score import Score
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
                min_shape_iou: float = 0.7) -> dict[str, dict]:
    """Every piece of ``spec`` in a segmentation (:func:`segment_pieces`): its
    ``area_ratio``, ``status`` (``missing``, ``shape_changed`` or ``found``, see the
    module docstring) and, unless missing, its pose (:func:`estimate_pose`), by name."""
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
        found[piece["name"]] = entry
    return found


def score_tangram(instance, video, *, color_threshold: float = 60.0, position_tolerance: float = 0.35,
                  rotation_tolerance_deg: float = 12.0, min_iou: float = 0.9, min_area_ratio: float = 0.3,
                  area_tolerance: float = 0.3, min_shape_iou: float = 0.7) -> Score:
    """Score a tangram video on its final frame, piece by piece (see the module docstring).

    Metrics: ``success``, ``silhouette_iou``, ``pieces_placed`` (count) and
    ``pieces_placed_frac``, ``pieces_missing``, ``pieces_shape_changed``,
    ``mean_position_error`` / ``max_position_error`` (units, over pieces found; NaN when
    none), ``max_rotation_error_deg``, and per piece ``<name>_placed``,
    ``<name>_position_error``, ``<name>_rotation_error``. The trace lists every piece's
    estimate, errors and status, ``failed_pieces`` and any swapped identical pieces.
    """
    spec = instance.spec
    try:
        video = as_video(video)
    except ValueError as exc:
        return Score.failure(str(exc), success=0.0)
    h, w = spec["image_size"]
    frame = _resize_to(video[-1], (h, w))
    unit = float(spec["unit_px"])
    labels = segment_pieces(spec, frame, color_threshold)
    targets = {p["piece"]: p for p in instance.solution["pieces"]}

    found = find_pieces(spec, labels, min_area_ratio=min_area_ratio, area_tolerance=area_tolerance,
                        min_shape_iou=min_shape_iou)

    def errors(piece: dict, entry: dict, target: dict) -> tuple[float, float]:
        if entry["status"] == "missing":
            return math.inf, math.inf
        pos = math.hypot(entry["x"] - target["x"], entry["y"] - target["y"]) / unit
        rot = rotation_error(entry["rotation_deg"], target["rotation_deg"], piece["symmetry_deg"])
        if piece.get("chiral") and bool(entry["flip"]) != bool(target.get("flip", False)):
            rot = math.inf  # the mirror image cannot be reached by sliding and turning
        return pos, rot

    # Identical pieces may trade places: pick each group's cheapest assignment.
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
                pos, rot = errors(piece, found[piece["name"]], targets[target_name])
                cost += min(pos, 1e6) + min(rot, 1e6) / 90.0
            if best is None or cost < best[0] - 1e-9:
                best = (cost, perm)
        assigned.update(zip(names, best[1]))

    metrics: dict[str, float] = {}
    trace_pieces, failed, swapped = {}, [], []
    pos_errors, rot_errors = [], []
    placed = missing = changed = 0
    for piece in spec["pieces"]:
        name = piece["name"]
        entry = found[name]
        target_name = assigned[name]
        if target_name != name:
            swapped.append([name, target_name])
        pos, rot = errors(piece, entry, targets[target_name])
        ok = entry["status"] == "found" and pos <= position_tolerance and rot <= rotation_tolerance_deg
        if entry["status"] == "missing":
            missing += 1
            why = "missing (its colour is not in the final frame)"
        elif entry["status"] == "shape_changed":
            changed += 1
            why = f"changed shape (area ratio {entry['area_ratio']:.2f}, shape IoU {entry['shape_iou']:.2f})"
        elif not ok:
            why = (f"{pos:.2f} units and {rot:.1f} degrees from its place" if math.isfinite(rot)
                   else f"{pos:.2f} units from its place and mirrored")
        else:
            why = ""
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

    union = cv2.morphologyEx((labels >= 0).astype(np.uint8), cv2.MORPH_CLOSE, _KERNEL3).astype(bool)
    target_mask = rasterize(spec["target"]["polygons"], (h, w))
    total = np.count_nonzero(union | target_mask)
    iou = np.count_nonzero(union & target_mask) / total if total else 0.0
    n = len(spec["pieces"])
    success = placed == n and iou >= min_iou
    finite_rot = [r for r in rot_errors if math.isfinite(r)]
    metrics.update({
        "success": float(success),
        "silhouette_iou": float(iou),
        "pieces_placed": float(placed),
        "pieces_placed_frac": placed / n,
        "pieces_missing": float(missing),
        "pieces_shape_changed": float(changed),
        "mean_position_error": float(np.mean(pos_errors)) if pos_errors else math.nan,
        "max_position_error": float(np.max(pos_errors)) if pos_errors else math.nan,
        "max_rotation_error_deg": float(max(finite_rot)) if finite_rot else math.nan,
    })
    if success:
        reason = ""
    elif failed:
        reason = "; ".join(f"{name} {trace_pieces[name]['why']}" for name in failed)
    else:
        reason = f"the pieces cover the silhouette with IoU {iou:.3f} < {min_iou}"
    trace = {"pieces": trace_pieces, "failed_pieces": failed, "swapped": swapped,
             "silhouette_iou": float(iou), "frame_size": list(video.shape[1:3])}
    return Score(success=bool(success), metrics=metrics, trace=trace, reason=reason)
