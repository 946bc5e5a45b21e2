"""Finding tangram pieces in frames, for the tangram referee (:mod:`gen_reason.verifiers.tangram`,
whose docstring gives the method): every pixel labelled by its nearest piece colour, each
piece's mask, its pose (centroid, rotation, mirror side, ``shape_iou``), its presence and
shape (:func:`find_pieces`), and every piece's centroid in every frame
(:func:`track_piece_centroids`)."""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

from gen_reason.puzzles.tangram import rasterize
from gen_reason.verifiers.parallel import map_chunks
from gen_reason.verifiers.work import undo_brightness_drift

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
        q = undo_brightness_drift(np.concatenate([first, _every_fth_pixel(video[lo:hi], f)]))[0][1:]
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
