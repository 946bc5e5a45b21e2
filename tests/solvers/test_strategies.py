"""Every strategy's logic on the fake generator and fake rule verifier (see conftest.py)."""

import json

import numpy as np
import pytest

from gen_reason.errors import UserError
from gen_reason.solvers import Budget, get_solver
from gen_reason.solvers.closed_loop import first_violation_frame, rule_verdict
from gen_reason.solvers.visual_tts import fixed_frame_count, join_clips
from gen_reason.verifiers.score import Score
from gen_reason.vlm.testing import ScriptedVLM

NOT_JSON = "I think the second one looks best, honestly."


# -- single ---------------------------------------------------------------------------------------
def test_single_counts_compute_and_is_deterministic(maze, make_generator, make_verifier, same_record):
    generator = make_generator(steps=5, guidance=4.0)
    verifier = make_verifier(generator)
    attempt = get_solver("single", seed=3).solve(maze, generator, verifier)
    assert len(attempt.candidates) == 1 and attempt.chosen == 0
    assert attempt.success == generator.is_good(3)
    assert attempt.compute.nfe == 5 * 2  # guidance > 1: two passes per step
    assert (attempt.compute.clips, attempt.compute.frames) == (1, 9)
    again = get_solver("single", seed=3).solve(maze, generator, verifier)
    same_record(attempt, again)


def test_single_refuses_a_budget_below_one_sample(maze, make_generator, make_verifier):
    generator = make_generator(steps=4)
    with pytest.raises(UserError, match="budget"):
        get_solver("single").solve(maze, generator, make_verifier(generator), Budget(max_nfe=3))
    assert generator.calls == []


# -- best-of-n ------------------------------------------------------------------------------------
def test_best_of_n_batches_and_chooses_by_the_rule_verifier(maze, make_generator, make_verifier):
    generator = make_generator()
    verifier = make_verifier(generator)
    attempt = get_solver("best-of-n", n=4, seed=1).solve(maze, generator, verifier, reference=verifier)
    assert len(generator.calls) == 1 and generator.calls[0]["seeds"] == [1, 2, 3, 4]
    assert [c.seed for c in attempt.candidates] == [1, 2, 3, 4]
    assert [c.score.success for c in attempt.candidates] == [generator.is_good(s) for s in (1, 2, 3, 4)]
    assert attempt.candidates[attempt.chosen].seed == 3  # the first good seed
    assert attempt.success
    assert attempt.compute.nfe == 4 * 4 and attempt.compute.clips == 4
    assert attempt.meta["pass_at_k"] == pytest.approx({1: 0.5, 2: 5 / 6, 3: 1.0, 4: 1.0})


def test_best_of_n_stops_before_passing_the_budget(maze, make_generator, make_verifier):
    generator = make_generator(steps=4)
    attempt = get_solver("best-of-n", n=8).solve(maze, generator, make_verifier(generator), Budget(max_nfe=13))
    assert len(attempt.candidates) == 3 and attempt.compute.nfe == 12
    assert attempt.meta["budget_limited"]
    clipped = get_solver("best-of-n", n=8).solve(maze, generator, make_verifier(generator), Budget(max_clips=2))
    assert len(clipped.candidates) == 2


def test_best_of_n_is_deterministic(maze, make_generator, make_verifier, same_record):
    generator = make_generator()
    verifier = make_verifier(generator)
    first = get_solver("best-of-n", n=5, seed=7).solve(maze, generator, verifier)
    second = get_solver("best-of-n", n=5, seed=7).solve(maze, generator, verifier)
    same_record(first, second)


def test_vlm_selector_picks_what_the_vlm_says(maze, make_generator, make_verifier):
    generator = make_generator()
    vlm = ScriptedVLM(['Sure. ```json\n{"best": 1, "reason": "cleanest"}\n```'])
    attempt = get_solver("best-of-n", n=3, selector="vlm", vlm=vlm).solve(maze, generator, make_verifier(generator))
    assert attempt.chosen == 1 and attempt.meta["vlm_choice"] == 1
    assert attempt.compute.vlm_calls == 1 and attempt.compute.vlm_tokens > 0
    shown = [part["type"] for part in vlm.messages[0][0]["content"]]
    assert shown.count("image") == 3  # every candidate, as a filmstrip


def test_vlm_selector_failure_is_retried_then_recorded(maze, make_generator, make_verifier):
    generator = make_generator()
    verifier = make_verifier(generator)
    vlm = ScriptedVLM([NOT_JSON, '{"best": 7}', '{"choice": 0}'])
    attempt = get_solver("best-of-n", n=4, seed=1, selector="vlm", vlm=vlm).solve(maze, generator, verifier)
    assert vlm.calls == 3 and attempt.compute.vlm_calls == 3
    (failure,) = attempt.meta["vlm_failures"]
    assert failure["purpose"] == "selector" and len(failure["raw_answers"]) == 3
    assert attempt.meta["vlm_choice"] is None
    assert attempt.chosen == attempt.meta["rule_choice"]  # the rule verifier's choice stands


def test_vlm_calls_respect_the_budget(maze, make_generator, make_verifier):
    generator = make_generator()
    vlm = ScriptedVLM([])
    attempt = get_solver("best-of-n", n=2, selector="vlm", vlm=vlm).solve(
        maze, generator, make_verifier(generator), Budget(max_vlm_calls=2)
    )
    assert vlm.calls == 0 and "budget" in attempt.meta["vlm_failures"][0]["reason"]


# -- latent ensemble ------------------------------------------------------------------------------
def test_ensemble_of_one_seed_is_single(maze, make_generator, make_verifier):
    generator = make_generator()
    verifier = make_verifier(generator)
    for seed in (0, 1):
        single = get_solver("single", seed=seed).solve(maze, generator, verifier)
        ensemble = get_solver("latent-ensemble", num_seeds=1, seed=seed).solve(maze, generator, verifier)
        assert np.array_equal(single.video, ensemble.video)
        assert single.score == ensemble.score
        assert single.compute.nfe == ensemble.compute.nfe


def test_ensemble_merges_inside_the_window_and_records_each_seed(maze, make_generator, make_verifier):
    generator = make_generator(steps=6)
    verifier = make_verifier(generator)
    seeds = [3, 4, 5, 6]
    expected = float(np.mean([generator.initial_latents(s).mean() for s in seeds])) > 0
    attempt = get_solver("latent-ensemble", num_seeds=4, seed=3, window_end=2).solve(
        maze, generator, verifier, reference=verifier
    )
    assert attempt.meta["merged_steps"] == [0, 1] and attempt.meta["window"] == [0, 2]
    members = [c for c in attempt.candidates if c.meta["role"] == "ensemble"]
    assert len(members) == 4 and all(np.array_equal(m.video, members[0].video) for m in members)
    assert attempt.success == expected
    assert attempt.meta["ensemble"]["success"] == expected
    per_seed = attempt.meta["per_seed"]
    assert [(o["seed"], o["success"]) for o in per_seed] == [(s, generator.is_good(s)) for s in seeds]
    assert attempt.compute.nfe == 4 * 6 and attempt.diagnostic_compute.nfe == 4 * 6
    assert len(generator.calls) == 2


def test_ensemble_baseline_waits_for_budget_and_can_be_off(maze, make_generator, make_verifier):
    generator = make_generator(steps=4)
    verifier = make_verifier(generator)
    tight = get_solver("latent-ensemble", num_seeds=2).solve(maze, generator, verifier, Budget(max_nfe=8))
    assert tight.meta["baseline"].startswith("skipped") and "per_seed" not in tight.meta
    assert tight.diagnostic_compute.nfe == 0
    off = get_solver("latent-ensemble", num_seeds=2, baseline=False).solve(maze, generator, verifier)
    assert "per_seed" not in off.meta and "baseline" not in off.meta
    assert [c.meta["role"] for c in off.candidates] == ["ensemble", "ensemble"]


def test_ensemble_mean_renoise_is_deterministic_and_diverges(maze, make_generator, make_verifier, same_record):
    generator = make_generator(steps=6)
    verifier = make_verifier(generator)
    seen = []

    def spy(original):
        def generate(*args, **kwargs):
            hook = kwargs.get("on_step")
            if hook is not None:
                def recording(state):
                    replaced = hook(state)
                    if replaced is not None:
                        seen.append(replaced.clone())
                    return replaced
                kwargs["on_step"] = recording
            return original(*args, **kwargs)
        return generate

    generator.generate = spy(generator.generate)
    solver = get_solver("latent-ensemble", num_seeds=3, merge="mean-renoise", window_end=3, after_window="all")
    first = solver.solve(maze, generator, verifier)
    assert len(seen) == 3
    assert not np.allclose(seen[0][0].numpy(), seen[0][1].numpy())  # fresh noise per seed
    # The noise level comes back: the spread around the mean is sigma * sqrt(1 - 1/K) per seed.
    same_record(first, solver.solve(maze, generator, verifier))


def test_ensemble_refuses_a_split_batch(maze, make_generator, make_verifier):
    generator = make_generator(max_batch=2)
    with pytest.raises(UserError, match="max_batch"):
        get_solver("latent-ensemble", num_seeds=3).solve(maze, generator, make_verifier(generator))


# -- visual test-time scaling ---------------------------------------------------------------------
def test_visual_tts_asks_for_each_length(maze, make_generator, make_verifier):
    generator = make_generator(gt_frames=17)
    verifier = make_verifier(generator)
    attempt = get_solver("visual-tts", frame_counts=[5, 9, 17], seed=0).solve(maze, generator, verifier)
    assert [call["num_frames"] for call in generator.calls] == [5, 9, 17]
    curve = attempt.meta["curve"]
    assert [point["frames"] for point in curve] == [5, 9, 17]
    assert [point["success"] for point in curve] == [False, False, True]  # only 17 frames reach the goal
    assert attempt.candidates[attempt.chosen].meta["frames_requested"] == 17
    assert attempt.compute.frames == 5 + 9 + 17 and not attempt.meta["chained"]


def test_visual_tts_budget_ends_the_curve(maze, make_generator, make_verifier):
    generator = make_generator(gt_frames=17, steps=4)
    attempt = get_solver("visual-tts", frame_counts=[5, 9, 17]).solve(
        maze, generator, make_verifier(generator), Budget(max_nfe=8)
    )
    assert len(attempt.meta["curve"]) == 2 and attempt.meta["stopped"].startswith("budget")
    assert attempt.compute.nfe == 8


def test_visual_tts_chains_clips_for_a_fixed_length_generator(maze, make_generator, make_verifier):
    generator = make_generator(gt_frames=25, fixed_num_frames=9, num_frames=9)
    verifier = make_verifier(generator)
    assert fixed_frame_count(generator) == 9
    attempt = get_solver("visual-tts", frame_counts=[9, 17, 25], seed=3).solve(maze, generator, verifier)
    assert attempt.meta["chained"]
    assert [p["clips"] for p in attempt.meta["curve"]] == [1, 2, 3]
    assert [p["frames"] for p in attempt.meta["curve"]] == [9, 17, 25]
    assert [p["nfe"] for p in attempt.meta["curve"]] == [4, 8, 12]
    # Clips are made once (seeds 3, 4, 5, all good): three calls, each from the last frame before.
    assert len(generator.calls) == 3 and attempt.compute.nfe == 12
    assert np.array_equal(generator.calls[1]["image"], generator.gt[8])
    assert np.array_equal(generator.calls[2]["image"], generator.gt[16])
    assert attempt.success and np.array_equal(attempt.video, generator.gt)


def test_join_clips_drops_the_repeated_frame():
    clips = [np.full((3, 2, 2, 3), i, np.uint8) for i in range(3)]
    assert join_clips(clips).shape[0] == 7


# -- videotpo -------------------------------------------------------------------------------------
CRITIQUE = json.dumps({"candidates": [{"strengths": "moves", "weaknesses": "crosses a wall"},
                                      {"strengths": "stays on path", "weaknesses": "stops early"}]})


def test_videotpo_rewrites_the_prompt_between_rounds(maze, make_generator, make_verifier):
    generator = make_generator()
    verifier = make_verifier(generator)
    vlm = ScriptedVLM([CRITIQUE, '{"prompt": "Move the red circle along the white corridor to the goal."}'])
    # seeds 1, 2 are bad; the second round's seeds 3, 4 are good.
    attempt = get_solver("videotpo", rounds=3, seed=1, vlm=vlm).solve(maze, generator, verifier)
    assert [call["seeds"] for call in generator.calls] == [[1, 2], [3, 4]]
    assert generator.calls[1]["prompt"].startswith("Move the red circle")
    assert attempt.meta["stopped"] == "success" and attempt.success
    assert attempt.meta["rounds"][0]["critique"][0]["weaknesses"] == "crosses a wall"
    assert attempt.compute.vlm_calls == 2 and len(attempt.candidates) == 4
    assert attempt.candidates[attempt.chosen].seed == 3


def test_videotpo_malformed_critique_is_retried_then_recorded(maze, make_generator, make_verifier):
    generator = make_generator()
    vlm = ScriptedVLM([NOT_JSON, '{"candidates": [{"strengths": "x"}]}', NOT_JSON])
    attempt = get_solver("videotpo", rounds=3, seed=1, vlm=vlm).solve(maze, generator, make_verifier(generator))
    assert vlm.calls == 3 and attempt.meta["stopped"] == "vlm failure"
    assert attempt.meta["vlm_failures"][0]["purpose"] == "prompt critic"
    assert len(generator.calls) == 1 and len(attempt.candidates) == 2


def test_videotpo_respects_the_nfe_budget(maze, make_generator, make_verifier):
    generator = make_generator(steps=4)
    vlm = ScriptedVLM([CRITIQUE, '{"prompt": "p2"}', CRITIQUE, '{"prompt": "p3"}'])
    attempt = get_solver("videotpo", rounds=3, seed=1, vlm=vlm, stop_on_success=False).solve(
        maze, generator, make_verifier(generator), Budget(max_nfe=16)
    )
    assert attempt.compute.nfe == 16 and len(attempt.meta["rounds"]) == 2
    assert attempt.meta["stopped"].startswith("budget")


# -- closed loop ----------------------------------------------------------------------------------
def test_rule_verdict_maps_the_violation_into_the_clip():
    broken = Score(False, trace={"first_violation": {"rule": "wall_crossing", "frame": 12}}, reason="wall at 12")
    verdict = rule_verdict(broken, joined_length=9, clip_length=9)  # clip frame i is video frame 8 + i
    assert not verdict.accepted and verdict.last_good == 3 and "wall" in verdict.suggestion
    assert rule_verdict(Score(False, trace={"first_violation": None}), 9, 9).accepted
    assert first_violation_frame(Score(False, trace={"violation_frame": 4})) == 4
    assert rule_verdict(broken, joined_length=20, clip_length=9).last_good == 0


def test_closed_loop_default_needs_no_vlm_and_joins_clips(maze, make_generator, make_verifier):
    generator = make_generator(gt_frames=25, num_frames=9)
    verifier = make_verifier(generator)
    good = generator.good_seeds(30)
    attempt = get_solver("closed-loop", max_steps=5, attempts_per_step=3, seed=good[0]).solve(maze, generator, verifier)
    assert attempt.meta["stopped"] == "done" and attempt.success
    path = [generator.gt_index(frame) for frame in attempt.video]
    assert path[0] == 0 and path == sorted(path) and path[-1] == generator.gt_index(generator.gt[-1])
    roles = [c.meta["role"] for c in attempt.candidates]
    assert roles[-1] == "joined" and attempt.chosen == len(roles) - 1
    # each clip starts from the last accepted frame
    starts = [generator.gt_index(call["image"]) for call in generator.calls]
    assert starts[0] == 0 and all(b >= a for a, b in zip(starts, starts[1:]))


def test_closed_loop_rolls_back_to_the_last_legal_frame(maze, make_generator, make_verifier):
    generator = make_generator(gt_frames=25, num_frames=9, bad_at=5)
    verifier = make_verifier(generator)
    # seed 1 is bad: its clip leaves the path at clip frame 5, so frames 0..4 are kept.
    attempt = get_solver("closed-loop", max_steps=6, attempts_per_step=3, seed=1).solve(maze, generator, verifier)
    first = attempt.candidates[0]
    assert not first.meta["accepted"] and first.meta["last_good"] == 4
    assert np.array_equal(generator.calls[1]["image"], generator.gt[4])
    assert "Avoid this mistake" in generator.calls[1]["prompt"]
    joined = attempt.candidates[attempt.chosen]
    assert first_violation_frame(joined.score) is None  # what is kept is always legal
    assert attempt.compute.clips == len(generator.calls)


def test_closed_loop_stops_after_m_failed_attempts_and_on_budget(maze, make_generator, make_verifier):
    generator = make_generator(gt_frames=25, num_frames=9, bad_at=1)  # bad clips break at once
    verifier = make_verifier(generator)
    bad = [s for s in range(40) if not generator.is_good(s)]
    seed = next(s for s in bad if all(t in bad for t in (s, s + 1, s + 2)))
    attempt = get_solver("closed-loop", attempts_per_step=3, seed=seed).solve(maze, generator, verifier)
    assert attempt.meta["stopped"] == "failed attempts" and len(generator.calls) == 3
    assert attempt.video.shape[0] == 1 and not attempt.success  # nothing legal was kept
    limited = get_solver("closed-loop", seed=seed).solve(maze, generator, verifier, Budget(max_nfe=8))
    assert limited.compute.nfe == 8 and limited.meta["stopped"].startswith("budget")


PLAN = json.dumps({"observation": "agent at start", "remaining_goal": "reach the goal", "task_complete": False,
                   "instruction": "move along the corridor", "target_state": "agent nearer the goal",
                   "estimated_steps_remaining": 2})
DONE = json.dumps({"observation": "at goal", "remaining_goal": "", "task_complete": True, "instruction": "",
                   "target_state": "", "estimated_steps_remaining": 0})
ACCEPT = json.dumps({"verdict": "accept", "action_executed": True, "progress": 0.5, "good_fraction": 1.0,
                     "confidence": 0.9, "reason": "moved", "suggestion": ""})
REJECT = json.dumps({"verdict": "reject", "action_executed": False, "progress": 0.0, "good_fraction": 0.5,
                     "confidence": 0.8, "reason": "wall", "suggestion": "stay inside the corridor"})


def test_closed_loop_with_vlm_planner_and_judge(maze, make_generator, make_verifier):
    generator = make_generator(gt_frames=17, num_frames=9, bad_at=5)
    verifier = make_verifier(generator)
    vlm = ScriptedVLM([PLAN, REJECT, ACCEPT, PLAN, ACCEPT, DONE])
    attempt = get_solver("closed-loop", planner="vlm", judge="vlm", max_steps=5, seed=0, vlm=vlm).solve(
        maze, generator, verifier
    )
    # The rejected clip's good half (frames 0..4) is kept, then the retry is accepted.
    assert "stay inside the corridor" in generator.calls[1]["prompt"]
    assert "move along the corridor" in generator.calls[0]["prompt"]
    assert attempt.candidates[0].meta["last_good"] == 4
    # The VLM judge alone decides: it accepts the retry (which in fact breaks a rule) and the
    # planner ends the task; the rule verifier still scores the joined answer honestly.
    assert attempt.meta["stopped"] == "planner: task complete" and vlm.remaining == 0
    assert attempt.compute.vlm_calls == vlm.calls == 6 and not attempt.success


def test_closed_loop_vlm_failures_fall_back_and_are_recorded(maze, make_generator, make_verifier):
    generator = make_generator(gt_frames=9, num_frames=9)
    verifier = make_verifier(generator)
    good = generator.good_seeds(10)[0]
    vlm = ScriptedVLM([NOT_JSON] * 6)
    attempt = get_solver("closed-loop", planner="vlm", judge="both", seed=good, vlm=vlm).solve(
        maze, generator, verifier
    )
    purposes = [failure["purpose"] for failure in attempt.meta["vlm_failures"]]
    assert purposes == ["planner", "clip judge"] and vlm.calls == 6
    assert attempt.success  # the fixed instruction and the rule verdict stood in
    assert attempt.candidates[0].meta["judge"]["vlm"] == "failed"


def test_closed_loop_records_a_clip_the_judge_could_not_afford(maze, make_generator, make_verifier):
    generator = make_generator(gt_frames=17, num_frames=9)
    vlm = ScriptedVLM([ACCEPT] * 3)
    attempt = get_solver("closed-loop", judge="vlm", seed=0, vlm=vlm).solve(
        maze, generator, make_verifier(generator), Budget(max_vlm_calls=3)
    )
    # The first clip is judged (3 calls reserved, 1 used); the second cannot reserve 3 more.
    clips = [c for c in attempt.candidates if c.meta["role"] == "clip"]
    assert len(clips) == 2 and clips[0].meta["accepted"] and not clips[1].meta["accepted"]
    assert clips[1].meta["judge"]["judge"].startswith("not judged")
    assert attempt.meta["stopped"].startswith("budget") and attempt.compute.vlm_calls == 1
    assert attempt.compute.clips == 2


def test_a_seconds_budget_of_zero_allows_nothing(maze, make_generator, make_verifier):
    generator = make_generator()
    with pytest.raises(UserError, match="budget"):
        get_solver("best-of-n").solve(maze, generator, make_verifier(generator), Budget(max_seconds=0))
