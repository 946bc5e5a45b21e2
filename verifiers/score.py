"""``Score``: what every verifier returns (the Verifier contract, docs/ARCHITECTURE.md),
with its typed :class:`Trace` and :class:`Violation`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Violation:
    """The first (or any) rule a video broke: ``rule`` and ``frame``, ``detail`` in words,
    and whatever else the verifier records (``extra``: the piece, the nodes, ...)."""

    rule: str
    frame: int
    detail: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON record, with the verifier's own keys as it wrote them."""
        out = {"rule": self.rule, "frame": self.frame, **self.extra}
        if self.detail:
            out["detail"] = self.detail
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Violation":
        """Read a record written by :meth:`to_dict` (or by a verifier as a plain dict)."""
        extra = {k: v for k, v in data.items() if k not in ("rule", "frame", "detail")}
        return cls(rule=str(data.get("rule", "")), frame=int(data.get("frame", -1)),
                   detail=str(data.get("detail", "")), extra=extra)


_TRACE_FIELDS = ("first_violation", "agent_positions", "box_positions", "piece_positions", "image_size")


@dataclass(frozen=True)
class Trace(Mapping):
    """Why a verifier decided what it did, for people and for the visual outputs.

    The typed fields are what every consumer relies on: ``first_violation`` (the earliest
    rule broken), the per-frame tracks ``agent_positions`` / ``box_positions`` (``[x, y]``
    in the puzzle image's pixels, ``None`` where lost) and ``piece_positions`` (tangram:
    piece name -> such a track), and ``image_size`` (``[H, W]`` of the puzzle image the
    tracks are in). Everything else a verifier records is in ``details``. On disk
    (:meth:`to_dict`) a trace is one flat JSON object with the same keys as ever, and it
    reads like that dict too (``trace["agent_positions"]``, ``trace.get("violations")``).
    """

    first_violation: Violation | None = None
    agent_positions: list | None = None
    box_positions: list | None = None
    piece_positions: dict | None = None
    image_size: list | None = None
    details: dict = field(default_factory=dict)
    #: Whether the record says ``first_violation`` even when there was none (rule verifiers do).
    records_violation: bool = field(default=False, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The flat JSON record (typed fields that are set, then the details)."""
        out: dict[str, Any] = {}
        for name in _TRACE_FIELDS:
            value = getattr(self, name)
            if name == "first_violation":
                if value is not None or self.records_violation:
                    out[name] = None if value is None else value.to_dict()
            elif value is not None:
                out[name] = value
        out.update(self.details)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "Trace":
        """A trace from its flat record (what a verifier writes, or :meth:`to_dict` gave)."""
        data = dict(data or {})
        records = "first_violation" in data
        first = data.pop("first_violation", None)
        typed = {name: data.pop(name, None) for name in _TRACE_FIELDS[1:]}
        return cls(first_violation=Violation.from_dict(first) if isinstance(first, Mapping) else None,
                   details=data, records_violation=records, **typed)

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self):
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


@dataclass(frozen=True)
class Score:
    """One verdict on one video.

    - ``success``: the verifier's headline verdict (strict for rule verifiers).
    - ``metrics``: a flat ``{name: float}`` table (NaN where a metric is undefined, e.g.
      step deviation of a failed video; see each verifier's docstring).
    - ``trace``: JSON-serialisable evidence a human can read (per-frame positions, the
      extracted path, the first rule broken and at which frame).
    - ``reason``: one line saying why, especially why not (``""`` when nothing to say).
    """

    success: bool
    metrics: dict[str, float] = field(default_factory=dict)
    trace: Trace = field(default_factory=Trace)
    reason: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.trace, Trace):  # verifiers may hand over the flat record
            object.__setattr__(self, "trace", Trace.from_dict(self.trace))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; NaN/inf metrics become ``None`` (JSON has no NaN)."""
        return {
            "success": bool(self.success),
            "metrics": {k: (None if not math.isfinite(float(v)) else float(v)) for k, v in self.metrics.items()},
            "trace": _jsonable(self.trace.to_dict()),
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Score":
        """Read a record written by :meth:`to_dict` (``None`` metrics back to NaN)."""
        return cls(success=bool(data.get("success")),
                   metrics={k: math.nan if v is None else float(v) for k, v in (data.get("metrics") or {}).items()},
                   trace=Trace.from_dict(data.get("trace")), reason=str(data.get("reason", "")))

    @classmethod
    def failure(cls, reason: str, **metrics: float) -> "Score":
        """A recorded failure (unreadable video, wrong size, ...) with its reason."""
        return cls(success=False, metrics={k: float(v) for k, v in metrics.items()}, trace=Trace(), reason=reason)


def _jsonable(obj):
    """Convert numpy scalars/arrays, tuples and NaN to plain JSON values."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if np is not None:
        if isinstance(obj, np.ndarray):
            return _jsonable(obj.tolist())
        if isinstance(obj, np.generic):
            return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


@runtime_checkable
class Verifier(Protocol):
    """The verifier contract: ``score(instance, video) -> Score``.

    ``reads_solution`` says whether it looks at ``instance.solution``: a *rule* verifier
    (registered as ``"<family>:rule"``) must not, so solvers may use it at test time
    without steering by the answer; a *reference* verifier may (evaluation only).
    """

    reads_solution: bool

    def score(self, instance: Any, video: Any) -> Score:
        """The verdict on ``video`` as an answer to ``instance``."""
        ...
