"""Contract sweep over every registered task and its verifiers (plugins included).

A new task (one file and one registration, or an entry point in the ``genreason.tasks``
group) is covered here with no new test code: its ground truth must succeed under every
verifier kind, and its rule verifier must judge from ``spec`` alone.
"""

from __future__ import annotations

import dataclasses

import pytest

from gen_reason.puzzles import TASKS, get_task
from gen_reason.verifiers.registry import KINDS, VERIFIERS, verifier_for
from gen_reason.verifiers.score import Verifier

SEEDS = (0, 1)


class SolutionRead(AssertionError):
    """A rule verifier touched ``instance.solution``."""


class Forbidden:
    """Stands in for ``instance.solution``: any use of it fails the test."""

    def _refuse(self, *args, **kwargs):
        raise SolutionRead("a rule verifier read instance.solution")

    __getattr__ = __getitem__ = __iter__ = __len__ = __bool__ = __contains__ = __eq__ = __hash__ = _refuse


def instances(name: str):
    """A few instances of task ``name``: every difficulty, two seeds."""
    task = get_task(name)
    for difficulty in task.difficulties:
        for seed in SEEDS:
            yield task.generate(seed, difficulty)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", TASKS.names())
def test_ground_truth_succeeds_under_every_verifier_kind(name, kind):
    verifier = verifier_for(name, kind)
    for instance in instances(name):
        score = verifier.score(instance, instance.solution_video())
        assert score.success, f"{name} {instance.difficulty} seed {instance.seed} ({kind}): {score.reason}"


@pytest.mark.parametrize("name", TASKS.names())
def test_rule_verifier_judges_without_the_solution(name):
    verifier = verifier_for(name, "rule")
    for instance in instances(name):
        video = instance.solution_video()  # rendered before the solution is taken away
        blind = dataclasses.replace(instance, solution=Forbidden())
        score = verifier.score(blind, video)
        assert score.success, f"{name} {instance.difficulty} seed {instance.seed}: {score.reason}"


@pytest.mark.parametrize("name", TASKS.names())
def test_a_static_video_never_succeeds(name):
    """The first frame held still: no verifier kind may call it solved."""
    for kind in KINDS:
        verifier = verifier_for(name, kind)
        instance = next(instances(name))
        frames = len(instance.solution_video())
        static = instance.solution_video()[:1].repeat(frames, axis=0)
        assert not verifier.score(instance, static).success, f"{name} ({kind}) passed a static video"


@pytest.mark.parametrize("key", VERIFIERS.names())
def test_every_registered_verifier_keeps_the_contract(key):
    """Each registered verifier is a Verifier; one registered as a rule verifier says it
    never reads the solution (verifier_for refuses it otherwise)."""
    verifier = VERIFIERS.get(key)()
    assert isinstance(verifier, Verifier)
    if key.endswith(":rule"):
        assert verifier.reads_solution is False
