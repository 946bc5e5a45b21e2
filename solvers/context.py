"""The per-solve working state (:class:`SolveContext`): every generation, score and VLM
call of a solve goes through it, the budget checked first and the compute counted."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from gen_reason.errors import UserError
from gen_reason.models.base import VideoGenerator
from gen_reason.solvers.attempt import Candidate, score_rank
from gen_reason.solvers.budget import Budget, BudgetExhausted, Compute, generation_cost, resolved_num_frames
from gen_reason.verifiers.score import Score

if TYPE_CHECKING:
    from gen_reason.solvers.base import Solver


class SolveContext:
    """Everything one ``solve`` call works with; every expense goes through here.

    Generation checks the budget first (raising :class:`BudgetExhausted` when the call
    would pass it), then counts NFE, clips and frames; VLM requests are counted from the
    client's ``usage`` before and after; ``seconds`` is the wall clock since the start.
    """

    def __init__(self, solver: Solver, instance, generator: VideoGenerator, verifier, budget: Budget, reference) -> None:
        self.solver = solver
        self.config = solver.config
        self.vlm = solver.vlm
        self.instance = instance
        self.generator = generator
        self.verifier = verifier
        self.budget = budget
        self.reference = reference
        self.compute = Compute()
        self.diagnostic_compute = Compute()
        self.candidates: list[Candidate] = []
        self.vlm_failures: list[dict] = []
        self._start = time.perf_counter()

    # -- facts ---------------------------------------------------------------------------------
    @property
    def prompt(self) -> str:
        """The prompt to generate with: the config's override or the instance's."""
        return self.config.prompt if self.config.prompt is not None else self.instance.prompt

    @property
    def num_frames(self) -> int:
        """Frames per clip (config or generator default)."""
        return resolved_num_frames(self.generator, self.config.num_frames)

    def elapsed(self) -> float:
        """Seconds since the solve started."""
        return time.perf_counter() - self._start

    def _tick(self) -> None:
        self.compute.seconds = self.elapsed()

    # -- generation ------------------------------------------------------------------------------
    def cost(self, samples: int, num_frames: int | None = None) -> Compute:
        """What generating ``samples`` clips of ``num_frames`` (default: :attr:`num_frames`) costs."""
        return generation_cost(
            self.generator,
            samples=samples,
            num_frames=self.num_frames if num_frames is None else int(num_frames),
            steps=self.config.steps,
            guidance=self.config.guidance,
        )

    def affordable(self, cost: Compute, *, diagnostic: bool = False) -> bool:
        """Whether ``cost`` fits the budget now (diagnostics must fit on top of everything)."""
        self._tick()
        spent = self.compute + self.diagnostic_compute if diagnostic else self.compute
        return self.budget.allows(spent, cost)

    def max_affordable_samples(self, wanted: int, num_frames: int | None = None) -> int:
        """The largest ``k <= wanted`` whose generation fits the budget (0 if none)."""
        for samples in range(int(wanted), 0, -1):
            if self.affordable(self.cost(samples, num_frames)):
                return samples
        return 0

    def generate(
        self,
        image: np.ndarray,
        prompt: str,
        seeds: Sequence[int],
        *,
        num_frames: int | None = None,
        on_step=None,
        diagnostic: bool = False,
    ) -> list[np.ndarray]:
        """One batched ``generator.generate`` call, budget checked first, compute counted.

        ``diagnostic``: count the spend in ``diagnostic_compute`` (a record beside the
        answer, e.g. the per-seed baseline) instead of ``compute``.
        """
        seeds = [int(seed) for seed in seeds]
        num_frames = self.num_frames if num_frames is None else int(num_frames)
        cost = self.cost(len(seeds), num_frames)
        if not self.affordable(cost, diagnostic=diagnostic):
            raise BudgetExhausted(f"{len(seeds)} clip(s) of {num_frames} frames need {cost.nfe} NFE")
        kwargs: dict[str, Any] = {"num_frames": num_frames, "seeds": seeds}
        if self.config.steps is not None:
            kwargs["steps"] = self.config.steps
        if self.config.guidance is not None:
            kwargs["guidance"] = self.config.guidance
        if on_step is not None:
            kwargs["on_step"] = on_step
        videos = self.generator.generate(image, prompt, **kwargs)
        if len(videos) != len(seeds):
            raise RuntimeError(f"generator {self.generator!r} returned {len(videos)} videos for {len(seeds)} seeds")
        (self.diagnostic_compute if diagnostic else self.compute).add(cost)
        self._tick()
        return [np.asarray(video) for video in videos]

    # -- scoring -----------------------------------------------------------------------------------
    def score(self, video: np.ndarray) -> Score:
        """The rule verifier's verdict on ``video``."""
        return self.verifier.score(self.instance, video)

    def add_candidate(
        self, video: np.ndarray, *, seed: int | None, prompt: str, score: Score | None = None, **meta: Any
    ) -> Candidate:
        """Score ``video`` (rule verifier, and the reference one when given) and keep it."""
        candidate = Candidate(
            video=video,
            score=self.score(video) if score is None else score,
            seed=seed,
            prompt=prompt,
            meta=meta,
            reference=None if self.reference is None else self.reference.score(self.instance, video),
        )
        self.candidates.append(candidate)
        return candidate

    def rank_key(self, index: int) -> tuple:
        """Sort key of candidate ``index`` by the rule verdict (higher is better)."""
        return score_rank(self.candidates[index].score, self.config.rank_metric) + (-index,)

    def best(self, indices: Sequence[int]) -> int:
        """The best of ``indices`` by the rule verifier (ties: the earliest)."""
        return max(indices, key=self.rank_key)

    # -- VLM ---------------------------------------------------------------------------------------
    def chat_json(
        self, purpose: str, messages: list[dict], required: dict[str, type], *, validate=None, retries: int = 2
    ) -> dict | None:
        """Ask the VLM for a JSON object with ``required`` keys; ``None`` on failure.

        A malformed answer (no JSON, a missing key, a wrong type, or one ``validate(obj)``
        rejects by returning an error string) is retried ``retries`` times by
        :func:`gen_reason.vlm.structured.chat_json`, which tells the model what was
        wrong; a final failure is recorded in ``vlm_failures`` with ``purpose``, the
        reason and the raw answers, never turned into an answer. Raises
        :class:`BudgetExhausted` when the budget cannot cover every retry.
        """
        from gen_reason.vlm.structured import VLMFailure, chat_json

        if self.vlm is None:
            raise UserError(f"solver {self.solver.name} needs a VLM for its {purpose}")
        if not self.affordable(Compute(vlm_calls=1 + retries)):
            raise BudgetExhausted(f"the {purpose} may need {1 + retries} VLM calls")
        before = _usage(self.vlm)
        try:
            max_tokens = getattr(self.config, "vlm_max_tokens", 512)
            return chat_json(
                self.vlm, messages, required=required, validate=validate, retries=retries, max_tokens=max_tokens
            )
        except VLMFailure as exc:
            self.vlm_failures.append({"purpose": purpose, "reason": exc.reason, "raw_answers": exc.raw_answers})
            return None
        finally:
            after = _usage(self.vlm)
            self.compute.vlm_calls += after[0] - before[0]
            self.compute.vlm_tokens += after[1] - before[1]
            self._tick()

    def finish(self) -> None:
        """Stamp the final wall-clock time."""
        self._tick()


def _usage(vlm: Any) -> tuple[int, int]:
    """``(calls, prompt + completion tokens)`` from a VLM client's ``usage`` (object or dict)."""
    usage = getattr(vlm, "usage", None)
    if usage is None:
        return (0, 0)

    def read(name: str) -> int:
        value = usage.get(name, 0) if isinstance(usage, dict) else getattr(usage, name, 0)
        return int(value or 0)

    return read("calls"), read("prompt_tokens") + read("completion_tokens")
