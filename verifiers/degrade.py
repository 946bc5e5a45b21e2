"""Video degradations for robustness tests of the referee.

A referee that scores a clean ground-truth video as solved must still do so when the
video went through what generated videos go through: lossy H.264, resizing, blur,
sensor-like noise, colour jitter and drift, another frame rate, dropped frames. Every function
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
