"""One :class:`VideoGenerator` over any diffusers image-to-video pipeline in a local folder.

``DiffusersVideoGenerator.from_pretrained(path)`` reads ``model_index.json``, picks the
pipeline class (Wan 2.1/2.2, CogVideoX, LTX-Video, or one registered in
:data:`~gen_reason.models.families.PIPELINES`) and loads it offline from safetensors.
``generate`` runs many seeds in one pipeline call, each from its own
``torch.Generator``, so a sample's random inputs never depend on its batch mates; it
always asks the pipeline for latents and decodes them itself, one sample at a time, so
frames, ``output="latents"`` and the probe's ``decode_latents`` share one path.

Two per-call wrappers give the hooks what diffusers' callback does not: one around
``pipe.prepare_latents`` (to swap in caller-given initial latents and to keep the
conditioning latent), one around ``pipe.scheduler.step`` (to read the step's exact
clean estimate x0 and noise levels). Both are instance attributes that shadow the
class methods for the call and are removed afterwards, so a generator is not safe to
call from two threads at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import inspect
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from gen_reason.errors import UserError
from gen_reason.models.base import OnStep, StepState, VideoGenerator, normalise_seeds
from gen_reason.models.families import (
    EXTRA_OPTIONS,
    PIPELINES,
    Family,
    FamilyDefaults,
    Geometry,
    Limits,
    family_for,
)
from gen_reason.video import Video, crop_letterbox, letterbox

#: A LoRA folder with one adapter per Wan 2.2 A14B expert (``genreason train lora``) holds this manifest ...
EXPERT_LORA_MANIFEST = "lora_experts.json"
#: ... and its files, each a diffusers LoRA (``transformer.*`` keys) for the expert named.
EXPERT_LORA_FILES = {"transformer": "pytorch_lora_weights.safetensors",
                     "transformer_2": "transformer_2/pytorch_lora_weights.safetensors"}

_DTYPES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
    "float": torch.float32,
}
#: Tokenizer files, any one of which makes a tokenizer folder loadable (``*_config.json`` alone does not).
TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "tokenizer.model", "vocab.json", "vocab.txt",
                   "sentencepiece.bpe.model")
try:
    from safetensors import SafetensorError
except ImportError:  # older safetensors
    SafetensorError = OSError
#: What a model folder's broken files raise inside diffusers/transformers loading (a truncated
#: shard, a tokenizer.json cut short): OSError for missing files, the rest for bad contents.
_LOAD_ERRORS = (OSError, ValueError, KeyError, SafetensorError)
#: Offload modes: none, diffusers' model CPU offload, sequential (per-layer) offload, group offload.
OFFLOAD_MODES = ("none", "model", "sequential", "group")


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
        path = Path(path).expanduser()
        model_index = read_model_index(path)
        class_name = model_index.get("_class_name")
        pipeline_cls = pipeline_class(class_name, path)
        check_components(path, model_index)
        family = model_family(path, model_index, pipeline_cls)
        # Every cheap check before the (possibly minutes-long) load.
        options = resolve_options(family, overrides)
        limits = family.limits(read_component_configs(path, model_index))
        family.check_request(limits, options.size if "size" in overrides else None, overrides.get("num_frames"))
        check_attention(family, attention)
        offload = None if offload in (None, "auto") and not cpu_offload else resolve_offload(offload, cpu_offload)
        tiling = _planner_switch(vae_tiling)
        if tiling and "vae" not in listed_components(model_index):
            raise UserError(f"{path.name} has no VAE: vae_tiling does not apply to it")
        max_batch = None if max_batch in (None, "auto") else int(max_batch)
        if max_batch is not None and max_batch < 1:
            raise UserError(f"max_batch must be at least 1, got {max_batch}")
        loras = [Path(item).expanduser() for item in _as_list(lora)]
        scales = list(lora_scale) if isinstance(lora_scale, (list, tuple)) else [lora_scale] * len(loras)
        if len(scales) != len(loras):
            raise UserError(f"got {len(loras)} LoRA(s) but {len(scales)} lora_scale value(s)")
        for lora_path in loras:
            if not lora_path.exists():
                raise UserError(f"LoRA not found: {lora_path}")

        device = resolve_device(device)
        if offload not in (None, "none") and device.type != "cuda":
            raise UserError(f"offload {offload} moves models between the CPU and a GPU; it needs a CUDA device, "
                            f"not {device}")
        dtype = resolve_dtype(dtype, device)
        torch_dtype: Any = dtype
        if dtype != torch.float32 and family.fp32_components:
            torch_dtype = {"default": dtype, **{name: torch.float32 for name in family.fp32_components}}
        try:
            pipe = pipeline_cls.from_pretrained(
                str(path), **{_dtype_keyword(): torch_dtype}, local_files_only=True, use_safetensors=True
            )
        except _LOAD_ERRORS as exc:  # unreadable, missing, truncated or corrupt files in the folder
            raise UserError(f"cannot load model {path}: {type(exc).__name__}: {_first_line(exc)}") from None

        name = path.name + "".join(f"+{item.stem}" for item in loras)
        generator = cls(pipe, family, name=name, max_batch=max_batch or 1, **overrides)
        if loras:
            generator.set_loras(loras, scales)
        from gen_reason.models.planner import apply_placement, plan_for

        generator.plan = plan_for(generator, device, offload=offload, vae_tiling=tiling, max_batch=max_batch)
        generator.max_batch, offload, vae_tiling = generator.plan.max_batch, generator.plan.offload, generator.plan.vae_tiling
        if generator.plan.budget is not None:
            print(f"genreason: {generator.plan.describe()}", file=sys.stderr)

        apply_placement(pipe, device, offload, vae_tiling)
        _set_attention(pipe, family, attention, device)
        if compile:
            denoisers = _transformers(pipe) or [model for model in (getattr(pipe, "unet", None),) if model is not None]
            if not denoisers:
                raise UserError(f"{path.name} has no transformer or UNet to compile")
            for model in denoisers:
                model.compile()
        return generator

    def set_loras(self, paths: Sequence[str | Path], scales: Sequence[float]) -> None:
        """Load LoRA weights (diffusers format) and mix them with ``scales``.

        Wan 2.2 A14B has two experts. A folder with ``lora_experts.json`` (a run of
        ``genreason train lora`` on A14B) holds one LoRA per expert: each goes into its
        own expert, and an expert it has none for runs unchanged. Any other LoRA goes
        into both experts.
        """
        names = []
        two_experts = getattr(self.pipeline, "transformer_2", None) is not None
        for index, lora_path in enumerate(paths):
            lora_path = Path(lora_path).expanduser()
            if not lora_path.exists():
                raise UserError(f"LoRA not found: {lora_path}")
            name = f"lora{index}"
            per_expert = expert_lora_files(lora_path)
            if per_expert is not None:
                if not two_experts:
                    raise UserError(f"{lora_path} holds one LoRA per Wan 2.2 A14B expert; this model has a single "
                                    "transformer")
                if per_expert["transformer"] is not None:
                    self.pipeline.load_lora_weights(str(per_expert["transformer"]), adapter_name=name)
                if per_expert["transformer_2"] is not None:
                    self.pipeline.load_lora_weights(str(per_expert["transformer_2"]), adapter_name=name,
                                                    load_into_transformer_2=True)
            else:
                self.pipeline.load_lora_weights(str(lora_path), adapter_name=name)
                if two_experts:
                    self.pipeline.load_lora_weights(str(lora_path), adapter_name=name, load_into_transformer_2=True)
            names.append(name)
        self.pipeline.set_adapters(names, [float(scale) for scale in scales])

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
        return _prediction_type(self.pipeline.scheduler)

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
        num_frames = self.default_num_frames if num_frames is None else int(num_frames)
        steps = self.options.steps if steps is None else int(steps)
        if steps < 1:
            raise UserError(f"steps must be at least 1, got {steps}")
        request = _Request(
            prompt=prompt,
            negative_prompt=self.options.negative_prompt if negative_prompt is None else negative_prompt,
            num_frames=num_frames,
            geometry=self._geometry(num_frames, size),
            steps=steps,
            guidance=self.options.guidance if guidance is None else float(guidance),
            on_step=on_step,
        )
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
                frames = crop_letterbox(self._decode(final[index : index + 1], generator, num_frames), box, canvas)
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

    def _denoise(self, picture, seeds: list[int], noise: torch.Tensor | None, request: "_Request"):
        """One pipeline call for ``seeds``: canonical final latents (float32) and the generators."""
        pipe, family, geometry = self.pipeline, self.family, request.geometry
        # One CPU generator per seed: noise is identical on every device and batch.
        generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]
        count = len(seeds)
        prepared = _PreparedLatents(pipe, family, noise, geometry)
        recorder = _StepRecorder(pipe.scheduler) if request.on_step else contextlib.nullcontext()
        callback = None
        if request.on_step is not None:
            callback = _StepCallback(self, request, tuple(seeds), prepared, recorder)
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


@dataclasses.dataclass(frozen=True)
class _Request:
    """Everything about one ``generate`` call except the seeds."""

    prompt: str
    negative_prompt: str
    num_frames: int
    geometry: Geometry
    steps: int
    guidance: float
    on_step: OnStep | None


class _PreparedLatents:
    """Wraps ``pipe.prepare_latents`` for one call: keeps its result, swaps in caller noise."""

    def __init__(self, pipe, family: Family, noise: torch.Tensor | None, geometry: Geometry) -> None:
        self.pipe, self.family, self.noise, self.geometry = pipe, family, noise, geometry
        self.value: Any = None
        self._restore = None

    def __enter__(self) -> "_PreparedLatents":
        original = getattr(self.pipe, "prepare_latents", None)
        if original is None:  # a pipeline without the usual method: nothing to wrap
            if self.noise is not None:
                raise UserError(f"{type(self.pipe).__name__} does not accept initial latents")
            return self

        def prepare_latents(*args, **kwargs):
            prepared = original(*args, **kwargs)
            if self.noise is not None:
                prepared = self.family.replace_noise(self.pipe, prepared, self.noise, self.geometry)
            self.value = prepared
            return prepared

        self._restore = _shadow(self.pipe, "prepare_latents", prepare_latents)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._restore is not None:
            self._restore()


class _StepRecorder:
    """Wraps ``scheduler.step`` for one call to keep each step's x0 and noise levels.

    x0 comes from what the scheduler itself computed, so it is exact: the step's
    ``pred_original_sample`` (DDIM-style, CogVideoX), the converted model output of
    x0-predicting multistep solvers (UniPC, DPM-Solver++), or ``sample - sigma * v``
    for flow-matching Euler.
    """

    def __init__(self, scheduler) -> None:
        self.scheduler = scheduler
        self.calls = 0
        self.x0: torch.Tensor | None = None
        self.sigma: float | None = None
        self.next_sigma: float | None = None

    def __enter__(self) -> "_StepRecorder":
        original = self.scheduler.step
        signature = inspect.signature(original)

        def step(*args, **kwargs):
            result = original(*args, **kwargs)
            self._record(signature.bind(*args, **kwargs).arguments, result)
            return result

        self._restore = _shadow(self.scheduler, "step", step)
        return self

    def __exit__(self, *exc_info) -> None:
        self._restore()

    def _record(self, arguments: dict, result: Any) -> None:
        scheduler = self.scheduler
        step_index = getattr(scheduler, "step_index", None)
        position = self.calls if step_index is None else step_index - 1  # step_index has moved on
        self.calls += 1
        self.sigma = _noise_level(scheduler, position)
        self.next_sigma = _noise_level(scheduler, position + 1)
        self.x0 = _clean_estimate(scheduler, arguments, result, position)


def _shadow(owner, name: str, replacement):
    """Set ``owner.name`` for a while; return the function that puts back what was there.

    Restores an instance attribute someone else set (another wrapper, a test spy)
    instead of deleting it.
    """
    missing = object()
    previous = owner.__dict__.get(name, missing)
    setattr(owner, name, replacement)

    def restore() -> None:
        if previous is missing:
            owner.__dict__.pop(name, None)
        else:
            setattr(owner, name, previous)

    return restore


class _StepCallback:
    """The ``callback_on_step_end`` that turns a step into a :class:`StepState` for ``on_step``."""

    def __init__(self, generator: DiffusersVideoGenerator, request: _Request, seeds, prepared, recorder) -> None:
        self.generator, self.request, self.seeds = generator, request, seeds
        self.prepared, self.recorder = prepared, recorder

    def __call__(self, pipe, step: int, timestep, tensors: dict) -> dict:
        family, geometry = self.generator.family, self.request.geometry
        native = tensors["latents"]
        latents = family.with_condition(family.to_canonical(pipe, native, geometry), self.prepared.value)
        x0 = self.recorder.x0
        if x0 is not None:
            x0 = family.x0_to_canonical(pipe, x0, latents, self.prepared.value)
        state = StepState(
            step=step,
            num_steps=int(getattr(pipe, "num_timesteps", self.request.steps)),
            timestep=float(timestep),
            sigma=self.recorder.sigma,
            next_sigma=self.recorder.next_sigma,
            latents=latents,
            x0=x0,
            seeds=self.seeds,
            num_frames=self.request.num_frames,
            height=geometry.height,
            width=geometry.width,
        )
        replacement = self.request.on_step(state)
        if replacement is None:
            return {}
        if tuple(replacement.shape) != tuple(latents.shape):
            raise ValueError(
                f"on_step returned latents of shape {tuple(replacement.shape)}, expected {tuple(latents.shape)}"
            )
        replacement = replacement.to(device=native.device, dtype=native.dtype)
        return {"latents": family.from_canonical(pipe, replacement, geometry)}


# -- scheduler facts ------------------------------------------------------------------------
def _is_flow_matching(scheduler) -> bool:
    return type(scheduler).__name__.startswith("FlowMatch")


def _prediction_type(scheduler) -> str | None:
    if _is_flow_matching(scheduler):
        return "flow_prediction"
    return scheduler.config.get("prediction_type")


def _noise_level(scheduler, position: int) -> float | None:
    """Noise coefficient sigma_t of the sample at step ``position`` (0 past the end)."""
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is not None:
        if position >= len(sigmas):
            return 0.0
        sigma = sigmas[position]
        if hasattr(scheduler, "_sigma_to_alpha_sigma_t"):  # UniPC / DPM: VE or flow sigmas -> sigma_t
            sigma = scheduler._sigma_to_alpha_sigma_t(sigma)[1]
        return float(sigma)
    alphas_cumprod = getattr(scheduler, "alphas_cumprod", None)
    if alphas_cumprod is not None:
        if position >= len(scheduler.timesteps):
            return 0.0
        return float((1 - alphas_cumprod[int(scheduler.timesteps[position])]).sqrt())
    return None


def _clean_estimate(scheduler, arguments: dict, result: Any, position: int) -> torch.Tensor | None:
    if isinstance(result, tuple) and len(result) > 1:  # CogVideoX schedulers: (prev_sample, x0)
        return result[1]
    if getattr(result, "pred_original_sample", None) is not None:
        return result.pred_original_sample
    outputs = getattr(scheduler, "model_outputs", None)
    predicts_x0 = getattr(scheduler, "predict_x0", None)  # UniPC
    if predicts_x0 is None:
        predicts_x0 = scheduler.config.get("algorithm_type") in ("dpmsolver++", "sde-dpmsolver++")
    if outputs and outputs[-1] is not None and predicts_x0:
        return outputs[-1]
    if _is_flow_matching(scheduler) and "sample" in arguments and "model_output" in arguments:
        per_token = arguments.get("per_token_timesteps")
        if per_token is not None:
            # LTXConditionPipeline steps each token at its own noise level on the negated
            # velocity (its per-token Euler step is sample + (sigma - next) * output).
            sigma = (per_token.float() / scheduler.config.num_train_timesteps)[..., None]
            return arguments["sample"].float() + sigma * arguments["model_output"].float()
        sigma = scheduler.sigmas[position]
        return arguments["sample"].float() - sigma * arguments["model_output"].float()
    return None


# -- loading --------------------------------------------------------------------------------
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


def expert_lora_files(path: Path) -> dict[str, Path | None] | None:
    """The per-expert LoRA files of a folder with ``lora_experts.json`` (``None`` for any other LoRA).

    Maps ``transformer`` / ``transformer_2`` to the file for that expert, or ``None``
    where that expert got no adapter; a listed file that is missing is a :class:`UserError`.
    """
    manifest_file = path / EXPERT_LORA_MANIFEST
    if not (path.is_dir() and manifest_file.is_file()):
        return None
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {manifest_file}: {_first_line(exc)}") from None
    files: dict[str, Path | None] = {}
    for expert in EXPERT_LORA_FILES:
        relative = manifest.get(expert) if isinstance(manifest, dict) else None
        files[expert] = None if relative is None else path / str(relative)
        if files[expert] is not None and not files[expert].is_file():
            raise UserError(f"{manifest_file} lists {relative} for {expert}, but it is missing")
    if all(file is None for file in files.values()):
        raise UserError(f"{manifest_file} lists no LoRA file for either expert")
    return files


def read_model_index(path: Path) -> dict:
    """The parsed ``model_index.json`` of a model folder, or a one-line :class:`UserError`."""
    if not path.exists():
        raise UserError(f"model folder not found: {path}")
    if not path.is_dir():
        raise UserError(f"model path is not a folder: {path}")
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise UserError(f"{path} is not a diffusers model folder (no model_index.json)")
    try:
        model_index = json.loads(index_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {index_file}: {_first_line(exc)}") from None
    if not isinstance(model_index, dict):
        raise UserError(f"{index_file} does not hold a JSON object")
    return model_index


def pipeline_class(class_name: Any, path: Path) -> type:
    """The pipeline class for ``_class_name``, or a :class:`UserError` naming the supported ones."""
    if not isinstance(class_name, str):
        raise UserError(f"{path}/model_index.json has no usable _class_name (custom pipeline code is never run)")
    if class_name not in PIPELINES:
        raise UserError(
            f"unsupported pipeline {class_name} in {path}; supported: {', '.join(PIPELINES.names())}"
        )
    try:
        cls = PIPELINES.get(class_name)
    except (ImportError, AttributeError) as exc:
        message = f"pipeline {class_name} is registered but cannot be imported: {_first_line(exc)}"
        raise UserError(message) from None
    from diffusers import DiffusionPipeline

    if not (isinstance(cls, type) and issubclass(cls, DiffusionPipeline)):
        raise UserError(f"pipeline {class_name} resolves to {cls!r}, not a diffusers pipeline class")
    return cls


def listed_components(model_index: dict) -> dict[str, tuple[str, str]]:
    """``name -> (library, class)`` of every component ``model_index.json`` lists as present."""
    return {name: tuple(spec) for name, spec in model_index.items()
            if not name.startswith("_") and isinstance(spec, list) and len(spec) == 2 and None not in spec}


def check_components(path: Path, model_index: dict) -> None:
    """Raise a :class:`UserError` for a component ``model_index.json`` lists but the folder lacks,
    a model component without safetensors weights, or a tokenizer without its vocabulary."""
    for name, (_, class_name) in listed_components(model_index).items():
        folder = path / name
        if not folder.is_dir():
            raise UserError(f"{path} lists component {name!r} in model_index.json but has no {name}/ folder")
        is_model = (folder / "config.json").is_file()
        if is_model and not any(folder.glob("*.safetensors")):
            raise UserError(
                f"component {name!r} in {path} has no .safetensors weights (only safetensors are loaded)"
            )
        if "Tokenizer" in class_name and not any((folder / file).is_file() for file in TOKENIZER_FILES):
            raise UserError(f"tokenizer {name!r} in {path} has no vocabulary file "
                            f"({' or '.join(TOKENIZER_FILES[:2])}); the download is incomplete")


def read_component_configs(path: Path, model_index: dict) -> dict[str, dict]:
    """Each listed component's configuration (``config.json``, ``scheduler_config.json`` or
    ``preprocessor_config.json``), by component name; nothing is loaded. A component whose
    configuration is missing is left out (:func:`check_components` reports missing folders)."""
    configs: dict[str, dict] = {}
    for name in listed_components(model_index):
        for file_name in ("config.json", "scheduler_config.json", "preprocessor_config.json"):
            file = path / name / file_name
            if file.is_file():
                try:
                    configs[name] = json.loads(file.read_text(encoding="utf-8"))
                except (OSError, ValueError) as exc:
                    raise UserError(f"cannot read {file}: {_first_line(exc)}") from None
                break
    return configs


def model_family(path: Path, model_index: dict, pipeline_cls: type | None = None) -> Family:
    """The :class:`Family` of the model folder at ``path``, from its configs alone.

    A ``WanPipeline`` folder without ``expand_timesteps`` is a text-to-video model (Wan2.1-T2V,
    Wan2.2-T2V-A14B), which has no way to take the first frame: a :class:`UserError`.
    """
    class_name = model_index.get("_class_name")
    if class_name == "WanPipeline" and not model_index.get("expand_timesteps"):
        raise UserError(f"{path} is a Wan text-to-video model (WanPipeline without expand_timesteps); genreason needs "
                        "an image-to-video one (Wan2.1-I2V, Wan2.2-I2V-A14B or Wan2.2-TI2V-5B)")
    configs = read_component_configs(path, model_index)
    return family_for(class_name, pipeline_cls, model_index, configs, folder_name=path.name)


def model_limits(path: str | Path) -> tuple[Family, Limits]:
    """The family of a model folder and the sizes and frame counts it takes, from configs only."""
    path = Path(path).expanduser()
    model_index = read_model_index(path)
    pipeline_cls = pipeline_class(model_index.get("_class_name"), path)
    family = model_family(path, model_index, pipeline_cls)
    return family, family.limits(read_component_configs(path, model_index))


def check_request(path: str | Path, size: tuple[int, int] | None = None, num_frames: int | None = None) -> None:
    """Raise a one-line :class:`UserError` when the model folder at ``path`` cannot take ``size``
    or ``num_frames`` (reads configs only: call it before loading anything, e.g. before training)."""
    family, limits = model_limits(path)
    family.check_request(limits, size, num_frames)


def check_fixed_size(path: str | Path, height: int, width: int) -> None:
    """Raise a one-line :class:`UserError` when the model folder at ``path`` runs only at one
    size (CogVideoX-5b-I2V: 480x720) and ``height`` x ``width`` is not it; reads configs only,
    so training can refuse a dataset before the model loads and the cache fills."""
    family, limits = model_limits(path)
    if limits.fixed_size is not None:
        family.check_request(dataclasses.replace(limits, size_multiple=1), size=(height, width))


def component_dtypes(family: Family, model_index: dict, dtype: torch.dtype) -> dict[str, torch.dtype]:
    """The dtype each listed model component loads in at compute ``dtype`` (schedulers, tokenizers
    and processors have none)."""
    dtypes = {}
    for name, (_, class_name) in listed_components(model_index).items():
        if any(word in class_name for word in ("Scheduler", "Tokenizer", "Processor")):
            continue
        dtypes[name] = torch.float32 if name in family.fp32_components else dtype
    return dtypes


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a ``torch.device``; default CUDA, then Apple MPS, then CPU."""
    if device is not None:
        try:
            device = torch.device(device)
        except RuntimeError as exc:
            raise UserError(f"unknown device {device!r}: {_first_line(exc)}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"device {device} requested but CUDA is not available here")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``dtype`` as a ``torch.dtype``; default bfloat16 on CUDA, float32 elsewhere."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if str(dtype).lower() not in _DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; choose one of {', '.join(_DTYPES)}")
    return _DTYPES[str(dtype).lower()]


def _dtype_keyword() -> str:
    """``dtype`` on diffusers that renamed it (``torch_dtype`` is deprecated there), else ``torch_dtype``."""
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def _set_flow_shift(pipe, shift: float) -> None:
    scheduler = pipe.scheduler
    for key in ("shift", "flow_shift"):  # FlowMatchEuler / UniPC and DPM with flow sigmas
        if key in scheduler.config:
            pipe.scheduler = type(scheduler).from_config(scheduler.config, **{key: float(shift)})
            return
    raise UserError(f"flow_shift does not apply to {type(scheduler).__name__}")


def attention_backends(family: Family | None = None) -> list[str]:
    """Attention backends the installed diffusers offers (``sdpa`` first, then its dispatch
    backends that need no download at run time), restricted to what ``family`` supports."""
    names = ["sdpa"]
    try:
        from diffusers.models.attention_dispatch import AttentionBackendName
    except ImportError:  # older diffusers: xformers through the pipeline only
        names.append("xformers")
    else:
        names += [backend.value for backend in AttentionBackendName
                  if not backend.value.startswith("_") and not backend.value.endswith("_hub")
                  and backend.value not in ("native", "sdpa")]
    if family is not None and family.attention_backends is not None:
        names = [name for name in names if name in family.attention_backends]
    return names


def check_attention(family: Family, attention: str) -> None:
    """Raise a one-line :class:`UserError` for an attention backend unknown here or unsupported by ``family``."""
    if attention == "auto":
        return
    if attention not in attention_backends():
        raise UserError(f"unknown attention {attention!r}; choose auto or one of {', '.join(attention_backends())}")
    if attention not in attention_backends(family):
        raise UserError(f"{family.name} models do not support {attention} attention; choose auto or one of "
                        f"{', '.join(attention_backends(family))}")


def _planner_switch(value: bool | str | None) -> bool | None:
    """``vae_tiling`` as the planner takes it: ``None`` (its choice), ``True`` or ``False``."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("auto",):
        return None
    if text in ("on", "true", "1", "yes"):
        return True
    if text in ("off", "false", "0", "no"):
        return False
    raise UserError(f"vae_tiling must be auto, on or off; got {value!r}")


def resolve_offload(offload: str | None, cpu_offload: bool = False) -> str:
    """``offload`` as one of :data:`OFFLOAD_MODES` (``cpu_offload=True`` means ``"model"``)."""
    if offload is None or offload is False:
        return "model" if cpu_offload else "none"
    if offload is True:
        return "model"
    if str(offload) not in OFFLOAD_MODES:
        raise UserError(f"unknown offload {offload!r}; choose one of {', '.join(OFFLOAD_MODES)}")
    return str(offload)


def _set_attention(pipe, family: Family, attention: str, device: torch.device) -> None:
    explicit = attention != "auto"
    if attention == "auto":
        if device.type != "cuda":
            return
        installed = [name for name in family.auto_attention if importlib.util.find_spec(name)]
        if not installed:
            return
        attention = installed[0]
    if attention == "sdpa":
        return
    try:
        if attention == "xformers":
            pipe.enable_xformers_memory_efficient_attention()
        else:
            for model in _transformers(pipe):
                model.set_attention_backend(attention)
    except (ImportError, ValueError, RuntimeError) as exc:
        if explicit:
            raise UserError(f"{attention} attention is not available: {_first_line(exc)}") from None
        warnings.warn(f"{attention} attention failed ({_first_line(exc)}); using PyTorch SDPA", stacklevel=3)


def _transformers(pipe) -> list:
    return [model for model in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)) if model]


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, (str, Path)):
        return [value]
    return list(value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _as_pil(image):
    """An ``(H, W, 3)`` uint8 array or PIL image -> RGB PIL image."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise UserError(f"the first frame must be an (H, W, 3) uint8 RGB image; got {array.dtype} {array.shape}")
    return Image.fromarray(np.ascontiguousarray(array))
