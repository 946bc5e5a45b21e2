"""The pixel referee of ``maze/draw``: VideoThinkBench's draw-the-path rules, on video.

VideoThinkBench judges a draw-the-path maze image by three rules over two masks:

- red pixels: ``R >= 150`` and ``R - max(G, B) >= 70``;
- wall pixels: max channel ``<= 40``;
- pass = no red on a wall, red touches both dots, and the red is connected.

Here the wall mask is not thresholded from the (possibly compressed, blurred, repainted)
video but redrawn from ``spec["draw"]["walls"]`` at the video's resolution, thinned by
``wall_tolerance_px`` on each side so colour bleeding at a wall's edge (H.264 chroma
subsampling, resizing) is not mistaken for a crossing; a line that crosses a wall still
covers its core. Rules on the final frame:

- ``wall_touch_px``: red pixels on the wall core; must be ``<= max_wall_touch_px``;
- ``touches_start`` / ``touches_end``: a red component that covers the dot's core (the
  inner ``dot_core`` fraction of its radius) also reaches beyond the dot's halo (radius
  + line width + 2 px, scaled), i.e. a stroke *leaves* the dot: the red dots themselves
  never count as a path;
- ``connected``: one red component (after a 3x3 closing that bridges 1-2 px compression
  gaps, far thinner than a wall) covers both dot cores.

And on the sequence (``score_draw`` only), each frame ``t`` in order:

- red never on the wall core (the same ``max_wall_touch_px``);
- the path is drawn, not pasted (``drawn_at_once``): no frame adds more than
  ``max_jump_fraction`` of all the red the video adds (judged when that is at least
  two cells of line);
- drawn red stays: ``erased_px[t]`` = pixels of the union of all earlier red masks
  (eroded by 1 px, so only stroke interiors count) that are no longer red in frame ``t``
  (dilated by 1 px); a violation when ``erased_px[t] > max(erase_min_px, erase_fraction
  * |union|)``. ``first_violation_frame`` is the first frame breaking either rule (-1
  when none).

``success`` = final-frame pass and no sequence violation; ``success_lenient`` = the
final-frame pass alone (VideoThinkBench's verdict). This is a *rule* verifier: it
reads only ``spec`` (dots, walls, widths), never the stored solution.

Robustness (checked in the tests at the default ``cell_px`` 32, all three shapes):
ground-truth videos pass raw, after H.264 at crf 35, after a 0.5x down-and-up resize and
at other resolutions. Below ``cell_px`` ~24 the gap between the line and a hexagon
door's corners shrinks to ~2 px and crf-35 chroma bleeding can reach a wall core; raise
``wall_tolerance_px`` or ``max_wall_touch_px`` for such tiny mazes.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from gen_reason.errors import UserError
from gen_reason.puzzles.maze.draw import draw_walls
from gen_reason.verifiers.framing import frame_video
from gen_reason.verifiers.parallel import map_chunks
from gen_reason.verifiers.score import Score
from gen_reason.verifiers.work import undo_brightness_drift
from gen_reason.video import as_video

RED_MIN = 150  # VideoThinkBench: R >= 150
RED_MARGIN = 70  # VideoThinkBench: R - max(G, B) >= 70
WALL_MAX = 40  # VideoThinkBench: a wall pixel's max channel <= 40
_KERNEL3 = np.ones((3, 3), np.uint8)
_RED_TERMS = np.array([[1, -1, 0], [1, 0, -1], [1, 0, 0]], np.float32)  # RGB -> (r - g, r - b, r)


def red_mask(frames: np.ndarray, red_min: int = RED_MIN, red_margin: int = RED_MARGIN) -> np.ndarray:
    """VideoThinkBench's red test on ``(..., H, W, 3)`` RGB pixels -> boolean mask ``(..., H, W)``."""
    frames = np.asarray(frames)
    if frames.dtype == np.uint8 and frames.ndim >= 3 and red_margin >= 1:
        # OpenCV on the interleaved uint8 pixels, all frames as one tall image: one
        # cv2.transform gives (r - g, r - b, r) saturated to [0, 255], one cv2.inRange tests
        # all three (~2x the split-plane version, ~10x numpy). A saturated difference is 0
        # where the true one is negative, which fails ``>= red_margin`` as the true one
        # does (red_margin >= 1).
        shape = frames.shape[:-1]
        tall = np.ascontiguousarray(frames).reshape(-1, frames.shape[-2], 3)
        inside = cv2.inRange(cv2.transform(tall, _RED_TERMS), (red_margin, red_margin, red_min), (255, 255, 255))
        return cv2.threshold(inside, 0, 1, cv2.THRESH_BINARY)[1].view(bool).reshape(shape)
    r = frames[..., 0].astype(np.int32)
    gb = np.maximum(frames[..., 1], frames[..., 2]).astype(np.int32)
    return (r >= red_min) & (r - gb >= red_margin)


class _Chunk(NamedTuple):
    """What :func:`score_draw` finds in one chunk of frames (uint8 0/1 planes)."""

    reds: np.ndarray        # (n, H, W) red masks
    eroded: np.ndarray      # (n, H, W) the same, eroded 3x3
    wall_touch: list[int]   # red pixels on the wall core, per frame
    red_px: list[int]       # red pixels, per frame
    added: np.ndarray       # (H, W) union of the chunk's eroded masks


def _morph_frames(masks: np.ndarray, op, border: bool) -> np.ndarray:
    """``op`` (``cv2.erode`` or ``cv2.dilate``, 3x3) on every ``(T, H, W)`` boolean frame,
    as one OpenCV call on a tall image: a separator row of ``border`` (True for erosion,
    False for dilation: the value that leaves a neighbour unchanged, as OpenCV's own
    border does) keeps the frames from touching, so each result equals the per-frame call."""
    t, h, w = masks.shape
    tall = np.empty((t, h + 1, w), np.uint8)
    tall[:, :h] = masks
    tall[:, h] = 1 if border else 0
    out = op(tall.reshape(t * (h + 1), w), _KERNEL3)
    return out.reshape(t, h + 1, w)[:, :h].view(bool)


def wall_core_mask(spec: dict, size: tuple[int, int], wall_tolerance_px: float = 1.0) -> np.ndarray:
    """The walls of ``spec`` drawn at image ``size`` (H, W), thinned by ``wall_tolerance_px`` a side.

    Never thinner than 1 px, so every wall keeps a core a crossing line must cover.
    """
    h, w = size
    h0, w0 = spec["image_size"]
    sx, sy = w / w0, h / h0
    draw = spec["draw"]
    thickness = max(1.0, draw["wall_px"] * (sx * sy) ** 0.5 - 2 * wall_tolerance_px)
    mask = np.zeros((h, w), np.uint8)
    draw_walls(mask, draw["walls"], thickness, 1, antialias=False, scale=(sx, sy))
    return mask.astype(bool)


def _disc(size: tuple[int, int], center, radius: float) -> np.ndarray:
    mask = np.zeros(size, np.uint8)
    cv2.circle(mask, (int(round(center[0] * 16)), int(round(center[1] * 16))), max(1, int(round(radius * 16))), 1,
               -1, cv2.LINE_8, 4)
    return mask.astype(bool)


def _final_frame_rules(spec: dict, red: np.ndarray, wall_core: np.ndarray, *, dot_core: float,
                       max_wall_touch_px: int) -> dict:
    """Evaluate VideoThinkBench's three rules on one red mask; returns metrics and evidence."""
    h, w = red.shape
    h0, w0 = spec["image_size"]
    sx, sy = w / w0, h / h0
    s = (sx * sy) ** 0.5
    draw = spec["draw"]
    closed = cv2.morphologyEx(red.astype(np.uint8), cv2.MORPH_CLOSE, _KERNEL3)
    num, labels, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    halo_r = (draw["dot_radius"] + draw["line_width"]) * s + 2
    touches, dot_labels = [], []
    for x, y in draw["dots"]:
        center = (x * sx, y * sy)
        core = _disc((h, w), center, draw["dot_radius"] * s * dot_core)
        labs = sorted(set(np.unique(labels[core & (closed > 0)]).tolist()) - {0})
        outside = ~_disc((h, w), center, halo_r)
        leaves = any(bool(np.any((labels == lab) & outside)) for lab in labs)
        touches.append(leaves)
        dot_labels.append(labs)
    connected = bool(set(dot_labels[0]) & set(dot_labels[1]))
    wall_touch = int(np.count_nonzero(red & wall_core))
    min_blob = max(4, int(round(draw["line_width"] * s)) ** 2)
    components = int(np.sum(stats[1:, cv2.CC_STAT_AREA] >= min_blob)) if num > 1 else 0
    return {
        "touches_start": touches[0],
        "touches_end": touches[1],
        "connected": connected,
        "wall_touch_px": wall_touch,
        "walls_ok": wall_touch <= max_wall_touch_px,
        "red_px": int(np.count_nonzero(red)),
        "red_components": components,
    }


def _reason(final: dict, violation: dict | None) -> str:
    if violation is not None:
        return violation["message"]
    if not final["walls_ok"]:
        return f"the red path touches a wall ({final['wall_touch_px']} px on walls)"
    if not final["touches_start"] and not final["touches_end"]:
        return "no red path leaves either dot"
    if not final["touches_start"]:
        return "the red path does not reach the start dot"
    if not final["touches_end"]:
        return "the red path does not reach the end dot"
    if not final["connected"]:
        return "the red path is broken: the two dots are not connected"
    return ""


def _final_ok(final: dict) -> bool:
    """VideoThinkBench's verdict on the final frame: no red on walls, red leaves and joins both dots."""
    return bool(final["walls_ok"] and final["touches_start"] and final["touches_end"] and final["connected"])


def _final_metrics(final: dict) -> dict[str, float]:
    """The final-frame rules as metrics, in the order both scorers report them."""
    return {"touches_start": float(final["touches_start"]), "touches_end": float(final["touches_end"]),
            "connected": float(final["connected"]), "wall_touch_px": float(final["wall_touch_px"])}


def score_draw_image(spec, image: np.ndarray, *, red_min: int = RED_MIN, red_margin: int = RED_MARGIN,
                     wall_tolerance_px: float = 1.0, max_wall_touch_px: int = 0, dot_core: float = 0.6) -> Score:
    """Judge one final image (VideoThinkBench style): no red on walls, red touches and joins both dots.

    ``spec`` is a ``maze/draw`` spec (or an Instance). The image may have any resolution:
    the dots and walls are scaled to it. Metrics: ``success``, ``touches_start``,
    ``touches_end``, ``connected``, ``wall_touch_px``, ``red_px``, ``red_components``.
    """
    spec = getattr(spec, "spec", spec)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        return Score.failure(f"an image must have shape (H, W, 3); got {image.shape}", success=0.0)
    image = as_video(image[None])[0]
    wall_core = wall_core_mask(spec, image.shape[:2], wall_tolerance_px)
    final = _final_frame_rules(spec, red_mask(image, red_min, red_margin), wall_core, dot_core=dot_core,
                               max_wall_touch_px=max_wall_touch_px)
    success = _final_ok(final)
    metrics = {"success": float(success), **_final_metrics(final),
               "red_px": float(final["red_px"]), "red_components": float(final["red_components"])}
    return Score(success=success, metrics=metrics, trace={"final": final}, reason=_reason(final, None))


def score_draw(instance_or_spec, video, *, red_min: int = RED_MIN, red_margin: int = RED_MARGIN,
               wall_tolerance_px: float = 1.0, max_wall_touch_px: int = 0, dot_core: float = 0.6,
               erase_fraction: float = 0.05, erase_min_px: float | None = None,
               max_jump_fraction: float = 0.5) -> Score:
    """Judge a ``maze/draw`` video on its final frame and on the whole sequence.

    Final frame: VideoThinkBench's rules (see the module docstring). Sequence: red is
    never on a wall core in any frame, red once drawn stays (``erased_px`` above
    ``max(erase_min_px, erase_fraction * drawn area)`` is a violation; ``erase_min_px``
    defaults to two squared line widths at the video's scale), and the path is drawn, not
    pasted: no frame adds more than ``max_jump_fraction`` of the red the whole video adds
    (``drawn_at_once``; at any speed a path drawn over two frames or more passes).
    ``success`` is strict (final frame and sequence); ``success_lenient`` is
    VideoThinkBench's verdict on the final frame alone.

    Metrics: ``success``, ``touches_start``, ``touches_end``, ``connected`` (0/1),
    ``wall_touch_px`` (final frame), ``max_wall_touch_px`` (over all frames),
    ``max_erased_px``, ``max_drawn_in_one_frame`` (the largest share of the path's red
    that one frame adds), ``first_violation_frame`` (-1 when the sequence breaks no rule),
    ``red_px``, ``red_components`` (components of at least a line width squared; a clean
    answer has 1). The trace holds the per-frame wall-touch, erased and red counts, the
    first rule broken and the final-frame evidence.
    """
    spec = getattr(instance_or_spec, "spec", instance_or_spec)
    try:
        video = _read_video(instance_or_spec, video)
    except (ValueError, UserError) as exc:
        return Score.failure(f"cannot judge the video: {exc}", success=0.0, success_lenient=0.0)
    t_count, h, w = video.shape[:3]
    h0, w0 = spec["image_size"]
    s = ((w / w0) * (h / h0)) ** 0.5  # the video's scale against the puzzle's
    if erase_min_px is None:
        erase_min_px = 2.0 * (spec["draw"]["line_width"] * s) ** 2
    wall_core = wall_core_mask(spec, (h, w), wall_tolerance_px)
    parts = _measure_frames(video, wall_core, red_min, red_margin)
    wall_touch = [n for part in parts for n in part.wall_touch]
    red_px = [n for part in parts for n in part.red_px]
    erased, too_many = _erased_px(parts, erase_min_px, erase_fraction)
    jump_share = _jump_shares(spec, red_px, s)
    violation = _first_violation(jump_share, wall_touch, erased, too_many, max_jump_fraction=max_jump_fraction,
                                 max_wall_touch_px=max_wall_touch_px)
    final = _final_frame_rules(spec, parts[-1].reds.view(bool)[-1], wall_core, dot_core=dot_core,
                               max_wall_touch_px=max_wall_touch_px)
    final_ok = _final_ok(final)
    success = bool(final_ok and violation is None)
    metrics = {
        "success": float(success),
        "success_lenient": float(final_ok),
        **_final_metrics(final),
        "max_wall_touch_px": float(max(wall_touch)),
        "max_erased_px": float(max(erased)),
        "max_drawn_in_one_frame": float(jump_share.max()),
        "first_violation_frame": float(violation["frame"]) if violation else -1.0,
        "red_px": float(final["red_px"]),
        "red_components": float(final["red_components"]),
    }
    trace = {"wall_touch_px": wall_touch, "erased_px": erased, "red_px": red_px, "first_violation": violation,
             "final": final}
    return Score(success=success, metrics=metrics, trace=trace, reason=_reason(final, violation))


def _read_video(instance_or_spec, video) -> np.ndarray:
    """The video as uint8 frames: the puzzle's part of a stretched or letterboxed one (given
    an instance), with any brightness drift undone against frame 0. Raises ``ValueError`` /
    :class:`UserError` for a video that cannot be judged."""
    video = as_video(video)
    if hasattr(instance_or_spec, "first_frame"):
        video = frame_video(instance_or_spec, video)
    # Frames that darken (or brighten) as a whole keep their red: drift undone against frame 0,
    # looked for in every frame only when the last frame shows some (drift builds up).
    if len(video) > 1 and np.any(undo_brightness_drift(video[[0, -1]])[1] != 1.0):
        video, _ = undo_brightness_drift(video)
    return video


def _measure_frames(video: np.ndarray, wall_core: np.ndarray, red_min: int, red_margin: int) -> list[_Chunk]:
    """Per frame, in one chunk of frames per core (OpenCV on uint8 planes, the chunk's
    frames as one tall image for the red test and the erosion): red on the wall core,
    red pixels, and what each frame adds to the drawn area."""
    core = wall_core.view(np.uint8)

    def masks(lo: int, hi: int) -> _Chunk:
        reds = red_mask(video[lo:hi], red_min, red_margin).view(np.uint8)
        eroded = _morph_frames(reds.view(bool), cv2.erode, True).view(np.uint8)
        touch = [cv2.countNonZero(cv2.bitwise_and(red, core)) for red in reds]
        count = [cv2.countNonZero(red) for red in reds]
        added = eroded[0].copy()
        for mask in eroded[1:]:
            cv2.bitwise_or(added, mask, dst=added)
        return _Chunk(reds, eroded, touch, count, added)

    return map_chunks(masks, len(video))


def _erased_px(parts: list[_Chunk], erase_min_px: float, erase_fraction: float) -> tuple[list[int], list[bool]]:
    """Drawn red stays: per frame, the pixels drawn before it and no longer red, and whether
    that many break the rule.

    Each chunk starts from what the chunks before it drew, so the chunks run side by side
    again. Only pixels drawn and not red now can be erased, so the dilation runs only for
    frames that have some (rarely, as red stays); the drawn area is counted only when the
    erased pixels exceed ``erase_min_px`` (below it there is no violation whatever the area).
    """
    starts = [parts[0].eroded[0]]
    for part in parts[:-1]:
        starts.append(cv2.bitwise_or(starts[-1], part.added))

    def erased_in(i: int) -> tuple[list[int], list[bool]]:
        reds, eroded = parts[i].reds, parts[i].eroded
        drawn = starts[i].copy()
        lost_px, too_many = [], []
        for k in range(0 if i else 1, len(reds)):
            missing = cv2.subtract(drawn, reds[k])
            lost = 0
            if cv2.countNonZero(missing):
                lost = cv2.countNonZero(cv2.subtract(missing, cv2.dilate(reds[k], _KERNEL3)))
            lost_px.append(lost)
            too_many.append(lost > erase_min_px and lost > erase_fraction * cv2.countNonZero(drawn))
            cv2.bitwise_or(drawn, eroded[k], dst=drawn)
        return lost_px, too_many

    runs = map_chunks(lambda lo, hi: [erased_in(i) for i in range(lo, hi)], len(parts), min_size=1)
    erased, too_many = [0], [False]
    for lost_px, flags in (run for chunk in runs for run in chunk):
        erased += lost_px
        too_many += flags
    return erased, too_many


def _jump_shares(spec: dict, red_px: list[int], s: float) -> np.ndarray:
    """Drawn, not pasted: the share of all the red the video adds that each frame adds
    (beyond the most red any earlier frame showed, so compression flicker adds nothing);
    zeros unless the video adds at least two cells of line (a lone moving dot is the erase
    rule's business, not a pasted path). ``s``: the video's scale against the puzzle's."""
    added = np.diff(np.maximum.accumulate(np.asarray(red_px, float)), prepend=float(red_px[0]))
    path_px = float(added.sum())
    line = spec["draw"]["line_width"] * s
    min_path_px = 2.0 * float(spec.get("step_px", 4 * spec["draw"]["line_width"])) * s * line
    return added / path_px if path_px >= min_path_px else np.zeros(len(red_px))


def _first_violation(jump_share: np.ndarray, wall_touch: list[int], erased: list[int], too_many: list[bool], *,
                     max_jump_fraction: float, max_wall_touch_px: int) -> dict | None:
    """The first frame that pastes the path, puts red on a wall or erases drawn red (``None``: none)."""
    for t in range(len(wall_touch)):
        if jump_share[t] > max_jump_fraction:
            return {"frame": t, "rule": "drawn_at_once",
                    "message": f"{jump_share[t]:.0%} of the path appears at once in frame {t}: "
                               "a path must be drawn, not pasted"}
        if wall_touch[t] > max_wall_touch_px:
            return {"frame": t, "rule": "wall", "message": f"red on a wall in frame {t} ({wall_touch[t]} px)"}
        if too_many[t]:
            return {"frame": t, "rule": "erased",
                    "message": f"drawn red disappears in frame {t} ({erased[t]} px erased)"}
    return None
