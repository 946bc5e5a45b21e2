"""One :class:`VideoGenerator` over any diffusers image-to-video pipeline in a local folder.

``DiffusersVideoGenerator.from_pretrained(path)`` reads and checks the folder
(:mod:`~gen_reason.models.model_folder`: ``model_index.json`` picks the pipeline class, Wan
2.1/2.2, CogVideoX, LTX-Video, or one registered in
:data:`~gen_reason.models.families.PIPELINES`), loads it offline from safetensors, adds
LoRAs (:mod:`~gen_reason.models.loras`) and places it as the memory planner says
(:mod:`~gen_reason.models.runtime`, :mod:`~gen_reason.models.planner`).
``generate`` runs many seeds in one pipeline call, each from its own
``torch.Generator``, so a sample's random inputs never depend on its batch mates; it
always asks the pipeline for latents and decodes them itself, one sample at a time, so
frames, ``output="latents"`` and the probe's ``decode_latents`` share one path. What
``on_step`` sees of each step (exact x0, noise levels) comes from
:mod:`~gen_reason.models.step_capture`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from gen_reason.errors import UserError
from gen_reason.models.base import OnStep, VideoGenerator, normalise_seeds
from gen_reason.models.families import EXTRA_OPTIONS, Family, FamilyDefaults, Geometry
from gen_reason.models.loras import check_loras, load_loras
from gen_reason.models.model_folder import load_pipeline, read_model_folder
from gen_reason.models.runtime import (MemoryRequest, check_attention, check_memory_request, check_offload_device,
                                       compile_denoisers, resolve_device, resolve_dtype, set_attention)
from gen_reason.models.step_capture import PreparedLatents, Request, StepCallback, StepRecorder, prediction_type
from gen_reason.video import Video, crop_letterbox, letterbox

# Names that lived here before the backend was split by job, importable from here still.
from gen_reason.models.loras import EXPERT_LORA_FILES, EXPERT_LORA_MANIFEST, expert_lora_files
from gen_reason.models.model_folder import (TOKENIZER_FILES, check_components, check_fixed_size, check_request,
                                            component_dtypes, listed_components, model_family, model_limits,
                                            pipeline_class, read_component_configs, read_model_index)
from gen_reason.models.runtime import OFFLOAD_MODES, attention_backends, resolve_offload

__all__ = [
    "DiffusersVideoGenerator", "resolve_options",
    "EXPERT_LORA_FILES", "EXPERT_LORA_MANIFEST", "OFFLOAD_MODES", "TOKENIZER_FILES", "attention_backends",
    "check_attention", "check_components", "check_fixed_size", "check_request", "component_dtypes",
    "expert_lora_files", "listed_components", "model_family", "model_limits", "pipeline_class",
    "read_component_configs", "read_model_index", "resolve_device", "resolve_dtype", "resolve_offload",
]


class DiffusersVideoGenerator(VideoGenerator):
    """A diffusers image-to-video pipeline behind the :class:`VideoGenerator` contract.

    Build it with :meth:`from_pretrained` (a model folder) or directly from a pipeline
    object already in memory (the trainer does). ``pipeline`` is the wrapped diffusers
    pipeline (for layer hooks: ``pipeline.transformer``), ``family`` what we know about
    its kind, ``options`` the defaults in force, ``max_batch`` the most samples one
    pipeline call takes.
    """

    def __init__(self, pipeline, family: Family, *, name: str, max_batch: int = 4, **overrides: Any) -> None:
        if int(max_batch) < 1:
            raise UserError(f"max_batch must be at least 1, got {max_batch}")
        self.pipeline = pipeline
        self.family = family
        self.name = name
        self.max_batch = int(max_batch)
        self.plan = None  # the memory planner's choice, when from_pretrained made one
        self.options = resolve_options(family, {**family.native_options(pipeline), **overrides})
        if self.options.flow_shift is not None:
            _set_flow_shift(pipeline, self.options.flow_shift)
        family.configure(pipeline, self.options)
        pipeline.set_progress_bar_config(disable=True)  # the run layer draws the progress bars

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        lora: str | Path | Sequence[str | Path] | None = None,
        lora_scale: float | Sequence[float] = 1.0,
        cpu_offload: bool = False,
        vae_tiling: bool | str | None = None,
        compile: bool = False,
        attention: str = "auto",
        max_batch: int | str | None = None,
        offload: str | None = None,
        **overrides: Any,
    ) -> "DiffusersVideoGenerator":
        """Load the diffusers model folder at ``path`` (offline, safetensors only, no remote code).

        ``device``: default CUDA when available, else CPU. ``dtype``: default bfloat16 on
        CUDA, float32 elsewhere (fragile parts such as Wan's VAE stay float32).
        ``lora``: one LoRA folder/file or a list of them, mixed with ``lora_scale``
        (a number or one per LoRA). ``offload``: ``"model"`` moves each model to the GPU
        only while it runs (``cpu_offload=True`` says the same), ``"sequential"`` moves
        layer by layer, ``"group"`` streams the transformer's blocks; ``vae_tiling``
        decodes in tiles; ``compile`` runs the transformer(s) through ``torch.compile``.
        ``attention``: ``"auto"`` (on CUDA the first installed backend the family
        supports, else PyTorch SDPA), ``"sdpa"``, or one of :func:`attention_backends`.
        ``overrides`` replace family defaults (:class:`FamilyDefaults`): ``size``,
        ``num_frames``, ``fps``, ``steps``, ``guidance``, ``negative_prompt``,
        ``flow_shift`` and the family's own options (``guidance_2``, ``dynamic_cfg``, ...).
        ``offload`` / ``vae_tiling`` / ``max_batch`` left at ``None`` (or ``"auto"``) are
        chosen by the memory planner (:mod:`gen_reason.models.planner`) from the device's
        free memory; its choice is ``generator.plan`` and is printed on a GPU.

        Raises :class:`UserError` (one line) before anything loads when the folder is
        missing, is not a diffusers model, names an unsupported pipeline, lacks a listed
        component or a tokenizer's vocabulary, or asks for a size, frame count, option
        or attention backend the model cannot take.
        """
        folder = read_model_folder(path)
        # Every cheap check before the (possibly minutes-long) load.
        options = resolve_options(folder.family, overrides)
        folder.family.check_request(folder.limits, options.size if "size" in overrides else None,
                                    overrides.get("num_frames"))
        check_attention(folder.family, attention)
        memory = check_memory_request(folder, offload=offload, cpu_offload=cpu_offload, vae_tiling=vae_tiling,
                                      max_batch=max_batch)
        loras, scales = check_loras(lora, lora_scale)
        device = resolve_device(device)
        check_offload_device(memory.offload, device)
        pipe = load_pipeline(folder, resolve_dtype(dtype, device))

        name = folder.path.name + "".join(f"+{item.stem}" for item in loras)
        generator = cls(pipe, folder.family, name=name, max_batch=memory.max_batch or 1, **overrides)
        if loras:
            generator.set_loras(loras, scales)
        generator._plan_memory(device, memory)
        set_attention(pipe, folder.family, attention, device)
        if compile:
            compile_denoisers(pipe, folder.path.name)
        return generator

    def _plan_memory(self, device: torch.device, memory: MemoryRequest) -> None:
        """Let the memory planner fill in what ``memory`` leaves open, then place the pipeline
        on ``device`` as planned (printing the plan on a GPU)."""
        from gen_reason.models.planner import apply_placement, plan_for

        self.plan = plan_for(self, device, offload=memory.offload, vae_tiling=memory.vae_tiling,
                             max_batch=memory.max_batch)
        self.max_batch = self.plan.max_batch
        if self.plan.budget is not None:
            print(f"genreason: {self.plan.describe()}", file=sys.stderr)
        apply_placement(self.pipeline, device, self.plan.offload, self.plan.vae_tiling)

    def set_loras(self, paths: Sequence[str | Path], scales: Sequence[float]) -> None:
        """Load LoRA weights (diffusers format) and mix them with ``scales``.

        Wan 2.2 A14B has two experts. A folder with ``lora_experts.json`` (a run of
        ``genreason train lora`` on A14B) holds one LoRA per expert: each goes into its
        own expert, and an expert it has none for runs unchanged. Any other LoRA goes
        into both experts.
        """
        load_loras(self.pipeline, paths, scales)

    # -- facts ----------------------------------------------------------------------------
    @property
    def default_size(self) -> tuple[int, int]:
        """``(H, W)`` videos are generated at unless ``size=`` says otherwise."""
        return tuple(self.options.size)  # type: ignore[return-value]

    @property
    def default_num_frames(self) -> int:
        """Frames per video unless ``num_frames=`` says otherwise."""
        return self.options.num_frames

    @property
    def fps(self) -> int:
        """The frame rate the model was trained for."""
        return self.options.fps

    @property
    def prediction_type(self) -> str | None:
        """What the denoiser predicts: ``flow_prediction``, ``v_prediction``, ``epsilon`` or ``sample``."""
        return prediction_type(self.pipeline.scheduler)

    def latent_shape(self, num_frames: int | None = None, size: tuple[int, int] | None = None) -> tuple[int, ...]:
        """``(C, F, h, w)`` of one sample's latents for a request (what ``latents=`` must match)."""
        return self.family.latent_shape(self.pipeline, self._geometry(num_frames, size))

    # -- generation -----------------------------------------------------------------------
    def generate(
        self,
        image,
        prompt: str,
        *,
        num_frames: int | None = None,
        seeds: Sequence[int] | int = (0,),
        steps: int | None = None,
        guidance: float | None = None,
        latents: torch.Tensor | None = None,
        on_step: OnStep | None = None,
        output: str = "frames",
        negative_prompt: str | None = None,
        size: tuple[int, int] | None = None,
    ) -> list:
        """Generate one video per seed; see :meth:`VideoGenerator.generate`.

        The video is generated at ``size`` (default :attr:`default_size`, rounded to the
        model's multiple; an image of another aspect ratio goes in letterboxed on bars of
        its border colour, :func:`gen_reason.video.letterbox`, and the frames are cropped
        back) and returned at the image's own size, ``num_frames`` long
        (the pipeline runs the next valid frame count, e.g. ``4k+1``, and the extra
        frames are dropped). ``latents`` are the initial latents, ``[len(seeds), C, F,
        h, w]`` or ``[C, F, h, w]`` for all seeds (see :meth:`latent_shape`); for LTX
        frame 0 is replaced by the image's latent. ``output="latents"`` returns the
        final latents ``[C, F, h, w]`` (float32, CPU) instead of frames; turn them into
        frames with :meth:`decode_latents`.
        """
        if output not in ("frames", "latents"):
            raise UserError(f"output must be 'frames' or 'latents', got {output!r}")
        seeds = normalise_seeds(seeds)
        picture = _as_pil(image)
        request = self._request(prompt, negative_prompt, num_frames, size, steps, guidance, on_step)
        noise = self._initial_latents(latents, len(seeds), request.geometry)
        # A puzzle of another aspect ratio goes in letterboxed, not stretched; the frames
        # are cropped back to it below.
        canvas = (request.geometry.height, request.geometry.width)
        framed, box = letterbox(np.asarray(picture), canvas)
        model_picture = picture if box is None else _as_pil(framed)
        results: list = []
        for start in range(0, len(seeds), self.max_batch):
            batch = seeds[start : start + self.max_batch]
            batch_noise = None if noise is None else noise[start : start + len(batch)]
            final, generators = self._denoise(model_picture, batch, batch_noise, request)
            if output == "latents":
                results.extend(sample.cpu() for sample in final)
                continue
            for index, generator in enumerate(generators):
                frames = self._decode(final[index : index + 1], generator, request.num_frames)
                frames = crop_letterbox(frames, box, canvas)
                results.append(self.family.fit_to_image(self.pipeline, frames, (picture.height, picture.width)))
        return results

    def decode_latents(self, latents: torch.Tensor, num_frames: int | None = None) -> list[Video]:
        """Decode canonical latents (``[B, C, F, h, w]`` or ``[C, F, h, w]``) into videos.

        Works on ``output="latents"`` results and on a step's ``state.x0``; pass
        ``num_frames`` (``state.num_frames``) to drop padding and surplus frames. Videos
        come at the working size, not resized to any image.
        """
        if latents.ndim == 4:
            latents = latents[None]
        if num_frames is not None:
            latents = self.family.trim_latents(self.pipeline, latents, self._valid_frame_count(num_frames))
        return [self._decode(latents[index : index + 1], None, num_frames) for index in range(latents.shape[0])]

    # -- internals ------------------------------------------------------------------------
    def _request(self, prompt: str, negative_prompt: str | None, num_frames: int | None,
                 size: tuple[int, int] | None, steps: int | None, guidance: float | None,
                 on_step: OnStep | None) -> Request:
        """One call's arguments with the defaults in force filled in, checked."""
        num_frames = self.default_num_frames if num_frames is None else int(num_frames)
        steps = self.options.steps if steps is None else int(steps)
        if steps < 1:
            raise UserError(f"steps must be at least 1, got {steps}")
        return Request(
            prompt=prompt,
            negative_prompt=self.options.negative_prompt if negative_prompt is None else negative_prompt,
            num_frames=num_frames,
            geometry=self._geometry(num_frames, size),
            steps=steps,
            guidance=self.options.guidance if guidance is None else float(guidance),
            on_step=on_step,
        )

    def _geometry(self, num_frames: int | None, size: tuple[int, int] | None) -> Geometry:
        num_frames = self.default_num_frames if num_frames is None else int(num_frames)
        if num_frames < 1:
            raise UserError(f"num_frames must be at least 1, got {num_frames}")
        height, width = self.default_size if size is None else size
        multiple = self.family.size_multiple(self.pipeline)
        # Nearest valid size: a puzzle rendered at the model's size passes unchanged.
        height = max(multiple, round(int(height) / multiple) * multiple)
        width = max(multiple, round(int(width) / multiple) * multiple)
        geometry = Geometry(self._valid_frame_count(num_frames), height, width)
        self.family.check_geometry(self.pipeline, geometry)
        return geometry

    def _valid_frame_count(self, num_frames: int) -> int:
        step = self.family.frame_step(self.pipeline)
        return math.ceil((num_frames - 1) / step) * step + 1

    def _initial_latents(self, latents: torch.Tensor | None, count: int, geometry: Geometry) -> torch.Tensor | None:
        if latents is None:
            return None
        expected = tuple(self.family.latent_shape(self.pipeline, geometry))
        if tuple(latents.shape) == expected:
            latents = latents[None].expand(count, *expected)
        if tuple(latents.shape) != (count, *expected):
            raise UserError(f"latents have shape {tuple(latents.shape)}; this request needs {(count, *expected)}")
        return latents

    def _denoise(self, picture, seeds: list[int], noise: torch.Tensor | None, request: Request):
        """One pipeline call for ``seeds``: canonical final latents (float32) and the generators."""
        pipe, family, geometry = self.pipeline, self.family, request.geometry
        # One CPU generator per seed: noise is identical on every device and batch.
        generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]
        count = len(seeds)
        prepared = PreparedLatents(pipe, family, noise, geometry)
        recorder = StepRecorder(pipe.scheduler) if request.on_step else contextlib.nullcontext()
        callback = None
        if request.on_step is not None:
            callback = StepCallback(self.family, request, tuple(seeds), prepared, recorder)
        with prepared, recorder, family.call_context(pipe):
            result = pipe(
                **family.image_kwargs(pipe, picture, count),
                prompt=[request.prompt] * count,
                negative_prompt=request.negative_prompt,
                height=geometry.height,
                width=geometry.width,
                num_frames=geometry.num_frames,
                num_inference_steps=request.steps,
                guidance_scale=request.guidance,
                generator=generators,
                output_type="latent",
                callback_on_step_end=callback,
                callback_on_step_end_tensor_inputs=["latents"],
                **family.call_kwargs(pipe, self.options),
            )
        final = family.output_latents(pipe, result.frames, geometry)
        return final.detach().float(), generators

    @torch.no_grad()
    def _decode(self, latents: torch.Tensor, generator: torch.Generator | None, num_frames: int | None) -> Video:
        """One sample's canonical latents -> uint8 frames at the working size."""
        device = self.pipeline._execution_device
        # [3, T, H, W] in [-1, 1]
        video = self.family.decode(self.pipeline, latents.to(device), generator, self.options)[0]
        # As diffusers' VideoProcessor does for output_type="np", without needing one.
        frames = (video.float() / 2 + 0.5).clamp(0, 1).permute(1, 2, 3, 0).cpu().numpy()
        frames = np.rint(frames * 255.0).astype(np.uint8)
        return frames[:num_frames] if num_frames is not None else frames


# -- options -----------------------------------------------------------------------------
def resolve_options(family: Family, overrides: dict) -> FamilyDefaults:
    """``family``'s defaults with ``overrides`` applied; unknown keys and bad sizes are a :class:`UserError`."""
    known = [field.name for field in dataclasses.fields(FamilyDefaults)]
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise UserError(
            f"unknown generator option(s) {', '.join(unknown)}; known: {', '.join(known)}, max_batch"
        )
    not_taken = [key for key in overrides if key in EXTRA_OPTIONS and key not in family.extra_options]
    if not_taken:
        takes = f"it takes {', '.join(family.extra_options)}" if family.extra_options else "it takes none of them"
        raise UserError(f"option(s) {', '.join(not_taken)} do not apply to {family.name} models; {takes}")
    options = dataclasses.replace(family.defaults, **overrides)
    try:
        size = tuple(int(side) for side in options.size)
    except (TypeError, ValueError):
        size = ()
    if len(size) != 2 or min(size) < 1:
        raise UserError(f"size must be (height, width) in pixels, got {options.size!r}")
    return dataclasses.replace(options, size=size)


def _set_flow_shift(pipe, shift: float) -> None:
    scheduler = pipe.scheduler
    for key in ("shift", "flow_shift"):  # FlowMatchEuler / UniPC and DPM with flow sigmas
        if key in scheduler.config:
            pipe.scheduler = type(scheduler).from_config(scheduler.config, **{key: float(shift)})
            return
    raise UserError(f"flow_shift does not apply to {type(scheduler).__name__}")


def _as_pil(image):
    """An ``(H, W, 3)`` uint8 array or PIL image -> RGB PIL image."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise UserError(f"the first frame must be an (H, W, 3) uint8 RGB image; got {array.dtype} {array.shape}")
    return Image.fromarray(np.ascontiguousarray(array))
