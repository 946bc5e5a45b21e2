"""What we know about each supported diffusers image-to-video pipeline.

A :class:`Family` holds one pipeline kind's defaults (size, frames, fps, steps, guidance,
negative prompt, flow shift) and the few places where pipelines disagree: how latents
are laid out, how the initial noise sits inside what ``prepare_latents`` returns, and
how latents become pixels. Everything outside this module sees latents in one layout,
``[batch, channels, frames, height, width]`` ("canonical"), whatever the pipeline keeps
internally (Wan: the same; CogVideoX: frames before channels; LTX: packed tokens).

:data:`PIPELINES` maps a ``model_index.json`` ``_class_name`` to its pipeline class
(lazily: nothing is imported until a model of that class is loaded). A pipeline class
registered there that is not one of ours may carry its own family as a
``genreason_family`` class attribute; without one it gets :data:`GENERIC`, which
assumes Wan's conventions (see :class:`Family`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gen_reason.registry import Registry

#: ``_class_name`` in a model folder's ``model_index.json`` -> pipeline class.
PIPELINES: Registry[Any] = Registry("pipeline")
PIPELINES.register("WanImageToVideoPipeline", "diffusers:WanImageToVideoPipeline")
PIPELINES.register("CogVideoXImageToVideoPipeline", "diffusers:CogVideoXImageToVideoPipeline")
PIPELINES.register("LTXImageToVideoPipeline", "diffusers:LTXImageToVideoPipeline")
# The project's own small model (a diffusers pipeline too, so it shares every feature).
PIPELINES.register("EmbeddedVideoPipeline", "gen_reason.models.embedded:EmbeddedVideoPipeline")

# The negative prompt Wan's authors ship with every Wan 2.1/2.2 example.
WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
    "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)
LTX_NEGATIVE_PROMPT = "worst quality, inconsistent motion, blurry, jittery, distorted"


@dataclass(frozen=True)
class FamilyDefaults:
    """Generation defaults of one pipeline kind; each is overridable in ``from_pretrained``.

    ``flow_shift=None`` keeps the scheduler configuration the model folder ships (its
    authors' choice for its resolution); a number rebuilds the scheduler with that shift.
    """

    size: tuple[int, int]
    num_frames: int
    fps: int
    steps: int
    guidance: float
    negative_prompt: str = ""
    flow_shift: float | None = None


@dataclass(frozen=True)
class Geometry:
    """The shape of one pipeline call: frames asked of the pipeline (a valid count) and pixel size."""

    num_frames: int
    height: int
    width: int


class Family:
    """Defaults and layout conventions of one pipeline kind.

    The base class describes the plain convention (Wan's, and what a new pipeline such
    as the embedded model should follow): ``__call__`` takes Wan's image-to-video
    arguments (``image`` — one per sample, as ``repeat_image`` says —, a list of
    prompts, ``negative_prompt``, ``height``, ``width``, ``num_frames``,
    ``num_inference_steps``, ``guidance_scale``, a list of generators,
    ``output_type="latent"``, ``callback_on_step_end``) and returns ``.frames``;
    latents are ``[B, C, F, h, w]`` in the callback and in the latent output;
    ``prepare_latents`` returns the initial noise (alone or first in a tuple);
    ``pipe.decode_latents(latents)`` gives a ``[B, 3, T, H, W]`` video in ``[-1, 1]``;
    ``pipe.vae_scale_factor_spatial`` / ``_temporal`` give the compression. A family
    overrides whatever its pipeline does differently.
    """

    #: pass one copy of the image per sample (pipelines that encode the image per sample)
    repeat_image = True
    #: components kept in float32 whatever the compute dtype (numerically fragile ones)
    fp32_components: tuple[str, ...] = ()

    def __init__(self, name: str, defaults: FamilyDefaults) -> None:
        self.name = name
        self.defaults = defaults

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def native_options(self, pipe) -> dict:
        """Defaults read from the loaded pipeline itself, over the family's (a model whose
        frame count or size is fixed by its weights); none for most families."""
        return {}

    # -- geometry ---------------------------------------------------------------------
    def frame_step(self, pipe) -> int:
        """Temporal compression: valid frame counts are ``k * frame_step + 1``."""
        return int(pipe.vae_scale_factor_temporal)

    def size_multiple(self, pipe) -> int:
        """Height and width must be multiples of this (VAE compression times patch size)."""
        patch = getattr(pipe.transformer.config, "patch_size", 1)
        patch = patch[-1] if isinstance(patch, (tuple, list)) else patch
        return int(pipe.vae_scale_factor_spatial) * int(patch or 1)

    def latent_shape(self, pipe, geometry: Geometry) -> tuple[int, int, int, int]:
        """``(C, F, h, w)`` of one sample's latents for ``geometry``."""
        spatial = int(pipe.vae_scale_factor_spatial)
        frames = (geometry.num_frames - 1) // self.frame_step(pipe) + 1
        return (self.latent_channels(pipe), frames, geometry.height // spatial, geometry.width // spatial)

    def latent_channels(self, pipe) -> int:
        """Channels of the denoised latents."""
        return int(pipe.vae.config.latent_channels)

    def call_kwargs(self, pipe, fps: int) -> dict:
        """Extra keyword arguments this pipeline's ``__call__`` needs."""
        return {}

    # -- layout -----------------------------------------------------------------------
    def to_canonical(self, pipe, latents: torch.Tensor, geometry: Geometry) -> torch.Tensor:
        """Pipeline-internal latents -> ``[B, C, F, h, w]``."""
        return latents

    def from_canonical(self, pipe, latents: torch.Tensor, geometry: Geometry) -> torch.Tensor:
        """``[B, C, F, h, w]`` -> the pipeline-internal layout."""
        return latents

    def x0_to_canonical(self, pipe, x0: torch.Tensor, latents: torch.Tensor, prepared: Any) -> torch.Tensor:
        """The scheduler step's clean estimate -> canonical layout.

        ``latents`` are the canonical running latents after the step and ``prepared``
        what ``prepare_latents`` returned, for families whose step sees only part of
        the video.
        """
        return x0

    def with_condition(self, latents: torch.Tensor, prepared: Any) -> torch.Tensor:
        """Canonical latents with the conditioning frame put back where the pipeline masks it in."""
        return latents

    def output_latents(self, pipe, latents: torch.Tensor, geometry: Geometry) -> torch.Tensor:
        """The pipeline's ``output_type="latent"`` result -> canonical, ready to decode."""
        return self.to_canonical(pipe, latents, geometry)

    def replace_noise(self, pipe, prepared: Any, noise: torch.Tensor, geometry: Geometry) -> Any:
        """Put caller-given initial latents (canonical) into ``prepare_latents``' result."""
        if isinstance(prepared, tuple):
            first = prepared[0]
            return (noise.to(first.device, first.dtype), *prepared[1:])
        return noise.to(prepared.device, prepared.dtype)

    # -- pixels -----------------------------------------------------------------------
    def decode(self, pipe, latents: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Canonical latents (one or more samples) -> video ``[B, 3, T, H, W]`` in ``[-1, 1]``."""
        return pipe.decode_latents(latents)

    def trim_latents(self, pipe, latents: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Drop padding frames a pipeline adds beyond what ``num_frames`` needs (none here)."""
        return latents

    def fit_to_image(self, pipe, frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Working-size uint8 frames ``(T, h, w, 3)`` -> the first frame's ``size`` = (H, W).

        The default resizes (area when shrinking, bilinear when growing); a model that
        pads its input instead would crop here.
        """
        height, width = size
        if frames.shape[1:3] == (height, width):
            return frames
        import cv2

        shrinking = height * width < frames.shape[1] * frames.shape[2]
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        return np.stack([cv2.resize(frame, (width, height), interpolation=interpolation) for frame in frames])


class WanFamily(Family):
    """Wan 2.1 I2V, Wan 2.2 TI2V-5B (``expand_timesteps``) and Wan 2.2 I2V-A14B (two experts)."""

    repeat_image = False  # Wan repeats the image itself; a list would be encoded N*N times
    fp32_components = ("vae", "image_encoder")  # as Wan's authors run them

    def latent_channels(self, pipe) -> int:
        return int(pipe.vae.config.z_dim)

    def with_condition(self, latents: torch.Tensor, prepared: Any) -> torch.Tensor:
        if isinstance(prepared, tuple) and len(prepared) == 3:  # TI2V-5B: (noise, condition, first_frame_mask)
            _, condition, mask = prepared
            return (1 - mask) * condition.to(latents) + mask * latents
        return latents

    def x0_to_canonical(self, pipe, x0: torch.Tensor, latents: torch.Tensor, prepared: Any) -> torch.Tensor:
        return self.with_condition(x0, prepared)

    def decode(self, pipe, latents: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        vae = pipe.vae
        z_dim = vae.config.z_dim
        mean = torch.tensor(vae.config.latents_mean).view(1, z_dim, 1, 1, 1)
        std = torch.tensor(vae.config.latents_std).view(1, z_dim, 1, 1, 1)
        latents = latents.to(dtype=vae.dtype)
        latents = latents * std.to(latents) + mean.to(latents)
        return vae.decode(latents, return_dict=False)[0]


class CogVideoXFamily(Family):
    """CogVideoX 1.0 / 1.5 image-to-video: latents ``[B, F, C, h, w]``, v-prediction."""

    def latent_channels(self, pipe) -> int:
        return int(pipe.transformer.config.in_channels) // 2

    def latent_shape(self, pipe, geometry: Geometry) -> tuple[int, int, int, int]:
        channels, frames, height, width = super().latent_shape(pipe, geometry)
        return channels, frames + self._padding(pipe, frames), height, width

    @staticmethod
    def _padding(pipe, latent_frames: int) -> int:
        # CogVideoX 1.5 pads the latent frames up to a multiple of its temporal patch.
        patch_t = pipe.transformer.config.patch_size_t
        if patch_t is None or latent_frames % patch_t == 0:
            return 0
        return patch_t - latent_frames % patch_t

    def call_kwargs(self, pipe, fps: int) -> dict:
        # The learned positional embeddings cover exactly this many text tokens.
        return {"max_sequence_length": int(pipe.transformer.config.max_text_seq_length)}

    def to_canonical(self, pipe, latents, geometry):
        return latents.permute(0, 2, 1, 3, 4)

    def from_canonical(self, pipe, latents, geometry):
        return latents.permute(0, 2, 1, 3, 4)

    def x0_to_canonical(self, pipe, x0, latents, prepared):
        return x0.permute(0, 2, 1, 3, 4)

    def output_latents(self, pipe, latents, geometry):
        latents = self.to_canonical(pipe, latents, geometry)
        return self.trim_latents(pipe, latents, geometry.num_frames)

    def trim_latents(self, pipe, latents, num_frames):
        wanted = (num_frames - 1) // self.frame_step(pipe) + 1
        return latents[:, :, latents.shape[2] - wanted :] if latents.shape[2] > wanted else latents

    def replace_noise(self, pipe, prepared, noise, geometry):
        latents, image_latents = prepared
        noise = noise.permute(0, 2, 1, 3, 4) * pipe.scheduler.init_noise_sigma
        return noise.to(latents.device, latents.dtype), image_latents

    def decode(self, pipe, latents, generator):
        latents = latents.to(dtype=pipe.vae.dtype).permute(0, 2, 1, 3, 4)
        return pipe.decode_latents(latents)


class LTXFamily(Family):
    """LTX-Video image-to-video: packed token latents; frame 0 holds the image and is never denoised.

    ``decode_timestep`` / ``decode_noise_scale`` matter only for VAEs with timestep
    conditioning (LTX 0.9.1+); the defaults are the pipeline's own (a clean decode).
    """

    decode_timestep = 0.0
    decode_noise_scale: float | None = None

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

    def call_kwargs(self, pipe, fps: int) -> dict:
        return {"frame_rate": fps}  # sets the temporal RoPE scale

    def to_canonical(self, pipe, latents, geometry):
        _, frames, height, width = self.latent_shape(pipe, geometry)
        patch, patch_t = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
        return pipe._unpack_latents(latents, frames // patch_t, height // patch, width // patch, patch, patch_t)

    def from_canonical(self, pipe, latents, geometry):
        return pipe._pack_latents(latents, pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size)

    def x0_to_canonical(self, pipe, x0, latents, prepared):
        # The scheduler steps frames 1.. only; frame 0 is the image latent.
        return torch.cat([latents[:, :, :1].to(x0), x0], dim=2)

    def replace_noise(self, pipe, prepared, noise, geometry):
        packed, conditioning_mask = prepared
        latents = self.to_canonical(pipe, packed, geometry)
        latents = torch.cat([latents[:, :, :1], noise[:, :, 1:].to(latents)], dim=2)
        return self.from_canonical(pipe, latents, geometry), conditioning_mask

    def decode(self, pipe, latents, generator):
        vae = pipe.vae
        latents = pipe._denormalize_latents(latents, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)
        latents = latents.to(dtype=vae.dtype)
        timestep = None
        if vae.config.timestep_conditioning:
            scale = self.decode_timestep if self.decode_noise_scale is None else self.decode_noise_scale
            if scale:
                noise = torch.randn(latents.shape, generator=generator, dtype=latents.dtype)
                latents = (1 - scale) * latents + scale * noise.to(latents.device)
            timestep = torch.full(
                (latents.shape[0],), self.decode_timestep, device=latents.device, dtype=latents.dtype
            )
        return vae.decode(latents, timestep, return_dict=False)[0]


WAN21_I2V = WanFamily(
    "wan2.1-i2v",
    FamilyDefaults(
        size=(480, 832), num_frames=81, fps=16, steps=50, guidance=5.0, negative_prompt=WAN_NEGATIVE_PROMPT
    ),
)
WAN22_TI2V = WanFamily(
    "wan2.2-ti2v",
    FamilyDefaults(
        size=(704, 1280), num_frames=121, fps=24, steps=50, guidance=5.0, negative_prompt=WAN_NEGATIVE_PROMPT
    ),
)
WAN22_I2V_A14B = WanFamily(
    "wan2.2-i2v-a14b",
    FamilyDefaults(
        size=(720, 1280), num_frames=81, fps=16, steps=40, guidance=3.5, negative_prompt=WAN_NEGATIVE_PROMPT
    ),
)
COGVIDEOX_I2V = CogVideoXFamily(
    "cogvideox-i2v", FamilyDefaults(size=(480, 720), num_frames=49, fps=8, steps=50, guidance=6.0)
)
LTX_I2V = LTXFamily(
    "ltx-i2v",
    FamilyDefaults(
        size=(512, 704), num_frames=161, fps=24, steps=50, guidance=3.0, negative_prompt=LTX_NEGATIVE_PROMPT
    ),
)
GENERIC = Family("generic", FamilyDefaults(size=(256, 256), num_frames=17, fps=8, steps=30, guidance=1.0))


def family_for(class_name: str, pipeline_cls: type, model_index: dict) -> Family:
    """The family of a model folder, from its pipeline class and ``model_index.json``."""
    if class_name == "WanImageToVideoPipeline":
        if model_index.get("expand_timesteps"):
            return WAN22_TI2V
        has_second_expert = (model_index.get("transformer_2") or [None])[0] is not None
        if model_index.get("boundary_ratio") is not None or has_second_expert:
            return WAN22_I2V_A14B
        return WAN21_I2V
    if class_name == "CogVideoXImageToVideoPipeline":
        return COGVIDEOX_I2V
    if class_name == "LTXImageToVideoPipeline":
        return LTX_I2V
    family = getattr(pipeline_cls, "genreason_family", None)
    return family if isinstance(family, Family) else GENERIC
