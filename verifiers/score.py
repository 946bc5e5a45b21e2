"""``Score``: what every verifier returns (DESIGN.md §3, the Verifier contract)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


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
    trace: dict = field(default_factory=dict)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; NaN/inf metrics become ``None`` (JSON has no NaN)."""
        return {
            "success": bool(self.success),
            "metrics": {k: (None if not math.isfinite(float(v)) else float(v)) for k, v in self.metrics.items()},
            "trace": _jsonable(self.trace),
            "reason": self.reason,
        }

    @classmethod
    def failure(cls, reason: str, **metrics: float) -> "Score":
        """A recorded failure (unreadable video, wrong size, ...) with its reason."""
        return cls(success=False, metrics={k: float(v) for k, v in metrics.items()}, trace={}, reason=reason)


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
