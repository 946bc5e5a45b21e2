"""The embedded model's building blocks: its UNet and DDIM scheduler, the stacked-frame
layout the UNet sees (``F`` RGB frames as ``3 * F`` channels), DDIM's variance and a safe
``eta``, and the padding and time resampling that fit any first frame and frame count to
the UNet (:mod:`gen_reason.models.embedded` is the pipeline built from them).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from diffusers import DDIMScheduler, UNet2DModel


def make_unet(num_frames: int = 16, resolution: int = 32, block_out_channels: Sequence[int] = (32, 64, 128),
              layers_per_block: int = 1, attention_levels: Sequence[bool] = (False, False, True),
              attention_head_dim: int = 32, norm_num_groups: int = 16) -> UNet2DModel:
    """A UNet for ``num_frames`` RGB frames of ``resolution`` px stacked as channels, first frame as condition."""
    down = tuple("AttnDownBlock2D" if attn else "DownBlock2D" for attn in attention_levels)
    up = tuple("AttnUpBlock2D" if attn else "UpBlock2D" for attn in reversed(attention_levels))
    return UNet2DModel(
        sample_size=resolution,
        in_channels=3 * num_frames + 3,
        out_channels=3 * num_frames,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block,
        down_block_types=down,
        up_block_types=up,
        attention_head_dim=attention_head_dim,
        norm_num_groups=norm_num_groups,
    )


def make_scheduler(num_train_timesteps: int = 1000, prediction_type: str = "sample") -> DDIMScheduler:
    """DDIM over a cosine schedule, clipping x0 to the pixel range.

    The default predicts the clean video (``"sample"``): with 49 frames stacked as 147
    channels, a noise or ``v`` target asks the UNet to reproduce 147 channels of
    per-pixel noise through its 32-channel first level, which it cannot (measured: the
    samples stay speckled); the clean video is redundant across frames and fits.
    """
    return DDIMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule="squaredcos_cap_v2",
        prediction_type=prediction_type,
        clip_sample=True,
        clip_sample_range=1.0,
        set_alpha_to_one=True,
        timestep_spacing="trailing",  # the first step starts from pure noise (t = T - 1)
    )


def stack_frames(video: torch.Tensor) -> torch.Tensor:
    """``[B, 3, F, H, W]`` -> ``[B, 3F, H, W]`` (frame-major channels)."""
    b, c, f, h, w = video.shape
    return video.permute(0, 2, 1, 3, 4).reshape(b, f * c, h, w)


def unstack_frames(stacked: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``[B, 3F, H, W]`` -> ``[B, 3, F, H, W]``."""
    b, _, h, w = stacked.shape
    return stacked.reshape(b, num_frames, 3, h, w).permute(0, 2, 1, 3, 4)


def ddim_variance(scheduler: DDIMScheduler, timestep: int) -> tuple[float, float]:
    """``(var, alpha_prev)`` of DDIM's step from ``timestep``: the DDIM paper's (eq. 16)
    ``var = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)`` on the scheduler's cumulative
    alphas, with the previous timestep as DDIMScheduler.step takes it (``a_prev`` is the
    final alpha past the first training step). Written from the scheduler's public
    attributes, not its private helper, in the same order and precision (the scheduler's
    float32 tensors), so the number is the one the step uses."""
    prev = timestep - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    alpha_t = scheduler.alphas_cumprod[timestep]
    alpha_prev = scheduler.alphas_cumprod[prev] if prev >= 0 else scheduler.final_alpha_cumprod
    variance = ((1 - alpha_prev) / (1 - alpha_t)) * (1 - alpha_t / alpha_prev)
    return float(variance), float(alpha_prev)


def safe_eta(scheduler: DDIMScheduler, timestep: int, eta: float, margin: float = 1e-4) -> float:
    """``eta`` capped so that DDIM's step stays real: the step draws noise of variance
    ``eta**2 * var`` and keeps ``sqrt(1 - alpha_prev - eta**2 * var)`` of the predicted
    noise; at ``eta = 1`` that root is of exactly 0 on a long first step (from pure noise,
    e.g. 5 trailing steps of the cosine schedule), which float rounding can make negative
    (NaN video). The cap leaves ``margin`` of that room, so eta 1 is in effect
    ``1 - margin / 2`` on such a step and unchanged elsewhere."""
    if eta <= 0:
        return eta
    variance, alpha_prev = ddim_variance(scheduler, timestep)
    if variance <= 0:
        return eta
    return float(min(eta, ((1.0 - alpha_prev) * (1.0 - margin) / variance) ** 0.5))


def pad_image(arr: np.ndarray, size: int, color: Sequence[int]) -> np.ndarray:
    """Pad ``(H, W, 3)`` uint8 at the bottom and right to ``size x size`` with ``color``.

    Bottom-right padding keeps every pixel coordinate of the puzzle's spec valid.
    """
    return pad_video(arr[None], size, color)[0]


def pad_video(video: np.ndarray, size: int, color: Sequence[int]) -> np.ndarray:
    """Pad ``(T, H, W, 3)`` uint8 frames at the bottom and right to ``size x size``."""
    t, h, w = video.shape[:3]
    if h == size and w == size:
        return video
    out = np.empty((t, size, size, 3), np.uint8)
    out[:] = np.asarray(color, np.uint8)
    out[:, :h, :w] = video
    return out


def resample_indices(have: int, want: int) -> np.ndarray:
    """Frame indices taking a ``have``-frame video to ``want`` frames (nearest in time, ends kept)."""
    if want == have:
        return np.arange(have)
    if want == 1:
        return np.zeros(1, dtype=int)
    return np.round(np.linspace(0, have - 1, want)).astype(int)
