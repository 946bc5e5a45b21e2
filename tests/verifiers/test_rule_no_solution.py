"""Contract: a rule verifier judges from ``spec`` alone, never from ``instance.solution``.

Every rule verifier of every registered task scores the ground-truth video of an instance
whose solution was replaced by a sentinel that fails on any use; it must pass, with the
same verdict and metrics as with the solution in place.
"""

import dataclasses
import math

import pytest

from gen_reason.puzzles import get_task
from gen_reason.puzzles.registry import task_names
from gen_reason.verifiers.registry import verifier_for


class SolutionRead(AssertionError):
    """Raised when a rule verifier touches the stored solution."""


class NoSolution:
    """Stands in for ``instance.solution``: any use of it raises :class:`SolutionRead`."""

    def _fail(self, *args, **kwargs):
        raise SolutionRead("a rule verifier read instance.solution")

    __getitem__ = __iter__ = __len__ = __contains__ = __bool__ = __eq__ = __hash__ = __str__ = _fail
    keys = get = items = values = _fail

    def __getattr__(self, name):
        raise SolutionRead(f"a rule verifier read instance.solution.{name}")


def test_the_sentinel_fails_on_use():
    sentinel = NoSolution()
    for use in (lambda: sentinel["path"], lambda: list(sentinel), lambda: sentinel.get("pieces"),
                lambda: sentinel.pieces, lambda: bool(sentinel)):
        with pytest.raises(SolutionRead):
            use()


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a)


@pytest.mark.parametrize("task_name", task_names())
def test_rule_verifier_never_reads_the_solution(task_name):
    task = get_task(task_name)
    instance = task.generate(2, task.difficulties[0])
    video = instance.solution_video(33)
    verifier = verifier_for(task_name, "rule")
    with_solution = verifier.score(instance, video)
    assert with_solution.success, with_solution.reason
    for stand_in in (None, NoSolution()):
        blind = dataclasses.replace(instance, solution=stand_in)
        score = verifier.score(blind, video)
        assert score.success, score.reason
        assert _same(score.metrics, with_solution.metrics)
