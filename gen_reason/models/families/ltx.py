"""LTX-Video image-to-video: 0.9.0/0.9.1 (``LTXImageToVideoPipeline``, packed token latents)
and 0.9.5+ (``LTXConditionPipeline``, the image as a condition on frame 0).
"""

from __future__ import annotations

import contextlib

import torch

from gen_reason.models.families.base import Family, FamilyDefaults, Limits

#: ``_class_name`` -> pipeline class. LTX-Video 0.9.0/0.9.1 folders say LTXPipeline (text to
#: video); they run image-conditioned through the image-to-video pipeline built from the same
#: components. LTX-Video 0.9.5+ runs its own condition pipeline.
PIPELINE_CLASSES = {
    "LTXImageToVideoPipeline": "diffusers:LTXImageToVideoPipeline",
    "LTXPipeline": "diffusers:LTXImageToVideoPipeline",
    "LTXConditionPipeline": "diffusers:LTXConditionPipeline",
}

LTX_NEGATIVE_PROMPT = "worst quality, inconsistent motion, blurry, jittery, distorted"


class LTXFamily(Family):
    """LTX-Video 0.9.0/0.9.1 image-to-video: packed token latents; frame 0 holds the image and is never denoised.

    ``decode_timestep`` / ``decode_noise_scale`` matter only for VAEs with timestep
    conditioning (LTX 0.9.1+; 0.9.0's VAE ignores them).
    """

    objective = "gen_reason.train.losses.ltx:LTXObjective"

    extra_options = ("decode_timestep", "decode_noise_scale", "guidance_rescale")

    def limits(self, configs: dict[str, dict]) -> Limits:
        vae, transformer = configs.get("vae", {}), configs.get("transformer", {})
        patch, patch_t = int(vae.get("patch_size", 4)), int(vae.get("patch_size_t", 1))
        scaling = vae.get("spatio_temporal_scaling", (True, True, True, False))
        spatial = vae.get("spatial_compression_ratio") or patch * 2 ** sum(bool(flag) for flag in scaling)
        temporal = vae.get("temporal_compression_ratio") or patch_t * 2 ** sum(bool(flag) for flag in scaling)
        return Limits(size_multiple=int(spatial) * int(transformer.get("patch_size", 1)), frame_step=int(temporal))

    def frame_step(self, pipe) -> int:
        return int(pipe.vae_temporal_compression_ratio)

    def size_multiple(self, pipe) -> int:
        return int(pipe.vae_spatial_compression_ratio) * int(pipe.transformer_spatial_patch_size)

    def latent_shape(self, pipe, geometry):
        spatial = int(pipe.vae_spatial_compression_ratio)
        frames = (geometry.num_frames - 1) // self.frame_step(pipe) + 1
        return (self.latent_channels(pipe), frames, geometry.height // spatial, geometry.width // spatial)

    def latent_channels(self, pipe) -> int:
        return int(pipe.transformer.config.in_channels)

    def call_kwargs(self, pipe, options: FamilyDefaults) -> dict:
        kwargs = {"frame_rate": options.fps}  # sets the temporal RoPE scale
        if options.guidance_rescale is not None:
            kwargs["guidance_rescale"] = float(options.guidance_rescale)
        return kwargs

    def to_canonical(self, pipe, latents, geometry):
        _, frames, height, width = self.latent_shape(pipe, geometry)
        return _unpack(pipe, latents, frames, height, width)

    def from_canonical(self, pipe, latents, geometry):
        return pipe._pack_latents(latents, pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size)

    def x0_to_canonical(self, pipe, x0, latents, prepared):
        # The scheduler steps frames 1.. only; frame 0 is the image latent.
        return torch.cat([latents[:, :, :1].to(x0), x0], dim=2)

    def replace_noise(self, pipe, prepared, noise, geometry):
        packed, *rest = prepared
        latents = self.to_canonical(pipe, packed, geometry)
        latents = torch.cat([latents[:, :, :1], noise[:, :, 1:].to(latents)], dim=2)
        return (self.from_canonical(pipe, latents, geometry), *rest)

    def decode(self, pipe, latents, generator, options: FamilyDefaults | None = None):
        vae = pipe.vae
        options = options or self.defaults
        decode_timestep = options.decode_timestep or 0.0
        latents = pipe._denormalize_latents(latents, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)
        latents = latents.to(dtype=vae.dtype)
        timestep = None
        if vae.config.timestep_conditioning:
            # As the pipelines do: the noise scale defaults to the decode timestep.
            scale = decode_timestep if options.decode_noise_scale is None else options.decode_noise_scale
            if scale:
                noise = torch.randn(latents.shape, generator=generator, dtype=latents.dtype)
                latents = (1 - scale) * latents + scale * noise.to(latents.device)
            timestep = torch.full((latents.shape[0],), decode_timestep, device=latents.device, dtype=latents.dtype)
        return vae.decode(latents, timestep, return_dict=False)[0]


class LTXConditionFamily(LTXFamily):
    """LTX-Video 0.9.5+ through ``LTXConditionPipeline``: the image is a condition on frame 0.

    The scheduler steps every token with its own timestep (conditioning tokens at 0) on the
    negated velocity, so the step's clean estimate covers frame 0 too; the latent output is
    already unpacked.
    """

    repeat_image = False  # one condition serves the whole batch

    def image_kwargs(self, pipe, picture, count: int) -> dict:
        from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

        return {"conditions": [LTXVideoCondition(image=picture, frame_index=0, strength=1.0)]}

    def call_context(self, pipe):
        # The pipeline samples the condition's latent once per batch with the batch's first
        # generator, so a sample (and every later draw of that generator) would depend on its
        # batch mates: during the call the VAE's encoding gives its mode, the same for all.
        from diffusers.models.modeling_outputs import AutoencoderKLOutput

        from gen_reason.models.step_capture import shadow

        original = pipe.vae.encode

        def encode(*args, **kwargs):
            return AutoencoderKLOutput(latent_dist=_ModeOnly(original(*args, **kwargs).latent_dist))

        @contextlib.contextmanager
        def mode_encoding():
            restore = shadow(pipe.vae, "encode", encode)
            try:
                yield
            finally:
                restore()

        return mode_encoding()

    def x0_to_canonical(self, pipe, x0, latents, prepared):
        _, _, frames, height, width = latents.shape
        return _unpack(pipe, x0, frames, height, width)

    def output_latents(self, pipe, latents, geometry):
        return latents


def _unpack(pipe, packed: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
    """Packed LTX tokens -> canonical ``[B, C, frames, height, width]`` latents."""
    patch, patch_t = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
    return pipe._unpack_latents(packed, frames // patch_t, height // patch, width // patch, patch, patch_t)


class _ModeOnly:
    """A latent distribution whose samples are its mode (deterministic image conditioning)."""

    def __init__(self, distribution) -> None:
        self.distribution = distribution

    def sample(self, generator=None) -> torch.Tensor:
        return self.distribution.mode()

    def mode(self) -> torch.Tensor:
        return self.distribution.mode()


# Defaults below follow each model's own documentation; the URL on each says where.
LTX_I2V = LTXFamily(
    "ltx-i2v",
    # https://huggingface.co/docs/diffusers/api/pipelines/ltx_video and https://huggingface.co/Lightricks/LTX-Video:
    # 704x512 (sides multiples of 32), 161 frames (8N+1), frame_rate 25 (the pipeline's), 50 steps, guidance 3,
    # decode_timestep 0.03 and decode_noise_scale 0.025 for the timestep-aware VAE (0.9.1).
    FamilyDefaults(
        size=(512, 704), num_frames=161, fps=25, steps=50, guidance=3.0, negative_prompt=LTX_NEGATIVE_PROMPT,
        decode_timestep=0.03, decode_noise_scale=0.025,
    ),
)
LTX_CONDITION = LTXConditionFamily(
    "ltx-condition",
    # https://huggingface.co/docs/diffusers/api/pipelines/ltx_video (LTX-Video 0.9.7-dev example):
    # 768x512 first pass, 161 frames, 30 steps, guidance 5.0 with guidance_rescale 0.7,
    # decode_timestep 0.05, decode_noise_scale 0.025; frame_rate 25 (the pipeline's).
    FamilyDefaults(
        size=(512, 768), num_frames=161, fps=25, steps=30, guidance=5.0, negative_prompt=LTX_NEGATIVE_PROMPT,
        decode_timestep=0.05, decode_noise_scale=0.025, guidance_rescale=0.7,
    ),
)

#: Every LTX family, in the order :data:`gen_reason.models.families.FAMILIES` lists them.
FAMILIES = (LTX_I2V, LTX_CONDITION)


def choose(class_name: str, model_index: dict, configs: dict[str, dict], folder_name: str) -> Family:
    """The condition family for ``LTXConditionPipeline`` folders, the image-to-video one for the rest."""
    return LTX_CONDITION if class_name == "LTXConditionPipeline" else LTX_I2V
