"""Follow the agent (and the sokoban box) through every frame of a maze-family video.

The tracker starts from the object's known position in ``spec`` and combines three cues:

1. **Colour.** Every pixel is classified against a palette (the agent colour, the box
   colour, the spec's scene colours and the dominant colours of frame 0) through a
   32x32x32 lookup table, so H.264 chroma shift or a slight recolouring still lands on
   the nearest colour. Scene pixels that already had the agent's colour in frame 0
   (outside the agent itself) are masked out, so a goal or trail painted in the
   agent's colour cannot be mistaken for the agent.
2. **Shape/size.** Connected components of the agent-coloured mask are kept when their
   area is plausible against the agent's area measured in frame 0; the one nearest the
   previous position wins. Two agent-sized blobs far apart mean "agent duplicated".
3. **Template.** When colour finds nothing, the frame-0 appearance of the object is
   matched (normalised cross-correlation) near its last position, but only where the
   frame differs from frame 0 (motion), so the static scene cannot answer.

A frame where nothing is found is reported as lost (``None``), never guessed.

Work happens on a copy downscaled so the agent is ~10 px wide (large videos are cheap to
score); positions are returned in the spec's pixel coordinates whatever the video size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from gen_reason.errors import UserError

# Colours are looked up at 5 bits per channel: fine enough to separate scene colours,
# coarse enough that the table (32^3 entries) costs nothing to build.
_BITS = 5
_LEVELS = 1 << _BITS
_FRAME_CHUNK = 32
_WORK_AGENT_PX = 8.0  # least agent width the working copy is scaled to (when downscaling)
_WORK_MAX_SIDE = 256

AGENT, BOX = 1, 2


@dataclass
class WorkVideo:
    """The video as the referee works on it: resized so the agent is small but readable,
    and with global brightness drift undone.

    ``frames``: ``(T, h, w, 3)`` uint8; ``scale``: ``(sx, sy)`` working pixels per spec
    pixel; ``source_size``: ``(H, W)`` of the video as given; ``gains``: the per-frame,
    per-channel brightness gains that were divided out.
    """

    frames: np.ndarray
    scale: tuple[float, float]
    source_size: tuple[int, int]
    gains: np.ndarray | None = None  # (T, 3) brightness drift undone per frame and channel

    def to_spec(self, xy: np.ndarray) -> np.ndarray:
        """Working pixel coordinates -> spec pixel coordinates (pixel centres at integers)."""
        xy = np.asarray(xy, float)
        return np.stack([(xy[..., 0] + 0.5) / self.scale[0] - 0.5, (xy[..., 1] + 0.5) / self.scale[1] - 0.5], -1)

    def to_work(self, xy) -> np.ndarray:
        """Spec pixel coordinates -> working pixel coordinates."""
        xy = np.asarray(xy, float)
        return np.stack([(xy[..., 0] + 0.5) * self.scale[0] - 0.5, (xy[..., 1] + 0.5) * self.scale[1] - 0.5], -1)

    @property
    def mean_scale(self) -> float:
        """Working pixels per spec pixel (geometric mean of both axes)."""
        return float(np.sqrt(self.scale[0] * self.scale[1]))


@dataclass
class ObjectTrack:
    """One object's track: ``positions`` ``(T, 2)`` in spec pixels (NaN where lost),
    ``confidence`` ``(T,)`` in [0, 1], ``duplicated`` ``(T,)`` bool, ``source`` per
    frame (``"colour"``, ``"template"`` or ``"lost"``) and ``area0`` (its area in frame 0,
    working pixels)."""

    positions: np.ndarray
    confidence: np.ndarray
    duplicated: np.ndarray
    source: list[str]
    area0: float

    @property
    def lost(self) -> np.ndarray:
        """Boolean ``(T,)``: frames where the object was not found."""
        return np.isnan(self.positions[:, 0])

    def first_lost(self) -> int | None:
        """Index of the first frame where the object was not found."""
        idx = np.flatnonzero(self.lost)
        return int(idx[0]) if len(idx) else None

    def first_duplicated(self) -> int | None:
        """Index of the first frame with two object-sized blobs."""
        idx = np.flatnonzero(self.duplicated)
        return int(idx[0]) if len(idx) else None


@dataclass
class Track:
    """What :func:`track_objects` found: the agent's track, the box's (sokoban) and notes."""

    agent: ObjectTrack
    box: ObjectTrack | None
    work: WorkVideo = field(repr=False)
    events: list[dict] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        """Frames in the tracked video."""
        return len(self.agent.positions)

    def to_trace(self) -> dict:
        """JSON-ready per-frame positions (``None`` where lost), rounded to 0.1 px."""
        def rows(track):
            return [None if np.isnan(p[0]) else [round(float(p[0]), 1), round(float(p[1]), 1)] for p in track.positions]

        trace = {"agent_positions": rows(self.agent), "agent_source": self.agent.source, "events": self.events}
        if self.box is not None:
            trace["box_positions"] = rows(self.box)
        return trace


# ----------------------------------------------------------------------------- video prep
def check_video_size(video: np.ndarray, spec: dict) -> None:
    """Raise :class:`UserError` when ``video`` cannot show this puzzle.

    Resized videos are fine, stretched ones too (x and y scale independently: a square
    puzzle fed to a 832x480 model comes back 832x480); a video whose aspect ratio is more
    than twice or less than half the puzzle's, or in which the agent would be narrower
    than 2 pixels, cannot be judged.
    """
    if not isinstance(video, np.ndarray) or video.ndim != 4 or video.shape[-1] != 3:
        shape = getattr(video, "shape", None)
        raise UserError(f"a video must be an array of shape (T, H, W, 3); got {shape}")
    if video.shape[0] == 0 or video.shape[1] == 0 or video.shape[2] == 0:
        raise UserError(f"the video is empty (shape {video.shape})")
    if video.dtype != np.uint8 and not np.isfinite(video).all():
        raise UserError("the video holds NaN or infinite values")
    spec_h, spec_w = spec["image_size"]
    h, w = video.shape[1:3]
    ratio = (w / h) / (spec_w / spec_h)
    if not 0.5 <= ratio <= 2.0:
        raise UserError(f"the video is {w}x{h} but the puzzle image is {spec_w}x{spec_h}: aspect ratios differ "
                        f"by a factor {max(ratio, 1 / ratio):.1f} (cropped or letterboxed video?)")
    agent_px = float(spec["agent"]["size_px"]) * min(w / spec_w, h / spec_h)
    if agent_px < 2.0:
        raise UserError(f"the video is {w}x{h}: the agent would be {agent_px:.1f} px wide, too small to track")


def to_uint8(video: np.ndarray) -> np.ndarray:
    """uint8 frames as they are; float frames in [0, 1] (or [0, 255]) rounded to uint8."""
    if video.dtype == np.uint8:
        return video
    scale = 255.0 if np.issubdtype(video.dtype, np.floating) and video.max(initial=0) <= 1.0 else 1.0
    return np.clip(np.rint(video * scale), 0, 255).astype(np.uint8)


def prepare_video(video: np.ndarray, spec: dict) -> WorkVideo:
    """Validate ``video`` against ``spec`` and make the downscaled working copy."""
    check_video_size(video, spec)
    video = to_uint8(video)
    spec_h, spec_w = spec["image_size"]
    h, w = video.shape[1:3]
    agent_px = float(spec["agent"]["size_px"]) * min(w / spec_w, h / spec_h)
    # Downscale by an integer factor (OpenCV's fast path for INTER_AREA): as far as
    # the working side limit asks, but never below _WORK_AGENT_PX for the agent.
    factor = int(max(1, min(np.floor(agent_px / _WORK_AGENT_PX), np.ceil(max(h, w) / _WORK_MAX_SIDE))))
    if factor > 1:
        size = (max(1, w // factor), max(1, h // factor))
        frames = np.empty((len(video), size[1], size[0], 3), np.uint8)
        for k, f in enumerate(video):
            cv2.resize(f[: size[1] * factor, : size[0] * factor], size, dst=frames[k], interpolation=cv2.INTER_AREA)
    else:
        frames = np.ascontiguousarray(video)
    frames, gains = _undo_brightness_drift(frames)
    return WorkVideo(frames=frames, scale=(w / factor / spec_w, h / factor / spec_h), source_size=(h, w),
                     gains=gains)


def _undo_brightness_drift(frames: np.ndarray, tolerance: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Scale each frame back to frame 0's brightness.

    Generated videos drift (frames get darker or brighter as a whole). Per frame and
    channel, the gain is the most common ratio frame / frame 0 over a sample of bright
    pixels; it is trusted when at least half of them share it (the static scene does)
    and the three channels agree (brightness drift). A frame where it cannot be trusted
    (a trail or a redraw covers most bright pixels, changing some channels only) keeps
    the last trusted gain: drift is slow. Gains within ``tolerance`` of 1 are left alone.
    Returns the corrected frames and the gains ``(T, 3)``.
    """
    t = len(frames)
    gains = np.ones((t, 3))
    if t < 2:
        return frames, gains
    stride = max(1, min(frames.shape[1:3]) // 80)  # ~80x80 sample pixels, all of a small frame
    sample = frames[:, ::stride, ::stride].reshape(t, -1, 3).astype(np.float32)
    base = sample[0]
    bins = np.linspace(0.5, 1.5, 101)
    found = np.full((t, 3), np.nan)
    found[0] = 1.0
    for c in range(3):
        usable = base[:, c] > 40  # ratios of dark pixels are noise
        if usable.sum() < 50:
            continue
        ratios = sample[:, usable, c] / base[usable, c]
        for k in range(1, t):
            counts, _ = np.histogram(ratios[k], bins=bins)
            peak = 0.5 * (bins[np.argmax(counts)] + bins[np.argmax(counts) + 1])
            near = ratios[k][np.abs(ratios[k] - peak) <= 0.02]
            if len(near) >= 0.5 * len(ratios[k]):
                found[k, c] = float(np.median(near))
    usable_channels = ~np.isnan(found[1:]).all(axis=0)
    if not usable_channels.any():
        return frames, gains
    for k in range(1, t):
        g = found[k, usable_channels]
        trusted = not np.isnan(g).any() and g.max() - g.min() <= 0.04
        gains[k] = float(g.mean()) if trusted else gains[k - 1]
    drift = np.abs(gains - 1.0).max(axis=1) > tolerance
    if not drift.any():
        return frames, np.ones((t, 3))
    gains[~drift] = 1.0
    out = frames.copy()
    for k in np.flatnonzero(drift):
        out[k] = np.clip(np.rint(frames[k] / gains[k].astype(np.float32)), 0, 255).astype(np.uint8)
    return out, gains


# ----------------------------------------------------------------------------- colour
def _quantise(frames: np.ndarray) -> np.ndarray:
    shift = 8 - _BITS
    f = frames >> shift
    out = f[..., 0].astype(np.uint16) << (2 * _BITS)
    out |= f[..., 1].astype(np.uint16) << _BITS
    out |= f[..., 2]
    return out


def dominant_colours(image: np.ndarray, min_share: float = 0.004, limit: int = 24,
                     ignore: np.ndarray | None = None) -> list[np.ndarray]:
    """Mean colours of the most common 5-bit colour bins of ``image`` (scene palette),
    leaving out pixels where ``ignore`` (H, W) is True (the moving objects)."""
    q = _quantise(image).ravel()
    flat = image.reshape(-1, 3).astype(np.float64)
    if ignore is not None:
        keep = ~ignore.ravel()
        q, flat = q[keep], flat[keep]
    counts = np.bincount(q, minlength=_LEVELS ** 3)
    order = np.argsort(counts)[::-1][:limit]
    colours = []
    for b in order:
        if counts[b] < min_share * max(1, q.size):
            break
        colours.append(flat[q == b].mean(axis=0))
    return colours


def build_lut(targets: dict[int, np.ndarray | list[np.ndarray]], palette: list[np.ndarray],
              max_distance: float = 150.0, exclusion: float = 45.0) -> np.ndarray:
    """Lookup table from a quantised colour to a label (0 scene, else a target's label).

    A colour gets a target's label when it is nearer that target (one colour or a list
    of colours) than any scene colour and within ``max_distance``. Scene colours within ``exclusion`` of a target are not
    used as competitors (the target's own colour must never lose to itself).
    """
    levels = (np.arange(_LEVELS) << (8 - _BITS)) + (1 << (8 - _BITS - 1))
    r, g, b = np.meshgrid(levels, levels, levels, indexing="ij")
    cube = np.stack([r, g, b], -1).reshape(-1, 3).astype(np.float32)
    target_colours = {k: np.asarray(v, np.float32).reshape(-1, 3) for k, v in targets.items()}
    every_target = np.concatenate(list(target_colours.values()))
    competitors = [np.asarray(c, np.float32) for c in palette
                   if np.linalg.norm(every_target - np.asarray(c, np.float32), axis=1).min() > exclusion]
    scene_d = np.full(len(cube), np.inf, np.float32)
    for c in competitors:
        scene_d = np.minimum(scene_d, np.linalg.norm(cube - c, axis=1))
    lut = np.zeros(len(cube), np.uint8)
    best = np.full(len(cube), np.inf, np.float32)
    for label, colours in target_colours.items():
        d = np.min([np.linalg.norm(cube - c, axis=1) for c in colours], axis=0)
        win = (d < scene_d) & (d < max_distance) & (d < best)
        lut[win] = label
        best = np.where(win, d, best)
    return lut


def _scene_palette(spec: dict, first: np.ndarray, ignore: np.ndarray) -> list[np.ndarray]:
    palette = [np.asarray(c, float) for c in spec.get("colors", {}).values()
               if isinstance(c, (list, tuple)) and len(c) == 3]
    return palette + dominant_colours(first, ignore=ignore)


def _seen_colour(first: np.ndarray, center, size_w: float, colour: np.ndarray, palette: list[np.ndarray],
                 margin: float = 60.0) -> np.ndarray | None:
    """The object's colour as frame 0 shows it (compression, jitter and blur shift it),
    when it is distinct from every scene colour; else ``None``."""
    disk = _disk(first.shape[:2], center, max(1.0, 0.5 * size_w))
    pixels = first[disk].astype(float)
    if len(pixels) == 0:
        return None
    d = np.linalg.norm(pixels - colour, axis=1)
    best = pixels[np.argsort(d)[: max(1, len(pixels) // 3)]]
    seen = np.median(best, axis=0)
    if palette and min(np.linalg.norm(seen - np.asarray(c, float)) for c in palette) <= margin:
        return None
    return seen


def _disk(shape: tuple[int, int], center, radius: float) -> np.ndarray:
    h, w = shape
    yy, xx = np.ogrid[:h, :w]
    return (xx - center[0]) ** 2 + (yy - center[1]) ** 2 <= radius ** 2


# ----------------------------------------------------------------------------- tracking
def track_objects(video: np.ndarray | WorkVideo, spec: dict) -> Track:
    """Track the agent (and the box when ``spec`` has one) through every frame.

    ``video`` is a ``(T, H, W, 3)`` uint8 array (any size with the puzzle's aspect ratio)
    or a :class:`WorkVideo` from :func:`prepare_video`. Raises :class:`UserError` when the
    video cannot show the puzzle (see :func:`check_video_size`).
    """
    work = video if isinstance(video, WorkVideo) else prepare_video(video, spec)
    frames = work.frames
    first = frames[0]
    nodes = np.asarray(spec["nodes"], float)
    targets = {AGENT: np.asarray(spec["agent"]["color"], float)}
    starts = {AGENT: nodes[spec["start"]]}
    sizes = {AGENT: float(spec["agent"]["size_px"])}
    box = spec.get("box")
    if box:
        targets[BOX] = np.asarray(box["color"], float)
        starts[BOX] = nodes[box["start"]]
        sizes[BOX] = float(box.get("size_px", spec["step_px"] * 0.8))
    # The scene palette leaves out the objects themselves (a small video's agent can be
    # a dominant colour); each object's colour as frame 0 shows it joins its spec colour.
    objects = np.zeros(first.shape[:2], bool)
    for label in targets:
        objects |= _disk(first.shape[:2], work.to_work(starts[label]), 0.75 * sizes[label] * work.mean_scale + 2)
    palette = _scene_palette(spec, first, objects)
    colours = {}
    for label, colour in targets.items():
        seen = _seen_colour(first, work.to_work(starts[label]), sizes[label] * work.mean_scale, colour, palette)
        colours[label] = [colour] if seen is None else [colour, seen]
    lut = build_lut(colours, palette)
    labels = np.empty(frames.shape[:3], np.uint8)
    for i in range(0, len(frames), _FRAME_CHUNK):
        labels[i:i + _FRAME_CHUNK] = lut[_quantise(frames[i:i + _FRAME_CHUNK])]
    events: list[dict] = []
    results = {}
    for label in targets:
        start_w = work.to_work(starts[label])
        size_w = sizes[label] * work.mean_scale
        step_w = float(spec["step_px"]) * work.mean_scale
        mask = labels == label
        # Scene pixels with this object's colour in frame 0 (away from the object) are
        # part of the picture, not the object: drop them in every frame.
        own = _disk(first.shape[:2], start_w, 0.75 * size_w + 2)
        static = mask[0] & ~own
        if static.any():
            static = cv2.dilate(static.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~own
            mask &= ~static[None]
            events.append({"frame": 0, "kind": "static_colour_masked", "object": _name(label),
                           "pixels": int(static.sum())})
        results[label] = _follow(mask, frames, start_w, size_w, step_w, work, _name(label), events)
    return Track(agent=results[AGENT], box=results.get(BOX), work=work, events=events)


def _name(label: int) -> str:
    return "agent" if label == AGENT else "box"


def _components(mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per frame: (areas (k,), centroids (k, 2)) of the mask's connected components.

    All frames go through one OpenCV call on a compact image: only the rows holding
    mask pixels are kept, stacked frame after frame, with a blank row wherever the kept
    rows are not consecutive (so components never join across frames or gaps). The
    agent fills a few rows of each frame, so this is far cheaper than labelling every row.
    """
    t, h, w = mask.shape
    out = [(np.zeros(0), np.zeros((0, 2))) for _ in range(t)]
    frame_idx, row_idx = np.nonzero(mask.any(axis=2))
    if len(frame_idx) == 0:
        return out
    starts_group = np.ones(len(frame_idx), bool)
    starts_group[1:] = (frame_idx[1:] != frame_idx[:-1]) | (row_idx[1:] != row_idx[:-1] + 1)
    compact_row = np.arange(len(frame_idx)) + np.cumsum(starts_group)  # a blank row before each group
    compact = np.zeros((compact_row[-1] + 2, w), np.uint8)
    compact[compact_row] = mask[frame_idx, row_idx]
    frame_of = np.full(len(compact), -1)
    offset_of = np.zeros(len(compact))
    frame_of[compact_row] = frame_idx
    offset_of[compact_row] = compact_row - row_idx
    n, _, stats, cents = cv2.connectedComponentsWithStats(compact, connectivity=8)
    if n <= 1:
        return out
    top = stats[1:, cv2.CC_STAT_TOP]
    areas = stats[1:, cv2.CC_STAT_AREA].astype(float)
    frame = frame_of[top]
    cents = cents[1:] - np.stack([np.zeros(n - 1), offset_of[top]], 1)
    order = np.argsort(frame, kind="stable")
    bounds = np.searchsorted(frame[order], np.arange(t + 1))
    for k in range(t):
        idx = order[bounds[k]:bounds[k + 1]]
        out[k] = (areas[idx], cents[idx])
    return out


def _follow(mask: np.ndarray, frames: np.ndarray, start_w: np.ndarray, size_w: float, step_w: float,
            work: WorkVideo, name: str, events: list[dict]) -> ObjectTrack:
    t = len(mask)
    comps = _components(mask)
    # The object's own area, measured in frame 0 where its position is known.
    areas0, cents0 = comps[0]
    near0 = np.linalg.norm(cents0 - start_w, axis=1) < max(0.6 * step_w, size_w) if len(areas0) else np.zeros(0, bool)
    expected = 0.45 * size_w ** 2
    # The object is one solid blob in frame 0 (noise is many specks): its largest piece
    # near the start must be a fair share of the expected area.
    area0 = float(areas0[near0].sum()) if near0.any() else 0.0
    if not near0.any() or areas0[near0].max() < 0.3 * expected:
        events.append({"frame": 0, "kind": "not_found_at_start", "object": name})
        area0 = expected
    positions = np.full((t, 2), np.nan)
    confidence = np.zeros(t)
    duplicated = np.zeros(t, bool)
    source = ["lost"] * t
    template = _template(frames[0], start_w, size_w)
    prev = start_w.copy()
    for k in range(t):
        areas, cents = comps[k]
        found = None
        if len(areas):
            dist = np.linalg.norm(cents - prev, axis=1)
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
            if big.sum() >= 2 and found is not None:
                far = np.linalg.norm(cents[big] - found, axis=1) > max(size_w, 0.75 * step_w)
                if far.any():
                    duplicated[k] = True
        if found is None and template is not None:
            found, conf = _match_template(frames[k], frames[0], template, prev, size_w, step_w)
            if found is not None:
                source[k] = "template"
        elif found is not None:
            source[k] = "colour"
        if found is not None:
            positions[k] = work.to_spec(found)
            confidence[k] = conf * (0.5 if duplicated[k] else 1.0)
            prev = np.asarray(found, float)
    lost = np.flatnonzero(np.isnan(positions[:, 0]))
    if len(lost):
        events.append({"frame": int(lost[0]), "kind": "lost", "object": name, "frames": int(len(lost)),
                       "detail": f"{name} lost at frame {int(lost[0])} ({len(lost)} frame(s) in all)"})
    dup = np.flatnonzero(duplicated)
    if len(dup):
        events.append({"frame": int(dup[0]), "kind": "duplicated", "object": name, "frames": int(len(dup)),
                       "detail": f"{name} duplicated at frame {int(dup[0])} ({len(dup)} frame(s) in all)"})
    return ObjectTrack(positions=positions, confidence=confidence, duplicated=duplicated, source=source, area0=area0)


def _template(first: np.ndarray, center: np.ndarray, size_w: float) -> np.ndarray | None:
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
