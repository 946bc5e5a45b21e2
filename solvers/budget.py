"""What a solve may spend and what it spent: :class:`Budget` (limits), :class:`Compute`
(NFE with classifier-free guidance counted, clips, frames, VLM calls and tokens, seconds)
and the cost of one generation (see :mod:`gen_reason.solvers.base` for how strategies
check the budget before spending)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from gen_reason.errors import UserError
from gen_reason.models.base import VideoGenerator


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

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Compute":
        """A record back (:meth:`to_dict`); ``None`` is nothing spent. An unknown key (a newer
        writer's) is a one-line :class:`UserError`."""
        from gen_reason.folders import from_record

        return from_record(cls, data or {}, "compute record")


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


class BudgetExhausted(Exception):
    """Raised inside a solve when the next piece of work would pass the budget."""
