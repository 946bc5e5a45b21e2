"""``closed-loop``: plan one action, make a short clip, judge it, keep or redo (CollabVR).

Each step:

1. **Plan.** A VLM planner sees the current frame and the history and answers JSON
   ``{observation, remaining_goal, task_complete, instruction, target_state,
   estimated_steps_remaining}`` (``prompts/planner.txt``). Without a VLM the planner is
   fixed: it always says ``fixed_instruction`` ("continue towards the goal").
2. **Act.** The video model makes a short clip from the current frame, prompted with
   the task, the instruction and any suggestion from a rejected try.
3. **Judge.** The clip is judged by the rule verifier, a VLM judge, or both
   (``judge``). The rule judge scores the video so far with the clip appended: the clip
   is accepted when no rule is broken, and when one is, everything before the first
   violation frame (``Score.trace``) is legal. The VLM judge answers JSON ``{verdict,
   action_executed, progress, good_fraction, confidence, reason, suggestion}``
   (``prompts/clip_verifier.txt``); its good fraction marks the last good frame.
4. **Keep or redo.** An accepted clip is joined to the video and its last frame is the
   next current frame. A rejected clip is regenerated with the judge's suggestion
   folded into the prompt, from the last good frame of the rejected clip (its legal
   part is kept: ``resume="last-good"``) or from where the step started
   (``resume="step-start"``).

The loop stops when the task is done (the rule verifier accepts the joined video, or
the planner says so), at ``max_steps``, when ``attempts_per_step`` tries of one step
fail, or when the budget runs out. The laptop default needs no VLM: fixed planner, rule
judge, roll back to the last legal frame and resample.

Candidates: each try is recorded as the full video it would make (the video so far
plus the clip), scored by the rule verifier; the last candidate is the joined video,
the answer. A VLM answer that is not valid JSON is retried, then recorded in
``meta["vlm_failures"]``; the planner then falls back to the fixed instruction and the
judge to the rule verdict.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

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
from gen_reason.verifiers.score import Score

PLANNERS = ("fixed", "vlm")
JUDGES = ("rule", "vlm", "both")
RESUME = ("last-good", "step-start")


@dataclass(frozen=True)
class ClosedLoopConfig(VLMSolverConfig):
    """``max_steps``: planned actions at most (CollabVR: 3); ``attempts_per_step``: tries
    of one action before giving up (CollabVR: 3); ``planner``: ``fixed`` or ``vlm``;
    ``judge``: ``rule``, ``vlm`` or ``both``; ``resume``: ``last-good`` or
    ``step-start``; ``fixed_instruction``: the fixed planner's instruction;
    ``num_frames``: frames per clip (default the generator's); ``media``/``vlm_frames``:
    how clips are shown to the VLM; ``vlm_max_tokens``: the longest answer asked of it."""

    max_steps: int = 3
    attempts_per_step: int = 3
    planner: str = "fixed"
    judge: str = "rule"
    resume: str = "last-good"
    fixed_instruction: str = "Continue moving the agent towards the goal."

    def validate(self) -> None:
        super().validate()
        check_int("max_steps", self.max_steps, 1)
        check_int("attempts_per_step", self.attempts_per_step, 1)
        check_choice("planner", self.planner, PLANNERS)
        check_choice("judge", self.judge, JUDGES)
        check_choice("resume", self.resume, RESUME)
        if self.num_frames is not None and self.num_frames < 2:
            raise UserError("closed-loop clips need num_frames >= 2 (a clip must move past its first frame)")


@dataclass
class Verdict:
    """A judge's decision on one clip: accepted, the last good clip frame, a suggestion."""

    accepted: bool
    last_good: int
    suggestion: str = ""
    details: dict = field(default_factory=dict)


def first_violation_frame(score: Score) -> int | None:
    """The frame of the first broken rule in a rule verifier's ``trace``, or ``None``.

    Reads ``trace["first_violation"]["frame"]`` (the maze referee's record), and for
    other verifiers ``trace["violation"]["frame"]``, ``trace["first_violation_frame"]``
    or ``trace["violation_frame"]``.
    """
    trace = score.trace or {}
    for key in ("first_violation", "violation"):
        item = trace.get(key)
        if isinstance(item, dict) and item.get("frame") is not None:
            return int(item["frame"])
    for key in ("first_violation_frame", "violation_frame"):
        if trace.get(key) is not None:
            return int(trace[key])
    return None


@dataclass
class _Loop:
    """The closed loop's working state: the video so far (``pieces``, joined at the end), its
    last frame, what each step did, and the candidate whose video is exactly the joined
    video (``None`` once a rejected clip's legal part is kept)."""

    pieces: list[np.ndarray]
    current: np.ndarray
    history: list[dict] = field(default_factory=list)
    last_accepted: int | None = None


class ClosedLoop(Solver):
    """Plan an action, make a clip, judge it, keep or regenerate; join the accepted clips."""

    name = "closed-loop"
    Config = ClosedLoopConfig
    #: What ``genreason solve --vlm`` turns on unless the user sets it: the VLM plans each
    #: step and judges each clip beside the rule verifier (CollabVR's loop).
    vlm_roles = {"planner": "vlm", "judge": "both"}

    def __init__(self, config=None, *, vlm=None, **overrides) -> None:
        super().__init__(config, vlm=vlm, **overrides)
        if vlm is None and (self.config.planner == "vlm" or self.config.judge != "rule"):
            raise UserError(
                f"closed-loop with planner={self.config.planner} judge={self.config.judge} needs a VLM "
                "(give one with --vlm, or use planner=fixed judge=rule)"
            )

    def _solve(self, context: SolveContext) -> tuple[int, dict]:
        loop = _Loop([context.instance.first_frame[None]], context.instance.first_frame)
        stopped = "step limit"
        for step in range(self.config.max_steps):
            try:
                plan = self._plan(context, loop.current, loop.history, step)
            except BudgetExhausted as exc:
                stopped = f"budget: {exc}"
                break
            if plan.get("task_complete") is True:
                stopped = "planner: task complete"
                break
            why = self._step(context, loop, plan, step)
            if why is not None:
                stopped = why
                break
        if not context.candidates:
            raise UserError(f"the budget does not cover one clip ({context.cost(1).nfe} NFE): {stopped}")
        self._add_joined(context, loop)
        return len(context.candidates) - 1, {
            "stopped": stopped,
            "steps": len({item["step"] for item in loop.history}),
            "history": loop.history,
            "vlm_failures": context.vlm_failures,
        }

    def _step(self, context: SolveContext, loop: "_Loop", plan: dict, step: int) -> str | None:
        """Up to ``attempts_per_step`` clips for the plan's instruction, each judged; an accepted
        clip joins the video, a rejected one leaves its legal part when ``resume`` is
        ``last-good``. Returns why the loop stops (``None``: plan the next step)."""
        config = self.config
        suggestion, start = "", loop.current
        for attempt in range(config.attempts_per_step):
            prompt = clip_prompt(context.prompt, plan["instruction"], suggestion)
            seed = config.seed + step * config.attempts_per_step + attempt
            try:
                clip, verdict = self._try_clip(context, loop.pieces, start, prompt, seed, plan, step, attempt)
            except BudgetExhausted as exc:
                return f"budget: {exc}"
            if verdict.accepted:
                loop.pieces.append(clip[1:])
                loop.current = clip[-1]
                loop.last_accepted = len(context.candidates) - 1
                loop.history.append({"step": step, "instruction": plan["instruction"], "outcome": "accepted"})
                return "done" if context.candidates[loop.last_accepted].score.success else None
            loop.history.append(
                {"step": step, "instruction": plan["instruction"], "outcome": "rejected", "suggestion": verdict.suggestion}
            )
            suggestion = verdict.suggestion
            if config.resume == "last-good" and verdict.last_good > 0:
                # Keep the legal part of the rejected clip and try again from its end.
                loop.pieces.append(clip[1 : verdict.last_good + 1])
                loop.current = start = clip[verdict.last_good]
                loop.last_accepted = None
        return "failed attempts"

    @staticmethod
    def _add_joined(context: SolveContext, loop: "_Loop") -> None:
        """The answer: the joined video, as a candidate of its own (the last accepted clip's
        score when its video is exactly the joined one)."""
        if loop.last_accepted is not None:
            joined = context.candidates[loop.last_accepted]
            context.add_candidate(joined.video, seed=None, prompt=context.prompt, score=joined.score, role="joined")
        else:
            context.add_candidate(np.concatenate(loop.pieces, axis=0), seed=None, prompt=context.prompt, role="joined")

    def _try_clip(self, context: SolveContext, pieces: list[np.ndarray], start: np.ndarray, prompt: str, seed: int,
                  plan: dict, step: int, attempt: int) -> tuple[np.ndarray, Verdict]:
        """Make one clip from ``start``, judge it, record it as a candidate; ``(clip, verdict)``.

        Raises :class:`BudgetExhausted` before generating when the clip does not fit, and
        after recording the clip (unjudged, rejected) when the judge's VLM calls do not.
        """
        (clip,) = context.generate(start, prompt, [seed])
        so_far = np.concatenate(pieces, axis=0)
        extended = np.concatenate([so_far, clip[1:]], axis=0)
        rule_score = context.score(extended)
        exhausted = None
        try:
            verdict = self._judge(context, clip, len(so_far), rule_score, plan)
        except BudgetExhausted as exc:
            exhausted = exc
            verdict = Verdict(accepted=False, last_good=0, details={"judge": f"not judged: {exc}"})
        context.add_candidate(
            extended, seed=seed, prompt=prompt, score=rule_score, role="clip", step=step, attempt=attempt,
            clip_start=len(so_far) - 1, accepted=verdict.accepted, last_good=verdict.last_good, judge=verdict.details,
        )
        if exhausted is not None:
            raise exhausted
        return clip, verdict

    # -- planner -----------------------------------------------------------------------------
    def _plan(self, context: SolveContext, current: np.ndarray, history: list[dict], step: int) -> dict:
        """The next action: the VLM planner's JSON, or the fixed instruction."""
        fixed = {"instruction": self.config.fixed_instruction, "task_complete": False, "planner": "fixed"}
        if self.config.planner == "fixed":
            return fixed
        text = load_prompt(
            "planner",
            task_prompt=context.instance.prompt,
            step=step + 1,
            max_steps=self.config.max_steps,
            history=json.dumps(history, indent=1) if history else "(none yet)",
        )
        messages = single_turn(text, "Current frame:", {"type": "image", "image": current})
        def has_instruction(answer: dict) -> str | None:
            if answer["task_complete"] or answer["instruction"].strip():
                return None
            return "instruction must not be empty unless task_complete is true"

        answer = context.chat_json(
            "planner", messages, {"instruction": str, "task_complete": bool}, validate=has_instruction
        )
        return fixed if answer is None else {**answer, "planner": "vlm"}

    # -- judges ------------------------------------------------------------------------------
    def _judge(self, context: SolveContext, clip: np.ndarray, joined_length: int, rule_score: Score, plan: dict) -> Verdict:
        """Decide on ``clip`` (appended to ``joined_length`` frames already kept)."""
        judge = self.config.judge
        rule = rule_verdict(rule_score, joined_length, len(clip))
        if judge == "rule":
            return rule
        vlm = self._vlm_verdict(context, clip, plan)
        if vlm is None:  # recorded as a failure; the rule verdict stands in
            rule.details["vlm"] = "failed"
            return rule
        if judge == "vlm":
            return vlm
        suggestion = " ".join(part for part in (vlm.suggestion, rule.suggestion) if part)
        return Verdict(
            accepted=rule.accepted and vlm.accepted,
            last_good=min(rule.last_good, vlm.last_good),
            suggestion=suggestion,
            details={"rule": rule.details, "vlm": vlm.details},
        )

    def _vlm_verdict(self, context: SolveContext, clip: np.ndarray, plan: dict) -> Verdict | None:
        """The VLM judge's verdict on one clip, or ``None`` when it gave no valid answer."""
        text = load_prompt(
            "clip_verifier",
            task_prompt=context.instance.prompt,
            instruction=plan["instruction"],
            target_state=plan.get("target_state") or "(not given)",
        )
        messages = single_turn(text, "The clip:", media_part(clip, self.config.media, self.config.vlm_frames))
        def known_verdict(answer: dict) -> str | None:
            return None if answer["verdict"].strip().lower() in ("accept", "reject") else 'verdict must be "accept" or "reject"'

        answer = context.chat_json("clip judge", messages, {"verdict": str}, validate=known_verdict)
        if answer is None:
            return None
        accepted = answer["verdict"].strip().lower() == "accept"
        fraction = answer.get("good_fraction")
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not math.isfinite(fraction):
            fraction = 1.0 if accepted else 0.0
        fraction = min(1.0, max(0.0, float(fraction)))
        last_good = len(clip) - 1 if accepted else int(math.floor(fraction * (len(clip) - 1)))
        suggestion = answer.get("suggestion") if isinstance(answer.get("suggestion"), str) else ""
        return Verdict(accepted=accepted, last_good=last_good, suggestion=suggestion.strip(), details=dict(answer))


def rule_verdict(score: Score, joined_length: int, clip_length: int) -> Verdict:
    """The rule judge: accept unless a rule breaks inside the clip; keep the frames before it.

    ``score`` judges the joined video (``joined_length`` frames) with the clip's frames
    ``1..`` appended, so clip frame ``i`` is video frame ``joined_length - 1 + i``.
    """
    violation = first_violation_frame(score)
    details = {"success": bool(score.success), "reason": score.reason, "violation_frame": violation}
    if violation is None:
        return Verdict(accepted=True, last_good=clip_length - 1, details=details)
    last_good = max(0, min(clip_length - 1, violation - joined_length))
    suggestion = f"Avoid this mistake: {score.reason}." if score.reason else ""
    return Verdict(accepted=False, last_good=last_good, suggestion=suggestion, details=details)


def clip_prompt(task_prompt: str, instruction: str, suggestion: str = "") -> str:
    """The video prompt of one clip: the task, the planned action, a judge's suggestion."""
    parts = [task_prompt.strip(), f"Next: {instruction.strip()}"]
    if suggestion:
        parts.append(suggestion.strip())
    return " ".join(parts)
