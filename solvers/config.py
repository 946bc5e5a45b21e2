"""Solver configs: the fields every solver shares (:class:`SolverConfig`), those of the
solvers that show videos to a VLM (:class:`VLMSolverConfig`), and the checks their
``validate`` methods use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from gen_reason.errors import UserError


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
