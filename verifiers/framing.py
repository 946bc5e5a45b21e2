"""Find the puzzle in a video of another shape: stretched to the model's frame, letterboxed
on bars, or inside bars of another size.

A model of another aspect ratio returns the puzzle either stretched over its whole frame
or letterboxed (:func:`gen_reason.video.letterbox`); a video passed through other tools may
carry bars of any width. :func:`frame_video` tries each placement on the video's first
frame against the instance's own first frame (the puzzle picture, not its answer: rule
verifiers may use it) and crops the video to the best one:

- ``stretched``: the whole frame;
- ``letterboxed``: the puzzle scaled to fit and centred;
- ``bars``: the puzzle at its own aspect ratio at any scale and place (bars of any
  colour and width, centred or not), found by template matching when neither placement
  above matches well.

The match is the normalised cross-correlation of the two pictures in gray at a common
small size (robust to compression, blur, noise and colour shifts). A video whose best
placement matches under ``min_match`` cannot be judged, and :class:`UserError` says so in
one line. A video of the puzzle's own aspect ratio (within ``tolerance``) is used as it is.
A crop still stretched more than :data:`MAX_STRETCH` either way is resized to the puzzle's
aspect ratio, so every tracker gets a picture it can read. Last, a first frame showing the
puzzle moved by a few pixels (a camera shift) is moved back, the whole video with it.
"""

from __future__ import annotations

import cv2
import numpy as np

from gen_reason.errors import UserError
from gen_reason.video import letterbox_box, same_aspect

MAX_STRETCH = 1.6  # a crop stretched more than this (either axis) is resized to the puzzle's aspect
_MATCH_SIDE = 96  # pictures are compared at this long side


def _gray_small(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, (size[1], size[0]), interpolation=cv2.INTER_AREA).astype(np.float32)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def _matched_box(first_frame: np.ndarray, frame: np.ndarray) -> tuple[tuple[int, int, int, int], float] | None:
    """The puzzle's box in ``frame`` found by template matching (normalised correlation in
    gray) at its own aspect ratio: a coarse scan of scales from a third of the fitting one
    up to it, then a fine one around the best; the frame is searched at a long side of
    about 240 pixels. None when the frame is too small to search."""
    h, w = first_frame.shape[:2]
    big_h, big_w = frame.shape[:2]
    d = max(1.0, max(big_h, big_w) / 240.0)
    small = (max(8, int(round(big_h / d))), max(8, int(round(big_w / d))))
    haystack = _gray_small(frame, small)
    puzzle = cv2.cvtColor(np.ascontiguousarray(first_frame), cv2.COLOR_RGB2GRAY)
    fit = min(small[0] / h, small[1] / w)

    def best_at(scales):
        found = None
        for s in scales:
            tw, th = int(round(w * s)), int(round(h * s))
            if tw < 8 or th < 8 or tw > small[1] or th > small[0]:
                continue
            template = cv2.resize(puzzle, (tw, th), interpolation=cv2.INTER_AREA).astype(np.float32)
            _, score, _, (x, y) = cv2.minMaxLoc(cv2.matchTemplate(haystack, template, cv2.TM_CCOEFF_NORMED))
            if found is None or score > found[0]:
                found = (score, s, x, y, tw, th)
        return found

    coarse = best_at(fit * np.linspace(0.34, 1.0, 23))
    if coarse is None:
        return None
    fine = best_at(coarse[1] * np.linspace(0.97, 1.03, 13))
    score, _, x, y, tw, th = max(coarse, fine or coarse, key=lambda f: f[0])
    sy, sx = big_h / small[0], big_w / small[1]
    box = (int(round(x * sx)), int(round(y * sy)), int(round((x + tw) * sx)), int(round((y + th) * sy)))
    return box, float(score)


def locate_puzzle(first_frame: np.ndarray, frame: np.ndarray, good: float = 0.9
                  ) -> list[tuple[str, tuple[int, int, int, int], float]]:
    """Every placement tried, best first: ``(how, (x0, y0, x1, y1), match)`` of the puzzle
    picture ``first_frame`` in a video ``frame`` (see the module docstring). The search
    for bars runs only when neither the stretched nor the letterboxed placement matches
    ``good``."""
    h, w = first_frame.shape[:2]
    big_h, big_w = frame.shape[:2]
    scale = _MATCH_SIDE / max(h, w)
    small = (max(8, round(h * scale)), max(8, round(w * scale)))
    reference = _gray_small(first_frame, small)

    def match(box):
        x0, y0, x1, y1 = box
        return _ncc(_gray_small(frame[y0:y1, x0:x1], small), reference) if x1 - x0 >= 4 and y1 - y0 >= 4 else -1.0

    found = [(how, box, match(box)) for how, box in (("stretched", (0, 0, big_w, big_h)),
                                                      ("letterboxed", letterbox_box((h, w), (big_h, big_w))))]
    if max(f[2] for f in found) < good:
        matched = _matched_box(first_frame, frame)
        if matched is not None:
            found.append(("bars", matched[0], match(matched[0])))
    return sorted(found, key=lambda item: -item[2])


def camera_shift(first_frame: np.ndarray, frame: np.ndarray, *, max_share: float = 0.05,
                 min_response: float = 0.2) -> tuple[float, float] | None:
    """How far ``frame`` (any size) shows the puzzle picture ``first_frame`` moved, in
    ``frame``'s pixels ``(dx, dy)``: phase correlation in gray at a long side of at most
    256 pixels. None when the shift is under one puzzle pixel, over ``max_share`` of the
    picture's size, or the correlation peak is weak (the frame is not this picture)."""
    h, w = first_frame.shape[:2]
    scale = min(1.0, 256.0 / max(h, w))
    size = (max(8, round(h * scale)), max(8, round(w * scale)))
    reference = _gray_small(first_frame, size)
    moved = _gray_small(frame, size)
    window = cv2.createHanningWindow((size[1], size[0]), cv2.CV_32F)
    (dx, dy), response = cv2.phaseCorrelate(reference, moved, window)
    dx, dy = dx / scale, dy / scale  # puzzle pixels
    if response < min_response or np.hypot(dx, dy) < 1.0 or max(abs(dx) / w, abs(dy) / h) > max_share:
        return None
    return dx * frame.shape[1] / w, dy * frame.shape[0] / h


def _uint8(frame: np.ndarray) -> np.ndarray:
    if frame.dtype == np.uint8:
        return frame
    return np.clip(np.rint(frame * (255.0 if frame.max(initial=0) <= 1 else 1.0)), 0, 255).astype(np.uint8)


def frame_video(instance, video: np.ndarray, *, min_match: float = 0.5, tolerance: float = 0.05) -> np.ndarray:
    """``video`` cropped to where the puzzle lies in it (see the module docstring; the
    video as it is when it has the puzzle's aspect ratio), and moved back when its first
    frame shows the puzzle shifted by a few pixels (:func:`camera_shift`: a camera that
    moved). Raises :class:`UserError` (one line) when no placement shows the puzzle."""
    spec_size = tuple(instance.spec["image_size"])
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3 or not video.shape[0]:
        return video  # the verifier's own checks speak for malformed videos
    first = np.asarray(instance.first_frame)
    if not same_aspect(video.shape[1:3], spec_size, tolerance):
        video = _crop_to_puzzle(first, video, spec_size, min_match)
    shift = camera_shift(first, _uint8(video[0]))
    if shift is None:
        return video
    back = np.float32([[1, 0, -shift[0]], [0, 1, -shift[1]]])
    size = (video.shape[2], video.shape[1])
    return np.stack([cv2.warpAffine(np.ascontiguousarray(f), back, size, flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE) for f in video])


def _crop_to_puzzle(first: np.ndarray, video: np.ndarray, spec_size: tuple, min_match: float) -> np.ndarray:
    """The part of a video of another aspect ratio that shows the puzzle (best placement
    of :func:`locate_puzzle`), resized to the puzzle's aspect ratio when still stretched
    more than :data:`MAX_STRETCH`."""
    placements = locate_puzzle(first, _uint8(video[0]))
    how, (x0, y0, x1, y1), match = placements[0]
    if match < min_match:
        tried = ", ".join(f"{name} {score:.2f}" for name, _, score in placements)
        raise UserError(f"the {video.shape[2]}x{video.shape[1]} video (aspect ratio "
                        f"{video.shape[2] / video.shape[1]:.2f}) does not show this {spec_size[1]}x{spec_size[0]} "
                        f"puzzle (aspect ratio {spec_size[1] / spec_size[0]:.2f}) in its first frame stretched, "
                        f"letterboxed or inside bars (match {tried}; {min_match} needed)")
    crop = video[:, y0:y1, x0:x1]
    stretch = ((x1 - x0) / (y1 - y0)) / (spec_size[1] / spec_size[0])
    if max(stretch, 1 / stretch) > MAX_STRETCH:
        # keep the crop's pixel count, at the puzzle's aspect ratio
        area = (x1 - x0) * (y1 - y0)
        out_h = max(1, int(round((area * spec_size[0] / spec_size[1]) ** 0.5)))
        out_w = max(1, int(round(out_h * spec_size[1] / spec_size[0])))
        crop = np.stack([cv2.resize(np.ascontiguousarray(f), (out_w, out_h), interpolation=cv2.INTER_AREA)
                         for f in crop])
    return np.ascontiguousarray(crop)
