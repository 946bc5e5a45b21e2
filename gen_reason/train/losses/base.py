"""What every family's objective shares: the :class:`Objective` interface (encoders, loss,
the trained network), timestep sampling for flow matching (:class:`NoiseSettings`), the
per-sample random sources, and the losses' building blocks (:func:`masked_mse`, the DDPM
target a scheduler's ``prediction_type`` names)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from gen_reason.errors import UserError
from gen_reason.models.embedded_parts import resample_indices
from gen_reason.models.families import Family, Geometry


@dataclass(frozen=True)
class NoiseSettings:
    """How timesteps are drawn and losses weighted (flow-matching families).

    ``weighting_scheme``: ``logit_normal``, ``mode``, ``uniform`` (density), or
    ``sigma_sqrt`` / ``cosmap`` (uniform density, weighted loss), as diffusers' SD3
    training script. ``flow_shift``: ``None`` takes the scheduler's own shift.
    ``fps``: LTX's temporal RoPE scale (``None``: the family's default frame rate).
    """

    weighting_scheme: str = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    mode_scale: float = 1.29
    flow_shift: float | None = None
    fps: int | None = None


SCHEMES = ("logit_normal", "mode", "uniform", "sigma_sqrt", "cosmap", "none")

#: Draws of a timestep that may fall outside a single trained expert's range before we give up.
MAX_TIMESTEP_DRAWS = 1000


def sample_generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded by a hash of ``keys`` (e.g. seed, data position, batch slot)."""
    seed = int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0] % (2**63))
    return torch.Generator().manual_seed(seed)


def sample_noise(shape: Sequence[int], generators: Sequence[torch.Generator], device) -> torch.Tensor:
    """One standard-normal float32 draw of ``shape`` per sample, each from the sample's own
    generator, stacked into a batch on ``device``."""
    return torch.stack([torch.randn(tuple(shape), generator=g, dtype=torch.float32) for g in generators]).to(device)


def draw_latents(mean: torch.Tensor, std: torch.Tensor | None, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """A sample of each item's latent distribution (its mean when ``std`` is ``None``)."""
    if std is None:
        return mean.float()
    return mean.float() + std.float() * sample_noise(mean.shape[1:], generators, mean.device)


def ddpm_draws(scheduler, generators: Sequence[torch.Generator], shape: Sequence[int],
               device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(timesteps, noise)`` of a DDPM-style objective: per sample, a timestep uniform over
    the scheduler's training steps, then its noise of ``shape``, both from its own generator."""
    timesteps = torch.cat([
        torch.randint(0, scheduler.config.num_train_timesteps, (1,), generator=g) for g in generators
    ]).to(device)
    return timesteps, sample_noise(shape, generators, device)


def ddpm_target(scheduler, prediction_type: str, x0: torch.Tensor, noise: torch.Tensor,
                timesteps: torch.Tensor) -> torch.Tensor:
    """What the network predicts under ``prediction_type``: ``v_prediction`` the velocity
    (``scheduler.get_velocity``), ``epsilon`` the noise, ``sample`` the clean ``x0``."""
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(x0, noise, timesteps)
    if prediction_type == "epsilon":
        return noise
    return x0


class Objective:
    """One family's encoders and loss. Subclasses set :attr:`name` and implement the hooks."""

    name = "base"
    #: LoRA target modules when the config names none (attention q/k/v/out plus the feed-forward, as VR-Bench)
    targets: tuple[str, ...] = ()
    #: components (pipeline attribute names) that the encoders use, by cache kind
    text_components: tuple[str, ...] = ("text_encoder",)
    image_components: tuple[str, ...] = ("vae",)
    video_components: tuple[str, ...] = ("vae",)

    def __init__(self, pipe, family: Family, geometry: Geometry, noise: NoiseSettings | None = None) -> None:
        self.pipe, self.family, self.geometry = pipe, family, geometry
        self.noise = noise or NoiseSettings()
        if self.noise.weighting_scheme not in SCHEMES:
            raise UserError(f"weighting_scheme must be one of {', '.join(SCHEMES)}; got {self.noise.weighting_scheme!r}")

    # -- the model ----------------------------------------------------------------------------
    @property
    def model(self) -> torch.nn.Module:
        """The network trained (its LoRA or all of it)."""
        return self.pipe.transformer

    @property
    def model_attribute(self) -> str:
        """Its attribute name on the pipeline (``transformer`` or ``unet``)."""
        return "transformer"

    @property
    def trained_modules(self) -> dict[str, torch.nn.Module]:
        """The networks that get adapters (or are fine-tuned), by pipeline attribute name."""
        return {self.model_attribute: self.model}

    @property
    def device(self) -> torch.device:
        return self.pipe._execution_device

    @property
    def default_targets(self) -> tuple[str, ...]:
        """LoRA target modules when the config names none."""
        return self.targets

    # -- pixels -------------------------------------------------------------------------------
    def video_pixels(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 frames ``(T, H, W, 3)`` -> ``[3, F, H, W]`` in ``[-1, 1]`` at the training geometry.

        Frames are resampled in time (nearest, ends kept) and resized exactly as the
        pipeline resizes its input image, so the first frame matches what inference sees.
        """
        from PIL import Image

        g = self.geometry
        frames = frames[resample_indices(len(frames), g.num_frames)]
        pictures = [Image.fromarray(np.ascontiguousarray(frame)) for frame in frames]
        video = self.pipe.video_processor.preprocess(pictures, height=g.height, width=g.width)  # [F, 3, H, W]
        return video.permute(1, 0, 2, 3).float().contiguous()

    def image_pixels(self, image: np.ndarray) -> torch.Tensor:
        """A uint8 first frame ``(H, W, 3)`` -> ``[3, H, W]`` in ``[-1, 1]``, as the pipeline prepares it."""
        from PIL import Image

        g = self.geometry
        picture = Image.fromarray(np.ascontiguousarray(image))
        return self.pipe.video_processor.preprocess(picture, height=g.height, width=g.width)[0].float()

    # -- encoders (run once per prompt / sample when cached) ----------------------------------
    def encode_prompt(self, prompt: str) -> dict[str, torch.Tensor]:
        """Text conditioning of one prompt."""
        raise NotImplementedError

    def encode_image(self, image: np.ndarray, pixels: torch.Tensor, sample_seed: int) -> dict[str, torch.Tensor]:
        """Image conditioning of one first frame (``image`` uint8, ``pixels`` from :meth:`image_pixels`)."""
        raise NotImplementedError

    def encode_video(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """``latent_mean`` (and ``latent_std`` for families that sample) of one video, canonical ``[C, F, h, w]``."""
        raise NotImplementedError

    # -- the loss -----------------------------------------------------------------------------
    def loss(self, model, batch: dict[str, torch.Tensor], generators: Sequence[torch.Generator]) -> torch.Tensor:
        """The batch's mean loss; ``model`` is the (possibly wrapped) network to call."""
        raise NotImplementedError

    # -- shared helpers -----------------------------------------------------------------------
    def _vae_encode(self, pixels: torch.Tensor):
        vae = self.pipe.vae
        return vae.encode(pixels.to(device=vae.device, dtype=vae.dtype)).latent_dist

    def flow_shift(self, sequence_length: int) -> float:
        """The shift ``k`` of the flow-matching sigmas at this sequence length."""
        if self.noise.flow_shift is not None:
            return float(self.noise.flow_shift)
        config = self.pipe.scheduler.config
        if config.get("use_dynamic_shifting"):
            from diffusers.pipelines.ltx.pipeline_ltx import calculate_shift

            mu = calculate_shift(sequence_length, config.get("base_image_seq_len", 256),
                                 config.get("max_image_seq_len", 4096), config.get("base_shift", 0.5),
                                 config.get("max_shift", 1.15))
            return math.exp(mu)
        for key in ("shift", "flow_shift"):  # FlowMatchEuler / UniPC and DPM with flow sigmas
            if config.get(key) is not None:
                return float(config[key])
        return 1.0

    def flow_sigmas(self, generators: Sequence[torch.Generator], sequence_length: int) -> torch.Tensor:
        """One shifted sigma in (0, 1) per sample (only sigmas :meth:`accepts_timestep` keeps)."""
        from diffusers.training_utils import compute_density_for_timestep_sampling

        scheme = self.noise.weighting_scheme
        density = scheme if scheme in ("logit_normal", "mode") else "uniform"
        shift = self.flow_shift(sequence_length)
        sigmas = []
        for g in generators:
            for _ in range(MAX_TIMESTEP_DRAWS):
                u = compute_density_for_timestep_sampling(density, 1, self.noise.logit_mean, self.noise.logit_std,
                                                          self.noise.mode_scale, generator=g)
                sigma = shift * u / (1 + (shift - 1) * u)
                # The same float32 product the loss hands the model, so the check and the routing agree.
                if self.accepts_timestep(sigma * 1000.0):
                    break
            else:
                raise UserError(f"{MAX_TIMESTEP_DRAWS} timestep draws ({scheme}, shift {shift:g}) all fell outside "
                                f"{self.timestep_range_text()}; choose another weighting_scheme or flow_shift")
            sigmas.append(sigma)
        return torch.cat(sigmas).to(self.device)

    def accepts_timestep(self, timestep: torch.Tensor) -> bool:
        """Whether a drawn timestep (``1000 sigma``) is one the trained network(s) see; rejected ones are redrawn."""
        return True

    def timestep_range_text(self) -> str:
        """The accepted timesteps, in words (for errors)."""
        return "every timestep"

    def flow_weights(self, sigmas: torch.Tensor) -> torch.Tensor:
        from diffusers.training_utils import compute_loss_weighting_for_sd3

        return compute_loss_weighting_for_sd3(self.noise.weighting_scheme, sigmas).float()


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
               weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch of each sample's (masked) mean squared error, times its weight."""
    error = (prediction.float() - target.float()) ** 2
    if mask is not None:
        mask = mask.to(error).expand_as(error)
        per_sample = (error * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp_min(1)
    else:
        per_sample = error.flatten(1).mean(1)
    if weights is not None:
        per_sample = per_sample * weights.to(per_sample)
    return per_sample.mean()


def stack_batch(items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack per-sample dicts of tensors into one batch dict."""
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}
