"""single, best-of-n and latent-ensemble end to end on a tiny random Wan 2.1 pipeline.

The pipeline (a few thousand random weights, built in-process) makes noise, so a fixed
toy verifier judges the videos; what is tested is the plumbing: batching, compute
accounting with classifier-free guidance, the latent hook, and bit-exact determinism.
"""

import numpy as np
import pytest

pytest.importorskip("diffusers")

from gen_reason.solvers import Budget, get_solver  # noqa: E402
from gen_reason.verifiers.score import Score  # noqa: E402

STEPS = 2


class BrightnessVerifier:
    """A toy rule verifier: success when the last frame is brighter than the first."""

    def score(self, instance, video) -> Score:
        gain = float(video[-1].mean()) - float(video[0].mean())
        return Score(success=gain > 0, metrics={"gain": gain})


@pytest.fixture(scope="module")
def wan():
    from gen_reason.models import testing
    from gen_reason.models.diffusers_backend import DiffusersVideoGenerator
    from gen_reason.models.families import family_for

    pipeline = testing.build_tiny_pipeline("wan2.1-i2v")
    family = family_for(type(pipeline).__name__, type(pipeline), {})
    generator = DiffusersVideoGenerator(pipeline, family, name="tiny-wan", **testing.TINY_GEOMETRY["wan2.1-i2v"])
    calls = []
    original = pipeline.__class__.__call__

    def counting(self, *args, **kwargs):
        calls.append(len(kwargs["prompt"]))
        return original(self, *args, **kwargs)

    pipeline.__class__ = type("CountingPipeline", (pipeline.__class__,), {"__call__": counting})
    generator.pipeline_calls = calls
    return generator


def test_single_on_a_real_pipeline(wan, maze):
    attempt = get_solver("single", seed=5, steps=STEPS).solve(maze, wan, BrightnessVerifier())
    assert attempt.video.shape == (9, *maze.first_frame.shape)
    # Wan's default guidance is 5: every step runs the conditional and unconditional passes.
    assert attempt.compute.nfe == STEPS * 2 and attempt.compute.frames == 9
    again = get_solver("single", seed=5, steps=STEPS).solve(maze, wan, BrightnessVerifier())
    assert np.array_equal(attempt.video, again.video) and attempt.score == again.score


def test_best_of_n_is_one_batched_call_within_budget(wan, maze):
    verifier = BrightnessVerifier()
    wan.pipeline_calls.clear()
    attempt = get_solver("best-of-n", n=3, seed=0, steps=STEPS).solve(maze, wan, verifier)
    assert wan.pipeline_calls == [3]
    assert [c.seed for c in attempt.candidates] == [0, 1, 2]
    assert not np.array_equal(attempt.candidates[0].video, attempt.candidates[1].video)
    single = get_solver("single", seed=1, steps=STEPS).solve(maze, wan, verifier)
    assert np.array_equal(single.video, attempt.candidates[1].video)  # a seed's video ignores its batch mates
    gains = [c.score.metrics["gain"] for c in attempt.candidates]
    best = max(range(3), key=lambda i: (gains[i] > 0, -i))
    assert attempt.chosen == best
    limited = get_solver("best-of-n", n=3, seed=0, steps=STEPS).solve(maze, wan, verifier, Budget(max_nfe=9))
    assert len(limited.candidates) == 2 and limited.compute.nfe == 8


def test_latent_ensemble_on_a_real_pipeline(wan, maze):
    verifier = BrightnessVerifier()
    single = get_solver("single", seed=4, steps=STEPS).solve(maze, wan, verifier)
    one = get_solver("latent-ensemble", num_seeds=1, seed=4, steps=STEPS).solve(maze, wan, verifier)
    assert np.array_equal(single.video, one.video)  # one seed: bit-exactly single

    wan.pipeline_calls.clear()
    ensemble = get_solver("latent-ensemble", num_seeds=3, seed=4, steps=STEPS, window_end=1).solve(
        maze, wan, verifier
    )
    assert wan.pipeline_calls == [3, 3]  # the merged batch, then the unmerged baseline
    assert ensemble.meta["merged_steps"] == [0]
    members = [c.video for c in ensemble.candidates if c.meta["role"] == "ensemble"]
    for member in members[1:]:  # merged latents continue as one
        assert np.array_equal(member, members[0])
    baseline = [c for c in ensemble.candidates if c.meta["role"] == "baseline"]
    assert np.array_equal(baseline[0].video, single.video)  # each seed's own outcome, recorded
    assert ensemble.compute.nfe == 3 * STEPS * 2 and ensemble.diagnostic_compute.nfe == 3 * STEPS * 2

    renoised = get_solver("latent-ensemble", num_seeds=2, seed=4, steps=STEPS, window_end=1, merge="mean-renoise",
                          after_window="all", baseline=False)
    first, second = renoised.solve(maze, wan, verifier), renoised.solve(maze, wan, verifier)
    assert np.array_equal(first.video, second.video)
    assert not np.array_equal(first.candidates[0].video, first.candidates[1].video)
