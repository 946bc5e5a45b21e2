"""The robustness bench's matrix as a test: every task's ground truth still passes strict
success under every transform of verifiers/degrade.py's ROBUSTNESS (speeds, pause, tail,
blur, noise, H.264, JPEG, resizing, stretching, letterboxing, colour jitter, a shifted
camera), on its easiest puzzle of a seed no other test uses."""

from __future__ import annotations

import functools

import pytest

from gen_reason.puzzles import TASKS, get_task
from gen_reason.verifiers.degrade import ROBUSTNESS
from gen_reason.verifiers.registry import verifier_for


@functools.lru_cache(maxsize=None)
def case(name: str):
    task = get_task(name)
    instance = task.generate(7919, task.difficulties[0])
    return instance, instance.solution_video()


@pytest.mark.parametrize("transform", list(ROBUSTNESS))
@pytest.mark.parametrize("name", TASKS.names())
def test_ground_truth_survives_every_transform(name, transform):
    instance, truth = case(name)
    score = verifier_for(name, "reference").score(instance, ROBUSTNESS[transform](truth))
    assert score.success, f"{name} under {transform}: {score.reason}"
