"""VLM judges: rubric scoring of a generated video by a vision-language model.

Two rubrics, both over ``k`` evenly spaced frames of the video (each shrunk to a
maximum side) and the instance's instruction, through the :class:`~gen_reason.vlm.VLM`
interface (a local transformers model or any OpenAI-compatible server):

- :class:`GenViReJudge`, in the style of Gen-ViRe (Liu et al., 2025, "Can World
  Simulators Reason? Gen-ViRe: A Generative Visual Reasoning Benchmark"): a per-sample
  list of binary criteria for the task; the score is the fraction passed.
- :class:`MMECoFJudge`, in the style of MME-CoF (Guo et al., 2025, "Are Video Models
  Ready as Zero-Shot Reasoners? An Empirical Study with the MME-CoF Benchmark"): five
  dimensions rated 0-4 (instruction alignment, temporal consistency, visual stability,
  content fidelity, focus relevance).

The prompts are package data (``gen_reason/prompts/judge_*.txt``, ``string.Template``
syntax). Answers must be JSON; a malformed or out-of-range answer is re-asked with the
problem named (``retries`` times), and then recorded as a **judge failure**:
``success=False``, ``metrics["judge_failed"] = 1.0``, and the scores ``NaN`` (never a
zero that looks like a verdict), with every raw answer in ``trace["raw_answers"]``.

Both take the same keyword settings: ``num_frames`` (frames sampled, default 8),
``max_side`` (pixels, default 448; ``None`` keeps full size), ``retries`` (re-asks
after a malformed answer, default 2), ``max_tokens`` (per answer, default 768) and
``template`` (a prompt text or ``string.Template`` replacing the packaged one).

These judges read only the instruction and the video, never ``instance.solution``, so
solvers may use them at test time. A judge's opinion is not a proof: the pixel-based
maze verifiers are exact where they apply; the judges cover what pixels cannot.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from string import Template

import numpy as np

from gen_reason.errors import UserError
from gen_reason.verifiers.score import Score
from gen_reason.video import as_video
from gen_reason.vlm.base import VLM, image_part, sample_frames, text_part
from gen_reason.vlm.structured import VLMFailure, chat_json

#: Default Gen-ViRe criteria by task (``maze/sokoban``), family (``maze``) or ``default``.
#: Each is a yes/no question about the video that a person could check on its frames.
DEFAULT_CRITERIA: dict[str, tuple[str, ...]] = {
    "maze": (
        "The agent moves only along open corridors and never crosses or overlaps a wall.",
        "The agent reaches the goal by the end of the video.",
        "The maze layout (walls, corridors and goal) stays unchanged throughout the video.",
        "Only the agent moves; nothing else in the scene changes, appears or disappears.",
        "The agent moves continuously from place to place, without jumping or teleporting.",
    ),
    "maze/trapfield": (
        "The agent moves only along open cells and never crosses or overlaps a wall.",
        "The agent never steps onto a trap.",
        "The agent reaches the goal by the end of the video.",
        "The layout (walls, traps and goal) stays unchanged throughout the video.",
        "Only the agent moves; nothing else in the scene changes, appears or disappears.",
    ),
    "maze/sokoban": (
        "The box ends on the target by the end of the video.",
        "The box moves only when the agent pushes it from the opposite side.",
        "Neither the agent nor the box ever crosses or overlaps a wall.",
        "The walls and the target stay unchanged throughout the video.",
        "Only the agent and the box move; nothing else in the scene changes.",
    ),
    "maze/draw": (
        "A path is drawn that connects the start to the goal by the end of the video.",
        "The drawn path never crosses or touches a wall.",
        "The maze layout (walls and goal) stays unchanged throughout the video.",
        "Nothing changes in the scene except the drawn path.",
    ),
    "tangram": (
        "By the end of the video the pieces together fill the target silhouette.",
        "Every piece keeps its shape, size and colour throughout the video.",
        "Pieces move rigidly (slide, rotate or flip) without morphing or blending.",
        "No piece is added, removed or duplicated.",
    ),
    "default": (
        "The video carries out what the instruction asks.",
        "The last frame shows the task solved.",
        "The scene stays consistent: nothing changes that the instruction does not ask for.",
    ),
}

#: The five MME-CoF dimensions, as the JSON keys the prompt asks for.
MMECOF_DIMENSIONS: tuple[str, ...] = (
    "instruction_alignment",
    "temporal_consistency",
    "visual_stability",
    "content_fidelity",
    "focus_relevance",
)
MMECOF_MAX = 4

CriteriaSource = Sequence[str] | Mapping[str, Sequence[str]] | Callable[[object], Sequence[str]] | None


def load_prompt(name: str) -> Template:
    """The prompt template ``gen_reason/prompts/<name>.txt`` (``$placeholders``)."""
    try:
        text = (resources.files("gen_reason") / "prompts" / f"{name}.txt").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"no prompt template named {name!r} in gen_reason/prompts") from None
    return Template(text)


def task_key(task: str) -> str:
    """A registry name without its version suffix: ``maze/grid-v1`` -> ``maze/grid``."""
    return re.sub(r"-v\d+$", "", task)


def lookup_criteria(table: Mapping[str, Sequence[str]], task: str) -> list[str]:
    """The criteria for ``task`` in ``table``: by full name, then family (``maze``), then ``default``."""
    key = task_key(task)
    for candidate in (task, key, key.split("/")[0], "default"):
        if candidate in table:
            return list(table[candidate])
    raise UserError(f"no judge criteria for task {task!r} and no 'default' entry")


class _FrameJudge:
    """What both judges share: frame sampling, the VLM call, usage and failure bookkeeping."""

    name = "vlm_judge"
    template_name = ""

    def __init__(self, vlm: VLM, *, num_frames: int = 8, max_side: int | None = 448, retries: int = 2,
                 max_tokens: int = 768, template: str | Template | None = None):
        if num_frames < 1:
            raise UserError(f"num_frames must be at least 1; got {num_frames}")
        if max_side is not None and max_side < 16:
            raise UserError(f"max_side must be at least 16 pixels; got {max_side}")
        if retries < 0:
            raise UserError(f"retries must be >= 0; got {retries}")
        self.vlm = vlm
        self.num_frames = int(num_frames)
        self.max_side = max_side
        self.retries = int(retries)
        self.max_tokens = int(max_tokens)
        if template is None:
            template = load_prompt(self.template_name)
        self.template = template if isinstance(template, Template) else Template(template)

    def _messages(self, frames: list[np.ndarray], prompt: str) -> list[dict]:
        return [{"role": "user", "content": [*(image_part(frame) for frame in frames), text_part(prompt)]}]

    def _run(self, instance, video, prompt_fields: dict, validate) -> tuple[dict | None, Score | None, dict]:
        """Ask the VLM; returns ``(answer, None, trace)`` or ``(None, failure_score, trace)``."""
        try:
            video = as_video(video)
        except UserError as error:
            return None, Score.failure(f"invalid video: {error}", success=0.0, judge_failed=0.0,
                                       invalid_video=1.0), {}
        indices, frames = sample_frames(video, self.num_frames, self.max_side)
        prompt = self.template.substitute(instruction=getattr(instance, "prompt", ""), num_frames=len(frames),
                                          **prompt_fields)
        trace = {"judge": self.name, "vlm": getattr(self.vlm, "name", type(self.vlm).__name__),
                 "frames": indices, "video_frames": int(len(video))}
        before = self.vlm.usage.snapshot()
        try:
            answer = chat_json(self.vlm, self._messages(frames, prompt), retries=self.retries, validate=validate,
                               max_tokens=self.max_tokens)
        except VLMFailure as failure:
            spent = self.vlm.usage.since(before)
            trace.update(raw_answers=failure.raw_answers, usage=spent.to_dict())
            metrics = {"success": math.nan, "judge_score": math.nan, "judge_failed": 1.0,
                       "vlm_calls": float(spent.calls)}
            return None, Score(success=False, metrics=metrics, trace=trace,
                               reason=f"judge failure: {failure.reason}"), trace
        spent = self.vlm.usage.since(before)
        trace.update(usage=spent.to_dict(), answer=answer)
        trace["vlm_calls"] = spent.calls
        return answer, None, trace


class GenViReJudge(_FrameJudge):
    """Gen-ViRe-style judge: binary criteria per sample; score = fraction of criteria passed.

    ``criteria`` chooses each instance's checklist: ``None`` uses
    :data:`DEFAULT_CRITERIA` (by task, then family, then ``default``); a list applies to
    every instance; a mapping is looked up like the default table; a callable is
    called with the instance. The VLM answers
    ``{"criteria": [{"name", "passed": bool, "reason"}]}`` with one entry per criterion
    in order (entries are matched by name when every name matches a criterion, which
    tolerates reordering, else by position).

    Metrics: ``judge_score`` (fraction passed), ``success`` (1.0 when ``judge_score >=
    success_threshold``; the default 1.0 asks for every criterion), ``criteria_passed``,
    ``criteria_total``, ``criterion_<i>`` (1.0/0.0, in checklist order, names in
    ``trace["criteria"]``), ``judge_failed`` (0.0) and ``vlm_calls``.
    """

    name = "genvire"
    template_name = "judge_genvire"

    def __init__(self, vlm: VLM, criteria: CriteriaSource = None, *, success_threshold: float = 1.0, **kwargs):
        super().__init__(vlm, **kwargs)
        if not 0.0 <= success_threshold <= 1.0:
            raise UserError(f"success_threshold must be in [0, 1]; got {success_threshold}")
        if isinstance(criteria, str):
            raise UserError("criteria must be a list of criteria, a mapping task -> list, or a callable; got a str")
        self.criteria = criteria
        self.success_threshold = float(success_threshold)

    def criteria_for(self, instance) -> list[str]:
        """The checklist for ``instance`` (see the class docstring)."""
        source = self.criteria
        if source is None:
            found = lookup_criteria(DEFAULT_CRITERIA, instance.task)
        elif isinstance(source, Mapping):
            found = lookup_criteria(source, instance.task)
        elif callable(source):
            found = list(source(instance))
        else:
            found = list(source)
        if not found or not all(isinstance(c, str) and c.strip() for c in found):
            raise UserError(f"the judge criteria for {instance.task} must be non-empty strings; got {found!r}")
        return found

    def score(self, instance, video) -> Score:
        """Judge ``video`` against ``instance``'s checklist (see the class docstring)."""
        criteria = self.criteria_for(instance)
        listing = "\n".join(f"{i}. {criterion}" for i, criterion in enumerate(criteria, start=1))
        answer, failure, trace = self._run(
            instance, video, {"criteria": listing, "num_criteria": len(criteria)},
            validate=lambda obj: parse_genvire_answer(obj, criteria))
        if failure is not None:
            trace["criteria"] = [{"name": c} for c in criteria]
            return failure
        verdicts = parse_genvire_answer(answer, criteria)
        passed = [v["passed"] for v in verdicts]
        judge_score = sum(passed) / len(passed)
        success = judge_score >= self.success_threshold
        metrics = {"success": float(success), "judge_score": judge_score, "criteria_passed": float(sum(passed)),
                   "criteria_total": float(len(passed)), "judge_failed": 0.0,
                   "vlm_calls": float(trace.pop("vlm_calls"))}
        metrics.update({f"criterion_{i}": float(p) for i, p in enumerate(passed)})
        trace["criteria"] = verdicts
        failed = [v["name"] for v in verdicts if not v["passed"]]
        reason = "" if not failed else "failed criteria: " + "; ".join(failed)
        return Score(success=success, metrics=metrics, trace=trace, reason=reason)


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", str(text).lower()).split())


def parse_genvire_answer(obj: dict, criteria: Sequence[str]) -> list[dict]:
    """The verdicts ``[{"name", "passed", "reason"}]`` in checklist order, or ``ValueError``.

    ``obj`` must hold ``"criteria"``: one entry per criterion with a boolean
    ``"passed"`` (a string like ``"yes"`` is rejected, not guessed).
    """
    entries = obj.get("criteria")
    if not isinstance(entries, list):
        raise ValueError('the answer needs a "criteria" list')
    if len(entries) != len(criteria):
        raise ValueError(f'"criteria" has {len(entries)} entries; expected {len(criteria)}, one per criterion')
    for i, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise ValueError(f"criteria entry {i} must be an object")
        if not isinstance(entry.get("passed"), bool):
            raise ValueError(f'criteria entry {i} needs "passed": true or false; got {entry.get("passed")!r:.40}')
    wanted = [_normalise(c) for c in criteria]
    given = [_normalise(entry.get("name", "")) for entry in entries]
    if sorted(given) == sorted(wanted) and len(set(wanted)) == len(wanted):
        order = [given.index(w) for w in wanted]  # every name matches: follow the names
    else:
        order = list(range(len(criteria)))  # names paraphrased: follow the positions
    verdicts = []
    for criterion, index in zip(criteria, order):
        entry = entries[index]
        reason = entry.get("reason")
        verdicts.append({"name": criterion, "passed": entry["passed"],
                         "reason": reason if isinstance(reason, str) else None,
                         "answered_name": entry.get("name")})
    return verdicts


class MMECoFJudge(_FrameJudge):
    """MME-CoF-style judge: five dimensions rated 0-4 on sampled frames.

    The VLM answers ``{"<dimension>": {"score": 0-4, "reason": str}, ...}`` for every
    dimension of :data:`MMECOF_DIMENSIONS` (a bare integer instead of the object is
    accepted). Scores must be integers in 0-4 (``3.0`` counts as 3; ``2.5``, ``5`` or
    ``"3"`` are re-asked).

    Metrics: each dimension's score (0-4) under its own name, ``judge_mean`` (their mean,
    0-4), ``judge_score`` (``judge_mean / 4``, in [0, 1]), ``success`` (1.0 when
    ``judge_score >= success_threshold``; MME-CoF itself reports only the scores, the
    default 0.75 means "mostly right on average" and is our convention),
    ``judge_failed`` (0.0) and ``vlm_calls``.
    """

    name = "mmecof"
    template_name = "judge_mmecof"

    def __init__(self, vlm: VLM, *, success_threshold: float = 0.75,
                 dimensions: Sequence[str] = MMECOF_DIMENSIONS, **kwargs):
        super().__init__(vlm, **kwargs)
        if not 0.0 <= success_threshold <= 1.0:
            raise UserError(f"success_threshold must be in [0, 1]; got {success_threshold}")
        self.success_threshold = float(success_threshold)
        self.dimensions = tuple(dimensions)
        if not self.dimensions:
            raise UserError("MMECoFJudge needs at least one dimension")

    def score(self, instance, video) -> Score:
        """Rate ``video`` on the five dimensions (see the class docstring)."""
        answer, failure, trace = self._run(instance, video, {},
                                           validate=lambda obj: parse_mmecof_answer(obj, self.dimensions))
        if failure is not None:
            return failure
        ratings = parse_mmecof_answer(answer, self.dimensions)
        mean = sum(r["score"] for r in ratings.values()) / len(ratings)
        judge_score = mean / MMECOF_MAX
        success = judge_score >= self.success_threshold
        metrics = {name: float(r["score"]) for name, r in ratings.items()}
        metrics.update({"success": float(success), "judge_mean": mean, "judge_score": judge_score,
                        "judge_failed": 0.0, "vlm_calls": float(trace.pop("vlm_calls"))})
        trace["ratings"] = ratings
        weak = [f"{name} {r['score']}/{MMECOF_MAX}" for name, r in ratings.items() if r["score"] < MMECOF_MAX - 1]
        reason = ""
        if not success:
            reason = f"mean rating {mean:.2f}/{MMECOF_MAX}" + (f"; low: {', '.join(weak)}" if weak else "")
        return Score(success=success, metrics=metrics, trace=trace, reason=reason)


def parse_mmecof_answer(obj: dict, dimensions: Sequence[str] = MMECOF_DIMENSIONS) -> dict[str, dict]:
    """``{dimension: {"score": int 0-4, "reason": str | None}}``, or ``ValueError`` naming the problem."""
    missing = [d for d in dimensions if d not in obj]
    if missing:
        raise ValueError(f"missing dimension{'s' * (len(missing) > 1)} {', '.join(missing)}")
    ratings = {}
    for dimension in dimensions:
        entry = obj[dimension]
        reason = None
        if isinstance(entry, dict):
            if "score" not in entry:
                raise ValueError(f'{dimension} needs a "score"')
            reason = entry.get("reason") if isinstance(entry.get("reason"), str) else None
            entry = entry["score"]
        if isinstance(entry, bool) or not isinstance(entry, (int, float)) or not float(entry).is_integer():
            raise ValueError(f"{dimension} score must be an integer from 0 to {MMECOF_MAX}; got {entry!r:.40}")
        value = int(entry)
        if not 0 <= value <= MMECOF_MAX:
            raise ValueError(f"{dimension} score {value} is outside 0-{MMECOF_MAX}")
        ratings[dimension] = {"score": value, "reason": reason}
    return ratings
