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

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gen_reason.errors import UserError
from gen_reason.registry import Registry

#: ``_class_name`` in a model folder's ``model_index.json`` -> pipeline class.
PIPELINES: Registry[Any] = Registry("pipeline", entry_points="genreason.families")
PIPELINES.register("WanImageToVideoPipeline", "diffusers:WanImageToVideoPipeline")
PIPELINES.register("CogVideoXImageToVideoPipeline", "diffusers:CogVideoXImageToVideoPipeline")
PIPELINES.register("LTXImageToVideoPipeline", "diffusers:LTXImageToVideoPipeline")
# Folders the Hub ships under a text-to-video class name run image-conditioned through the
# image-to-video pipeline built from the same components: Wan2.2-TI2V-5B says WanPipeline
# (whose __call__ takes no image; WanImageToVideoPipeline's image encoder is optional) and
# LTX-Video 0.9.0/0.9.1 say LTXPipeline. LTX-Video 0.9.5+ runs its own condition pipeline.
PIPELINES.register("WanPipeline", "diffusers:WanImageToVideoPipeline")
PIPELINES.register("LTXPipeline", "diffusers:LTXImageToVideoPipeline")
PIPELINES.register("LTXConditionPipeline", "diffusers:LTXConditionPipeline")
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
    The fields after it apply only to the families that list them in
    :attr:`Family.extra_options` (``None``: the pipeline's own default):
    ``guidance_2`` (Wan 2.2 A14B's low-noise expert, ``guidance_scale_2``),
    ``boundary_ratio`` (A14B's expert switch; ``None`` keeps the folder's),
    ``dynamic_cfg`` (CogVideoX's ``use_dynamic_cfg``), ``decode_timestep`` /
    ``decode_noise_scale`` (LTX VAEs with timestep conditioning) and ``guidance_rescale`` (LTX).
    """

    size: tuple[int, int]
    num_frames: int
    fps: int
    steps: int
    guidance: float
    negative_prompt: str = ""
    flow_shift: float | None = None
    guidance_2: float | None = None
    boundary_ratio: float | None = None
    dynamic_cfg: bool | None = None
    decode_timestep: float | None = None
    decode_noise_scale: float | None = None
    guidance_rescale: float | None = None


#: FamilyDefaults fields only some families take (see :attr:`Family.extra_options`).
EXTRA_OPTIONS = ("guidance_2", "boundary_ratio", "dynamic_cfg", "decode_timestep", "decode_noise_scale",
                 "guidance_rescale")


@dataclass(frozen=True)
class Limits:
    """What sizes and frame counts a model folder takes, read from its configs (nothing loaded).

    ``size_multiple``: height and width must be multiples of it; ``frame_step``: frame
    counts are ``k * frame_step + 1``; ``fixed_size``: the only (height, width) the model
    runs at, when its weights fix it (CogVideoX-5b-I2V's learned positional embeddings).
    """

    size_multiple: int
    frame_step: int
    fixed_size: tuple[int, int] | None = None


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
    #: :data:`EXTRA_OPTIONS` this family takes; any other is a one-line error
    extra_options: tuple[str, ...] = ()
    #: attention backends its transformer supports (``None``: every one diffusers offers)
    attention_backends: tuple[str, ...] | None = None
    #: ``auto`` attention on CUDA: the first of these that is installed, else PyTorch SDPA
    auto_attention: tuple[str, ...] = ("xformers",)

    def __init__(self, name: str, defaults: FamilyDefaults, *, extra_options: tuple[str, ...] | None = None) -> None:
        self.name = name
        self.defaults = defaults
        if extra_options is not None:
            self.extra_options = tuple(extra_options)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def limits(self, configs: dict[str, dict]) -> Limits:
        """Size and frame rules from a folder's component configs (``{"vae": {...}, ...}``),
        before anything loads. A family that knows none takes any size and frame count here
        (generation still rounds to what the loaded pipeline needs)."""
        return Limits(size_multiple=1, frame_step=1)

    def check_request(self, limits: Limits, size: tuple[int, int] | None = None, num_frames: int | None = None) -> None:
        """Raise a one-line :class:`UserError` for a size or frame count this model cannot take."""
        if size is not None:
            height, width = (int(side) for side in size)
            if limits.fixed_size is not None and (height, width) != tuple(limits.fixed_size):
                fixed = "x".join(str(side) for side in limits.fixed_size)
                raise UserError(f"{self.name} generates only at {fixed} (its learned positional embeddings fix the "
                                f"size); got {height}x{width}")
            multiple = limits.size_multiple
            if height % multiple or width % multiple:
                nearest = "x".join(str(max(multiple, round(side / multiple) * multiple)) for side in (height, width))
                raise UserError(f"{self.name} needs a height and width that are multiples of {multiple}; got "
                                f"{height}x{width} (nearest: {nearest})")
        if num_frames is not None:
            step = limits.frame_step
            if int(num_frames) < 1 or (int(num_frames) - 1) % step:
                below = max(1, (int(num_frames) - 1) // step * step + 1)
                raise UserError(f"{self.name} takes {step}k+1 frames (e.g. {below} or {below + step}); "
                                f"got {num_frames}")

    def check_geometry(self, pipe, geometry: "Geometry") -> None:
        """Raise a one-line :class:`UserError` when a loaded model cannot run ``geometry``
        (before the pipeline fails deep inside diffusers)."""
        fixed = self.fixed_size(pipe)
        if fixed is not None:
            self.check_request(Limits(1, 1, fixed), size=(geometry.height, geometry.width))

    def fixed_size(self, pipe) -> tuple[int, int] | None:
        """The only (height, width) a loaded model runs at, or ``None``."""
        return None

    def configure(self, pipe, options: FamilyDefaults) -> None:
        """Apply options that live in the pipeline's own configuration (none for most families)."""

    def native_options(self, pipe) -> dict:
        """Defaults read from the loaded pipeline itself, over the family's (a model whose
        frame count or size is fixed by its weights); none for most families."""
        return {}

    # -- geometry ---------------------------------------------------------------------
    def frame_step(self, pipe) -> int:
        """Valid frame counts are ``k * frame_step + 1``; the VAE's temporal compression for
        every family but CogVideoX 1.5 (compression 4, frame rule 16)."""
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

    def image_kwargs(self, pipe, picture, count: int) -> dict:
        """The conditioning image as this pipeline's ``__call__`` takes it, for ``count`` samples."""
        return {"image": [picture] * count if self.repeat_image else picture}

    def call_kwargs(self, pipe, options: FamilyDefaults) -> dict:
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

    def call_context(self, pipe):
        """A context manager around one pipeline call (for pipelines that need a part swapped
        while they run); none here."""
        return contextlib.nullcontext()

    def replace_noise(self, pipe, prepared: Any, noise: torch.Tensor, geometry: Geometry) -> Any:
        """Put caller-given initial latents (canonical) into ``prepare_latents``' result."""
        if isinstance(prepared, tuple):
            first = prepared[0]
            return (noise.to(first.device, first.dtype), *prepared[1:])
        return noise.to(prepared.device, prepared.dtype)

    # -- pixels -----------------------------------------------------------------------
    def decode(self, pipe, latents: torch.Tensor, generator: torch.Generator | None,
               options: FamilyDefaults | None = None) -> torch.Tensor:
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
    # VAE (and CLIP image encoder) in float32, transformer and text encoder in bfloat16:
    # "VAE in torch.float32 for better decoding quality"
    # (https://huggingface.co/docs/diffusers/api/pipelines/wan).
    fp32_components = ("vae", "image_encoder")

    def latent_channels(self, pipe) -> int:
        return int(pipe.vae.config.z_dim)

    def limits(self, configs: dict[str, dict]) -> Limits:
        # VAE compression (scale_factor_spatial / _temporal) times the transformer's spatial patch.
        vae, transformer = configs.get("vae", {}), configs.get("transformer", {})
        patch = transformer.get("patch_size", 1)
        patch = patch[-1] if isinstance(patch, (tuple, list)) else patch
        spatial = int(vae.get("scale_factor_spatial", 8))
        return Limits(size_multiple=spatial * int(patch or 1), frame_step=int(vae.get("scale_factor_temporal", 4)))

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


class CogVideoXFamily(Family):
    """CogVideoX 1.0 / 1.5 image-to-video: latents ``[B, F, C, h, w]``, v-prediction.

    Attention: PyTorch SDPA only. Its attention processor calls SDPA directly (diffusers'
    attention backends do not reach it) and xformers attention breaks generation
    (https://github.com/zai-org/CogVideo/issues/617).
    """

    extra_options = ("dynamic_cfg",)
    attention_backends = ("sdpa",)
    auto_attention = ()
    def __init__(self, name: str, defaults: FamilyDefaults, *, frame_multiple: int | None = None) -> None:
        super().__init__(name, defaults)
        self.frame_multiple = frame_multiple

    def limits(self, configs: dict[str, dict]) -> Limits:
        vae, transformer = configs.get("vae", {}), configs.get("transformer", {})
        spatial = 2 ** (len(vae.get("block_out_channels", (128, 256, 256, 512))) - 1)
        step = self.frame_multiple or int(vae.get("temporal_compression_ratio", 4))
        fixed = None
        if transformer.get("use_learned_positional_embeddings"):
            fixed = (int(transformer["sample_height"]) * spatial, int(transformer["sample_width"]) * spatial)
        return Limits(size_multiple=spatial * int(transformer.get("patch_size", 2)), frame_step=step, fixed_size=fixed)

    def fixed_size(self, pipe) -> tuple[int, int] | None:
        config = pipe.transformer.config
        if not config.get("use_learned_positional_embeddings"):
            return None
        spatial = int(pipe.vae_scale_factor_spatial)
        return int(config.sample_height) * spatial, int(config.sample_width) * spatial

    def native_options(self, pipe) -> dict:
        # A model whose positional embeddings fix its size runs at that size by default.
        fixed = self.fixed_size(pipe)
        return {} if fixed is None else {"size": fixed}

    def frame_step(self, pipe) -> int:
        return self.frame_multiple or super().frame_step(pipe)

    def latent_channels(self, pipe) -> int:
        return int(pipe.transformer.config.in_channels) // 2

    def latent_shape(self, pipe, geometry: Geometry) -> tuple[int, int, int, int]:
        # frame_step is the frame-count rule (16 on 1.5); the VAE compresses time 4x either way.
        spatial, temporal = int(pipe.vae_scale_factor_spatial), int(pipe.vae_scale_factor_temporal)
        frames = (geometry.num_frames - 1) // temporal + 1
        height, width = geometry.height // spatial, geometry.width // spatial
        return self.latent_channels(pipe), frames + self._padding(pipe, frames), height, width

    @staticmethod
    def _padding(pipe, latent_frames: int) -> int:
        # CogVideoX 1.5 pads the latent frames up to a multiple of its temporal patch.
        patch_t = pipe.transformer.config.patch_size_t
        if patch_t is None or latent_frames % patch_t == 0:
            return 0
        return patch_t - latent_frames % patch_t

    def call_kwargs(self, pipe, options: FamilyDefaults) -> dict:
        # The learned positional embeddings cover exactly this many text tokens.
        kwargs = {"max_sequence_length": int(pipe.transformer.config.max_text_seq_length)}
        if options.dynamic_cfg is not None:
            kwargs["use_dynamic_cfg"] = bool(options.dynamic_cfg)
        return kwargs

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
        wanted = (num_frames - 1) // int(pipe.vae_scale_factor_temporal) + 1
        return latents[:, :, latents.shape[2] - wanted :] if latents.shape[2] > wanted else latents

    def replace_noise(self, pipe, prepared, noise, geometry):
        latents, image_latents = prepared
        noise = noise.permute(0, 2, 1, 3, 4) * pipe.scheduler.init_noise_sigma
        return noise.to(latents.device, latents.dtype), image_latents

    def decode(self, pipe, latents, generator, options=None):
        latents = latents.to(dtype=pipe.vae.dtype).permute(0, 2, 1, 3, 4)
        return pipe.decode_latents(latents)


class LTXFamily(Family):
    """LTX-Video 0.9.0/0.9.1 image-to-video: packed token latents; frame 0 holds the image and is never denoised.

    ``decode_timestep`` / ``decode_noise_scale`` matter only for VAEs with timestep
    conditioning (LTX 0.9.1+; 0.9.0's VAE ignores them).
    """

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
        patch, patch_t = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
        return pipe._unpack_latents(latents, frames // patch_t, height // patch, width // patch, patch, patch_t)

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

        from gen_reason.models.diffusers_backend import _shadow

        original = pipe.vae.encode

        def encode(*args, **kwargs):
            return AutoencoderKLOutput(latent_dist=_ModeOnly(original(*args, **kwargs).latent_dist))

        @contextlib.contextmanager
        def mode_encoding():
            restore = _shadow(pipe.vae, "encode", encode)
            try:
                yield
            finally:
                restore()

        return mode_encoding()

    def x0_to_canonical(self, pipe, x0, latents, prepared):
        _, _, frames, height, width = latents.shape
        patch, patch_t = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
        return pipe._unpack_latents(x0, frames // patch_t, height // patch, width // patch, patch, patch_t)

    def output_latents(self, pipe, latents, geometry):
        return latents


class _ModeOnly:
    """A latent distribution whose samples are its mode (deterministic image conditioning)."""

    def __init__(self, distribution) -> None:
        self.distribution = distribution

    def sample(self, generator=None) -> torch.Tensor:
        return self.distribution.mode()

    def mode(self) -> torch.Tensor:
        return self.distribution.mode()


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
COGVIDEOX_I2V = CogVideoXFamily(
    "cogvideox-i2v",
    # https://huggingface.co/THUDM/CogVideoX-5b-I2V: 720x480 only, 49 frames at 8 fps, 50 steps, guidance 6.
    # use_dynamic_cfg stays off: the shipped scheduler is DDIM and CogVideo's inference/cli_demo.py
    # (https://github.com/zai-org/CogVideo) turns dynamic CFG on for the DPM scheduler only.
    FamilyDefaults(size=(480, 720), num_frames=49, fps=8, steps=50, guidance=6.0, dynamic_cfg=False),
)
COGVIDEOX15_I2V = CogVideoXFamily(
    "cogvideox1.5-i2v",
    # https://huggingface.co/THUDM/CogVideoX1.5-5B-I2V and
    # https://huggingface.co/docs/diffusers/api/pipelines/cogvideox:
    # 1360x768 (any width 768-1360, sides divisible by 16), 81 or 161 frames (16N+1) at 16 fps, 50 steps, guidance 6.
    FamilyDefaults(size=(768, 1360), num_frames=81, fps=16, steps=50, guidance=6.0, dynamic_cfg=False),
    frame_multiple=16,
)
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
GENERIC = Family("generic", FamilyDefaults(size=(256, 256), num_frames=17, fps=8, steps=30, guidance=1.0))

#: Every family genreason knows, by name.
FAMILIES = {family.name: family for family in (WAN21_I2V, WAN21_I2V_720P, WAN22_TI2V, WAN22_I2V_A14B, COGVIDEOX_I2V,
                                                COGVIDEOX15_I2V, LTX_I2V, LTX_CONDITION)}


def family_for(class_name: str, pipeline_cls: type, model_index: dict, configs: dict[str, dict] | None = None,
               folder_name: str = "") -> Family:
    """The family of a model folder, from its pipeline class, ``model_index.json`` and
    component configs (``configs["transformer"]`` etc., when read; nothing is loaded).

    Wan2.1-I2V 480P and 720P ship identical configs: a folder whose name says ``720p`` gets
    the 720P defaults, any other the 480P ones.
    """
    configs = configs or {}
    if class_name in ("WanImageToVideoPipeline", "WanPipeline"):
        if model_index.get("expand_timesteps"):
            return WAN22_TI2V
        has_second_expert = (model_index.get("transformer_2") or [None])[0] is not None
        if model_index.get("boundary_ratio") is not None or has_second_expert:
            return WAN22_I2V_A14B
        return WAN21_I2V_720P if "720p" in folder_name.lower() else WAN21_I2V
    if class_name == "CogVideoXImageToVideoPipeline":
        if configs.get("transformer", {}).get("patch_size_t") is not None:
            return COGVIDEOX15_I2V
        return COGVIDEOX_I2V
    if class_name in ("LTXImageToVideoPipeline", "LTXPipeline"):
        return LTX_I2V
    if class_name == "LTXConditionPipeline":
        return LTX_CONDITION
    family = getattr(pipeline_cls, "genreason_family", None)
    return family if isinstance(family, Family) else GENERIC
