"""The step probe: the model's clean estimate x0 at every denoising step, decoded and refereed.

At each step the scheduler computes a clean estimate of the video, ``x0`` (flow
matching: ``x_t - sigma * v`` with the guided ``v``; DDIM/CogVideoX: the step's
``pred_original_sample``; UniPC/DPM++: the converted model output). The generator
hands it over exactly in :class:`~gen_reason.models.StepState`. :class:`StepProbe`
keeps it every ``every`` steps (and always at the last step), :func:`decode_steps` turns
it into videos the way ``generate`` turns the final latents into its output, and
:func:`run_step_probe` has the referee score every one of them. What the scores say
(:func:`emergence`, :func:`exploration`) is :mod:`gen_reason.probe.emergence`, importable
from here too.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from gen_reason.errors import UserError
from gen_reason.models.base import OnStep, StepState
from gen_reason.probe.emergence import (  # what the scores say, importable from here too
    EMERGENCE_METRICS,
    emergence,
    exploration,
    node_path,
    path_similarity,
)

def chain_hooks(*hooks: OnStep | None) -> OnStep:
    """One ``on_step`` hook that calls ``hooks`` in order.

    Observers (probes, recorders) return ``None``; an intervention returns new latents.
    A hook after one that replaced the latents sees the replacement in ``state.latents``;
    the last replacement is what the generation continues from.
    """
    active = [hook for hook in hooks if hook is not None]

    def on_step(state: StepState) -> torch.Tensor | None:
        replacement = None
        for hook in active:
            returned = hook(state)
            if returned is not None:
                replacement = returned
                state = dataclasses.replace(state, latents=returned)
        return replacement

    return on_step


def recorded_step(step: int, num_steps: int, every: int, steps: Sequence[int] | None = None) -> bool:
    """Whether the probe keeps ``step``: every ``every``-th step from 0, the listed ``steps``, and the last."""
    if steps is not None:
        return step in steps or step == num_steps - 1
    return step % every == 0 or step == num_steps - 1


class StepProbe:
    """An ``on_step`` hook that keeps x0 (CPU, float32) at the recorded steps, per sample.

    Samples are numbered in the order of the ``seeds`` given to ``generate``, across the
    generator's internal batches (a batch starts at step 0). ``every``: keep every k-th
    step (the last step is always kept); ``steps``: keep exactly these (plus the last).
    ``keep_latents`` also keeps the running latents after each recorded step. The hook
    only reads: it never changes the generation.
    """

    def __init__(self, every: int = 1, steps: Sequence[int] | None = None, keep_latents: bool = False) -> None:
        if int(every) < 1:
            raise UserError(f"every must be at least 1 (decode every k-th step), got {every}")
        self.every = int(every)
        self.steps = None if steps is None else sorted({int(step) for step in steps})
        self.keep_latents = keep_latents
        self.x0: list[dict[int, torch.Tensor]] = []  # sample -> step -> [C, F, h, w]
        self.latents: list[dict[int, torch.Tensor]] = []
        self.seeds: list[int] = []
        self.sigmas: dict[int, float | None] = {}
        self.timesteps: dict[int, float] = {}
        self.num_steps: int | None = None
        self.num_frames: int | None = None
        self._offset = 0

    def __call__(self, state: StepState) -> None:
        if state.step == 0:  # a new pipeline batch: its samples follow the previous batch's
            self._offset = len(self.seeds)
            self.seeds.extend(state.seeds)
            self.x0.extend({} for _ in state.seeds)
            self.latents.extend({} for _ in state.seeds)
        self.num_steps, self.num_frames = state.num_steps, state.num_frames
        if not recorded_step(state.step, state.num_steps, self.every, self.steps):
            return None
        if state.x0 is None:
            raise UserError("this scheduler gives no clean estimate x0 at a step; the step probe cannot read it")
        self.sigmas[state.step] = state.sigma
        self.timesteps[state.step] = state.timestep
        x0 = state.x0.detach().float().cpu()
        latents = state.latents.detach().float().cpu() if self.keep_latents else None
        for index in range(len(state.seeds)):
            self.x0[self._offset + index][state.step] = x0[index]
            if latents is not None:
                self.latents[self._offset + index][state.step] = latents[index]
        return None

    @property
    def recorded_steps(self) -> list[int]:
        """The steps kept, in order."""
        return sorted(self.sigmas)


def pins_first_frame(generator) -> bool:
    """Whether the pipeline overwrites frame 0 with the input image after denoising (the embedded model does)."""
    return getattr(getattr(generator, "family", None), "name", "") == "embedded"


def decode_x0(generator, x0: torch.Tensor, num_frames: int | None, image_size: tuple[int, int], *,
              first_frame: np.ndarray | None = None, decode_scale: float = 1.0) -> np.ndarray:
    """One sample's x0 (``[C, F, h, w]``) -> a uint8 video at ``image_size``, as ``generate`` finishes its output.

    ``first_frame`` replaces frame 0, for pipelines that put the input image back into
    frame 0 at the end (see :func:`pins_first_frame`). ``decode_scale`` < 1 shrinks the
    latents spatially before decoding (cheaper VAE decodes; the frames are resized back
    to ``image_size``, so the referee can still read them, with less detail).
    """
    if not 0 < decode_scale <= 1:
        raise UserError(f"decode_scale must be in (0, 1], got {decode_scale}")
    latents = x0[None]
    if decode_scale < 1:
        latents = torch.nn.functional.interpolate(
            latents, scale_factor=(1.0, decode_scale, decode_scale), mode="trilinear", align_corners=False
        )
    frames = generator.decode_latents(latents, num_frames=num_frames)[0]
    if decode_scale < 1:
        # Back to the working size a full decode gives (pixels per latent cell times the
        # latent grid), so the family fits it to the image as it fits a full decode (the
        # embedded model crops its padding rather than resizing).
        import cv2

        per_row, per_col = frames.shape[1] / latents.shape[-2], frames.shape[2] / latents.shape[-1]
        size = (int(round(per_col * x0.shape[-1])), int(round(per_row * x0.shape[-2])))
        frames = np.stack([cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR) for frame in frames])
    frames = generator.family.fit_to_image(generator.pipeline, frames, tuple(image_size))
    if first_frame is not None:
        frames = frames.copy()
        frames[0] = first_frame
    return frames


def decode_steps(
    generator,
    probe: StepProbe,
    image_size: tuple[int, int],
    *,
    first_frames: Sequence[np.ndarray] | None = None,
    decode_scale: float = 1.0,
) -> list[dict[int, np.ndarray]]:
    """Decode every kept x0 of ``probe`` with :func:`decode_x0`: one ``{step: video}`` dict per sample.

    ``first_frames``: one frame 0 per sample (or ``None``).
    """
    return [
        {step: decode_x0(generator, x0, probe.num_frames, image_size, decode_scale=decode_scale,
                         first_frame=None if first_frames is None else first_frames[sample])
         for step, x0 in by_step.items()}
        for sample, by_step in enumerate(probe.x0)
    ]


@dataclass
class StepProbeResult:
    """One instance probed at every kept step, for every seed.

    ``step_videos[i][step]`` / ``step_scores[i][step]``: sample ``i``'s decoded x0 and its
    referee score at ``step``; ``final_videos`` / ``final_scores``: what ``generate``
    returned and its score. ``sigmas[step]``: the noise level the model saw.
    """

    instance: Any
    seeds: list[int]
    steps: list[int]
    num_steps: int
    sigmas: dict[int, float | None]
    final_videos: list[np.ndarray]
    final_scores: list[Any]
    step_videos: list[dict[int, np.ndarray]]
    step_scores: list[dict[int, Any]]
    x0: list[dict[int, torch.Tensor]] = field(repr=False, default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def rows(self) -> list[dict]:
        """One JSON-ready row per (sample, step): seed, sigma, metrics, node path, reason."""
        uid = getattr(self.instance, "uid", str(self.instance))
        out = []
        for sample, seed in enumerate(self.seeds):
            for step in self.steps:
                score = self.step_scores[sample].get(step)
                if score is None:
                    continue
                out.append({
                    "instance": uid, "seed": seed, "step": step, "sigma": self.sigmas.get(step),
                    "metrics": _jsonable_metrics(score.metrics), "node_path": node_path(score),
                    "reason": getattr(score, "reason", ""),
                })
        return out


def resolve_verifier(verifier, task: str):
    """A verifier object: ``None``/``"reference"``/``"rule"`` pick the task's referee; an object passes."""
    if verifier is None or isinstance(verifier, str):
        from gen_reason.verifiers.registry import verifier_for

        return verifier_for(task, verifier or "reference")
    if not hasattr(verifier, "score"):
        raise UserError(f"a verifier needs a score(instance, video) method; got {type(verifier).__name__}")
    return verifier


def run_step_probe(
    generator,
    instance,
    seeds: Sequence[int] | int = (0, 1, 2, 3),
    *,
    every: int = 1,
    steps: Sequence[int] | None = None,
    num_steps: int | None = None,
    num_frames: int | None = None,
    guidance: float | None = None,
    verifier=None,
    decode_scale: float = 1.0,
    pin_first_frame: bool | None = None,
    hooks: Sequence[OnStep] = (),
    score: bool = True,
    keep_videos: bool = True,
    keep_x0: bool = True,
    clock: Callable[[], float] = time.perf_counter,
) -> StepProbeResult:
    """Generate ``instance`` for ``seeds`` in one batched call, keeping, decoding and scoring x0.

    ``every`` / ``steps``: which steps are kept (see :class:`StepProbe`); ``num_steps``,
    ``num_frames``, ``guidance``: the generation settings (generator defaults when
    ``None``). ``verifier``: ``"reference"`` (default), ``"rule"`` or a verifier object.
    ``pin_first_frame``: put the final video's frame 0 into every step's video
    (default: when the pipeline itself pins it, see :func:`pins_first_frame`).
    ``hooks``: more ``on_step`` hooks run after the probe (layer recorder,
    interventions). ``score=False`` skips the referee (``step_scores`` stay empty).
    ``keep_videos=False`` / ``keep_x0=False`` drop the decoded step videos / the x0
    latents once scored (large models: a decoded 480p video is ~100 MB).
    """
    seeds = [int(seed) for seed in ([seeds] if isinstance(seeds, int) else seeds)]
    probe = StepProbe(every=every, steps=steps)
    started = clock()
    finals = generator.generate(
        instance.first_frame, instance.prompt, seeds=seeds, steps=num_steps, num_frames=num_frames,
        guidance=guidance, on_step=chain_hooks(probe, *hooks),
    )
    generated = clock()
    if pin_first_frame is None:
        pin_first_frame = pins_first_frame(generator)
    referee = resolve_verifier(verifier, instance.task) if score else None
    final_scores = [referee.score(instance, video) for video in finals] if referee is not None else []
    step_videos, step_scores, decode_seconds = _decode_and_score(
        generator, probe, instance, referee, [video[0] for video in finals] if pin_first_frame else None,
        samples=len(seeds), decode_scale=decode_scale, keep_videos=keep_videos, clock=clock)
    finished = clock()
    return StepProbeResult(
        instance=instance, seeds=seeds, steps=probe.recorded_steps, num_steps=int(probe.num_steps or 0),
        sigmas=dict(probe.sigmas), final_videos=list(finals), final_scores=final_scores,
        step_videos=step_videos, step_scores=step_scores, x0=probe.x0 if keep_x0 else [],
        seconds={"generate": generated - started, "decode": decode_seconds,
                 "score": finished - generated - decode_seconds},
    )


def _decode_and_score(generator, probe: StepProbe, instance, referee, first_frames: list[np.ndarray] | None, *,
                      samples: int, decode_scale: float, keep_videos: bool,
                      clock: Callable[[], float]) -> tuple[list[dict[int, np.ndarray]], list[dict[int, Any]], float]:
    """Decode every x0 ``probe`` kept and score it with ``referee`` (``None``: no scores), one
    video at a time: decoded x0 videos of a large model are big, and only the scores need to
    outlive the loop unless ``keep_videos``. ``samples``: how many videos were generated. Returns the step videos, the step scores and
    the seconds spent decoding."""
    image_size = tuple(instance.first_frame.shape[:2])
    step_videos: list[dict[int, np.ndarray]] = [{} for _ in range(samples)]
    step_scores: list[dict[int, Any]] = [{} for _ in range(samples)]
    decode_seconds = 0.0
    for sample, by_step in enumerate(probe.x0):
        for step, x0 in by_step.items():
            tick = clock()
            video = decode_x0(generator, x0, probe.num_frames, image_size, decode_scale=decode_scale,
                              first_frame=None if first_frames is None else first_frames[sample])
            decode_seconds += clock() - tick
            if keep_videos:
                step_videos[sample][step] = video
            if referee is not None:
                step_scores[sample][step] = referee.score(instance, video)
    return step_videos, step_scores, decode_seconds


def _jsonable_metrics(metrics: dict) -> dict:
    return {k: (float(v) if math.isfinite(float(v)) else None) for k, v in metrics.items()}
