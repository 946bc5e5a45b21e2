"""The step probe on tiny random pipelines, and the emergence / exploration summaries on hand-built scores.

Fixtures (tiny generators, a 16 px maze): tests/probe/conftest.py.
"""

import dataclasses
import math

import numpy as np
import pytest
import torch

from gen_reason.errors import UserError
from gen_reason.probe.layers import LayerRecorder
from gen_reason.probe.steps import (
    StepProbe,
    StepProbeResult,
    chain_hooks,
    decode_steps,
    emergence,
    exploration,
    path_similarity,
    recorded_step,
    run_step_probe,
)
from gen_reason.verifiers.score import Score

KINDS = ["wan2.1-i2v", "cogvideox-i2v", "ltx-i2v", "embedded"]
PROMPT = "a red dot moves to the green goal"


@pytest.mark.parametrize("kind", KINDS)
def test_last_step_x0_decodes_to_the_final_output(tiny_generator, frame_for, kind):
    generator = tiny_generator(kind)
    image = frame_for(kind)
    probe = StepProbe(every=1)
    finals = generator.generate(image, PROMPT, seeds=[1, 2], on_step=probe)
    assert probe.recorded_steps == list(range(probe.num_steps))
    first_frames = [video[0] for video in finals] if kind == "embedded" else None  # the embedded pipeline pins frame 0
    videos = decode_steps(generator, probe, image.shape[:2], first_frames=first_frames)
    last = probe.num_steps - 1
    for sample, final in enumerate(finals):
        decoded = videos[sample][last]
        assert decoded.shape == final.shape and decoded.dtype == np.uint8
        assert np.abs(decoded.astype(int) - final.astype(int)).max() <= 1


@pytest.mark.parametrize("kind", KINDS)
def test_probing_leaves_generation_bit_identical(tiny_generator, frame_for, kind):
    generator = tiny_generator(kind)
    image = frame_for(kind)
    plain = generator.generate(image, PROMPT, seeds=[3, 4])
    with LayerRecorder(generator, "all", every=1) as recorder:
        probed = generator.generate(image, PROMPT, seeds=[3, 4], on_step=chain_hooks(StepProbe(every=1), recorder))
    after = generator.generate(image, PROMPT, seeds=[3, 4])
    for a, b, c in zip(plain, probed, after):
        assert np.array_equal(a, b) and np.array_equal(a, c)
    assert all(recorder.features[name] for name in recorder.layers)


def test_probe_keeps_every_kth_step_and_the_last(tiny_generator):
    generator = tiny_generator("embedded")
    image = np.full((16, 16, 3), 255, np.uint8)
    probe = StepProbe(every=3)
    generator.generate(image, PROMPT, seeds=[0], steps=7, on_step=probe)
    assert probe.recorded_steps == [0, 3, 6]
    probe = StepProbe(steps=[1])
    generator.generate(image, PROMPT, seeds=[0], steps=5, on_step=probe)
    assert probe.recorded_steps == [1, 4]
    assert recorded_step(4, 5, every=2) and not recorded_step(3, 5, every=2)


def test_samples_are_numbered_across_batches(tiny_generator):
    generator = tiny_generator("embedded")
    probe = StepProbe(every=2)
    old = generator.max_batch
    generator.max_batch = 2
    try:
        generator.generate(np.zeros((16, 16, 3), np.uint8), PROMPT, seeds=[5, 6, 7], on_step=probe)
    finally:
        generator.max_batch = old
    assert probe.seeds == [5, 6, 7] and len(probe.x0) == 3
    assert all(set(by_step) == {0, 2, 3} for by_step in probe.x0)


def test_run_step_probe_scores_every_kept_step(tiny_generator, tiny_maze):
    generator = tiny_generator("embedded")
    instance = tiny_maze(1)
    result = run_step_probe(generator, instance, seeds=[0, 1], every=2)
    assert result.steps == [0, 2, 3] and result.num_steps == 4
    assert len(result.final_scores) == 2 and all(set(s) == {0, 2, 3} for s in result.step_scores)
    # The last step's video is the final video, so the referee agrees with itself.
    for sample in range(2):
        assert np.array_equal(result.step_videos[sample][3], result.final_videos[sample])
        assert result.step_scores[sample][3].metrics == result.final_scores[sample].metrics
    rows = result.rows()
    assert len(rows) == 6 and {"instance", "seed", "step", "sigma", "metrics", "node_path"} <= set(rows[0])


def test_bad_every_is_a_user_error():
    with pytest.raises(UserError, match="every must be at least 1"):
        StepProbe(every=0)


@dataclasses.dataclass
class FakeState:
    latents: torch.Tensor


def test_chain_hooks_passes_replacements_on():
    seen = []

    def replace(state):
        return state.latents + 1

    def watch(state):
        seen.append(float(state.latents))

    hook = chain_hooks(None, replace, watch)
    out = hook(FakeState(torch.zeros(1)))
    assert float(out) == 1.0 and seen == [1.0]
    assert chain_hooks(watch)(FakeState(torch.zeros(1))) is None


# -- emergence and exploration on hand-built scores ----------------------------------------
class FakeInstance:
    uid = "fake"
    task = "maze"
    spec = {"goal": 9}
    solution = {"path": [0, 1, 9]}


def score(path, success=False, pr=0.0):
    return Score(success=success, metrics={"success": float(success), "precision_rate": pr},
                 trace={"node_path": list(path)})


def fake_result(paths_by_seed, final_paths, steps=(0, 2, 4, 6), num_steps=8):
    """``paths_by_seed[i][k]``: sample i's node path at steps[k]."""
    step_scores = [{step: score(p, success=p == [0, 1, 9], pr=len(p) / 3) for step, p in zip(steps, paths)}
                   for paths in paths_by_seed]
    finals = [score(p, success=p == [0, 1, 9], pr=len(p) / 3) for p in final_paths]
    return StepProbeResult(instance=FakeInstance(), seeds=list(range(len(final_paths))), steps=list(steps),
                           num_steps=num_steps, sigmas={s: 1 - s / 8 for s in steps}, final_videos=[],
                           final_scores=finals, step_videos=[], step_scores=step_scores)


def test_emergence_finds_the_commit_step():
    # Seed 0 wanders, then settles on the solution at step 4; seed 1 knows it from step 0;
    # seed 2 changes its mind at the very end.
    result = fake_result(
        [[[0], [0, 2], [0, 1, 9], [0, 1, 9]],
         [[0, 1, 9]] * 4,
         [[0, 1, 9], [0, 1, 9], [0, 1, 9], [0, 2]]],
        [[0, 1, 9], [0, 1, 9], [0, 2]],
    )
    curve = emergence([result])
    assert curve["steps"] == [0, 2, 4, 6]
    assert curve["commit_steps"] == [4, 0, 6]
    assert curve["mean_commit_step"] == pytest.approx(10 / 3)
    assert curve["mean_commit_fraction"] == pytest.approx(10 / 3 / 7)
    assert curve["final_agreement"] == pytest.approx([1 / 3, 1 / 3, 2 / 3, 1.0])
    assert curve["metrics"]["success"] == pytest.approx([2 / 3, 2 / 3, 1.0, 2 / 3])
    assert curve["distinct_paths"] == [2, 2, 1, 2]
    # Step 0: seed 0 [0] vs [0, 1, 9] -> 1/3; seed 1 equal -> 1; seed 2 [0, 1, 9] vs [0, 2] -> 1/3.
    assert curve["final_similarity"][0] == pytest.approx((1 / 3 + 1 + 1 / 3) / 3)
    assert "exact_match" not in curve["metrics"]  # the referee did not report it


def test_path_similarity():
    assert path_similarity([0, 1, 2], [0, 1, 2]) == 1.0
    assert path_similarity([], []) == 1.0 and path_similarity([0], []) == 0.0
    assert path_similarity([0, 1, 2, 3], [0, 1, 3]) == pytest.approx(0.75)  # one deletion over 4
    assert path_similarity([0, 5, 2], [0, 1, 2]) == pytest.approx(2 / 3)  # one substitution


def test_exploration_counts_distinct_early_candidates():
    result = fake_result(
        [[[0, 2], [0, 1], [0, 1, 9], [0, 1, 9]],
         [[0], [0, 2], [0, 1, 9], [0, 1, 9]]],
        [[0, 1, 9], [0, 1, 9]],
    )
    explored = exploration([result], early_fraction=0.5)  # early steps: 0 and 2
    item = explored["instances"][0]
    assert item["early_steps"] == [0, 2]
    assert item["distinct_candidates"] == 2  # [0, 2] and [0, 1]; standing still is no candidate
    assert item["candidates_reaching_goal"] == 0 and not item["solution_among_candidates"]
    assert item["distinct_final_paths"] == 1
    assert item["top_candidates"][0] == {"path": [0, 2], "count": 2}
    assert explored["mean_distinct_candidates_per_seed"] == pytest.approx(1.5)
    late = exploration([result], early_fraction=1.0)["instances"][0]
    assert late["solution_among_candidates"] and late["candidates_reaching_goal"] == 1


def test_emergence_refuses_mismatched_steps():
    a = fake_result([[[0]] * 4], [[0]])
    b = fake_result([[[0]] * 2], [[0]], steps=(0, 4))
    with pytest.raises(UserError, match="different steps"):
        emergence([a, b])
    assert math.isnan(exploration([])["mean_distinct_candidates"])


@pytest.mark.parametrize("kind", KINDS)
def test_decode_scale_below_one_gives_the_full_size_video(tiny_generator, frame_for, kind):
    # Shrunk latents decode to a smaller working video, brought back to the working size before
    # the family fits it to the image (the embedded model crops its padding: it used to fail here).
    generator = tiny_generator(kind)
    image = frame_for(kind)
    probe = StepProbe(every=1)
    finals = generator.generate(image, PROMPT, seeds=[1], on_step=probe)
    first_frames = [finals[0][0]] if kind == "embedded" else None
    last = probe.num_steps - 1
    full = decode_steps(generator, probe, image.shape[:2], first_frames=first_frames)[0][last]
    half = decode_steps(generator, probe, image.shape[:2], first_frames=first_frames, decode_scale=0.5)[0][last]
    assert half.shape == full.shape == finals[0].shape and half.dtype == np.uint8
    # the same picture, with less detail: nearer the full decode than the full decode mirrored
    error = np.abs(half.astype(float) - full).mean()
    assert error < np.abs(full[:, ::-1, ::-1].astype(float) - full).mean(), error
