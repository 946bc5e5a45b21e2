"""Contract sweep over every registered solver (plugins included), on the embedded model.

Every solver, with its default options, must stay inside the budget it is given and
give the same attempt twice for the same seed. Solvers that need a VLM get one that
answers nonsense: they must record the failures and still return an attempt.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP threads spin on a busy CPU

import numpy as np
import pytest

from gen_reason.models.loading import EMBEDDED_DIR, load_generator, model_task_defaults, task_for_model
from gen_reason.solvers import Budget, get_solver
from gen_reason.solvers.registry import SOLVERS
from gen_reason.verifiers.registry import verifier_for
from gen_reason.vlm.testing import ScriptedVLM

BUDGET = Budget(max_nfe=24, max_clips=4, max_vlm_calls=3)


@pytest.fixture(scope="module")
def generator():
    return load_generator("embedded", steps=4)


@pytest.fixture(scope="module")
def instance():
    return task_for_model(model_task_defaults(EMBEDDED_DIR), "maze", "3x3").generate(11, "3x3")


def record(attempt) -> dict:
    """An attempt's record without wall-clock seconds."""
    data = attempt.to_dict()
    data["compute"].pop("seconds", None)
    data.get("diagnostic_compute", {}).pop("seconds", None)
    return data


@pytest.mark.parametrize("name", SOLVERS.names())
def test_solver_stays_in_budget_and_repeats_for_a_seed(name, generator, instance):
    verifier = verifier_for(instance.task, "rule")
    runs = []
    for _ in range(2):
        vlm = ScriptedVLM(["not an answer"] * 10)
        solver = get_solver(name, seed=5, vlm=vlm)
        attempt = solver.solve(instance, generator, verifier, BUDGET)
        spent = attempt.compute
        assert spent.nfe <= BUDGET.max_nfe and spent.clips <= BUDGET.max_clips
        assert spent.vlm_calls <= BUDGET.max_vlm_calls and vlm.calls == spent.vlm_calls
        assert attempt.video.dtype == np.uint8 and attempt.video.ndim == 4
        runs.append(attempt)
    assert record(runs[0]) == record(runs[1])
    assert np.array_equal(runs[0].video, runs[1].video)
