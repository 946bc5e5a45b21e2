"""Typed results: Score, Trace and Violation are dataclasses whose records keep the keys
every verifier wrote, for every task and both verifier kinds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gen_reason.puzzles import TASKS, get_task
from gen_reason.verifiers.registry import verifier_for
from gen_reason.verifiers.score import Score, Trace, Violation


def cases(name):
    instance = get_task(name).generate(3, get_task(name).difficulties[0])
    truth = instance.solution_video()
    stuck = np.repeat(truth[:1], len(truth), axis=0)  # a failed video: a trace with a violation
    return instance, (truth, stuck)


@pytest.mark.parametrize("kind", ["rule", "reference"])
@pytest.mark.parametrize("name", TASKS.names())
def test_records_round_trip_with_their_keys(name, kind):
    instance, videos = cases(name)
    for video in videos:
        score = verifier_for(name, kind).score(instance, video)
        assert isinstance(score.trace, Trace)
        record = json.loads(json.dumps(score.to_dict()))
        again = Score.from_dict(record)
        assert again.to_dict() == record  # same keys and values after a trip through JSON
        assert set(again.trace) == set(record["trace"])
        if record["trace"].get("first_violation"):
            assert isinstance(score.trace.first_violation, Violation)
            assert score.trace.first_violation.rule == record["trace"]["first_violation"]["rule"]


def test_trace_reads_like_its_record_and_types_its_tracks():
    trace = Trace.from_dict({"agent_positions": [[1.0, 2.0], None], "first_violation": None, "violations": [],
                             "node_path": [0, 1]})
    assert trace.agent_positions == [[1.0, 2.0], None] and trace.first_violation is None
    assert trace["node_path"] == [0, 1] and trace.get("box_positions") is None and "violations" in trace
    assert trace.to_dict() == {"first_violation": None, "agent_positions": [[1.0, 2.0], None], "violations": [],
                               "node_path": [0, 1]}
    violation = Violation.from_dict({"rule": "wall", "frame": 3, "message": "red on a wall"})
    assert violation.extra == {"message": "red on a wall"} and violation.to_dict()["message"] == "red on a wall"
