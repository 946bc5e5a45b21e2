"""``videotpo``: prompt refinement by a VLM critic over rounds of two candidates.

After TiViBench's VideoTPO: each round generates ``candidates`` videos from the current
prompt; a VLM analyses each one's strengths and weaknesses for the task
(``prompts/prompt_critic.txt``), then rewrites the prompt from that analysis
(``prompts/prompt_rewrite.txt``); up to ``rounds`` rounds. The anchor never picks a
video; we keep the best of all rounds by the rule verifier (ties: the earliest).

A VLM answer that is not the JSON asked for is retried, then recorded in
``meta["vlm_failures"]`` and the refinement stops there (the best video so far stands):
a failed critique is never turned into a prompt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from gen_reason.errors import UserError
from gen_reason.solvers.base import (
    BudgetExhausted,
    SolveContext,
    Solver,
    VLMSolverConfig,
    check_int,
    load_prompt,
    media_part,
    single_turn,
)



@dataclass(frozen=True)
class VideoTPOConfig(VLMSolverConfig):
    """``rounds``: at most this many rounds (K); ``candidates``: videos per round (seeds
    ``seed + round * candidates + i``); ``stop_on_success``: end once the rule verifier
    accepts a video; ``show_rule_verdict``: tell the critic the rule verifier's verdict
    on each candidate (legal at test time; the anchor's critic sees only the videos);
    ``media``/``vlm_frames``: how videos are shown to the VLM; ``vlm_max_tokens``: the
    longest answer asked of it."""

    rounds: int = 3
    candidates: int = 2
    stop_on_success: bool = True
    show_rule_verdict: bool = False

    def validate(self) -> None:
        super().validate()
        check_int("rounds", self.rounds, 1)
        check_int("candidates", self.candidates, 1)


class VideoTPO(Solver):
    """Generate, critique, rewrite the prompt, repeat; keep the best video by the rule verifier."""

    name = "videotpo"
    Config = VideoTPOConfig
    needs_vlm = True

    def _solve(self, context: SolveContext) -> tuple[int, dict]:
        config = self.config
        prompt = context.prompt
        rounds: list[dict] = []
        stopped = "rounds"
        for round_index in range(config.rounds):
            seeds = [config.seed + round_index * config.candidates + i for i in range(config.candidates)]
            try:
                videos = context.generate(context.instance.first_frame, prompt, seeds)
            except BudgetExhausted as exc:
                stopped = f"budget: {exc}"
                break
            indices = []
            for seed, video in zip(seeds, videos):
                context.add_candidate(video, seed=seed, prompt=prompt, role="sample", round=round_index)
                indices.append(len(context.candidates) - 1)
            record: dict = {"round": round_index, "prompt": prompt, "candidates": indices}
            rounds.append(record)
            if config.stop_on_success and any(context.candidates[i].score.success for i in indices):
                stopped = "success"
                break
            if round_index == config.rounds - 1:
                break
            try:
                critique = self._critique(context, prompt, indices)
                new_prompt = None if critique is None else self._rewrite(context, prompt, critique)
            except BudgetExhausted as exc:
                stopped = f"budget: {exc}"
                break
            if new_prompt is None:
                stopped = "vlm failure"
                break
            record["critique"] = critique
            prompt = new_prompt
        if not context.candidates:
            raise UserError(f"the budget does not cover one round ({context.cost(config.candidates).nfe} NFE)")
        chosen = context.best(range(len(context.candidates)))
        return chosen, {"rounds": rounds, "final_prompt": prompt, "stopped": stopped, "vlm_failures": context.vlm_failures}

    def _critique(self, context: SolveContext, prompt: str, indices: list[int]) -> list[dict] | None:
        """Strengths and weaknesses of each candidate, as the VLM sees them (``None``: failed)."""
        config = self.config
        parts: list = [
            load_prompt("prompt_critic", task_prompt=context.instance.prompt, current_prompt=prompt, count=len(indices))
        ]
        for position, index in enumerate(indices):
            candidate = context.candidates[index]
            label = f"Candidate {position}:"
            if config.show_rule_verdict:
                verdict = "passes" if candidate.score.success else f"fails ({candidate.score.reason or 'no reason given'})"
                label += f" the rule checker says it {verdict}."
            parts += [label, media_part(candidate.video, config.media, config.vlm_frames)]
        def well_formed(answer: dict) -> str | None:
            analyses = answer["candidates"]
            ok = len(analyses) == len(indices) and all(
                isinstance(item, dict) and isinstance(item.get("strengths"), str) and isinstance(item.get("weaknesses"), str)
                for item in analyses
            )
            return None if ok else f"candidates must hold {len(indices)} objects with strengths and weaknesses strings"

        answer = context.chat_json("prompt critic", single_turn(*parts), {"candidates": list}, validate=well_formed)
        if answer is None:
            return None
        return [{"strengths": item["strengths"], "weaknesses": item["weaknesses"]} for item in answer["candidates"]]

    def _rewrite(self, context: SolveContext, prompt: str, critique: list[dict]) -> str | None:
        """The VLM's improved prompt (``None``: failed or empty)."""
        text = load_prompt(
            "prompt_rewrite",
            task_prompt=context.instance.prompt,
            current_prompt=prompt,
            critique=json.dumps(critique, indent=1),
        )
        def not_empty(answer: dict) -> str | None:
            return None if answer["prompt"].strip() else "prompt must not be empty"

        answer = context.chat_json("prompt rewrite", single_turn(text), {"prompt": str}, validate=not_empty)
        return None if answer is None else answer["prompt"].strip()
