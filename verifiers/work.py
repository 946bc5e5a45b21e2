"""The video as the referee works on it (maze family): validated, shrunk, brightness drift undone.

Work happens on a copy downscaled by an integer factor (at most 4) so the agent is
8-16 px wide (large videos are cheap to score; :func:`read_work_video` even decodes a
file straight to that size); :class:`WorkVideo` maps its pixels to the spec's and back,
so positions are reported in the spec's pixel coordinates whatever the video size.
:func:`undo_brightness_drift` (also used by the draw and tangram referees) scales each
frame back to frame 0's brightness.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from gen_reason.errors import UserError

_WORK_AGENT_PX = 8.0  # least agent width the working copy is scaled to (it ends 8-16 px wide)
_WORK_MAX_FACTOR = 4  # a working pixel is this many video pixels at most (position precision)
WORK_SPRITE_PX = 24.0  # least width of an object followed by its picture (track: sprite)


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


def _check_size(height: int, width: int, spec: dict) -> None:
    """Raise :class:`UserError` when a ``width`` x ``height`` video cannot show this puzzle."""
    spec_h, spec_w = spec["image_size"]
    ratio = (width / height) / (spec_w / spec_h)
    if not 0.5 <= ratio <= 2.0:
        raise UserError(f"the video is {width}x{height} but the puzzle image is {spec_w}x{spec_h}: aspect ratios "
                        f"differ by a factor {max(ratio, 1 / ratio):.1f} (cropped or letterboxed video?)")
    agent_px = float(spec["agent"]["size_px"]) * min(width / spec_w, height / spec_h)
    if agent_px < 2.0:
        raise UserError(f"the video is {width}x{height}: the agent would be {agent_px:.1f} px wide, too small to track")


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
    _check_size(video.shape[1], video.shape[2], spec)


def working_factor(spec: dict, height: int, width: int) -> int:
    """The integer factor the referee shrinks a ``height`` x ``width`` video by: the
    largest that keeps the agent at least 8 px wide (it ends 8-16 px wide), at most 4;
    1 for a video where the agent is narrower than 16 px already.

    Every stage of the referee costs per working pixel, and an agent 8 px wide is still
    located to a fraction of a working pixel; the cap keeps that fraction small in video
    pixels too. On the ground-truth videos of every maze task positions move by under
    0.6 spec px against working at full size; on VR-Bench's maze3d (ball 36-62 px wide)
    the tracked ball stays within 1.8 px of its projected path at factor 4, but drifts
    to 2.3-2.6 px at factors 5-7.
    """
    spec_h, spec_w = spec["image_size"]
    agent_px = float(spec["agent"]["size_px"]) * min(width / spec_w, height / spec_h)
    # A sprite followed by its picture (``track: sprite``) keeps more of its detail.
    sprite = any(o.get("track") == "sprite" for o in (spec["agent"], spec.get("box") or {}))
    least = WORK_SPRITE_PX if sprite else _WORK_AGENT_PX
    return int(min(_WORK_MAX_FACTOR, max(1, np.floor(agent_px / least))))


def read_work_video(path, spec: dict, whole_if_unfit: bool = False) -> np.ndarray:
    """Decode a video file straight to the referee's working size (see :func:`working_factor`).

    The full-size frames are never materialised: the decoder's scaler averages each
    ``f`` x ``f`` block while converting to RGB, which for VR-Bench's 1024x1024
    pathfinder videos is ~3x faster than decoding at full size and shrinking afterwards,
    and takes ``f**2`` times less memory. Score the result as any video: positions come
    back in spec pixels (on VR-Bench's fixture levels, every ground-truth video and
    every cheat gets the verdict it gets at full size). What changes is only what
    full-resolution measures see: maze fidelity compares the frames as given (on those
    ground-truth videos it moves by under 0.002). Raises :class:`UserError` when the
    file is unreadable or, unless ``whole_if_unfit`` (then it is decoded at full size,
    so that the verifier records why it cannot judge it), its size cannot show the puzzle.
    """
    from gen_reason.video import read_video, video_size

    height, width = video_size(path)
    try:
        _check_size(height, width, spec)
    except UserError:
        if not whole_if_unfit:
            raise
        return read_video(path)
    return read_video(path, downscale=working_factor(spec, height, width))


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
    factor = working_factor(spec, h, w)
    frames = shrink(video, factor) if factor > 1 else np.ascontiguousarray(video)
    frames, gains = undo_brightness_drift(frames)
    return WorkVideo(frames=frames, scale=(w / factor / spec_w, h / factor / spec_h), source_size=(h, w),
                     gains=gains)


def shrink(video: np.ndarray, factor: int) -> np.ndarray:
    """``video`` shrunk by an integer ``factor``: each output pixel is the mean of a
    ``factor`` x ``factor`` block (rows and columns past the last whole block are dropped).

    Even factors halve first (OpenCV's vectorised 2x2 path, ~2x faster than its generic
    block mean; each halving rounds, so a pixel may differ by one grey level from the
    exact mean), then the odd rest goes through OpenCV's integer-factor area filter.
    """
    t, h, w = video.shape[:3]
    out_h, out_w = max(1, h // factor), max(1, w // factor)
    out = np.empty((t, out_h, out_w, 3), np.uint8)
    for k, frame in enumerate(video):
        f = factor
        frame = frame[: out_h * factor, : out_w * factor]
        while f % 2 == 0 and f > 1:
            frame = cv2.resize(frame, (frame.shape[1] // 2, frame.shape[0] // 2), interpolation=cv2.INTER_AREA)
            f //= 2
        if f > 1:
            cv2.resize(frame, (out_w, out_h), dst=out[k], interpolation=cv2.INTER_AREA)
        else:
            out[k] = frame
    return out


def undo_brightness_drift(frames: np.ndarray, tolerance: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Scale each frame back to frame 0's brightness.

    Generated videos drift (frames get darker or brighter as a whole). Per frame and
    channel, the gain is the most common ratio frame / frame 0 over a sample of bright
    pixels; it is trusted when at least half of them share it (the static scene does)
    and the three channels agree (brightness drift). A frame where it cannot be trusted
    (a trail or a redraw covers most bright pixels, changing some channels only) keeps
    the last trusted gain: drift is slow. Gains within ``tolerance`` of 1 are left alone.
    Returns the corrected frames and the gains ``(T, 3)``.

    All frames are estimated at once (no per-frame loop) on ~48x48 sampled pixels per
    frame. A frame and channel where more than half the sampled bright pixels are
    exactly as in frame 0 (most frames of most videos) has gain 1 without the
    histograms: that is what they would give (the bin of 1.0 holds the majority, and the
    majority is the median).
    """
    t = len(frames)
    gains = np.ones((t, 3))
    if t < 2:
        return frames, gains
    # ~48x48 sample pixels (all of a small frame): plenty to find a shared ratio.
    stride = max(1, int(np.ceil(np.sqrt(frames.shape[1] * frames.shape[2]) / 48)))
    # frames[:, ::stride, ::stride] as every stride-th row, then the sampled columns' bytes
    # taken from each row (~2x numpy's copy of the doubly strided view).
    width = frames.shape[2]
    cols = (np.arange(0, width, stride)[:, None] * 3 + np.arange(3)).ravel()
    sample = np.take(frames[:, ::stride].reshape(t, -1, width * 3), cols, axis=2).reshape(t, -1, 3)
    base = sample[0]
    found = np.full((t, 3), np.nan)
    found[0] = 1.0
    for c in range(3):
        usable = base[:, c] > 40  # ratios of dark pixels are noise
        if usable.sum() < 50:
            continue
        values, reference = sample[1:, usable, c], base[usable, c]
        unchanged = (values == reference).sum(axis=1) > 0.5 * len(reference)
        found[1:, c][unchanged] = 1.0
        rest = np.flatnonzero(~unchanged)
        if len(rest):
            found[1 + rest, c] = _common_ratio(values[rest].astype(np.float32) / reference.astype(np.float32))
    usable_channels = ~np.isnan(found[1:]).all(axis=0)
    if not usable_channels.any():
        return frames, gains
    g = found[:, usable_channels]
    spread = np.where(np.isnan(g), -np.inf, g).max(axis=1) - np.where(np.isnan(g), np.inf, g).min(axis=1)
    trusted = ~np.isnan(g).any(axis=1) & (spread <= 0.04)
    trusted[0] = True  # frame 0 is the reference: gain 1
    # A frame that cannot be trusted keeps the last trusted frame's gain.
    last_trusted = np.maximum.accumulate(np.where(trusted, np.arange(t), 0))
    means = np.where(trusted, np.nan_to_num(g.mean(axis=1), nan=1.0), 1.0)
    gains[:] = means[last_trusted, None]
    drift = np.abs(gains - 1.0).max(axis=1) > tolerance
    if not drift.any():
        return frames, np.ones((t, 3))
    gains[~drift] = 1.0
    out = frames.copy()
    levels = np.arange(256, dtype=np.float32)[:, None]
    for k in np.flatnonzero(drift):
        # Dividing every pixel is a 256-entry table per channel: one cv2.LUT per frame.
        table = np.clip(np.rint(levels / gains[k].astype(np.float32)), 0, 255).astype(np.uint8)
        cv2.LUT(frames[k], table.reshape(256, 1, 3), dst=out[k])
    return out, gains


def _common_ratio(ratios: np.ndarray, lo: float = 0.5, hi: float = 1.5, bins: int = 100,
                  near: float = 0.02, fine: float = 1e-4) -> np.ndarray:
    """Per row of ``ratios`` ``(m, n)``: the median of the ratios within ``near`` of the
    histogram's peak (``bins`` bins over [lo, hi)), NaN where fewer than half the row is that near.

    Vectorised over rows: each histogram is one ``bincount`` (out-of-range values go to a
    spare bin at either end); the median comes from a histogram of bin width ``fine``
    over the peak's neighbourhood, so it is exact to ``fine``.
    """
    m, n = ratios.shape
    rows = np.arange(m, dtype=np.intp)[:, None]

    def histogram(values: np.ndarray, start, step: float, count: int) -> np.ndarray:
        # Slot k (1..count) holds values in [start + (k-1) step, start + k step); 0 and count+1 the rest.
        slots = np.subtract(values, start, dtype=np.float32)
        slots *= np.float32(1.0 / step)
        np.floor(slots, out=slots)
        np.clip(slots, -1, count, out=slots)
        keys = slots.astype(np.intp)
        keys += rows * (count + 2) + 1
        return np.bincount(keys.ravel(), minlength=m * (count + 2)).reshape(m, count + 2)[:, 1:-1]

    width = (hi - lo) / bins
    peak = lo + width * (histogram(ratios, lo, width, bins).argmax(axis=1) + 0.5)
    cells = int(round(2 * near / fine)) + 1
    # Fine cells centred on peak - near + k * fine, k = 0 .. cells - 1.
    start = (peak - near - 0.5 * fine).astype(np.float32)[:, None]
    hist = histogram(ratios, start, fine, cells)
    count = hist.sum(axis=1)
    cum = np.cumsum(hist, axis=1)
    # The middle value's cell (the mean of the two middle ones for an even count).
    low = (cum <= ((count - 1) // 2)[:, None]).sum(axis=1)
    high = (cum <= (count // 2)[:, None]).sum(axis=1)
    median = (peak - near) + fine * 0.5 * (low + high)
    return np.where(count >= 0.5 * n, median, np.nan)
