"""The solver contract (docs/ARCHITECTURE.md): ``solve(instance, generator, verifier, budget) -> Attempt``.

A solver turns a video generator into a puzzle solver. Every strategy (one sample,
best-of-N, latent ensembles, longer videos, prompt refinement, a closed loop) is a
:class:`Solver` subclass with a validated config dataclass, and every one reports what
it spent in a :class:`Compute` so strategies compare at matched compute:

- **NFE** (network function evaluations): denoiser forward passes. A denoising step
  costs one pass per sample, two with classifier-free guidance (``guidance > 1``: the
  conditional and unconditional predictions), unless the generator says otherwise
  through a ``nfe_per_step(guidance) -> int`` method.
- **clips** (generate calls x samples), **frames** generated, **VLM calls** and
  **tokens**, and wall-clock **seconds**.

A :class:`Budget` caps any of NFE, clips, VLM calls and seconds; strategies check it
*before* spending (a generation that would pass the NFE cap is not started) and stop
cleanly, keeping what they have. Diagnostics that do not shape the answer (the
latent ensemble's per-seed baseline) are counted apart, in
``Attempt.diagnostic_compute``.

The contract's parts live in modules of their own, and every name is importable from here:
:mod:`~gen_reason.solvers.budget` (:class:`Budget`, :class:`Compute`, generation costs),
:mod:`~gen_reason.solvers.attempt` (:class:`Candidate`, :class:`Attempt`),
:mod:`~gen_reason.solvers.config` (:class:`SolverConfig`, :class:`VLMSolverConfig`),
:mod:`~gen_reason.solvers.context` (:class:`SolveContext`) and
:mod:`~gen_reason.solvers.messages` (prompts and VLM messages). This module holds the
:class:`Solver` base class.

None of them imports torch: they run wherever puzzles and verifiers run.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from gen_reason.errors import UserError
from gen_reason.models.base import VideoGenerator
from gen_reason.registry import config_from_overrides
from gen_reason.solvers.attempt import Attempt, Candidate, plain_record, score_rank
from gen_reason.solvers.budget import (
    Budget,
    BudgetExhausted,
    Compute,
    generation_cost,
    nfe_per_step,
    resolved_guidance,
    resolved_num_frames,
    resolved_steps,
)
from gen_reason.solvers.config import MEDIA, SolverConfig, VLMSolverConfig, check_choice, check_int
from gen_reason.solvers.context import SolveContext
from gen_reason.solvers.messages import load_prompt, media_part, single_turn

__all__ = [
    "MEDIA", "Attempt", "Budget", "BudgetExhausted", "Candidate", "Compute", "SolveContext", "Solver", "SolverConfig",
    "VLMSolverConfig", "check_choice", "check_int", "derive_seed", "generation_cost", "load_prompt", "media_part",
    "nfe_per_step", "resolved_guidance", "resolved_num_frames", "resolved_steps", "score_rank", "single_turn",
]


class Solver:
    """Base class of a test-time strategy.

    Subclasses set ``name`` and ``Config`` and implement :meth:`_solve`, which works
    through a :class:`SolveContext` (generation, scoring and VLM calls with the budget
    checked and the compute counted) and returns ``(chosen_index, meta)``.

    ``vlm``: a :class:`gen_reason.vlm` client for the strategies that use one (selector,
    prompt critic, planner, judge); it is a runtime object, not part of the config.
    """

    name: ClassVar[str] = "solver"
    Config: ClassVar[type[SolverConfig]] = SolverConfig
    needs_vlm: ClassVar[bool] = False

    def __init__(self, config: SolverConfig | None = None, *, vlm: Any = None, **overrides: Any) -> None:
        if config is None:
            config = config_from_overrides(self.Config, f"solver {self.name}", overrides, noun="option")
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        config.validate()
        self.config = config
        self.vlm = vlm
        if self.needs_vlm and vlm is None:
            raise UserError(f"solver {self.name} needs a VLM (give one with --vlm)")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    def config_dict(self) -> dict[str, Any]:
        """The resolved config as a plain dict (stored in every :class:`Attempt`)."""
        return plain_record(dataclasses.asdict(self.config))

    def solve(
        self,
        instance,
        generator: VideoGenerator,
        verifier,
        budget: Budget | None = None,
        *,
        reference=None,
    ) -> Attempt:
        """Solve ``instance`` with ``generator``, judging candidates with ``verifier``.

        ``verifier`` must be a *rule* verifier (it sees only ``instance.spec``), since its
        verdict steers the strategy. ``reference``: an optional reference verifier whose
        verdict is recorded beside each candidate's (for pass@k and evaluation) and never
        steers the strategy. Raises :class:`UserError` when the budget does not cover even
        the strategy's first generation.
        """
        context = SolveContext(self, instance, generator, verifier, budget or Budget(), reference)
        chosen, meta = self._solve(context)
        if not context.candidates:
            raise UserError(f"solver {self.name} made no candidate (budget too small?)")
        context.finish()
        return Attempt(
            solver=self.name,
            config=self.config_dict(),
            video=context.candidates[chosen].video,
            chosen=int(chosen),
            candidates=context.candidates,
            compute=context.compute,
            budget=context.budget,
            diagnostic_compute=context.diagnostic_compute,
            meta=meta,
        )

    def _solve(self, context: "SolveContext") -> tuple[int, dict]:
        raise NotImplementedError


def derive_seed(base: int, *parts: int) -> int:
    """A sub-seed for ``(base, *parts)``: deterministic, spread out, below 2**31."""
    value = int(base) & 0xFFFFFFFF
    for part in parts:
        # SplitMix-style mixing: nearby inputs land far apart, no global state involved.
        value = (value * 0x9E3779B1 + int(part) + 0x7F4A7C15) & 0xFFFFFFFFFFFFFFFF
        value ^= value >> 29
        value = (value * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        value ^= value >> 32
    return int(value % (2**31 - 1))
