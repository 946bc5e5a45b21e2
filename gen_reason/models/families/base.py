"""The :class:`Family` contract: what differs between diffusers image-to-video pipelines.

A :class:`Family` holds one pipeline kind's defaults (size, frames, fps, steps, guidance,
negative prompt, flow shift) and the few places where pipelines disagree: how latents
are laid out, how the initial noise sits inside what ``prepare_latents`` returns, and
how latents become pixels. Everything outside the families sees latents in one layout,
``[batch, channels, frames, height, width]`` ("canonical"), whatever the pipeline keeps
internally (Wan: the same; CogVideoX: frames before channels; LTX: packed tokens).

The base class is the plain convention (Wan's); each family module of this package
(``wan.py``, ``cogvideox.py``, ``ltx.py``) overrides what its pipelines do differently.
:data:`GENERIC` is the family of a registered pipeline class that brings none.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gen_reason.errors import UserError


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


def spatial_patch(patch_size: Any) -> int:
    """The spatial side of a transformer's ``patch_size``: a number, or Wan's ``(t, h, w)``."""
    patch = patch_size[-1] if isinstance(patch_size, (tuple, list)) else patch_size
    return int(patch or 1)


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
    #: its training objective, ``"package.module:Class"`` (an ``Objective`` of
    #: :mod:`gen_reason.train.losses`, or a plugin's own): named, not imported, so the model
    #: layer never imports the trainer; ``None``: ``genreason train`` refuses the family
    objective: str | None = None

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
        return int(pipe.vae_scale_factor_spatial) * spatial_patch(getattr(pipe.transformer.config, "patch_size", 1))

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


#: The family of a registered pipeline class that brings none: Wan's conventions, small defaults.
GENERIC = Family("generic", FamilyDefaults(size=(256, 256), num_frames=17, fps=8, steps=30, guidance=1.0))
