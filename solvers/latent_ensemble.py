"""``latent-ensemble``: several seeds denoised together, merged during the early steps.

After "Demystifying Video Reasoning" (chain-of-steps): a video model settles its plan
in the early, exploratory denoising steps. Here ``num_seeds`` seeds are denoised in
one batch; after each step of the window ``[window_start, window_end)`` the hook
replaces every sample's latents with their merge, so the trajectories share one plan;
after the window they continue as one.

Merge rules (``merge``):

- ``mean``: every sample gets the mean of the batch's latents.
- ``mean-renoise``: the mean, then fresh per-seed noise brings the noise back to the
  step's level. With ``x_i = a x0_i + s n_i`` (``s`` the noise level of the latents
  leaving the step, ``state.next_sigma``), the mean of K independent samples carries
  noise of standard deviation ``s / sqrt(K)``; adding ``s sqrt(1 - 1/K) e_i`` with
  ``e_i ~ N(0, I)`` restores ``s``, whatever the schedule (flow matching or DDPM-style).
  The seeds then diverge again, each from the shared plan.

``after_window``: ``first`` keeps sample 0's video as the answer (after a ``mean``
window every sample is the same with a deterministic sampler); ``all`` scores every
sample and keeps the best by the rule verifier.

With ``baseline`` on, the same seeds are also run once without merging (budget
permitting; counted in ``diagnostic_compute``), so each seed's own outcome is recorded
beside the ensemble's (``meta["per_seed"]``, ``meta["ensemble"]``). With one seed there
is nothing to merge and the result is ``single``'s, bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gen_reason.errors import UserError
from gen_reason.solvers.base import (
    BudgetExhausted,
    SolveContext,
    Solver,
    SolverConfig,
    check_choice,
    check_int,
    derive_seed,
    resolved_steps,
)

MERGES = ("mean", "mean-renoise")
AFTER_WINDOW = ("first", "all")


@dataclass(frozen=True)
class LatentEnsembleConfig(SolverConfig):
    """``num_seeds``: seeds denoised together (``seed .. seed + num_seeds - 1``);
    ``window_start``/``window_end``: the latents leaving steps ``window_start ..
    window_end - 1`` (0-based) are merged (``window_end=None``: the first half of the
    steps); ``merge``: ``mean`` or ``mean-renoise``; ``after_window``: ``first`` or
    ``all``; ``baseline``: also run the seeds unmerged, when the budget allows."""

    num_seeds: int = 4
    window_start: int = 0
    window_end: int | None = None
    merge: str = "mean"
    after_window: str = "first"
    baseline: bool = True

    def validate(self) -> None:
        super().validate()
        check_int("num_seeds", self.num_seeds, 1)
        check_int("window_start", self.window_start, 0)
        if self.window_end is not None:
            check_int("window_end", self.window_end, 0)
            if self.window_end < self.window_start:
                raise UserError(f"window_end ({self.window_end}) must be >= window_start ({self.window_start})")
        check_choice("merge", self.merge, MERGES)
        check_choice("after_window", self.after_window, AFTER_WINDOW)
        if not isinstance(self.baseline, bool):
            raise UserError(f"baseline must be true or false; got {self.baseline!r}")


class LatentEnsemble(Solver):
    """Seeds denoised together with their latents merged over an early step window."""

    name = "latent-ensemble"
    Config = LatentEnsembleConfig

    def window(self, steps: int) -> tuple[int, int]:
        """The merge window ``[start, end)`` for a run of ``steps`` steps."""
        end = max(1, steps // 2) if self.config.window_end is None else self.config.window_end
        return self.config.window_start, min(end, steps)

    def _solve(self, context: SolveContext) -> tuple[int, dict]:
        config = self.config
        count = context.max_affordable_samples(config.num_seeds)
        if count == 0:
            raise UserError(f"the budget does not cover one sample ({context.cost(1).nfe} NFE)")
        max_batch = getattr(context.generator, "max_batch", None)
        if count > 1 and max_batch is not None and max_batch < count:
            raise UserError(
                f"latent-ensemble denoises its {count} seeds in one batch, but the generator's "
                f"max_batch is {max_batch}; raise max_batch or lower num_seeds"
            )
        seeds = [config.seed + index for index in range(count)]
        steps = resolved_steps(context.generator, config.steps)
        start, end = self.window(steps)
        merger = LatentMerger(config.merge, start, end, seeds)
        image, prompt = context.instance.first_frame, context.prompt
        # One seed has nothing to merge: no hook at all, so the call is single's exactly.
        videos = context.generate(image, prompt, seeds, on_step=merger if count > 1 else None)
        ensemble = []
        for index, (seed, video) in enumerate(zip(seeds, videos)):
            context.add_candidate(video, seed=seed, prompt=prompt, role="ensemble", member=index)
            ensemble.append(len(context.candidates) - 1)
        chosen = ensemble[0] if config.after_window == "first" else context.best(ensemble)

        meta: dict = {
            "num_seeds": config.num_seeds,
            "generated": count,
            "budget_limited": count < config.num_seeds,
            "steps": steps,
            "window": [start, end],
            "merged_steps": merger.merged_steps,
            "ensemble": _outcome(context.candidates[chosen]),
        }
        if config.baseline and count > 1:
            try:
                baseline = context.generate(image, prompt, seeds, diagnostic=True)
            except BudgetExhausted as exc:
                meta["baseline"] = f"skipped: {exc}"
            else:
                meta["per_seed"] = [
                    _outcome(context.add_candidate(video, seed=seed, prompt=prompt, role="baseline"))
                    for seed, video in zip(seeds, baseline)
                ]
        return chosen, meta


class LatentMerger:
    """The ``on_step`` hook that merges a batch's latents inside the step window."""

    def __init__(self, merge: str, start: int, end: int, seeds: list[int]) -> None:
        self.merge, self.start, self.end, self.seeds = merge, start, end, list(seeds)
        self.merged_steps: list[int] = []

    def __call__(self, state):
        if not self.start <= state.step < self.end:
            return None
        if list(state.seeds) != self.seeds:
            raise RuntimeError(f"ensemble batch split: hook saw seeds {list(state.seeds)}, expected {self.seeds}")
        latents = state.latents
        merged = latents.float().mean(dim=0, keepdim=True).expand_as(latents).clone()
        if self.merge == "mean-renoise":
            merged = merged + self._fresh_noise(state, merged)
        self.merged_steps.append(int(state.step))
        return merged.to(latents.dtype)

    def _fresh_noise(self, state, merged):
        import torch

        sigma = state.next_sigma
        if sigma is None:
            raise UserError("merge=mean-renoise needs the scheduler's noise level, which this generator does not report")
        count = merged.shape[0]
        scale = float(sigma) * math.sqrt(1.0 - 1.0 / count)
        noise = torch.stack(
            [
                torch.randn(merged.shape[1:], generator=torch.Generator().manual_seed(derive_seed(seed, state.step)))
                for seed in state.seeds
            ]
        )
        return scale * noise.to(merged.device)


def _outcome(candidate) -> dict:
    """A candidate's seed and verdicts, for the per-seed record."""
    return {
        "seed": candidate.seed,
        "success": bool(candidate.score.success),
        "reference_success": None if candidate.reference is None else bool(candidate.reference.success),
    }
