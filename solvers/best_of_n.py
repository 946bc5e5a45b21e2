"""``best-of-n``: N samples in one batched call, one chosen; pass@k over the N.

The choice is made by the *rule* verifier (it sees only the puzzle's spec, so no answer
leaks), or by a VLM shown every candidate that answers with the best index, as
CollabVR's Pass@k baseline does. When ``solve`` is given a reference verifier, the
Attempt's ``meta["pass_at_k"]`` holds the unbiased pass@k curve (k = 1..N) over the N
samples by the reference metric, as the anchors report it; ``meta["pass_at_k_rule"]``
is the same curve by the rule verifier.
"""

from __future__ import annotations

from dataclasses import dataclass

from gen_reason.errors import UserError
from gen_reason.solvers.base import (
    BudgetExhausted,
    SolveContext,
    Solver,
    VLMSolverConfig,
    check_choice,
    check_int,
    load_prompt,
    media_part,
    single_turn,
)
from gen_reason.solvers.passk import pass_at_k_curve

SELECTORS = ("rule", "vlm")


@dataclass(frozen=True)
class BestOfNConfig(VLMSolverConfig):
    """``n``: samples (seeds ``seed .. seed + n - 1``; fewer when the budget runs out);
    ``selector``: ``rule`` (the rule verifier; ties by ``rank_metric``, then the
    earliest) or ``vlm`` (the VLM picks; a failed or out-of-range answer is recorded
    and the rule choice stands); ``media``/``vlm_frames``: how candidates are shown to
    the VLM (a filmstrip image of ``vlm_frames`` frames, or the video itself);
    ``vlm_max_tokens``: the longest answer asked of the VLM."""

    n: int = 4
    selector: str = "rule"

    def validate(self) -> None:
        super().validate()
        check_int("n", self.n, 1)
        check_choice("selector", self.selector, SELECTORS)


class BestOfN(Solver):
    """N samples in one batched generate call; the rule verifier (or a VLM) picks one."""

    name = "best-of-n"
    Config = BestOfNConfig

    def __init__(self, config=None, *, vlm=None, **overrides) -> None:
        super().__init__(config, vlm=vlm, **overrides)
        if self.config.selector == "vlm" and vlm is None:
            raise UserError("best-of-n with selector=vlm needs a VLM (give one with --vlm)")

    def _solve(self, context: SolveContext) -> tuple[int, dict]:
        config = self.config
        count = context.max_affordable_samples(config.n)
        if count == 0:
            raise UserError(f"the budget does not cover one sample ({context.cost(1).nfe} NFE)")
        seeds = [config.seed + index for index in range(count)]
        videos = context.generate(context.instance.first_frame, context.prompt, seeds)
        for index, (seed, video) in enumerate(zip(seeds, videos)):
            context.add_candidate(video, seed=seed, prompt=context.prompt, role="sample", index=index)

        indices = list(range(count))
        chosen = context.best(indices)
        meta: dict = {
            "n": config.n,
            "generated": count,
            "budget_limited": count < config.n,
            "rule_choice": chosen,
            "rule_successes": [bool(c.score.success) for c in context.candidates],
            "pass_at_k_rule": pass_at_k_curve([c.score.success for c in context.candidates]),
        }
        if context.reference is not None:
            reference_successes = [bool(c.reference.success) for c in context.candidates]
            meta["reference_successes"] = reference_successes
            meta["pass_at_k"] = pass_at_k_curve(reference_successes)
        if config.selector == "vlm" and count > 1:
            picked = select_with_vlm(context, indices)
            meta["vlm_choice"] = picked
            if picked is not None:
                chosen = picked
        meta["vlm_failures"] = context.vlm_failures
        return chosen, meta


def select_with_vlm(context: SolveContext, indices: list[int]) -> int | None:
    """Show the VLM every candidate in ``indices``; the index it names, or ``None`` on failure."""
    config = context.config
    parts: list = [load_prompt("selector", task_prompt=context.instance.prompt, count=len(indices), last=len(indices) - 1)]
    for position, index in enumerate(indices):
        parts.append(f"Candidate {position}:")
        parts.append(media_part(context.candidates[index].video, config.media, config.vlm_frames))
    last = len(indices) - 1

    def in_range(answer: dict) -> str | None:
        return None if 0 <= answer["best"] <= last else f"best must be a candidate number from 0 to {last}"

    try:
        answer = context.chat_json("selector", single_turn(*parts), {"best": int}, validate=in_range)
    except BudgetExhausted as exc:
        context.vlm_failures.append({"purpose": "selector", "reason": f"budget: {exc}"})
        return None
    return None if answer is None else indices[answer["best"]]
