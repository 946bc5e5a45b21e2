"""The embedded default model: a small pixel-space image-to-video diffusion pipeline.

``EmbeddedVideoPipeline`` is a diffusers :class:`~diffusers.DiffusionPipeline` with two
components, so it saves and loads like any other diffusers model folder
(``model_index.json`` + ``unet/`` + ``scheduler/``, safetensors):

- ``unet``: a :class:`~diffusers.UNet2DModel` on ``R x R`` pixels whose input channels
  are the ``F`` noisy RGB frames stacked frame-major (``3 * F`` channels) followed by the
  clean first frame (3 channels), and whose output is the scheduler's prediction target
  for the ``F`` frames (``3 * F`` channels). ``F`` and ``R`` are read from the UNet config.
- ``scheduler``: a :class:`~diffusers.DDIMScheduler` (cosine ``squaredcos_cap_v2``
  betas; the shipped model predicts ``v``, ``prediction_type="v_prediction"``, see
  :func:`make_scheduler`); its ``step`` output's ``pred_original_sample`` is the clean
  estimate ``x0`` the probe reads. The sampler's defaults (steps, eta) are saved in
  ``model_index.json``.

There is no VAE: "latents" are the pixels themselves in ``[-1, 1]``, laid out like Wan's
``[batch, 3, frames, R, R]``. The call signature is Wan's image-to-video one, so
:class:`~gen_reason.models.DiffusersVideoGenerator` drives it like any other pipeline;
the prompt is accepted and ignored (the model knows one task: solve the maze).

Images smaller than ``R x R`` (a 5x5 ``maze/grid`` with ``cell_px=5`` is 31 px) are
padded at the bottom and right with ``pad_color`` (the training data is padded the same
way) and the frames are cropped back, so a video has its first frame's exact size.
Larger images are resized down (area) and the frames resized back (nearest).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from diffusers import DDIMScheduler, DiffusionPipeline, UNet2DModel
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from gen_reason.models.embedded_parts import pad_image, resample_indices, safe_eta, stack_frames, unstack_frames
from gen_reason.models.families import Family, FamilyDefaults, Geometry, Limits

LORA_WEIGHTS = "pytorch_lora_weights.safetensors"  # the diffusers file name, also for the UNet's LoRA


@dataclass
class EmbeddedPipelineOutput(BaseOutput):
    """``frames``: ``np.ndarray`` ``[B, F, H, W, 3]`` floats in ``[0, 1]`` (``output_type="np"``),
    or the final latents ``[B, 3, F, R, R]`` in ``[-1, 1]`` (``output_type="latent"``)."""

    frames: Any


@dataclass(frozen=True)
class EmbeddedLimits(Limits):
    """:class:`Limits` plus the one size the embedded model generates at."""

    model_size: tuple[int, int] | None = None


class EmbeddedFamily(Family):
    """How :class:`~gen_reason.models.DiffusersVideoGenerator` drives the embedded pipeline.

    Pixel space: 3 latent channels, no spatial or temporal compression; the frame count
    is fixed by the UNet (other counts are resampled by the pipeline).
    """

    attention_backends = ("sdpa",)  # the UNet's attention calls PyTorch SDPA itself
    auto_attention = ()
    objective = "gen_reason.train.losses.embedded:EmbeddedObjective"

    def limits(self, configs: dict[str, dict]) -> Limits:
        """Any first-frame size (images are padded or resized to the UNet's) and frame count
        (resampled); the size it generates at is the UNet's (``sample_size``)."""
        side = configs.get("unet", {}).get("sample_size")
        side = side[0] if isinstance(side, (list, tuple)) else side
        return EmbeddedLimits(size_multiple=1, frame_step=1, model_size=(int(side), int(side)) if side else None)

    def check_request(self, limits: Limits, size: tuple[int, int] | None = None, num_frames: int | None = None) -> None:
        """A generation size other than the UNet's is refused in one line (frame counts are resampled)."""
        model_size = getattr(limits, "model_size", None)
        if size is not None and model_size is not None and tuple(size) != tuple(model_size):
            from gen_reason.errors import UserError

            fixed = "x".join(str(side) for side in model_size)
            raise UserError(f"the embedded model generates {fixed} videos only (its UNet's size); got "
                            f"{size[0]}x{size[1]}: drop --size, or point --model at a diffusers model folder")

    def frame_step(self, pipe) -> int:
        return 1

    def size_multiple(self, pipe) -> int:
        return 1

    def latent_channels(self, pipe) -> int:
        return 3

    def latent_shape(self, pipe, geometry: Geometry) -> tuple[int, int, int, int]:
        size = pipe.resolution
        return (3, pipe.num_frames, size, size)

    def native_options(self, pipe) -> dict:
        """The UNet's own frame count and resolution, and the model folder's sampling steps,
        are the defaults."""
        return {"num_frames": int(pipe.num_frames), "size": (int(pipe.resolution), int(pipe.resolution)),
                "steps": int(pipe.config.default_steps)}

    def fit_to_image(self, pipe, frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Undo the pipeline's input fitting: crop the bottom-right padding (or resize back)."""
        return pipe.fit_frames(frames, size)


class EmbeddedVideoPipeline(DiffusionPipeline):
    """Image-to-video in pixel space: first frame in, ``F`` frames of its solution out."""

    model_cpu_offload_seq = "unet"
    _callback_tensor_inputs = ["latents", "pred_original_sample"]
    genreason_family = EmbeddedFamily(
        "embedded", FamilyDefaults(size=(32, 32), num_frames=49, fps=16, steps=50, guidance=1.0)
    )
    # No VAE: the "latents" are pixels (the backend reads these to size its latents).
    vae_scale_factor_spatial = 1
    vae_scale_factor_temporal = 1

    def __init__(self, unet: UNet2DModel, scheduler: DDIMScheduler, pad_color: list[int] = (255, 255, 255),
                 default_steps: int = 50, default_eta: float = 0.0):
        """``default_steps`` and ``default_eta``: the sampler settings a call uses unless
        told otherwise, saved in ``model_index.json`` with the weights (a trained model
        knows which suit it; the shipped one uses 20 steps at ``eta=1``)."""
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(pad_color=[int(c) for c in pad_color], default_steps=int(default_steps),
                                default_eta=float(default_eta))

    # -- facts --------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        """Frames the UNet generates per video (fixed at training time)."""
        return int(self.unet.config.out_channels) // 3

    @property
    def resolution(self) -> int:
        """Working size in pixels (square)."""
        size = self.unet.config.sample_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    # -- LoRA (the diffusers pipeline calls, for the UNet) ------------------------------
    def load_lora_weights(self, path: str | os.PathLike, adapter_name: str = "default", **_: Any) -> None:
        """Put a LoRA made by ``genreason train lora`` on this model (a folder holding
        ``pytorch_lora_weights.safetensors`` with its peft config in the metadata, or
        that file) into the UNet, as ``adapter_name``."""
        from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
        from safetensors import safe_open

        from gen_reason.errors import UserError

        path = Path(path)
        file = path / LORA_WEIGHTS if path.is_dir() else path
        if not file.is_file():
            raise UserError(f"LoRA not found: {file}")
        with safe_open(str(file), "pt") as handle:
            settings = json.loads((handle.metadata() or {}).get("lora_config", "null") or "null")
            state = {key.removeprefix("unet."): handle.get_tensor(key) for key in handle.keys()}
        if settings is None:
            raise UserError(f"{file} is not an embedded-model LoRA (no lora_config metadata)")
        inject_adapter_in_model(LoraConfig(**settings), self.unet, adapter_name=adapter_name)
        set_peft_model_state_dict(self.unet, state, adapter_name=adapter_name)
        self.unet.requires_grad_(False)

    def set_adapters(self, adapter_names: str | Sequence[str], adapter_weights: float | Sequence[float] | None = None) -> None:
        """Activate LoRA adapters on the UNet with these weights (as diffusers pipelines do)."""
        from diffusers.utils.peft_utils import set_weights_and_activate_adapters

        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        if adapter_weights is None:
            weights = [1.0] * len(names)
        elif isinstance(adapter_weights, (int, float)):
            weights = [float(adapter_weights)] * len(names)
        else:
            weights = [float(w) for w in adapter_weights]
        set_weights_and_activate_adapters(self.unet, names, weights)

    # -- images in and out -------------------------------------------------------------
    def _to_model_image(self, image: Any) -> tuple[torch.Tensor, tuple[int, int]]:
        """One image (PIL, ``(H, W, 3)`` uint8 or float array, or ``[3, H, W]`` tensor in [-1, 1])
        -> ``[3, R, R]`` in ``[-1, 1]`` and its original ``(H, W)``."""
        import cv2

        if isinstance(image, torch.Tensor):
            arr = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        else:
            arr = np.asarray(image)
            if arr.dtype != np.uint8:
                arr = (np.clip(arr.astype(np.float32), 0.0, 1.0) * 255).round().astype(np.uint8)
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        arr = arr[:, :, :3]
        h, w = arr.shape[:2]
        size = self.resolution
        if h > size or w > size:
            scale = size / max(h, w)
            arr = cv2.resize(arr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        arr = pad_image(arr, size, self.config.pad_color)
        tensor = torch.from_numpy(np.array(arr)).permute(2, 0, 1).float() / 127.5 - 1.0
        return tensor, (h, w)

    def _to_output_frames(self, video: torch.Tensor, sizes: list[tuple[int, int]], num_frames: int) -> np.ndarray:
        """``[B, 3, F, R, R]`` in [-1, 1] -> ``[B, num_frames, H, W, 3]`` in [0, 1], cropped/resized back."""
        frames = ((video.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 4, 1).cpu().numpy()
        frames = frames[:, resample_indices(frames.shape[1], num_frames)]
        out = [self.fit_frames(sample, size) for sample, size in zip(frames, sizes)]
        if len({f.shape for f in out}) == 1:
            return np.stack(out)
        return np.array(out, dtype=object)  # mixed sizes: one array per sample

    def fit_frames(self, frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Working-size frames ``(T, R, R, 3)`` -> an image of ``size`` = (H, W): crop the padding,
        or resize the fitted area back (nearest) when the image was larger than the model."""
        import cv2

        h, w = size
        r = self.resolution
        if h <= r and w <= r:
            return frames[:, :h, :w]
        scale = r / max(h, w)
        inner = frames[:, : max(1, round(h * scale)), : max(1, round(w * scale))]
        return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_NEAREST) for f in inner])

    # -- the pieces the backend calls ---------------------------------------------------
    def prepare_latents(self, batch_size: int, generator=None, device=None, dtype=torch.float32) -> torch.Tensor:
        """The initial noise ``[B, 3, F, R, R]`` (one generator per sample, or one for all)."""
        shape = (batch_size, 3, self.num_frames, self.resolution, self.resolution)
        return randn_tensor(shape, generator=generator, device=device or self.device, dtype=dtype)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Pixel space: latents are the video ``[B, 3, F, R, R]``; clamp to ``[-1, 1]``."""
        return latents.clamp(-1, 1)

    def denoise_step(self, latents: torch.Tensor, condition: torch.Tensor, t: torch.Tensor, eta: float = 0.0,
                     generator=None):
        """One DDIM step: returns the scheduler's output (``prev_sample``, ``pred_original_sample``)."""
        model_input = torch.cat([stack_frames(latents), condition], dim=1)
        timestep = t.expand(latents.shape[0]) if t.ndim == 0 else t
        prediction = self.unet(model_input.to(self.unet.dtype), timestep.to(latents.device)).sample
        prediction = unstack_frames(prediction.float(), self.num_frames)
        return self.scheduler.step(prediction, t, latents, eta=safe_eta(self.scheduler, int(t), eta),
                                   generator=generator)

    @torch.no_grad()
    def __call__(
        self,
        image: Any = None,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float = 1.0,
        num_videos_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        eta: float | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        **ignored: Any,
    ):
        """Generate solution videos from first frames.

        Args:
            image: one first frame, or a list of them (one video batch over several
                puzzles); PIL, ``(H, W, 3)`` uint8 / float arrays, or ``[3, H, W]`` tensors
                in ``[-1, 1]``.
            prompt, negative_prompt, guidance_scale, height, width: accepted for the
                image-to-video call convention and ignored (one task, no text, a fixed
                working size; the output has each image's own size).
            num_frames: frames in the output; the model makes ``self.num_frames`` and
                other counts are resampled in time (nearest frame).
            num_inference_steps: DDIM steps; None: the model folder's ``default_steps``.
            num_videos_per_prompt: videos per image.
            generator: one ``torch.Generator`` or a list with one per video (then each
                video depends only on its own generator, whatever shares the batch).
            latents: initial noise ``[B, 3, F, R, R]`` instead of drawing it.
            eta: DDIM eta; None: the model folder's ``default_eta``. 0 is deterministic
                given the initial noise; 1 adds fresh noise at every step as DDPM does,
                drawn from each video's own generator (a seed still fixes the video).
                On held-out 5x5 mazes the shipped model succeeds more often at 1 than at
                0 (docs/BENCHMARKS.md, section embedded).
            output_type: ``"np"`` (frames in [0, 1]), ``"pt"`` (tensor ``[B, F, 3, H, W]``
                in [0, 1], model size) or ``"latent"`` (``[B, 3, F, R, R]`` in [-1, 1]).
            callback_on_step_end: ``fn(pipe, i, t, kwargs) -> dict`` after each step;
                ``kwargs`` holds the tensors named in ``callback_on_step_end_tensor_inputs``
                (``latents``, ``pred_original_sample``); a returned ``latents`` replaces them.
        """
        if image is None:
            raise ValueError("EmbeddedVideoPipeline needs an image (the puzzle's first frame)")
        for name in callback_on_step_end_tensor_inputs:
            if name not in self._callback_tensor_inputs:
                raise ValueError(f"callback tensor {name!r} is not one of {self._callback_tensor_inputs}")
        # (a folder saved before these settings existed loads with __init__'s defaults)
        num_inference_steps = self.config.default_steps if num_inference_steps is None else num_inference_steps
        eta = self.config.default_eta if eta is None else eta
        if eta < 0:  # checked before any image is converted or noise drawn
            raise ValueError(f"eta must be >= 0 (0: deterministic DDIM, 1: DDPM-like); got {eta}")
        images = list(image) if isinstance(image, (list, tuple)) else [image]
        condition, sizes = self._conditions(images, num_videos_per_prompt)
        latents = self._initial_latents(condition.shape[0], latents, generator)
        latents = self._denoise(latents, condition, num_inference_steps, eta=eta, generator=generator,
                                callback=callback_on_step_end, callback_inputs=callback_on_step_end_tensor_inputs)
        # The first frame is the given image, exactly (the model only approximates it).
        latents = latents.clone()
        latents[:, :, 0] = condition.to(latents.dtype)
        self.maybe_free_model_hooks()
        frames = self._output(latents, output_type, sizes, num_frames or self.num_frames)
        if not return_dict:
            return (frames,)
        return EmbeddedPipelineOutput(frames=frames)

    def _conditions(self, images: list, per_image: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """The first frames at the model's size on its device (``per_image`` copies of each),
        and each video's output size."""
        converted = [self._to_model_image(img) for img in images]
        condition = torch.stack([c for c, _ in converted]).repeat_interleave(per_image, dim=0)
        sizes = [s for _, s in converted for _ in range(per_image)]
        return condition.to(self._execution_device), sizes

    def _initial_latents(self, batch: int, latents: torch.Tensor | None, generator) -> torch.Tensor:
        """The starting noise: drawn from ``generator`` (one per video when a list) unless given,
        scaled by the scheduler's initial sigma."""
        if isinstance(generator, list) and len(generator) != batch:
            raise ValueError(f"got {len(generator)} generators for {batch} videos; give one per video")
        device = self._execution_device
        if latents is None:
            latents = self.prepare_latents(batch, generator=generator, device=device)
        else:
            latents = latents.to(device=device, dtype=torch.float32)
        return latents * self.scheduler.init_noise_sigma

    def _denoise(self, latents: torch.Tensor, condition: torch.Tensor, num_inference_steps: int, *, eta: float,
                 generator, callback: Callable | None, callback_inputs: Sequence[str]) -> torch.Tensor:
        """The DDIM loop, calling ``callback`` after each step (a returned ``latents`` replaces them)."""
        self.scheduler.set_timesteps(num_inference_steps, device=self._execution_device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        for i, t in enumerate(self.progress_bar(timesteps)):
            step = self.denoise_step(latents, condition, t, eta=eta, generator=generator)
            latents = step.prev_sample
            if callback is not None:
                available = {"latents": latents, "pred_original_sample": step.pred_original_sample}
                returned = callback(self, i, t, {name: available[name] for name in callback_inputs}) or {}
                latents = returned.get("latents", latents)
        return latents

    def _output(self, latents: torch.Tensor, output_type: str, sizes: list[tuple[int, int]], num_frames: int):
        """The final latents as ``output_type`` asks (see :meth:`__call__`)."""
        if output_type == "latent":
            return latents
        if output_type == "pt":
            return ((self.decode_latents(latents) + 1) / 2).permute(0, 2, 1, 3, 4)
        if output_type == "np":
            return self._to_output_frames(self.decode_latents(latents), sizes, num_frames)
        raise ValueError(f"output_type must be 'np', 'pt' or 'latent'; got {output_type!r}")


