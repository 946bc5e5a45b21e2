"""Follow the agent (and the sokoban box) through every frame of a maze-family video.

The tracker starts from the object's known position in ``spec`` and combines three cues:

1. **Colour.** Every pixel is classified against a palette (the agent colour, the box
   colour, the spec's scene colours and the dominant colours of frame 0) through a
   32x32x32 lookup table (:mod:`.colours`), so H.264 chroma shift or a slight
   recolouring still lands on the nearest colour. Scene pixels that already had the agent's colour in frame 0
   (outside the agent itself) are masked out, so a goal or trail painted in the
   agent's colour cannot be mistaken for the agent.
2. **Shape/size.** Connected components of the agent-coloured mask are kept when their
   area is plausible against the agent's area measured in frame 0; the one nearest the
   previous position wins. Two agent-sized blobs far apart mean "agent duplicated".
3. **Template.** When colour finds nothing, the frame-0 appearance of the object is
   matched (normalised cross-correlation) near its last position, but only where the
   frame differs from frame 0 (motion), so the static scene cannot answer.

A frame where nothing is found is reported as lost (``None``), never guessed.

An object whose spec says ``"track": "sprite"`` (a textured sprite with no colour of its
own, e.g. some VR-Bench skins) is followed by its frame-0 picture alone
(:func:`.sprite.follow_sprite`): normalised cross-correlation near its last place, else over
the whole frame, on the sprite's own pixels.

Work happens on a copy downscaled by an integer factor (at most 4) so the agent is
8-16 px wide (:mod:`.work`: large videos are cheap to score; :func:`.work.read_work_video`
even decodes a file straight to that size); positions are returned in the spec's pixel
coordinates whatever the video size (:mod:`.tracked`: what tracking returns).
Every per-pixel stage is vectorised over all frames (no per-frame Python loop but the
agent-following itself, which touches a few connected components per frame).
"""

from __future__ import annotations

import cv2
import numpy as np

from gen_reason.verifiers.colours import build_lut, components, disk, scene_palette, seen_colour, target_pixels
from gen_reason.verifiers.sprite import follow_sprite
from gen_reason.verifiers.tracked import ObjectTrack, Track, lost_events
from gen_reason.verifiers.work import WorkVideo, prepare_video

AGENT, BOX = 1, 2


def track_objects(video: np.ndarray | WorkVideo, spec: dict) -> Track:
    """Track the agent (and the box when ``spec`` has one) through every frame.

    ``video`` is a ``(T, H, W, 3)`` uint8 array (any size with the puzzle's aspect ratio)
    or a :class:`WorkVideo` from :func:`prepare_video`. Raises :class:`UserError` when the
    video cannot show the puzzle (see :func:`.work.check_video_size`).
    """
    work = video if isinstance(video, WorkVideo) else prepare_video(video, spec)
    frames = work.frames
    t, h, w = frames.shape[:3]
    nodes = np.asarray(spec["nodes"], float)
    targets = {AGENT: np.asarray(spec["agent"]["color"], float)}
    starts = {AGENT: nodes[spec["start"]]}
    sizes = {AGENT: float(spec["agent"]["size_px"])}
    box = spec.get("box")
    if box:
        targets[BOX] = np.asarray(box["color"], float)
        starts[BOX] = nodes[box["start"]]
        sizes[BOX] = float(box.get("size_px", spec["step_px"] * 0.8))
    lut = _colour_table(spec, work, targets, starts, sizes)
    pixel_idx, pixel_label = target_pixels(frames, lut)
    events: list[dict] = []
    results = {}
    looks = {AGENT: spec["agent"], BOX: box or {}}
    for label in targets:
        start_w = work.to_work(starts[label])
        size_w = sizes[label] * work.mean_scale
        step_w = float(spec["step_px"]) * work.mean_scale
        if looks[label].get("track") == "sprite":
            results[label] = follow_sprite(frames, start_w, size_w, step_w, work, _name(label), events)
            continue
        idx = _without_static(pixel_idx[pixel_label == label], frames[0], start_w, size_w, _name(label), events)
        comps = components(idx, (t, h, w))
        results[label] = _follow(comps, frames, start_w, size_w, step_w, work, _name(label), events)
    return Track(agent=results[AGENT], box=results.get(BOX), work=work, events=events)


def _name(label: int) -> str:
    return "agent" if label == AGENT else "box"


def _colour_table(spec: dict, work: WorkVideo, targets: dict[int, np.ndarray], starts: dict[int, np.ndarray],
                  sizes: dict[int, float]) -> np.ndarray:
    """The colour lookup table (:func:`.colours.build_lut`) of the objects ``targets``
    (label: spec colour) against the scene's palette."""
    first = work.frames[0]
    # The scene palette leaves out the objects themselves (a small video's agent can be
    # a dominant colour); each object's colour as frame 0 shows it joins its spec colour.
    objects = np.zeros(first.shape[:2], bool)
    for label in targets:
        objects |= disk(first.shape[:2], work.to_work(starts[label]), 0.75 * sizes[label] * work.mean_scale + 2)
    palette = scene_palette(spec, first, objects)
    colours = {}
    for label, colour in targets.items():
        seen = seen_colour(first, work.to_work(starts[label]), sizes[label] * work.mean_scale, colour, palette)
        colours[label] = [colour] if seen is None else [colour, seen]
    return build_lut(colours, palette)


def _without_static(idx: np.ndarray, first: np.ndarray, start_w: np.ndarray, size_w: float, name: str,
                    events: list[dict]) -> np.ndarray:
    """The object's pixels ``idx`` (flat indices into the frames) less the scene pixels
    with its colour in frame 0 away from the object: part of the picture, not the
    object, dropped in every frame."""
    h, w = first.shape[:2]
    own = disk(first.shape[:2], start_w, 0.75 * size_w + 2)
    in_first = np.zeros(h * w, bool)
    in_first[idx[idx < h * w]] = True
    static = in_first.reshape(h, w) & ~own
    if static.any():
        static = cv2.dilate(static.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~own
        idx = idx[~static.ravel()[idx % (h * w)]]
        events.append({"frame": 0, "kind": "static_colour_masked", "object": name, "pixels": int(static.sum())})
    return idx


def _follow(comps: list[tuple[np.ndarray, np.ndarray]], frames: np.ndarray, start_w: np.ndarray, size_w: float,
            step_w: float, work: WorkVideo, name: str, events: list[dict]) -> ObjectTrack:
    """Follow an object through its colour's blobs ``comps`` (per frame: areas and
    centroids, :func:`.colours.components`) from its start ``start_w`` (working pixels):
    per frame the plausible blob nearest its last place, else its frame-0 picture near
    there where the frame moved (:func:`_match_template`); ``None`` where neither finds it."""
    t = len(comps)
    area0 = _area_at_start(comps[0], start_w, size_w, step_w, name, events)
    positions = np.full((t, 2), np.nan)
    confidence = np.zeros(t)
    duplicated = np.zeros(t, bool)
    source = ["lost"] * t
    template = _template(frames[0], start_w, size_w)
    prev = start_w.copy()
    # Blobs below both area tests (the merge's and the object's) can never be chosen,
    # merged or counted as a duplicate: dropped, a frame of the object and compression
    # specks takes the one-blob path.
    speck = min(max(2.0, 0.08 * area0), 0.3 * area0)
    for k in range(t):
        areas, cents = comps[k]
        if len(areas) > 1:
            keep = areas >= speck
            if not keep.all():
                areas, cents = areas[keep], cents[keep]
        found = None
        if len(areas) == 1:
            # The usual frame: one blob. Near or not, it is the object when its area is
            # plausible (what the general case below decides for a single blob).
            if 0.3 * area0 <= areas[0] <= 4.0 * area0:
                found, conf = cents[0], min(1.0, areas[0] / area0)
        elif len(areas):
            found, conf, duplicated[k] = _pick_blob(areas, cents, prev, area0, size_w, step_w)
        if found is None and template is not None:
            found, conf = _match_template(frames[k], frames[0], template, prev, size_w, step_w)
            if found is not None:
                source[k] = "template"
        elif found is not None:
            source[k] = "colour"
        if found is not None:
            positions[k] = found
            confidence[k] = conf * (0.5 if duplicated[k] else 1.0)
            prev = np.asarray(found, float)
    _undo_colour_offset(positions, source, start_w, step_w, work, name, events)
    positions = work.to_spec(positions)  # working pixels -> spec pixels (NaN stays NaN)
    events += lost_events(name, positions, duplicated)
    return ObjectTrack(positions=positions, confidence=confidence, duplicated=duplicated, source=source, area0=area0)


def _area_at_start(comps0: tuple[np.ndarray, np.ndarray], start_w: np.ndarray, size_w: float, step_w: float,
                   name: str, events: list[dict]) -> float:
    """The object's own area, measured in frame 0 where its position is known (the
    expected area, noted as not found, when frame 0 shows no solid blob there)."""
    areas0, cents0 = comps0
    near0 = np.linalg.norm(cents0 - start_w, axis=1) < max(0.6 * step_w, size_w) if len(areas0) else np.zeros(0, bool)
    expected = 0.45 * size_w ** 2
    # The object is one solid blob in frame 0 (noise is many specks): its largest piece
    # near the start must be a fair share of the expected area.
    area0 = float(areas0[near0].sum()) if near0.any() else 0.0
    if not near0.any() or areas0[near0].max() < 0.3 * expected:
        events.append({"frame": 0, "kind": "not_found_at_start", "object": name})
        area0 = expected
    return area0


def _pick_blob(areas: np.ndarray, cents: np.ndarray, prev: np.ndarray, area0: float, size_w: float,
               step_w: float) -> tuple[np.ndarray | None, float, bool]:
    """Among a frame's several blobs: the object's centre (``None`` when no blob is
    plausible), the confidence, and whether a second object-sized blob lies far away
    (duplicated)."""
    found, conf = None, 0.0
    dist = np.hypot(cents[:, 0] - prev[0], cents[:, 1] - prev[1])
    near = (dist <= 0.9 * size_w + 2) & (areas >= max(2.0, 0.08 * area0))
    # Pieces of one object (split by compression or anti-aliasing) near the last
    # position are merged before the area test.
    if near.any() and areas[near].sum() >= 0.3 * area0:
        w = areas[near]
        merged = (cents[near] * w[:, None]).sum(0) / w.sum()
        if areas[near].sum() <= 4.0 * area0:
            found, conf = merged, min(1.0, w.sum() / area0)
    if found is None:
        ok = (areas >= 0.3 * area0) & (areas <= 4.0 * area0)
        if ok.any():
            j = int(np.flatnonzero(ok)[np.argmin(dist[ok])])
            found, conf = cents[j], min(1.0, areas[j] / area0)
    big = (areas >= 0.5 * area0) & (areas <= 4.0 * area0)
    duplicated = False
    if big.sum() >= 2 and found is not None:
        far = np.hypot(cents[big, 0] - found[0], cents[big, 1] - found[1]) > max(size_w, 0.75 * step_w)
        duplicated = bool(far.any())
    return found, conf, duplicated


def _undo_colour_offset(positions: np.ndarray, source: list[str], start_w: np.ndarray, step_w: float,
                        work: WorkVideo, name: str, events: list[dict]) -> None:
    """The colour's blob need not sit at the object's centre (a sprite's hair, a shirt):
    its offset from the known start in frame 0 is the object's, taken off every frame of
    ``positions`` (working pixels, in place)."""
    offset = positions[0] - start_w
    if source[0] == "colour" and 0.05 * step_w < np.hypot(*offset) <= 0.5 * step_w:
        positions -= offset
        events.append({"frame": 0, "kind": "colour_offset", "object": name,
                       "offset_px": [round(float(v), 1) for v in work.to_spec(start_w + offset) - work.to_spec(start_w)]})


def _template(first: np.ndarray, center: np.ndarray, size_w: float) -> np.ndarray | None:
    """The object's frame-0 picture around ``center`` (``None`` at the frame's edge)."""
    r = int(np.ceil(0.6 * size_w)) + 1
    x, y = int(round(center[0])), int(round(center[1]))
    h, w = first.shape[:2]
    if x - r < 0 or y - r < 0 or x + r + 1 > w or y + r + 1 > h or r < 2:
        return None
    return np.ascontiguousarray(first[y - r:y + r + 1, x - r:x + r + 1])


def _match_template(frame: np.ndarray, first: np.ndarray, template: np.ndarray, prev: np.ndarray,
                    size_w: float, step_w: float, threshold: float = 0.7):
    """NCC search for ``template`` within ~1.5 steps of ``prev``, only where the frame moved."""
    th, tw = template.shape[:2]
    reach = int(np.ceil(1.5 * step_w)) + tw
    h, w = frame.shape[:2]
    x0, y0 = max(0, int(prev[0]) - reach), max(0, int(prev[1]) - reach)
    x1, y1 = min(w, int(prev[0]) + reach + 1), min(h, int(prev[1]) + reach + 1)
    if x1 - x0 <= tw or y1 - y0 <= th:
        return None, 0.0
    window = frame[y0:y1, x0:x1]
    scores = cv2.matchTemplate(window, template, cv2.TM_CCOEFF_NORMED)
    # Motion gate: the match must sit where the frame differs from frame 0, else the
    # static scene (or the agent's frame-0 image) would answer.
    moved = np.abs(window.astype(np.int16) - first[y0:y1, x0:x1].astype(np.int16)).max(-1) > 40
    moved_frac = cv2.boxFilter(moved.astype(np.float32), -1, (tw, th), normalize=True)
    moved_frac = moved_frac[th // 2: th // 2 + scores.shape[0], tw // 2: tw // 2 + scores.shape[1]]
    scores = np.where(moved_frac > 0.15, scores, -1.0)
    j = int(np.argmax(scores))
    best = float(scores.flat[j])
    if best < threshold:
        return None, 0.0
    yy, xx = divmod(j, scores.shape[1])
    return np.array([x0 + xx + tw // 2, y0 + yy + th // 2], float), 0.5 * best
