"""``single``: one sample, the baseline every other strategy is compared against."""

from __future__ import annotations

from gen_reason.errors import UserError
from gen_reason.solvers.base import BudgetExhausted, SolveContext, Solver, SolverConfig


class SingleSample(Solver):
    """Generate one video from ``seed`` and score it."""

    name = "single"
    Config = SolverConfig

    def _solve(self, context: SolveContext) -> tuple[int, dict]:
        seed = self.config.seed
        try:
            (video,) = context.generate(context.instance.first_frame, context.prompt, [seed])
        except BudgetExhausted as exc:
            raise UserError(f"the budget does not cover one sample: {exc}") from None
        context.add_candidate(video, seed=seed, prompt=context.prompt, role="sample")
        return 0, {}
