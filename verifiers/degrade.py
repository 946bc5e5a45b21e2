"""Video degradations for robustness tests of the referee.

A referee that scores a clean ground-truth video as solved must still do so when the
video went through what generated videos go through: lossy H.264, resizing, blur,
sensor-like noise, colour jitter and drift, JPEG, another frame rate or speed, pauses,
dropped frames, stretching, letterboxing and a shifted camera. Every function
takes and returns a ``(T, H, W, 3)`` uint8 video and is deterministic (seeded).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np

from gen_reason.video import as_video, read_video, write_mp4


def h264(video: np.ndarray, crf: int = 38, fps: int = 16) -> np.ndarray:
    """Encode as H.264 MP4 at constant rate factor ``crf`` (35-40: heavy) and decode again."""
    video = as_video(video)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_mp4(Path(tmp) / "degraded.mp4", video, fps=fps, crf=crf)
        out = read_video(path)
    # write_mp4 pads odd sizes to even; crop back to the input size.
    return np.ascontiguousarray(out[:, : video.shape[1], : video.shape[2]])


def resize(video: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize every frame to ``size`` = (H, W) (area filter down, bilinear up)."""
    video = as_video(video)
    h, w = size
    interp = cv2.INTER_AREA if h * w < video.shape[1] * video.shape[2] else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (w, h), interpolation=interp) for f in video])


def resize_down_up(video: np.ndarray, factor: float = 0.5) -> np.ndarray:
    """Shrink by ``factor`` and scale back to the original size (loses fine detail)."""
    video = as_video(video)
    h, w = video.shape[1:3]
    small = resize(video, (max(2, int(round(h * factor))), max(2, int(round(w * factor)))))
    return resize(small, (h, w))


def blur(video: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Gaussian blur of standard deviation ``sigma`` pixels."""
    video = as_video(video)
    return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in video])


def noise(video: np.ndarray, std: float = 10.0, seed: int = 0) -> np.ndarray:
    """Add independent Gaussian noise of ``std`` grey levels to every pixel and channel."""
    video = as_video(video)
    rng = np.random.default_rng(seed)
    noisy = video.astype(np.float32) + rng.normal(0.0, std, size=video.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def colour_jitter(video: np.ndarray, strength: float = 0.12, flicker: float = 0.03, seed: int = 0) -> np.ndarray:
    """Drift colours: per-channel gain ``1 +- strength`` and offset ``+- strength*128`` for
    the whole video, plus a small per-frame brightness flicker (``+- flicker``)."""
    video = as_video(video)
    rng = np.random.default_rng(seed)
    gain = 1.0 + rng.uniform(-strength, strength, size=3)
    offset = rng.uniform(-strength, strength, size=3) * 128
    per_frame = 1.0 + rng.uniform(-flicker, flicker, size=(len(video), 1, 1, 1))
    out = (video.astype(np.float32) * gain + offset) * per_frame
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def brightness_drift(video: np.ndarray, amount: float = 0.25) -> np.ndarray:
    """Darken the video progressively: frame ``k`` is scaled by ``1 - amount * k / (T-1)``
    (generated videos drift in brightness over time)."""
    video = as_video(video)
    t = len(video)
    gain = 1.0 - amount * np.arange(t, dtype=np.float32) / max(1, t - 1)
    return np.clip(np.rint(video.astype(np.float32) * gain[:, None, None, None]), 0, 255).astype(np.uint8)


def change_fps(video: np.ndarray, factor: float = 0.5) -> np.ndarray:
    """Resample in time by ``factor`` (0.5 keeps every other frame, 1.5 repeats some);
    the first and last frames are kept."""
    video = as_video(video)
    t = len(video)
    n = max(2, int(round((t - 1) * factor)) + 1)
    idx = np.rint(np.linspace(0, t - 1, n)).astype(int)
    return video[idx]


def drop_frames(video: np.ndarray, fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Remove a random ``fraction`` of the frames (never the first or the last)."""
    video = as_video(video)
    t = len(video)
    if t <= 2:
        return video
    rng = np.random.default_rng(seed)
    inner = np.arange(1, t - 1)
    drop = rng.choice(inner, size=int(round(fraction * len(inner))), replace=False)
    keep = np.setdiff1d(np.arange(t), drop)
    return video[keep]


def speed(video: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times as fast (4: every 4th frame; 0.25: every frame 4 times), first
    and last frames kept: real models compress and stretch time freely."""
    return change_fps(video, 1.0 / factor)


def pause(video: np.ndarray, at: float = 0.5, length: int = 12) -> np.ndarray:
    """Hold the frame at ``at`` (a share of the video) for ``length`` extra frames."""
    video = as_video(video)
    k = min(len(video) - 1, int(round(at * (len(video) - 1))))
    return np.concatenate([video[: k + 1], np.repeat(video[k: k + 1], length, axis=0), video[k + 1:]])


def tail(video: np.ndarray, length: int | None = None) -> np.ndarray:
    """Hold the last frame for ``length`` extra frames (default: as long again as the video)."""
    video = as_video(video)
    return np.concatenate([video, np.repeat(video[-1:], len(video) if length is None else length, axis=0)])


def jpeg(video: np.ndarray, quality: int = 30) -> np.ndarray:
    """Every frame through JPEG at ``quality`` (blocking and ringing, as in frame dumps)."""
    video = as_video(video)
    out = []
    for frame in video:
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        out.append(cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    return np.stack(out)


def stretch(video: np.ndarray, aspect: float = 16 / 9) -> np.ndarray:
    """Resize every frame to aspect ratio ``aspect`` (width / height) at the same height:
    a puzzle squeezed into a model of another aspect ratio."""
    video = as_video(video)
    h = video.shape[1]
    return resize(video, (h, max(2, int(round(h * aspect)))))


def letterboxed(video: np.ndarray, aspect: float = 16 / 9, bar: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """Every frame centred, unscaled, on a canvas of aspect ratio ``aspect`` filled with
    ``bar``: a puzzle a model returned with bars around it."""
    video = as_video(video)
    t, h, w, _ = video.shape
    big_h, big_w = (h, max(w, int(round(h * aspect)))) if w / h < aspect else (max(h, int(round(w / aspect))), w)
    canvas = np.empty((t, big_h, big_w, 3), np.uint8)
    canvas[:] = np.asarray(bar, np.uint8)
    y0, x0 = (big_h - h) // 2, (big_w - w) // 2
    canvas[:, y0:y0 + h, x0:x0 + w] = video
    return canvas


def shift(video: np.ndarray, dx: int = 3, dy: int = 2) -> np.ndarray:
    """Move the whole picture by ``(dx, dy)`` pixels (edges replicated): a camera that
    settled a few pixels off."""
    video = as_video(video)
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    h, w = video.shape[1:3]
    return np.stack([cv2.warpAffine(f, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE) for f in video])


DEGRADATIONS = {
    "h264_crf38": lambda v: h264(v, crf=38),
    "resize_down_up": lambda v: resize_down_up(v, 0.5),
    "resize_down": lambda v: resize(v, (max(2, v.shape[1] * 2 // 3), max(2, v.shape[2] * 2 // 3))),
    "blur": lambda v: blur(v, 1.5),
    "noise": lambda v: noise(v, 10.0),
    "colour_jitter": lambda v: colour_jitter(v),
    "brightness_drift": lambda v: brightness_drift(v, 0.25),
    "fps_half": lambda v: change_fps(v, 0.5),
    "fps_1_5x": lambda v: change_fps(v, 1.5),
    "drop_frames": lambda v: drop_frames(v, 0.2),
}
"""Named degradations at test strength: ``name -> video -> video``."""


ROBUSTNESS = {
    "speed_0.25x": lambda v: speed(v, 0.25),
    "speed_0.5x": lambda v: speed(v, 0.5),
    "speed_2x": lambda v: speed(v, 2.0),
    "speed_3x": lambda v: speed(v, 3.0),
    "speed_4x": lambda v: speed(v, 4.0),
    "pause": lambda v: pause(v, 0.5, 12),
    "tail": lambda v: tail(v),
    "blur": lambda v: blur(v, 1.5),
    "noise": lambda v: noise(v, 10.0),
    "h264_crf38": lambda v: h264(v, crf=38),
    "jpeg_q30": lambda v: jpeg(v, 30),
    "resize_down_up": lambda v: resize_down_up(v, 0.5),
    "resize_2x": lambda v: resize(v, (v.shape[1] * 2, v.shape[2] * 2)),
    "stretch_16_9": lambda v: stretch(v, 16 / 9),
    "letterbox_16_9": lambda v: letterboxed(v, 16 / 9),
    "colour_jitter": lambda v: colour_jitter(v),
    "camera_shift": lambda v: shift(v, 3, 2),
}
"""What the referee must still judge solved, at the strengths of the robustness bench
(bench/bench_referee_robustness.py): ``name -> video -> video``."""
