"""Attempts and their candidates read back from their JSON records (what an eval result row
stores): ``from_dict(to_dict())`` keeps every key and value, for every strategy's records."""

import json

import pytest

from gen_reason.errors import UserError

from gen_reason.runs.store import ResultRow
from gen_reason.solvers import get_solver
from gen_reason.solvers.attempt import Attempt, Candidate


@pytest.mark.parametrize("name,params", [("single", {}), ("best-of-n", {"n": 3}), ("visual-tts", {})])
def test_an_attempt_round_trips_through_its_record(name, params, maze, make_generator, make_verifier):
    generator = make_generator()
    verifier = make_verifier(generator)
    attempt = get_solver(name, seed=2, **params).solve(maze, generator, verifier, reference=verifier)
    record = json.loads(json.dumps(attempt.to_dict()))  # as it is stored
    back = Attempt.from_dict(record)
    assert back.video is None and all(c.video is None for c in back.candidates)
    assert back.to_dict() == record
    assert back.success == attempt.success and back.chosen == attempt.chosen
    assert back.compute.to_dict() == attempt.compute.to_dict() and back.budget == attempt.budget
    assert [c.frames for c in back.candidates] == [int(c.video.shape[0]) for c in attempt.candidates]
    assert Candidate.from_dict(record["candidates"][0]).to_dict() == record["candidates"][0]


def test_a_result_row_gives_its_attempt(maze, make_generator, make_verifier):
    generator = make_generator()
    verifier = make_verifier(generator)
    attempt = get_solver("best-of-n", n=2, seed=0).solve(maze, generator, verifier, reference=verifier)
    row = ResultRow(key="k", order=[0], task=maze.task, difficulty=maze.difficulty, seed=maze.seed, uid=maze.uid,
                    solver="best-of-n", model="fake", success=attempt.success, metrics={}, reason="",
                    attempt=json.loads(json.dumps(attempt.to_dict())), reference_trace={}, seconds=0.0)
    assert row.attempt_record.to_dict() == row.attempt
    assert ResultRow.from_dict(row.to_dict()).attempt_record.chosen == attempt.chosen


def test_a_compute_record_with_an_unknown_key_is_one_line():
    from gen_reason.solvers.budget import Compute

    assert Compute.from_dict({"nfe": 4, "clips": 1}) == Compute(nfe=4, clips=1) and Compute.from_dict(None) == Compute()
    with pytest.raises(UserError, match=r"^compute record has unknown key\(s\) gpus$"):
        Compute.from_dict({"nfe": 4, "gpus": 2})


def test_a_numpy_nan_in_a_record_is_none_like_a_python_nan():
    """A run's result log refuses NaN (not JSON): numpy's NaN must not slip past plain_record."""
    import numpy as np

    from gen_reason.solvers.attempt import plain_record

    record = plain_record({"a": np.float64("nan"), "b": float("inf"), "c": np.float32(0.5), "d": (np.int64(2),)})
    assert record == {"a": None, "b": None, "c": 0.5, "d": [2]}
    json.dumps(record, allow_nan=False)
    assert plain_record({"x": np.array([[1.0, np.nan]])}) == {"x": [[1.0, None]]}  # the probe summary's arrays
