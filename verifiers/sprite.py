"""Follow an object by its frame-0 picture: a sprite with no colour of its own (maze family).

An object whose spec says ``"track": "sprite"`` (a textured sprite every colour of which
also paints the scene, e.g. some VR-Bench skins) cannot be found by colour
(:mod:`.colours`): :func:`follow_sprite` matches its frame-0 picture (normalised
cross-correlation) near its last place, else over the whole frame, on the sprite's own
pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from gen_reason.verifiers.tracked import ObjectTrack, lost_events
from gen_reason.verifiers.work import WORK_SPRITE_PX, WorkVideo


def follow_sprite(frames: np.ndarray, start_w: np.ndarray, size_w: float, step_w: float, work: WorkVideo,
                  name: str, events: list[dict], threshold: float = 0.5) -> ObjectTrack:
    """Follow an object by its frame-0 image, for a sprite that has no colour of its own
    (every colour of it also paints the scene: ``spec[...]["track"] == "sprite"``).

    The template is the object's frame-0 patch; where the last frame shows the start
    without the object, only the pixels that differ there (the sprite, not the floor
    under it) are compared, so the sprite is still found over other floor (a goal).
    Each frame is searched near the last place, and whole when that finds nothing
    (normalised cross-correlation), so any speed is found; the best match counts when it
    scores at least ``threshold`` and lies where the frame differs from frame 0, or on
    the object's start. A sprite wider than ``WORK_SPRITE_PX`` is matched on a copy
    shrunk to that width (the same verdicts, a fraction of the cost).
    """
    shrink_by = int(size_w // WORK_SPRITE_PX)
    if shrink_by > 1:
        return _follow_shrunk(frames, start_w, size_w, step_w, work, name, events, threshold, shrink_by)
    return _follow_picture(frames, start_w, size_w, step_w, work, name, events, threshold)


def _follow_shrunk(frames: np.ndarray, start_w: np.ndarray, size_w: float, step_w: float, work: WorkVideo,
                   name: str, events: list[dict], threshold: float, shrink_by: int) -> ObjectTrack:
    """:func:`_follow_picture` on the frames shrunk ``shrink_by`` times, positions back in spec pixels."""
    small = np.stack([cv2.resize(f, None, fx=1 / shrink_by, fy=1 / shrink_by, interpolation=cv2.INTER_AREA)
                      for f in frames])
    to_small = (np.asarray(start_w, float) - (shrink_by - 1) / 2) / shrink_by
    inner = WorkVideo(frames=small, scale=work.scale, source_size=work.source_size)
    found = _follow_picture(small, to_small, size_w / shrink_by, step_w / shrink_by, inner, name, events, threshold)
    # Back to working pixels: a small pixel's centre i is working pixel shrink_by * i + (shrink_by - 1) / 2.
    small_xy = inner.to_work(found.positions)
    found.positions = work.to_spec(small_xy * shrink_by + (shrink_by - 1) / 2)
    return found


def _follow_picture(frames: np.ndarray, start_w: np.ndarray, size_w: float, step_w: float, work: WorkVideo,
                    name: str, events: list[dict], threshold: float) -> ObjectTrack:
    """The search of :func:`follow_sprite` at the frames' own size (positions in the spec
    pixels of ``work``); notes where the object is not found at its start, or lost."""
    t, h, w = frames.shape[:3]
    template, mask, centre, start_tl = _sprite_template(frames, start_w, size_w)
    th, tw = template.shape[:2]
    positions = np.full((t, 2), np.nan)
    confidence = np.zeros(t)
    source = ["lost"] * t
    if th < 3 or tw < 3 or th >= h or tw >= w:
        events.append({"frame": 0, "kind": "not_found_at_start", "object": name})
        return ObjectTrack(positions=work.to_spec(positions), confidence=confidence,
                           duplicated=np.zeros(t, bool), source=source, area0=float(th * tw))
    # Near the last place first (within a step, or 3 times the fastest move so far over
    # the frames since), the whole frame when that finds nothing: any speed, at the cost
    # of a small window on most frames.
    prev, prev_k, fastest = start_tl, 0, 0.0
    for k in range(t):
        reach = max(1.0 * step_w, 3.0 * fastest * (k - prev_k))
        best, corner = _best_match(frames, k, prev - reach, prev + reach + 1, template, mask, start_tl, step_w)
        if best < threshold:
            best, corner = _best_match(frames, k, np.zeros(2), np.array([w, h], float), template, mask, start_tl,
                                       step_w)
        if best >= threshold:
            positions[k] = corner + centre
            confidence[k] = best
            source[k] = "template"
            if k > prev_k:
                fastest = max(fastest, float(np.hypot(*(corner - prev))) / (k - prev_k))
            prev, prev_k = corner, k
    if np.isnan(positions[0, 0]):
        events.append({"frame": 0, "kind": "not_found_at_start", "object": name})
    positions = work.to_spec(positions)
    events += lost_events(name, positions)
    return ObjectTrack(positions=positions, confidence=confidence, duplicated=np.zeros(t, bool), source=source,
                       area0=float(th * tw))


def _sprite_template(frames: np.ndarray, start_w: np.ndarray,
                     size_w: float) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """The object's frame-0 patch, the mask of its own pixels (``None``: all of them; where
    the last frame shows the start without the object, the pixels that differ there),
    the start within the patch and the patch's top-left corner."""
    h, w = frames.shape[1:3]
    r = max(2, int(np.ceil(0.5 * size_w)))
    x, y = int(round(start_w[0])), int(round(start_w[1]))
    x0, y0, x1, y1 = max(0, x - r), max(0, y - r), min(w, x + r + 1), min(h, y + r + 1)
    template = np.ascontiguousarray(frames[0, y0:y1, x0:x1])
    centre = np.array([x - x0, y - y0], float)  # the start within the template
    changed = np.abs(template.astype(np.int16) - frames[-1, y0:y1, x0:x1].astype(np.int16)).max(-1) > 40
    mask = None
    if changed.mean() >= 0.2:  # the object left its start: compare the sprite's own pixels
        mask = cv2.dilate(changed.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)
    return template, mask, centre, np.array([x0, y0], float)


def _best_match(frames: np.ndarray, k: int, lo: np.ndarray, hi: np.ndarray, template: np.ndarray,
                mask: np.ndarray | None, start_tl: np.ndarray, step_w: float) -> tuple[float, np.ndarray]:
    """Best gated match of frame ``k`` with its top-left corner in ``[lo, hi)``: its score
    (-1 when the window cannot hold the template) and that corner. Past frame 0 a match
    counts only where the frame differs from frame 0 or on the object's start."""
    h, w = frames.shape[1:3]
    th, tw = template.shape[:2]
    wx0, wy0 = int(max(0, lo[0])), int(max(0, lo[1]))
    wx1, wy1 = int(min(w, hi[0] + tw)), int(min(h, hi[1] + th))
    if wx1 - wx0 < tw or wy1 - wy0 < th:
        return -1.0, start_tl
    window = frames[k, wy0:wy1, wx0:wx1]
    scores = cv2.matchTemplate(window, template, cv2.TM_CCOEFF_NORMED, mask=mask)
    scores = np.nan_to_num(scores, nan=-1.0, posinf=-1.0, neginf=-1.0)
    if k:
        moved = (np.abs(window.astype(np.int16) - frames[0, wy0:wy1, wx0:wx1].astype(np.int16)).max(-1)
                 > 40).astype(np.float32)
        moved_frac = cv2.boxFilter(moved, -1, (tw, th), normalize=True, anchor=(0, 0),
                                   borderType=cv2.BORDER_CONSTANT)[: scores.shape[0], : scores.shape[1]]
        ys, xs = np.mgrid[0: scores.shape[0], 0: scores.shape[1]]
        at_start = np.hypot(xs + wx0 - start_tl[0], ys + wy0 - start_tl[1]) <= 0.3 * step_w
        scores = np.where((moved_frac > 0.15) | at_start, scores, -1.0)
    j = int(np.argmax(scores))
    yy, xx = divmod(j, scores.shape[1])
    return float(scores.flat[j]), np.array([wx0 + xx, wy0 + yy], float)
