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

This module imports no torch: it runs wherever puzzles and verifiers run.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np

from gen_reason.errors import UserError
from gen_reason.registry import config_from_overrides
from gen_reason.models.base import VideoGenerator
from gen_reason.verifiers.score import Score

# -- budget and compute ----------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """Upper limits on what one ``solve`` may spend; ``None`` means no limit.

    ``max_nfe``: denoiser forward passes; ``max_clips``: generated samples;
    ``max_vlm_calls``: VLM requests (retries included); ``max_seconds``: wall clock
    (checked before each new generation, so a run may end a little after it).
    """

    max_nfe: int | None = None
    max_clips: int | None = None
    max_vlm_calls: int | None = None
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_nfe", "max_clips", "max_vlm_calls"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0):
                raise UserError(f"budget {name} must be a non-negative integer or None; got {value!r}")
        if self.max_seconds is not None and (
            isinstance(self.max_seconds, bool) or not isinstance(self.max_seconds, (int, float)) or self.max_seconds < 0
        ):
            raise UserError(f"budget max_seconds must be a non-negative number or None; got {self.max_seconds!r}")

    def allows(self, spent: "Compute", more: "Compute") -> bool:
        """Whether spending ``more`` on top of ``spent`` stays within every limit.

        Seconds cannot be predicted, so only the time already spent is checked.
        """
        if self.max_nfe is not None and spent.nfe + more.nfe > self.max_nfe:
            return False
        if self.max_clips is not None and spent.clips + more.clips > self.max_clips:
            return False
        if self.max_vlm_calls is not None and spent.vlm_calls + more.vlm_calls > self.max_vlm_calls:
            return False
        if self.max_seconds is not None and spent.seconds >= self.max_seconds:
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        """The limits as a plain dict (``None`` = unlimited)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "Budget":
        """Build from a config dict: :meth:`to_dict` keys, or the short names ``nfe``,
        ``clips``, ``vlm_calls``, ``seconds``. Unknown keys are a :class:`UserError`."""
        from gen_reason.config import build

        if data is not None and not isinstance(data, dict):
            raise UserError(f"budget must be a mapping such as {{nfe: 160}}; got {data!r}")
        data = {(key if str(key).startswith("max_") else f"max_{key}"): value for key, value in (data or {}).items()}
        return build(cls, data, what="budget")


@dataclass
class Compute:
    """What a solve spent: NFE (CFG counted), clips, frames, VLM calls and tokens, seconds."""

    nfe: int = 0
    clips: int = 0
    frames: int = 0
    vlm_calls: int = 0
    vlm_tokens: int = 0
    seconds: float = 0.0

    def add(self, other: "Compute") -> "Compute":
        """Add ``other`` into this one (in place) and return self."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def __add__(self, other: "Compute") -> "Compute":
        return Compute(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)})

    @classmethod
    def merge(cls, items: Sequence["Compute"]) -> "Compute":
        """The sum of several :class:`Compute` records."""
        total = cls()
        for item in items:
            total.add(item)
        return total

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = dataclasses.asdict(self)
        data["seconds"] = round(float(data["seconds"]), 4)
        return data


def resolved_steps(generator: VideoGenerator, steps: int | None) -> int:
    """Denoising steps a call with ``steps`` (``None``: the generator's default) runs.

    The default is read from ``generator.default_steps`` or ``generator.options.steps``
    (:class:`~gen_reason.models.DiffusersVideoGenerator`); a generator that declares
    neither counts as one pass per sample.
    """
    if steps is not None:
        return int(steps)
    for value in (getattr(generator, "default_steps", None), getattr(getattr(generator, "options", None), "steps", None)):
        if value is not None:
            return int(value)
    return 1


def resolved_guidance(generator: VideoGenerator, guidance: float | None) -> float:
    """Guidance scale a call with ``guidance`` (``None``: the generator's default) uses."""
    if guidance is not None:
        return float(guidance)
    for value in (
        getattr(generator, "default_guidance", None),
        getattr(getattr(generator, "options", None), "guidance", None),
    ):
        if value is not None:
            return float(value)
    return 1.0


def nfe_per_step(generator: VideoGenerator, guidance: float) -> int:
    """Denoiser forward passes per sample per step.

    The generator's own ``nfe_per_step(guidance)`` answers when it has one; otherwise
    diffusers' rule: classifier-free guidance runs when ``guidance > 1`` and costs a
    conditional and an unconditional pass.
    """
    own = getattr(generator, "nfe_per_step", None)
    if callable(own):
        return int(own(guidance))
    return 2 if guidance > 1.0 else 1


def generation_cost(
    generator: VideoGenerator, *, samples: int, num_frames: int, steps: int | None, guidance: float | None
) -> Compute:
    """The compute one batched ``generate`` call of ``samples`` videos costs."""
    steps = resolved_steps(generator, steps)
    per_step = nfe_per_step(generator, resolved_guidance(generator, guidance))
    return Compute(nfe=samples * steps * per_step, clips=samples, frames=samples * num_frames)


def resolved_num_frames(generator: VideoGenerator, num_frames: int | None) -> int:
    """Frames per clip: ``num_frames`` or the generator's default."""
    if num_frames is not None:
        return int(num_frames)
    return int(getattr(generator, "default_num_frames", 0) or 0) or 16


# -- candidates and attempts ------------------------------------------------------------------


@dataclass
class Candidate:
    """One video a solver made and judged.

    ``score`` is the (rule) verifier's verdict the solver was allowed to see;
    ``reference`` the reference verifier's verdict when one was given to ``solve``
    (evaluation only: it never steers the solver). ``meta`` says what the video is
    (``role``: sample, ensemble, baseline, clip, chain, joined; round, step, frames...).
    """

    video: np.ndarray = field(repr=False)
    score: Score
    seed: int | None
    prompt: str
    meta: dict = field(default_factory=dict)
    reference: Score | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, without the video (its shape is kept)."""
        return {
            "seed": self.seed,
            "prompt": self.prompt,
            "frames": int(self.video.shape[0]),
            "score": self.score.to_dict(),
            "reference": None if self.reference is None else self.reference.to_dict(),
            "meta": _plain(self.meta),
        }


@dataclass
class Attempt:
    """What one solve produced: the chosen video, every candidate with its score, the compute.

    ``chosen`` indexes ``candidates``; ``video`` is that candidate's video. ``compute``
    is what the strategy spent to reach its answer (what matched-compute comparisons
    use); ``diagnostic_compute`` what it spent on records that did not shape the answer.
    ``meta`` holds strategy-specific records (pass@k curve, success vs frames, per-seed
    outcomes, VLM failures, why it stopped).
    """

    solver: str
    config: dict
    video: np.ndarray = field(repr=False)
    chosen: int
    candidates: list[Candidate]
    compute: Compute
    budget: Budget = field(default_factory=Budget)
    diagnostic_compute: Compute = field(default_factory=Compute)
    meta: dict = field(default_factory=dict)

    @property
    def score(self) -> Score:
        """The chosen candidate's (rule) score."""
        return self.candidates[self.chosen].score

    @property
    def reference(self) -> Score | None:
        """The chosen candidate's reference score, when a reference verifier was given."""
        return self.candidates[self.chosen].reference

    @property
    def success(self) -> bool:
        """The chosen candidate's verdict: the reference one when present, else the rule one."""
        verdict = self.reference if self.reference is not None else self.score
        return bool(verdict.success)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record of the attempt, without any video."""
        return {
            "solver": self.solver,
            "config": _plain(self.config),
            "chosen": self.chosen,
            "success": self.success,
            "score": self.score.to_dict(),
            "reference": None if self.reference is None else self.reference.to_dict(),
            "candidates": [candidate.to_dict() for candidate in self.candidates],
            "compute": self.compute.to_dict(),
            "diagnostic_compute": self.diagnostic_compute.to_dict(),
            "budget": self.budget.to_dict(),
            "meta": _plain(self.meta),
        }


class BudgetExhausted(Exception):
    """Raised inside a solve when the next piece of work would pass the budget."""


# -- configs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SolverConfig:
    """Fields every solver shares.

    ``seed``: base seed (candidate ``i`` of a batch uses ``seed + i``); ``num_frames``,
    ``steps``, ``guidance``: generation settings (``None``: the generator's defaults);
    ``prompt``: replaces the instance's prompt when set; ``rank_metric``: a metric of the
    rule verifier that breaks ties between candidates of equal success (higher is
    better; ``None``: the earliest candidate wins).
    """

    seed: int = 0
    num_frames: int | None = None
    steps: int | None = None
    guidance: float | None = None
    prompt: str | None = None
    rank_metric: str | None = None

    def validate(self) -> None:
        """Raise :class:`UserError` naming the first bad field. Subclasses extend this."""
        check_int("seed", self.seed, 0)
        if self.num_frames is not None:
            check_int("num_frames", self.num_frames, 1)
        if self.steps is not None:
            check_int("steps", self.steps, 1)
        if self.guidance is not None and (isinstance(self.guidance, bool) or not isinstance(self.guidance, (int, float))):
            raise UserError(f"guidance must be a number; got {self.guidance!r}")


MEDIA = ("filmstrip", "video")


@dataclass(frozen=True)
class VLMSolverConfig(SolverConfig):
    """Fields of solvers that show videos to a VLM: ``media`` (a filmstrip image of
    ``vlm_frames`` frames, or the video itself) and ``vlm_max_tokens`` (the longest
    answer asked of the VLM)."""

    media: str = "filmstrip"
    vlm_frames: int = 8
    vlm_max_tokens: int = 512

    def validate(self) -> None:
        """Check the shared fields, then the VLM presentation fields."""
        super().validate()
        check_choice("media", self.media, MEDIA)
        check_int("vlm_frames", self.vlm_frames, 1)
        check_int("vlm_max_tokens", self.vlm_max_tokens, 1)


def check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    """Raise :class:`UserError` unless ``value`` is an int in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise UserError(f"{name} must be an integer {bound}; got {value!r}")


def check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    """Raise :class:`UserError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise UserError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


# -- the solver base class ----------------------------------------------------------------------


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
        return _plain(dataclasses.asdict(self.config))

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


# -- the per-solve working state ------------------------------------------------------------------


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


def score_rank(score: Score, rank_metric: str | None = None) -> tuple:
    """Sort key of a rule verdict: success first, then ``rank_metric`` (higher is better)."""
    value = -math.inf
    if rank_metric is not None:
        raw = score.metrics.get(rank_metric)
        if raw is not None and math.isfinite(float(raw)):
            value = float(raw)
    return (bool(score.success), value)


def _usage(vlm: Any) -> tuple[int, int]:
    """``(calls, prompt + completion tokens)`` from a VLM client's ``usage`` (object or dict)."""
    usage = getattr(vlm, "usage", None)
    if usage is None:
        return (0, 0)

    def read(name: str) -> int:
        value = usage.get(name, 0) if isinstance(usage, dict) else getattr(usage, name, 0)
        return int(value or 0)

    return read("calls"), read("prompt_tokens") + read("completion_tokens")


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


def _plain(obj: Any) -> Any:
    """Tuples -> lists, numpy scalars -> Python, Scores -> dicts (for JSON records)."""
    if isinstance(obj, Score):
        return obj.to_dict()
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# -- prompts and VLM messages ------------------------------------------------------------------------


def load_prompt(name: str, **fields: Any) -> str:
    """The prompt file ``gen_reason/prompts/<name>.txt`` with ``$field`` placeholders filled.

    ``string.Template`` substitution, so the JSON examples in the prompts keep their
    braces; a placeholder without a value is a bug and raises ``KeyError``.
    """
    import string
    from importlib import resources

    text = (resources.files("gen_reason") / "prompts" / f"{name}.txt").read_text(encoding="utf-8")
    return string.Template(text).substitute({key: str(value) for key, value in fields.items()}).strip()


def media_part(video: np.ndarray, media: str, frames: int) -> dict:
    """A VLM message part showing ``video``: a filmstrip image of ``frames`` frames, or the video."""
    from gen_reason.video import filmstrip

    if media == "video":
        return {"type": "video", "video": video}
    return {"type": "image", "image": filmstrip(video, n=frames)}


def single_turn(*parts: dict | str) -> list[dict]:
    """One user message (OpenAI style) from text strings and media parts."""
    content = [{"type": "text", "text": part} if isinstance(part, str) else part for part in parts]
    return [{"role": "user", "content": content}]
