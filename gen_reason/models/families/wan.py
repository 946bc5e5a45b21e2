"""Wan 2.1 I2V (480P, 720P), Wan 2.2 TI2V-5B and Wan 2.2 I2V-A14B.

Latents are already canonical ``[B, C, F, h, w]``; the VAE normalises with per-channel
means and deviations; A14B has two experts (``transformer_2``) switched at a boundary.
"""

from __future__ import annotations

from typing import Any

import torch

from gen_reason.models.families.base import Family, FamilyDefaults, Limits, spatial_patch

#: ``_class_name`` -> pipeline class. Wan2.2-TI2V-5B's folder says WanPipeline (a text-to-video
#: class whose __call__ takes no image); it runs image-conditioned through the image-to-video
#: pipeline built from the same components (WanImageToVideoPipeline's image encoder is optional).
PIPELINE_CLASSES = {
    "WanImageToVideoPipeline": "diffusers:WanImageToVideoPipeline",
    "WanPipeline": "diffusers:WanImageToVideoPipeline",
}

# The negative prompt Wan's authors ship with every Wan 2.1/2.2 example.
WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
    "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)


class WanFamily(Family):
    """Wan 2.1 I2V, Wan 2.2 TI2V-5B (``expand_timesteps``) and Wan 2.2 I2V-A14B (two experts)."""

    repeat_image = False  # Wan repeats the image itself; a list would be encoded N*N times
    objective = "gen_reason.train.losses.wan:WanObjective"
    # VAE (and CLIP image encoder) in float32, transformer and text encoder in bfloat16:
    # "VAE in torch.float32 for better decoding quality"
    # (https://huggingface.co/docs/diffusers/api/pipelines/wan).
    fp32_components = ("vae", "image_encoder")

    def latent_channels(self, pipe) -> int:
        return int(pipe.vae.config.z_dim)

    def limits(self, configs: dict[str, dict]) -> Limits:
        # VAE compression (scale_factor_spatial / _temporal) times the transformer's spatial patch.
        vae, transformer = configs.get("vae", {}), configs.get("transformer", {})
        spatial = int(vae.get("scale_factor_spatial", 8))
        return Limits(size_multiple=spatial * spatial_patch(transformer.get("patch_size", 1)),
                      frame_step=int(vae.get("scale_factor_temporal", 4)))

    def configure(self, pipe, options: FamilyDefaults) -> None:
        if options.boundary_ratio is not None:
            pipe.register_to_config(boundary_ratio=float(options.boundary_ratio))

    def call_kwargs(self, pipe, options: FamilyDefaults) -> dict:
        return {} if options.guidance_2 is None else {"guidance_scale_2": float(options.guidance_2)}

    def with_condition(self, latents: torch.Tensor, prepared: Any) -> torch.Tensor:
        if isinstance(prepared, tuple) and len(prepared) == 3:  # TI2V-5B: (noise, condition, first_frame_mask)
            _, condition, mask = prepared
            return (1 - mask) * condition.to(latents) + mask * latents
        return latents

    def x0_to_canonical(self, pipe, x0: torch.Tensor, latents: torch.Tensor, prepared: Any) -> torch.Tensor:
        return self.with_condition(x0, prepared)

    def decode(self, pipe, latents: torch.Tensor, generator: torch.Generator | None,
               options: FamilyDefaults | None = None) -> torch.Tensor:
        vae = pipe.vae
        z_dim = vae.config.z_dim
        mean = torch.tensor(vae.config.latents_mean).view(1, z_dim, 1, 1, 1)
        std = torch.tensor(vae.config.latents_std).view(1, z_dim, 1, 1, 1)
        latents = latents.to(dtype=vae.dtype)
        latents = latents * std.to(latents) + mean.to(latents)
        return vae.decode(latents, return_dict=False)[0]


# Defaults below follow each model's own documentation; the URL on each says where.
WAN21_I2V = WanFamily(
    "wan2.1-i2v",
    # https://huggingface.co/Wan-AI/Wan2.1-I2V-14B-480P-Diffusers and https://github.com/Wan-Video/Wan2.1
    # (480P: 832x480, 81 frames at 16 fps, guidance 5.0, sample_shift 3.0 = the shipped scheduler's).
    FamilyDefaults(
        size=(480, 832), num_frames=81, fps=16, steps=50, guidance=5.0, negative_prompt=WAN_NEGATIVE_PROMPT
    ),
)
WAN21_I2V_720P = WanFamily(
    "wan2.1-i2v-720p",
    # https://huggingface.co/Wan-AI/Wan2.1-I2V-14B-720P-Diffusers and https://github.com/Wan-Video/Wan2.1
    # (720P: 1280x720, sample_shift 5.0 for 720P; the folder's scheduler ships 3.0).
    FamilyDefaults(
        size=(720, 1280), num_frames=81, fps=16, steps=50, guidance=5.0, negative_prompt=WAN_NEGATIVE_PROMPT,
        flow_shift=5.0,
    ),
)
WAN22_TI2V = WanFamily(
    "wan2.2-ti2v",
    # https://huggingface.co/Wan-AI/Wan2.2-TI2V-5B-Diffusers; Wan2.2's wan/configs/wan_ti2v_5B.py
    # (https://github.com/Wan-Video/Wan2.2): 1280x704, 121 frames at 24 fps, 50 steps, guidance 5.0, shift 5.0.
    FamilyDefaults(
        size=(704, 1280), num_frames=121, fps=24, steps=50, guidance=5.0, negative_prompt=WAN_NEGATIVE_PROMPT
    ),
)
WAN22_I2V_A14B = WanFamily(
    "wan2.2-i2v-a14b",
    # https://huggingface.co/Wan-AI/Wan2.2-I2V-A14B-Diffusers; Wan2.2's wan/configs/wan_i2v_A14B.py
    # (https://github.com/Wan-Video/Wan2.2): 1280x720, 81 frames at 16 fps, 40 steps, guidance 3.5 for both
    # experts, boundary 0.900 (the folder's boundary_ratio), sample_shift 5.0 (the folder's scheduler ships 3.0).
    FamilyDefaults(
        size=(720, 1280), num_frames=81, fps=16, steps=40, guidance=3.5, negative_prompt=WAN_NEGATIVE_PROMPT,
        flow_shift=5.0, guidance_2=3.5,
    ),
    extra_options=("guidance_2", "boundary_ratio"),
)

#: Every Wan family, in the order :data:`gen_reason.models.families.FAMILIES` lists them.
FAMILIES = (WAN21_I2V, WAN21_I2V_720P, WAN22_TI2V, WAN22_I2V_A14B)


def choose(class_name: str, model_index: dict, configs: dict[str, dict], folder_name: str) -> Family:
    """The Wan family of a folder: TI2V-5B says ``expand_timesteps``; A14B has a
    ``boundary_ratio`` or a second expert. Wan2.1-I2V 480P and 720P ship identical configs:
    a folder whose name says ``720p`` gets the 720P defaults, any other the 480P ones."""
    if model_index.get("expand_timesteps"):
        return WAN22_TI2V
    has_second_expert = (model_index.get("transformer_2") or [None])[0] is not None
    if model_index.get("boundary_ratio") is not None or has_second_expert:
        return WAN22_I2V_A14B
    return WAN21_I2V_720P if "720p" in folder_name.lower() else WAN21_I2V
