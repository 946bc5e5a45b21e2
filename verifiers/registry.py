"""Which verifier judges which task: ``verifier_for(task, kind)``.

Two kinds, kept apart (docs/ARCHITECTURE.md): ``"rule"`` verifiers read only ``instance.spec``
(legal at test time: solvers may use them without leaking the answer); ``"reference"``
verifiers also compare with ``instance.solution`` (evaluation only). Verifiers import
lazily, so asking for the tangram verifier never loads the maze tracker.
"""

from __future__ import annotations

from typing import Any, Callable

from gen_reason.errors import UserError
from gen_reason.registry import Registry, split_version

#: Verifier classes by "<task family>:<kind>".
VERIFIERS: Registry[Any] = Registry("verifier", entry_points="genreason.verifiers")
VERIFIERS.register("maze:rule", "gen_reason.verifiers.maze:MazeRuleVerifier")
VERIFIERS.register("maze:reference", "gen_reason.verifiers.maze:MazeReferenceVerifier")
VERIFIERS.register("maze/draw:rule", "gen_reason.verifiers.registry:DrawVerifier")
VERIFIERS.register("maze/draw:reference", "gen_reason.verifiers.registry:DrawVerifier")
VERIFIERS.register("tangram:rule", "gen_reason.verifiers.registry:TangramRuleVerifier")
VERIFIERS.register("tangram:reference", "gen_reason.verifiers.registry:TangramVerifier")

KINDS = ("rule", "reference")


def _family(task: str) -> str:
    """The verifier family that judges ``task``: what its task class declares in
    ``verifier_family`` (every task, ours and plugins'); VR-Bench levels read back as
    instances (``vrbench/<game>``) are maze-family specs."""
    from gen_reason.puzzles import TASKS

    if task in TASKS:
        declared = getattr(TASKS.get(task), "verifier_family", None)
        if declared:
            return declared
    elif split_version(task)[0].startswith("vrbench/"):
        return "maze"
    raise UserError(f"no verifier for task {task!r}: its task class names no verifier_family")


def verifier_for(task: str, kind: str = "rule", **options: Any):
    """A verifier object with ``score(instance, video) -> Score`` for ``task``."""
    if kind not in KINDS:
        raise UserError(f"unknown verifier kind {kind!r}; choose rule or reference")
    key = f"{_family(task)}:{kind}"
    cls = VERIFIERS.get(key)
    if kind == "rule" and getattr(cls, "reads_solution", True):
        raise UserError(f"verifier {key} ({getattr(cls, '__name__', cls)}) does not declare reads_solution = False: "
                        "a rule verifier must judge from spec alone")
    return cls(**options)


class _FunctionVerifier:
    """Adapts a ``score_x(instance, video, **options)`` function to the verifier interface."""

    function: Callable
    reads_solution = False  # the spec-only verdicts; a reference subclass says True

    def __init__(self, **options: Any) -> None:
        self.options = options

    def score(self, instance, video):
        """Score ``video`` against ``instance``."""
        return type(self).function(instance, video, **self.options)


class DrawVerifier(_FunctionVerifier):
    """Draw-the-path mazes: the drawn red path must join both dots without touching walls.

    Uses only ``spec`` (a rule verifier), so it serves both kinds."""

    @staticmethod
    def function(instance, video, **options):
        from gen_reason.verifiers.draw import score_draw

        return score_draw(instance, video, **options)


class TangramRuleVerifier(_FunctionVerifier):
    """Tangram from ``spec`` alone: pieces start where the puzzle puts them, slide rather
    than jump, and end whole on the silhouette, covering it."""

    @staticmethod
    def function(instance, video, **options):
        from gen_reason.verifiers.tangram import score_tangram_rules

        return score_tangram_rules(instance, video, **options)


class TangramVerifier(_FunctionVerifier):
    """Tangram's reference verdict: the rule checks, and every piece's final pose against
    the stored solution."""

    reads_solution = True

    @staticmethod
    def function(instance, video, **options):
        from gen_reason.verifiers.tangram import score_tangram

        return score_tangram(instance, video, **options)
