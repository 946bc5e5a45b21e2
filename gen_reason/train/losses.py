"""Per-family training objectives: what the encoders make of a sample, and the loss.

An :class:`Objective` knows one pipeline family's recipe, mirroring how its diffusers
pipeline conditions the denoiser at inference, so a model trained here is used the
same way it was trained:

- :class:`WanObjective` (Wan 2.1 I2V, Wan 2.2 TI2V-5B, Wan 2.2 I2V-A14B): flow matching.
  The transformer sees ``cat([x_t, mask (4 ch), image latent (16 ch)])`` (2.1 and A14B,
  the condition made by ``pipe.prepare_latents`` itself) or, with ``expand_timesteps``
  (TI2V-5B), ``x_t`` whose first latent frame is the clean image latent and a per-token
  timestep that is 0 there; the loss skips that frame. A14B has two experts
  (:class:`WanExperts`): each sample goes to the expert that denoises its timestep at
  inference, ``pipe.transformer`` for ``t >= boundary_ratio * num_train_timesteps`` (high
  noise), ``pipe.transformer_2`` below; a batch that mixes both is split, each part run
  through its own expert, so only that expert's adapter gets the sample's gradient.
- :class:`LTXObjective` (LTX-Video I2V): flow matching on packed tokens; latent frame 0
  is the clean image latent with timestep 0, and the loss skips it.
- :class:`CogVideoXObjective` (CogVideoX I2V): DDPM noise at a uniform integer timestep,
  the image latents (from a slightly noised image, as diffusers' I2V LoRA example)
  concatenated on channels, and the target the scheduler's ``prediction_type`` names
  (``get_velocity`` for v-prediction).
- :class:`EmbeddedObjective` (the embedded pixel-space model): as
  :mod:`gen_reason.train.embedded` trains it, v-prediction on stacked frames.

Flow matching: ``x_t = (1 - s) x0 + s n``, target ``n - x0``, the transformer's timestep
``1000 s``; ``s`` from ``compute_density_for_timestep_sampling`` (logit-normal by
default) pushed through the scheduler's shift ``s' = k s / (1 + (k - 1) s)`` (LTX with
dynamic shifting: ``k = exp(mu(sequence length))``), weighted by
``compute_loss_weighting_for_sd3``.

Every random draw of a sample (latent sample, timestep, noise) comes from that sample's
own CPU ``torch.Generator``, so a sample's loss is the same whichever process or batch
it lands in, and a resumed run draws exactly what an uninterrupted one would.

Encoders return tensors without a batch dimension, on the CPU (the cache keeps them
there); :meth:`Objective.loss` gets them stacked and moved to the model's device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from gen_reason.errors import UserError
from gen_reason.models.families import CogVideoXFamily, Family, Geometry, LTXFamily, WanFamily

#: LoRA target modules per objective (attention q/k/v/out plus the feed-forward, as VR-Bench).
DEFAULT_TARGETS: dict[str, tuple[str, ...]] = {
    "wan": ("to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2"),
    "cogvideox": ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"),
    "ltx": ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"),
    "embedded": ("to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"),
}


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

#: Which Wan 2.2 A14B experts train: both, only ``transformer`` (high noise) or only ``transformer_2`` (low noise).
EXPERTS = ("both", "high", "low")
#: Draws of a timestep that may fall outside a single trained expert's range before we give up.
MAX_TIMESTEP_DRAWS = 1000


def sample_generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded by a hash of ``keys`` (e.g. seed, data position, batch slot)."""
    seed = int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0] % (2**63))
    return torch.Generator().manual_seed(seed)


def _randn(shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32)


def draw_latents(mean: torch.Tensor, std: torch.Tensor | None, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """A sample of each item's latent distribution (its mean when ``std`` is ``None``)."""
    if std is None:
        return mean.float()
    noise = torch.stack([_randn(mean.shape[1:], g) for g in generators]).to(mean.device)
    return mean.float() + std.float() * noise


def resample_indices(have: int, want: int) -> np.ndarray:
    """Frame indices taking a ``have``-frame video to ``want`` frames (nearest in time, both ends kept)."""
    if want == have:
        return np.arange(have)
    if want == 1:
        return np.zeros(1, dtype=int)
    return np.round(np.linspace(0, have - 1, want)).astype(int)


class Objective:
    """One family's encoders and loss. Subclasses set :attr:`name` and implement the hooks."""

    name = "base"
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
        return DEFAULT_TARGETS[self.name]

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


class WanExperts(torch.nn.Module):
    """Wan 2.2 A14B's two experts as one network: each sample runs through the expert that owns its timestep.

    As ``WanImageToVideoPipeline`` switches at inference: ``transformer`` (high noise) for
    ``timestep >= boundary_timestep`` (``boundary_ratio * num_train_timesteps``),
    ``transformer_2`` (low noise) below. A batch whose samples fall on both sides is
    split, each part goes through its own expert, and the predictions come back in the
    batch's order; an expert with no sample in the batch does not run (its weights get
    no gradient). One module, one forward call per micro-batch: what data-parallel
    training (DDP, with ``find_unused_parameters``) expects.
    """

    def __init__(self, transformer: torch.nn.Module, transformer_2: torch.nn.Module, boundary_timestep: float) -> None:
        super().__init__()
        self.transformer = transformer
        self.transformer_2 = transformer_2
        self.boundary_timestep = float(boundary_timestep)

    def is_high_noise(self, timestep: torch.Tensor) -> torch.Tensor:
        """Per sample: True where ``transformer`` (the high-noise expert) denoises this timestep."""
        return timestep >= self.boundary_timestep

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                encoder_hidden_states_image: torch.Tensor | None = None, return_dict: bool = False):
        """The experts' predictions for the batch, as a one-element tuple (as ``return_dict=False``)."""
        if timestep.ndim != 1:
            raise ValueError("WanExperts routes whole samples: it takes one timestep per sample, shape [B]")
        high = self.is_high_noise(timestep)
        parts, order = [], []
        for expert, chosen in ((self.transformer, high), (self.transformer_2, ~high)):
            index = chosen.nonzero().flatten()
            if index.numel() == 0:
                continue
            image = None if encoder_hidden_states_image is None else encoder_hidden_states_image[index]
            parts.append(expert(hidden_states=hidden_states[index], timestep=timestep[index],
                                encoder_hidden_states=encoder_hidden_states[index],
                                encoder_hidden_states_image=image, return_dict=False)[0])
            order.append(index)
        return (torch.cat(parts)[torch.argsort(torch.cat(order))],)  # back in the batch's order


class WanObjective(Objective):
    """Wan 2.1 I2V, Wan 2.2 TI2V-5B (``expand_timesteps``) and Wan 2.2 I2V-A14B (two experts): flow matching.

    ``experts`` (A14B only): ``both`` trains an adapter on each expert, each sample going
    to the expert that owns its timestep; ``high`` / ``low`` trains only
    ``transformer`` / ``transformer_2`` and draws only the timesteps that expert owns
    (the logit-normal density, shifted, restricted to its side of the boundary).
    """

    name = "wan"
    image_components = ("vae", "image_encoder")
    max_sequence_length = 512  # what WanImageToVideoPipeline.__call__ pads the prompt to

    def __init__(self, pipe, family, geometry, noise=None, experts: str = "both") -> None:
        super().__init__(pipe, family, geometry, noise)
        if experts not in EXPERTS:
            raise UserError(f"experts must be one of {', '.join(EXPERTS)}; got {experts!r}")
        self.expand_timesteps = bool(pipe.config.get("expand_timesteps", False))
        self.experts = experts
        self.mixture: WanExperts | None = None
        if getattr(pipe, "transformer_2", None) is not None:
            boundary_ratio = pipe.config.get("boundary_ratio")
            if boundary_ratio is None or getattr(pipe, "transformer", None) is None:
                raise UserError("this Wan pipeline has a transformer_2 but not both experts and a boundary_ratio; "
                                "training needs the Wan 2.2 A14B layout (transformer, transformer_2, boundary_ratio)")
            boundary = float(boundary_ratio) * float(pipe.scheduler.config.get("num_train_timesteps", 1000))
            self.mixture = WanExperts(pipe.transformer, pipe.transformer_2, boundary)
        elif experts != "both":
            raise UserError(f"experts: {experts} applies to Wan 2.2 A14B (two experts); this model has one "
                            "transformer, so leave experts at both")

    @property
    def model(self) -> torch.nn.Module:
        """The transformer, or on A14B both experts behind one router (:class:`WanExperts`)."""
        return self.pipe.transformer if self.mixture is None else self.mixture

    @property
    def trained_modules(self) -> dict[str, torch.nn.Module]:
        if self.mixture is None:
            return {"transformer": self.pipe.transformer}
        chosen = {"both": ("transformer", "transformer_2"), "high": ("transformer",), "low": ("transformer_2",)}
        return {name: getattr(self.pipe, name) for name in chosen[self.experts]}

    def accepts_timestep(self, timestep):
        # One expert trains: draw only timesteps it owns (the other expert could learn nothing from the rest).
        if self.mixture is None or self.experts == "both":
            return True
        high = bool(self.mixture.is_high_noise(timestep).all())
        return high if self.experts == "high" else not high

    def timestep_range_text(self):
        if self.mixture is None or self.experts == "both":
            return "every timestep"
        sign = ">=" if self.experts == "high" else "<"
        return f"the {self.experts}-noise expert's timesteps (t {sign} {self.mixture.boundary_timestep:g})"

    def _latent_stats(self):
        vae = self.pipe.vae
        z_dim = vae.config.z_dim
        mean = torch.tensor(vae.config.latents_mean).view(z_dim, 1, 1, 1)
        inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(z_dim, 1, 1, 1)
        return mean, inv_std

    def encode_prompt(self, prompt):
        embeds, _ = self.pipe.encode_prompt(prompt=[prompt], do_classifier_free_guidance=False,
                                            max_sequence_length=self.max_sequence_length, device=self.device)
        return {"prompt_embeds": embeds[0].float().cpu()}

    def encode_image(self, image, pixels, sample_seed):
        from PIL import Image

        pipe, g = self.pipe, self.geometry
        out = {}
        if pipe.transformer.config.image_dim is not None:  # only Wan 2.1 I2V takes CLIP image tokens
            out["image_embeds"] = pipe.encode_image(Image.fromarray(np.ascontiguousarray(image)), self.device)[0]
        # The pipeline's own prepare_latents builds the condition (mask + image latent, or
        # the TI2V first-frame latent); zero "noise" latents skip its random draw.
        shape = (1, *self.family.latent_shape(pipe, g))
        prepared = pipe.prepare_latents(pixels[None].to(self.device), 1, pipe.vae.config.z_dim, g.height, g.width,
                                        g.num_frames, torch.float32, self.device, None, torch.zeros(shape))
        out["condition"] = prepared[1][0]
        return {key: value.float().cpu() for key, value in out.items()}

    def encode_video(self, pixels):
        mean, inv_std = self._latent_stats()
        latents = self._vae_encode(pixels[None]).mode()[0].float().cpu()  # as the pipeline's "argmax"
        return {"latent_mean": (latents - mean) * inv_std}

    def loss(self, model, batch, generators):
        x0 = batch["latent_mean"].float()
        batch_size = x0.shape[0]
        _, frames, height, width = x0.shape[1:]
        patch = self.pipe.transformer.config.patch_size
        sequence_length = frames * (height // patch[1]) * (width // patch[2])
        noise = torch.stack([_randn(x0.shape[1:], g) for g in generators]).to(x0.device)
        sigmas = self.flow_sigmas(generators, sequence_length)
        s = sigmas.view(-1, 1, 1, 1, 1)
        noisy = (1 - s) * x0 + s * noise
        target = noise - x0
        timesteps = sigmas * 1000.0
        mask = None
        if self.expand_timesteps:
            # TI2V-5B: latent frame 0 is the clean image and has timestep 0 (as the pipeline).
            mask = torch.ones(1, 1, frames, height, width, device=x0.device)
            mask[:, :, 0] = 0
            condition = batch["condition"].float()
            model_input = (1 - mask) * condition + mask * noisy
            per_token = mask[0, 0][:, :: patch[1], :: patch[2]].flatten()
            timestep = per_token[None] * timesteps[:, None]
        else:
            model_input = torch.cat([noisy, batch["condition"].float()], dim=1)
            timestep = timesteps
        dtype = self.pipe.transformer.dtype
        prediction = model(
            hidden_states=model_input.to(dtype),
            timestep=timestep,
            encoder_hidden_states=batch["prompt_embeds"].to(dtype),
            encoder_hidden_states_image=batch["image_embeds"].to(dtype) if "image_embeds" in batch else None,
            return_dict=False,
        )[0]
        return masked_mse(prediction, target, mask, self.flow_weights(sigmas).view(batch_size))


class LTXObjective(Objective):
    """LTX-Video image-to-video: flow matching on packed tokens, frame 0 the clean image."""

    name = "ltx"
    max_sequence_length = 128  # LTXImageToVideoPipeline's default

    def encode_prompt(self, prompt):
        embeds, mask, _, _ = self.pipe.encode_prompt(prompt=[prompt], do_classifier_free_guidance=False,
                                                     max_sequence_length=self.max_sequence_length, device=self.device)
        return {"prompt_embeds": embeds[0].float().cpu(), "prompt_attention_mask": mask[0].cpu()}

    def _normalized(self, dist) -> dict[str, torch.Tensor]:
        # As LTXImageToVideoPipeline.prepare_latents normalises the image latent.
        vae = self.pipe.vae
        mean = vae.latents_mean.view(-1, 1, 1, 1).float().cpu()
        std = vae.latents_std.view(-1, 1, 1, 1).float().cpu()
        return {"mean": (dist.mean[0].float().cpu() - mean) / std, "std": dist.std[0].float().cpu() / std}

    def encode_image(self, image, pixels, sample_seed):
        stats = self._normalized(self._vae_encode(pixels[None, :, None]))
        return {"image_mean": stats["mean"], "image_std": stats["std"]}

    def encode_video(self, pixels):
        stats = self._normalized(self._vae_encode(pixels[None]))
        return {"latent_mean": stats["mean"], "latent_std": stats["std"]}

    def loss(self, model, batch, generators):
        pipe = self.pipe
        x0 = draw_latents(batch["latent_mean"], batch["latent_std"], generators)
        image = draw_latents(batch["image_mean"], batch["image_std"], generators)
        batch_size, _, frames, height, width = x0.shape
        x0 = torch.cat([image, x0[:, :, 1:]], dim=2)
        noise = torch.stack([_randn(x0.shape[1:], g) for g in generators]).to(x0.device)
        patch, patch_t = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
        sequence_length = frames * height * width
        sigmas = self.flow_sigmas(generators, sequence_length)
        s = sigmas.view(-1, 1, 1, 1, 1)
        noisy = (1 - s) * x0 + s * noise
        noisy = torch.cat([x0[:, :, :1], noisy[:, :, 1:]], dim=2)  # the image frame stays clean
        target = noise - x0
        condition_mask = torch.zeros(batch_size, 1, frames, height, width, device=x0.device)
        condition_mask[:, :, 0] = 1.0
        packed_mask = pipe._pack_latents(condition_mask, patch, patch_t).squeeze(-1)
        timestep = (sigmas * 1000.0)[:, None] * (1 - packed_mask)
        fps = self.noise.fps or self.family.defaults.fps
        dtype = pipe.transformer.dtype
        prediction = model(
            hidden_states=pipe._pack_latents(noisy, patch, patch_t).to(dtype),
            encoder_hidden_states=batch["prompt_embeds"].to(dtype),
            timestep=timestep,
            encoder_attention_mask=batch["prompt_attention_mask"],
            num_frames=frames // patch_t,
            height=height // patch,
            width=width // patch,
            rope_interpolation_scale=(pipe.vae_temporal_compression_ratio / fps, pipe.vae_spatial_compression_ratio,
                                      pipe.vae_spatial_compression_ratio),
            return_dict=False,
        )[0]
        prediction = pipe._unpack_latents(prediction.float(), frames // patch_t, height // patch, width // patch,
                                          patch, patch_t)
        loss_mask = 1 - condition_mask
        return masked_mse(prediction, target, loss_mask, self.flow_weights(sigmas).view(batch_size))


class CogVideoXObjective(Objective):
    """CogVideoX image-to-video: DDPM noising, the scheduler's prediction type, image latents on channels."""

    name = "cogvideox"
    #: log-normal noise put on the image before encoding it (diffusers' I2V LoRA example)
    image_noise_log_mean, image_noise_log_std = -3.0, 0.5

    def __init__(self, pipe, family, geometry, noise=None) -> None:
        super().__init__(pipe, family, geometry, noise)
        patch_t = pipe.transformer.config.patch_size_t
        step = pipe.vae_scale_factor_temporal
        if patch_t is not None and ((geometry.num_frames - 1) // step + 1) % patch_t:
            # The 1.5 pipeline pads such latents at inference; training here needs none.
            raise UserError(f"CogVideoX 1.5 trains on latent frame counts divisible by {patch_t}: "
                            f"choose num_frames = {step}k + 1 with k + 1 divisible by {patch_t} (e.g. 85)")
        self.prediction_type = pipe.scheduler.config.get("prediction_type", "epsilon")
        if self.prediction_type not in ("v_prediction", "epsilon", "sample"):
            raise UserError(f"unsupported CogVideoX prediction_type {self.prediction_type!r}")

    def encode_prompt(self, prompt):
        embeds, _ = self.pipe.encode_prompt(prompt=[prompt], do_classifier_free_guidance=False,
                                            max_sequence_length=self.pipe.transformer.config.max_text_seq_length,
                                            device=self.device)
        return {"prompt_embeds": embeds[0].float().cpu()}

    def _scale(self, image: bool) -> float:
        vae = self.pipe.vae
        if image and vae.config.get("invert_scale_latents", False):
            return 1.0 / vae.config.scaling_factor  # as the pipeline (the authors' training quirk)
        return float(vae.config.scaling_factor)

    def encode_image(self, image, pixels, sample_seed):
        generator = torch.Generator().manual_seed(int(sample_seed))
        sigma = math.exp(self.image_noise_log_mean + self.image_noise_log_std * float(torch.randn(1, generator=generator)))
        noisy = pixels + sigma * torch.randn(pixels.shape, generator=generator)
        dist = self._vae_encode(noisy[None, :, None])
        scale = self._scale(image=True)
        return {"image_mean": dist.mean[0].float().cpu() * scale, "image_std": dist.std[0].float().cpu() * scale}

    def encode_video(self, pixels):
        dist = self._vae_encode(pixels[None])
        scale = self._scale(image=False)
        return {"latent_mean": dist.mean[0].float().cpu() * scale, "latent_std": dist.std[0].float().cpu() * scale}

    def loss(self, model, batch, generators):
        pipe, g = self.pipe, self.geometry
        scheduler = pipe.scheduler
        x0 = draw_latents(batch["latent_mean"], batch["latent_std"], generators).permute(0, 2, 1, 3, 4)  # [B,F,C,h,w]
        image = draw_latents(batch["image_mean"], batch["image_std"], generators).permute(0, 2, 1, 3, 4)
        image = torch.cat([image, image.new_zeros(image.shape[0], x0.shape[1] - 1, *image.shape[2:])], dim=1)
        timesteps = torch.cat([
            torch.randint(0, scheduler.config.num_train_timesteps, (1,), generator=gen) for gen in generators
        ]).to(x0.device)
        noise = torch.stack([_randn(x0.shape[1:], gen) for gen in generators]).to(x0.device)
        noisy = scheduler.add_noise(x0, noise, timesteps)
        config = pipe.transformer.config
        rotary = None
        if config.use_rotary_positional_embeddings:
            rotary = pipe._prepare_rotary_positional_embeddings(g.height, g.width, x0.shape[1], x0.device)
        ofs = None if config.ofs_embed_dim is None else x0.new_full((1,), fill_value=2.0)
        dtype = pipe.transformer.dtype
        prediction = model(
            hidden_states=torch.cat([noisy, image], dim=2).to(dtype),
            encoder_hidden_states=batch["prompt_embeds"].to(dtype),
            timestep=timesteps,
            ofs=ofs,
            image_rotary_emb=rotary,
            return_dict=False,
        )[0]
        if self.prediction_type == "v_prediction":
            # Equal to diffusers' example (x0 = get_velocity(pred, noisy, t), weight 1 / (1 - alpha_bar)).
            target = scheduler.get_velocity(x0, noise, timesteps)
        elif self.prediction_type == "epsilon":
            target = noise
        else:
            target = x0
        return masked_mse(prediction, target)


class EmbeddedObjective(Objective):
    """The embedded pixel-space model: v-prediction (the scheduler's type) on frames stacked as channels."""

    name = "embedded"
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

        from gen_reason.models.embedded import pad_video

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
        from gen_reason.models.embedded import stack_frames

        scheduler = self.pipe.scheduler
        x0 = batch["latent_mean"].float()
        timesteps = torch.cat([
            torch.randint(0, scheduler.config.num_train_timesteps, (1,), generator=gen) for gen in generators
        ]).to(x0.device)
        noise = torch.stack([_randn(x0.shape[1:], gen) for gen in generators]).to(x0.device)
        noisy = scheduler.add_noise(x0, noise, timesteps)
        prediction_type = scheduler.config.get("prediction_type", "epsilon")
        if prediction_type == "v_prediction":
            target = scheduler.get_velocity(x0, noise, timesteps)
        elif prediction_type == "epsilon":
            target = noise
        else:
            target = x0
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
    from gen_reason.models.embedded import stack_frames

    noise = torch.randn(video.shape, generator=generator).to(video.device)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (video.shape[0],),
                              generator=generator).to(video.device)
    noisy = noise_scheduler.add_noise(video, noise, timesteps)
    kind = noise_scheduler.config.prediction_type
    if kind == "sample":
        target = video
    elif kind == "v_prediction":
        target = noise_scheduler.get_velocity(video, noise, timesteps)
    else:
        target = noise
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


def objective_for(pipe, family: Family, geometry: Geometry, noise: NoiseSettings | None = None,
                  experts: str = "both") -> Objective:
    """The objective for a loaded pipeline, or a :class:`UserError` for a family we cannot train.

    ``experts`` picks which of Wan 2.2 A14B's experts train (``both``, ``high``, ``low``);
    other models have one network and take only ``both``.
    """
    if isinstance(family, WanFamily) and type(pipe).__name__ != "EmbeddedVideoPipeline":
        return WanObjective(pipe, family, geometry, noise, experts=experts)
    if experts != "both":
        raise UserError(f"experts: {experts} applies to Wan 2.2 A14B (two experts); this model has one network, "
                        "so leave experts at both")
    if type(pipe).__name__ == "EmbeddedVideoPipeline":
        return EmbeddedObjective(pipe, family, geometry, noise)
    if isinstance(family, CogVideoXFamily):
        return CogVideoXObjective(pipe, family, geometry, noise)
    if isinstance(family, LTXFamily):
        return LTXObjective(pipe, family, geometry, noise)
    raise UserError(f"training is not supported for {type(pipe).__name__} (family {family.name}); "
                    "supported: Wan 2.1 I2V, Wan 2.2 TI2V-5B and I2V-A14B, CogVideoX I2V, LTX-Video I2V, "
                    "the embedded model")


def stack_batch(items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack per-sample dicts of tensors into one batch dict."""
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}
