"""What a solve produced: every :class:`Candidate` video with its verdicts, and the
:class:`Attempt` (the chosen one, the compute spent, strategy records) as JSON-ready records."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gen_reason.solvers.budget import Budget, Compute
from gen_reason.verifiers.score import Score


@dataclass
class Candidate:
    """One video a solver made and judged.

    ``score`` is the (rule) verifier's verdict the solver was allowed to see;
    ``reference`` the reference verifier's verdict when one was given to ``solve``
    (evaluation only: it never steers the solver). ``meta`` says what the video is
    (``role``: sample, ensemble, baseline, clip, chain, joined; round, step, frames...).
    """

    video: np.ndarray | None = field(repr=False)
    score: Score
    seed: int | None
    prompt: str
    meta: dict = field(default_factory=dict)
    reference: Score | None = None
    #: the frame count of a candidate read back from its record (which keeps no video)
    frames: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, without the video (its shape is kept)."""
        return {
            "seed": self.seed,
            "prompt": self.prompt,
            "frames": int(self.video.shape[0]) if self.video is not None else self.frames,
            "score": self.score.to_dict(),
            "reference": None if self.reference is None else self.reference.to_dict(),
            "meta": plain_record(self.meta),
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "Candidate":
        """A candidate from its record (:meth:`to_dict`); the record keeps no video, so
        ``video`` is ``None`` and ``frames`` says how long it was."""
        reference = record.get("reference")
        return cls(video=None, score=Score.from_dict(record["score"]), seed=record.get("seed"),
                   prompt=record.get("prompt", ""), meta=dict(record.get("meta") or {}),
                   reference=None if reference is None else Score.from_dict(reference), frames=record.get("frames"))


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
    video: np.ndarray | None = field(repr=False)
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
            "config": plain_record(self.config),
            "chosen": self.chosen,
            "success": self.success,
            "score": self.score.to_dict(),
            "reference": None if self.reference is None else self.reference.to_dict(),
            "candidates": [candidate.to_dict() for candidate in self.candidates],
            "compute": self.compute.to_dict(),
            "diagnostic_compute": self.diagnostic_compute.to_dict(),
            "budget": self.budget.to_dict(),
            "meta": plain_record(self.meta),
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "Attempt":
        """An attempt from its record (:meth:`to_dict`, e.g. an eval result row's ``attempt``);
        records keep no video, so ``video`` is ``None``. ``success``, ``score`` and
        ``reference`` are read back from the chosen candidate, as they were written."""
        return cls(solver=record["solver"], config=dict(record.get("config") or {}), video=None,
                   chosen=int(record["chosen"]),
                   candidates=[Candidate.from_dict(c) for c in record.get("candidates", [])],
                   compute=Compute.from_dict(record.get("compute")), budget=Budget.from_dict(record.get("budget")),
                   diagnostic_compute=Compute.from_dict(record.get("diagnostic_compute")),
                   meta=dict(record.get("meta") or {}))


def score_rank(score: Score, rank_metric: str | None = None) -> tuple:
    """Sort key of a rule verdict: success first, then ``rank_metric`` (higher is better)."""
    value = -math.inf
    if rank_metric is not None:
        raw = score.metrics.get(rank_metric)
        if raw is not None and math.isfinite(float(raw)):
            value = float(raw)
    return (bool(score.success), value)


def plain_record(obj: Any) -> Any:
    """Tuples and arrays -> lists, numpy scalars -> Python, NaN and infinities (numpy's too)
    -> None, Scores -> dicts (for JSON records and summaries)."""
    if isinstance(obj, Score):
        return obj.to_dict()
    if isinstance(obj, dict):
        return {str(k): plain_record(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain_record(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return plain_record(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
