"""Strategies judged by the real maze referee (rule verifier steering, reference recording)."""

import pytest

from gen_reason.solvers import get_solver
from gen_reason.solvers.closed_loop import first_violation_frame

maze_verifiers = pytest.importorskip("gen_reason.verifiers.maze")


def test_closed_loop_rolls_back_on_the_referees_first_violation(maze, make_generator):
    generator = make_generator(gt_frames=25, num_frames=9, bad_at=5)
    rule, reference = maze_verifiers.MazeRuleVerifier(), maze_verifiers.MazeReferenceVerifier()
    attempt = get_solver("closed-loop", max_steps=6, seed=1).solve(maze, generator, rule, reference=reference)
    rejected = attempt.candidates[0]
    assert not rejected.meta["accepted"]
    assert first_violation_frame(rejected.score) == 5 and rejected.meta["last_good"] == 4
    assert attempt.meta["stopped"] == "done" and attempt.success
    assert attempt.reference.metrics["exact_match"] == 1.0


def test_best_of_n_pass_at_k_by_the_reference_metric(maze, make_generator):
    generator = make_generator(gt_frames=9, num_frames=9)
    rule, reference = maze_verifiers.MazeRuleVerifier(), maze_verifiers.MazeReferenceVerifier()
    attempt = get_solver("best-of-n", n=4, seed=1).solve(maze, generator, rule, reference=reference)
    good = [generator.is_good(seed) for seed in (1, 2, 3, 4)]
    assert attempt.meta["rule_successes"] == good == attempt.meta["reference_successes"]
    assert attempt.meta["pass_at_k"][1] == pytest.approx(sum(good) / 4)
    assert attempt.success and attempt.candidates[attempt.chosen].seed == 3
