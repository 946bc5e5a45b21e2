"""Interventions at a chosen denoising step, and what they do to the outcome.

Two ``on_step`` hooks that return new latents at one step:

- :class:`NoiseInjection`: re-noise. After a step the running latents are exactly
  ``alpha * x0 + sigma * eps`` (Euler flow matching: ``alpha = 1 - sigma``; DDIM:
  ``alpha = sqrt(1 - sigma**2)``), where ``x0`` is the step's clean estimate and
  ``sigma`` the noise level the schedule expects next. The injection keeps ``x0`` and
  replaces part of ``eps`` with fresh noise at the same level:
  ``eps' = sqrt(1 - s**2) * eps + s * fresh`` (``strength`` ``s`` = 1: all fresh), so
  the schedule stays consistent and only the randomness the model has not yet resolved
  is redrawn. Choose the step directly or by noise level (``sigma=``: the step whose
  next noise level is nearest).
- :class:`LatentSwap`: swap the running latents of pairs of samples (seeds), all of them
  or only some latent frames.

:func:`run_intervention` runs the same instance and seeds with and without a hook and
compares the outcomes as the referee sees them: did success change, did the agent's
path change, did the perturbed sample end on its own unperturbed outcome or on its
swap partner's?
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Container, Sequence

import numpy as np
import torch

from gen_reason.errors import UserError
from gen_reason.models.base import StepState
from gen_reason.probe.steps import chain_hooks, node_path, resolve_verifier


def signal_coefficient(sigma: float, prediction_type: str | None) -> float:
    """``alpha`` in ``x_t = alpha * x0 + sigma * eps`` for this kind of scheduler."""
    if prediction_type == "flow_prediction":
        return 1.0 - sigma
    return math.sqrt(max(0.0, 1.0 - sigma * sigma))


class NoiseInjection:
    """Re-noise the running latents after step ``step`` (or at noise level ``sigma``).

    ``strength`` in [0, 1]: the share (in standard deviation) of the latents' noise
    replaced by fresh noise; ``noise_seed``: with the sample's seed, it fixes the fresh
    noise (:meth:`fresh_seed`; reproducible, independent of the batch). ``prediction_type`` comes from the generator
    (``generator.prediction_type``). A step after which no noise is left (the last)
    cannot be re-noised: :attr:`applied` stays ``False``.
    """

    def __init__(self, prediction_type: str | None, *, step: int | None = None, sigma: float | None = None,
                 strength: float = 1.0, noise_seed: int = 0) -> None:
        if (step is None) == (sigma is None):
            raise UserError("give exactly one of step= or sigma= for a noise injection")
        if not 0 <= strength <= 1:
            raise UserError(f"strength must be in [0, 1], got {strength}")
        self.prediction_type = prediction_type
        self.step, self.sigma = step, sigma
        self.strength = float(strength)
        self.noise_seed = int(noise_seed)
        self.applied = False
        self.applied_step: int | None = None
        self.applied_sigma: float | None = None
        self._sigma_steps: list[float] = []

    def fresh_seed(self, seed: int) -> int:
        """The generator seed of sample ``seed``'s fresh noise.

        Mixed through a SeedSequence so that it never equals ``seed`` itself: the
        generator draws each sample's initial noise from ``manual_seed(seed)``, and
        "fresh" noise equal to it would change nothing at the first step.
        """
        return int(np.random.SeedSequence([self.noise_seed, int(seed), 0x5EED]).generate_state(1, np.uint64)[0] >> 1)

    def _chosen(self, state: StepState) -> bool:
        if self.step is not None:
            return state.step == self.step
        # By noise level: act at the step whose next noise level is the first at or below sigma.
        if self.applied_step is not None:
            return False
        return state.next_sigma is not None and state.next_sigma <= self.sigma

    def __call__(self, state: StepState) -> torch.Tensor | None:
        if not self._chosen(state):
            return None
        level = state.next_sigma
        if level is None or level <= 0 or state.x0 is None:
            return None
        alpha = signal_coefficient(level, self.prediction_type)
        x0 = state.x0.to(state.latents)
        implied_noise = (state.latents - alpha * x0) / level
        fresh = torch.stack([
            torch.randn(state.latents.shape[1:], generator=torch.Generator().manual_seed(self.fresh_seed(seed)))
            for seed in state.seeds
        ]).to(state.latents)
        noise = math.sqrt(1.0 - self.strength**2) * implied_noise + self.strength * fresh
        self.applied, self.applied_step, self.applied_sigma = True, state.step, level
        return alpha * x0 + level * noise

    def describe(self) -> dict:
        """A JSON-ready description (kind, step, noise level, strength)."""
        return {"kind": "noise", "step": self.applied_step if self.applied_step is not None else self.step,
                "sigma": self.applied_sigma if self.applied_sigma is not None else self.sigma,
                "strength": self.strength, "noise_seed": self.noise_seed}


class LatentSwap:
    """Swap the running latents between pairs of seeds after step ``step``.

    ``pairs``: seed pairs ``[(a, b), ...]`` (default: neighbours in the batch, 0<->1,
    2<->3, ...); both seeds of a pair must share a pipeline batch (keep the number of
    seeds within the generator's ``max_batch``). ``frames``: latent frame indices to
    swap (default all): swapping only later frames asks whether the path is decided by
    the start or the end of the video.

    For Wan 2.1, LTX and the embedded model (deterministic samplers) the running latents
    are the whole per-seed state, so a swap swaps the outcomes exactly. Exceptions:
    CogVideoX samples each seed's image latent from the VAE posterior with that seed's
    generator and keeps it beside the running latents, out of a swap's reach (a trained
    VAE's posterior is narrow, so this matters little); multistep schedulers (UniPC,
    DPM) also carry a history of model outputs across the swap.
    """

    def __init__(self, step: int, pairs: Sequence[tuple[int, int]] | None = None,
                 frames: Sequence[int] | None = None) -> None:
        self.step = int(step)
        self.pairs = None if pairs is None else [(int(a), int(b)) for a, b in pairs]
        self.frames = None if frames is None else [int(f) for f in frames]
        self.applied = False

    def partner_of(self, seeds: Sequence[int]) -> dict[int, int]:
        """Sample index -> the index of the sample it swaps with (itself when unpaired)."""
        seeds = list(seeds)
        partner = {index: index for index in range(len(seeds))}
        if self.pairs is None:
            for index in range(0, len(seeds) - 1, 2):
                partner[index], partner[index + 1] = index + 1, index
            return partner
        for a, b in self.pairs:
            if a not in seeds or b not in seeds:
                raise UserError(f"cannot swap seeds {a} and {b}: they are not in one batch (batch seeds {seeds}); "
                                "use fewer seeds than the generator's max_batch")
            partner[seeds.index(a)], partner[seeds.index(b)] = seeds.index(b), seeds.index(a)
        return partner

    def __call__(self, state: StepState) -> torch.Tensor | None:
        if state.step != self.step:
            return None
        order = self.partner_of(state.seeds)
        index = torch.tensor([order[i] for i in range(len(state.seeds))], device=state.latents.device)
        swapped = state.latents[index]
        if self.frames is not None:
            result = state.latents.clone()
            result[:, :, self.frames] = swapped[:, :, self.frames]
            swapped = result
        self.applied = True
        return swapped

    def describe(self) -> dict:
        """A JSON-ready description (kind, step, pairs, frames)."""
        return {"kind": "swap", "step": self.step, "pairs": self.pairs, "frames": self.frames}


@dataclass
class InterventionResult:
    """The outcome of one intervention against the unperturbed run of the same seeds.

    ``per_sample``: for each seed, success before/after, whether the node path changed,
    the mean absolute pixel change of the final video (0..255), and for swaps whether
    the outcome followed the latents (ended on the partner's unperturbed outcome).
    ``summary``: the rates over samples.
    """

    intervention: dict
    seeds: list[int]
    per_sample: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    videos: list[np.ndarray] = field(default_factory=list, repr=False)
    scores: list[Any] = field(default_factory=list, repr=False)


def run_baseline(generator, instance, seeds: Sequence[int], *, verifier=None, **generate_options) -> tuple[list, list]:
    """The unperturbed videos and their scores (reuse them across many interventions)."""
    referee = resolve_verifier(verifier, instance.task)
    videos = generator.generate(instance.first_frame, instance.prompt, seeds=list(seeds), **generate_options)
    return videos, [referee.score(instance, video) for video in videos]


def run_intervention(generator, instance, seeds: Sequence[int], intervention, *, baseline: tuple | None = None,
                     verifier=None, hooks: Sequence = (), **generate_options) -> InterventionResult:
    """Generate ``instance`` for ``seeds`` with ``intervention`` and compare with the unperturbed run.

    ``baseline``: ``(videos, scores)`` from :func:`run_baseline` (computed when absent).
    ``hooks``: observers run before the intervention (a :class:`~.steps.StepProbe`, say).
    ``generate_options`` (``steps``, ``num_frames``, ``guidance``) must match the
    baseline's.
    """
    seeds = [int(seed) for seed in seeds]
    referee = resolve_verifier(verifier, instance.task)
    if baseline is None:
        baseline = run_baseline(generator, instance, seeds, verifier=referee, **generate_options)
    base_videos, base_scores = baseline
    videos = generator.generate(instance.first_frame, instance.prompt, seeds=seeds,
                                on_step=chain_hooks(*hooks, intervention), **generate_options)
    scores = [referee.score(instance, video) for video in videos]
    partner = intervention.partner_of(seeds) if isinstance(intervention, LatentSwap) else None
    per_sample = []
    for i, seed in enumerate(seeds):
        row = {
            "seed": seed,
            "success_before": bool(base_scores[i].success),
            "success_after": bool(scores[i].success),
            "path_before": node_path(base_scores[i]),
            "path_after": node_path(scores[i]),
            "path_changed": node_path(base_scores[i]) != node_path(scores[i]),
            "pixel_change": float(np.abs(videos[i].astype(np.int16) - base_videos[i].astype(np.int16)).mean()),
        }
        if partner is not None and partner[i] != i:
            j = partner[i]
            row["partner_seed"] = seeds[j]
            row["distance_to_partner"] = float(
                np.abs(videos[i].astype(np.int16) - base_videos[j].astype(np.int16)).mean())
            # The outcome follows the latents when it is nearer the partner's original than its own.
            row["follows_latents"] = row["distance_to_partner"] < row["pixel_change"]
            row["path_follows_latents"] = node_path(scores[i]) == node_path(base_scores[j])
        per_sample.append(row)
    summary = {
        "success_before": float(np.mean([r["success_before"] for r in per_sample])),
        "success_after": float(np.mean([r["success_after"] for r in per_sample])),
        "path_changed": float(np.mean([r["path_changed"] for r in per_sample])),
        "outcome_flipped": float(np.mean([r["success_before"] != r["success_after"] for r in per_sample])),
        "pixel_change": float(np.mean([r["pixel_change"] for r in per_sample])),
        "applied": bool(getattr(intervention, "applied", True)),
    }
    swapped = [r for r in per_sample if "follows_latents" in r]
    if swapped:
        summary["follows_latents"] = float(np.mean([r["follows_latents"] for r in swapped]))
        summary["path_follows_latents"] = float(np.mean([r["path_follows_latents"] for r in swapped]))
    return InterventionResult(intervention=intervention.describe(), seeds=seeds, per_sample=per_sample,
                              summary=summary, videos=list(videos), scores=scores)


def intervention_sweep(generator, instance, seeds: Sequence[int], at_steps: Sequence[int], *, kinds=("noise", "swap"),
                       strength: float = 1.0, verifier=None, baseline: tuple | None = None,
                       skip: Container[tuple[str, int]] = (), on_row: Callable[[dict], None] | None = None,
                       **generate_options) -> list[dict]:
    """Each kind of intervention after each of ``at_steps``: one JSON-ready row per (kind, step).

    The rows (``kind``, ``step``, and :attr:`InterventionResult.summary`) draw the
    chain-of-steps picture: early interventions change the answer, late ones do not.
    ``skip``: ``(kind, step)`` pairs already done (a resumed run), left out of the rows;
    ``on_row``: called with each row as soon as it is made (to store it).
    """
    referee = resolve_verifier(verifier, instance.task)
    rows = []
    for kind in kinds:
        for step in at_steps:
            if (kind, int(step)) in skip:
                continue
            if baseline is None:
                baseline = run_baseline(generator, instance, seeds, verifier=referee, **generate_options)
            if kind == "noise":
                hook = NoiseInjection(generator.prediction_type, step=int(step), strength=strength)
            elif kind == "swap":
                if len(seeds) < 2:
                    raise UserError("a latent swap needs at least two seeds")
                hook = LatentSwap(int(step))
            else:
                raise UserError(f"unknown intervention {kind!r}; choose noise or swap")
            result = run_intervention(generator, instance, seeds, hook, baseline=baseline, verifier=referee,
                                      **generate_options)
            row = {"instance": getattr(instance, "uid", ""), "kind": kind, "step": int(step),
                   **result.intervention, **result.summary}
            if on_row is not None:
                on_row(row)
            rows.append(row)
    return rows
