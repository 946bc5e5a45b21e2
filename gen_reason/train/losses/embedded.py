"""The embedded pixel-space model: :class:`EmbeddedObjective` (LoRA or full fine-tuning of
an exported pipeline on a dataset, one generator per sample) and
:class:`DenoisingObjective` (``genreason train embedded``: training from scratch on
rendered mazes, one generator per step)."""

from __future__ import annotations

import numpy as np
import torch

from gen_reason.models.embedded_parts import resample_indices
from gen_reason.train.losses.base import Objective, ddpm_draws, ddpm_target, masked_mse


class EmbeddedObjective(Objective):
    """The embedded pixel-space model: v-prediction (the scheduler's type) on frames stacked as channels."""

    name = "embedded"
    targets = ("to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2")  # attention and the resnets' convolutions
    text_components = ()
    image_components = ()
    video_components = ()

    @property
    def model(self):
        return self.pipe.unet

    @property
    def model_attribute(self):
        return "unet"

    @property
    def device(self):
        return self.pipe.unet.device

    def _pad(self, frames: np.ndarray) -> np.ndarray:
        """``(T, H, W, 3)`` uint8 -> ``(T, R, R, 3)``: resized down when larger, padded bottom/right as the pipeline."""
        import cv2

        from gen_reason.models.embedded_parts import pad_video

        size = self.pipe.resolution
        height, width = frames.shape[1:3]
        if height > size or width > size:
            scale = size / max(height, width)
            shape = (max(1, round(width * scale)), max(1, round(height * scale)))
            frames = np.stack([cv2.resize(f, shape, interpolation=cv2.INTER_AREA) for f in frames])
        return pad_video(frames, size, self.pipe.config.pad_color)

    def video_pixels(self, frames):
        frames = self._pad(frames[resample_indices(len(frames), self.pipe.num_frames)])
        return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float() / 127.5 - 1.0

    def image_pixels(self, image):
        frame = self._pad(image[None])[0]
        return torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float() / 127.5 - 1.0

    def encode_prompt(self, prompt):
        return {}  # the embedded model takes no text

    def encode_image(self, image, pixels, sample_seed):
        return {"condition": pixels}  # pixel space: the padded first frame itself

    def encode_video(self, pixels):
        return {"latent_mean": pixels}  # pixel space: the video is x0

    def loss(self, model, batch, generators):
        from gen_reason.models.embedded_parts import stack_frames

        scheduler = self.pipe.scheduler
        x0 = batch["latent_mean"].float()
        timesteps, noise = ddpm_draws(scheduler, generators, x0.shape[1:], x0.device)
        noisy = scheduler.add_noise(x0, noise, timesteps)
        target = ddpm_target(scheduler, scheduler.config.get("prediction_type", "epsilon"), x0, noise, timesteps)
        dtype = self.pipe.unet.dtype
        model_input = torch.cat([stack_frames(noisy), batch["condition"].float()], dim=1).to(dtype)
        prediction = model(model_input, timesteps).sample
        return masked_mse(prediction, stack_frames(target))


def diffusion_loss(unet, noise_scheduler, video: torch.Tensor, condition: torch.Tensor,
                   generator: torch.Generator) -> torch.Tensor:
    """MSE of the scheduler's prediction target on ``video`` ``[B, 3, F, R, R]`` given its first
    frame ``condition`` ``[B, 3, R, R]``: the clean video, ``v`` or the noise, as
    ``noise_scheduler.config.prediction_type`` says. Timesteps are uniform over the
    training schedule; noise and timesteps come from ``generator``.
    """
    from gen_reason.models.embedded_parts import stack_frames

    noise = torch.randn(video.shape, generator=generator).to(video.device)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (video.shape[0],),
                              generator=generator).to(video.device)
    noisy = noise_scheduler.add_noise(video, noise, timesteps)
    target = ddpm_target(noise_scheduler, noise_scheduler.config.prediction_type, video, noise, timesteps)
    prediction = unet(torch.cat([stack_frames(noisy), condition], dim=1), timesteps).sample
    return torch.nn.functional.mse_loss(prediction.float(), stack_frames(target))


class DenoisingObjective:
    """The embedded model trained from scratch (``genreason train embedded``): rendered maze
    videos in pixel space, one noise generator per step (a pure function of the seed and
    step, drawn for the whole batch), the loss :func:`diffusion_loss`.

    Unlike :class:`EmbeddedObjective` (LoRA on the exported pipeline, one generator per
    sample of a dataset), its batches come straight from the renderer, so a run's numbers
    stay those of every earlier embedded training.
    """

    name = "embedded-denoising"

    def __init__(self, noise_scheduler) -> None:
        self.noise_scheduler = noise_scheduler

    def loss(self, model, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        """The loss of a batch ``{"video", "condition"}`` with the step's noise ``generator``."""
        return diffusion_loss(model, self.noise_scheduler, batch["video"], batch["condition"], generator)


