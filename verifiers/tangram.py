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
(:func:`track_piece_centroids`). The piece finders live in
:mod:`gen_reason.verifiers.tangram_pieces`; this module holds the rules and the two verdicts.

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
from itertools import permutations

import cv2
import numpy as np

from gen_reason.errors import UserError
from gen_reason.verifiers.framing import frame_video
from gen_reason.verifiers.score import Score
from gen_reason.verifiers.tangram_pieces import (  # the piece finders, importable from here too
    _KERNEL3,
    _resize_to,
    _target_mask,
    estimate_pose,
    find_pieces,
    pose_window,
    rotation_error,
    segment_pieces,
    track_piece_centroids,
)
from gen_reason.verifiers.work import undo_brightness_drift
from gen_reason.video import as_video

__all__ = ["estimate_pose", "find_pieces", "motion_violations", "pose_window", "rotation_error", "score_tangram",
           "score_tangram_rules", "segment_pieces", "start_violations", "track_piece_centroids"]


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
    final = undo_brightness_drift(np.stack([_resize_to(video[0], (h, w)), _resize_to(video[-1], (h, w))]))[0][1]
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


def _read_and_judge(instance, video, opts: dict):
    """``(video, judged rules)`` for both verdicts: the video located and read as the
    referee reads it, then the spec-only rule checks; ``(failure Score, None)`` when the
    video cannot be judged."""
    video = _read_video(instance, video)
    if isinstance(video, Score):
        return video, None
    return video, _judge_rules(instance.spec, video, opts)


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
    spec, opts = instance.spec, {**_DEFAULTS, **options}
    video, judged = _read_and_judge(instance, video, opts)
    if judged is None:
        return video
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
    spec, opts = instance.spec, {**_DEFAULTS, **options}
    video, judged = _read_and_judge(instance, video, opts)
    if judged is None:
        return video
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
