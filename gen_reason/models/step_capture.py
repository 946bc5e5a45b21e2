"""What one generation call shows of each denoising step: the hooks behind ``on_step``.

Two per-call wrappers give the hooks what diffusers' callback does not: one around
``pipe.prepare_latents`` (:class:`PreparedLatents`: swaps in caller-given initial latents
and keeps the conditioning latent), one around ``pipe.scheduler.step``
(:class:`StepRecorder`: reads the step's exact clean estimate x0 and noise levels). Both
are instance attributes that shadow the class methods for the call and are removed
afterwards (:func:`shadow`), so a generator is not safe to call from two threads at once.
:class:`StepCallback` is the ``callback_on_step_end`` that turns a step into a
:class:`~gen_reason.models.base.StepState`. The scheduler facts below say what a
scheduler predicts and how noisy each step's sample is.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch

from gen_reason.errors import UserError
from gen_reason.models.base import OnStep, StepState
from gen_reason.models.families import Family, Geometry


@dataclass(frozen=True)
class Request:
    """Everything about one ``generate`` call except the seeds."""

    prompt: str
    negative_prompt: str
    num_frames: int
    geometry: Geometry
    steps: int
    guidance: float
    on_step: OnStep | None


class PreparedLatents:
    """Wraps ``pipe.prepare_latents`` for one call: keeps its result, swaps in caller noise."""

    def __init__(self, pipe, family: Family, noise: torch.Tensor | None, geometry: Geometry) -> None:
        self.pipe, self.family, self.noise, self.geometry = pipe, family, noise, geometry
        self.value: Any = None
        self._restore = None

    def __enter__(self) -> "PreparedLatents":
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

        self._restore = shadow(self.pipe, "prepare_latents", prepare_latents)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._restore is not None:
            self._restore()


class StepRecorder:
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

    def __enter__(self) -> "StepRecorder":
        original = self.scheduler.step
        signature = inspect.signature(original)

        def step(*args, **kwargs):
            result = original(*args, **kwargs)
            self._record(signature.bind(*args, **kwargs).arguments, result)
            return result

        self._restore = shadow(self.scheduler, "step", step)
        return self

    def __exit__(self, *exc_info) -> None:
        self._restore()

    def _record(self, arguments: dict, result: Any) -> None:
        scheduler = self.scheduler
        step_index = getattr(scheduler, "step_index", None)
        position = self.calls if step_index is None else step_index - 1  # step_index has moved on
        self.calls += 1
        self.sigma = noise_level(scheduler, position)
        self.next_sigma = noise_level(scheduler, position + 1)
        self.x0 = clean_estimate(scheduler, arguments, result, position)


def shadow(owner, name: str, replacement):
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


class StepCallback:
    """The ``callback_on_step_end`` that turns a step into a :class:`StepState` for ``on_step``."""

    def __init__(self, family: Family, request: Request, seeds, prepared, recorder) -> None:
        self.family, self.request, self.seeds = family, request, seeds
        self.prepared, self.recorder = prepared, recorder

    def __call__(self, pipe, step: int, timestep, tensors: dict) -> dict:
        family, geometry = self.family, self.request.geometry
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
def is_flow_matching(scheduler) -> bool:
    """Whether ``scheduler`` is one of diffusers' flow-matching schedulers."""
    return type(scheduler).__name__.startswith("FlowMatch")


def prediction_type(scheduler) -> str | None:
    """What the denoiser predicts under ``scheduler``: ``flow_prediction``, ``v_prediction``, ``epsilon`` ..."""
    if is_flow_matching(scheduler):
        return "flow_prediction"
    return scheduler.config.get("prediction_type")


def noise_level(scheduler, position: int) -> float | None:
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


def clean_estimate(scheduler, arguments: dict, result: Any, position: int) -> torch.Tensor | None:
    """The clean sample x0 the scheduler's step at ``position`` computed (from its ``arguments``
    and ``result``), in the pipeline's latent layout; ``None`` for a scheduler we cannot read."""
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
    if is_flow_matching(scheduler) and "sample" in arguments and "model_output" in arguments:
        per_token = arguments.get("per_token_timesteps")
        if per_token is not None:
            # LTXConditionPipeline steps each token at its own noise level on the negated
            # velocity (its per-token Euler step is sample + (sigma - next) * output).
            sigma = (per_token.float() / scheduler.config.num_train_timesteps)[..., None]
            return arguments["sample"].float() + sigma * arguments["model_output"].float()
        sigma = scheduler.sigmas[position]
        return arguments["sample"].float() - sigma * arguments["model_output"].float()
    return None
