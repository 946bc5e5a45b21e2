"""The VLM judges with scripted VLMs: right scores for valid answers, recorded failures otherwise."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from gen_reason.errors import UserError
from gen_reason.verifiers.vlm_judge import (
    DEFAULT_CRITERIA,
    MMECOF_DIMENSIONS,
    GenViReJudge,
    MMECoFJudge,
    load_prompt,
)
from gen_reason.vlm import OpenAICompatibleVLM
from gen_reason.vlm.testing import ScriptedVLM, serve_scripted_openai

MAZE = SimpleNamespace(task="maze/grid-v1", prompt="Move the red circle to the green square.")
MAZE_CRITERIA = list(DEFAULT_CRITERIA["maze"])


def _video(frames=17, size=(96, 128)):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (frames, *size, 3), dtype=np.uint8)


def _genvire_answer(passed, criteria=MAZE_CRITERIA, names=None):
    names = names or criteria
    return json.dumps({"criteria": [{"name": n, "passed": p, "reason": f"because {i}"}
                                    for i, (n, p) in enumerate(zip(names, passed))]})


def _mmecof_answer(scores):
    return json.dumps({d: {"score": s, "reason": f"{d} looks {s}"} for d, s in zip(MMECOF_DIMENSIONS, scores)})


# --- Gen-ViRe -------------------------------------------------------------------------


def test_genvire_scores_the_fraction_of_criteria_passed():
    vlm = ScriptedVLM([_genvire_answer([True, False, True, True, True])])
    score = GenViReJudge(vlm).score(MAZE, _video())
    assert score.success is False
    assert score.metrics["judge_score"] == pytest.approx(0.8)
    assert score.metrics["criteria_passed"] == 4 and score.metrics["criteria_total"] == 5
    assert score.metrics["criterion_1"] == 0.0 and score.metrics["criterion_0"] == 1.0
    assert score.metrics["judge_failed"] == 0.0 and score.metrics["vlm_calls"] == 1
    assert score.reason == "failed criteria: The agent reaches the goal by the end of the video."
    assert score.trace["criteria"][1] == {"name": MAZE_CRITERIA[1], "passed": False, "reason": "because 1",
                                          "answered_name": MAZE_CRITERIA[1]}
    json.dumps(score.to_dict())  # the trace is JSON-ready

    all_passed = GenViReJudge(ScriptedVLM([_genvire_answer([True] * 5)])).score(MAZE, _video())
    assert all_passed.success is True and all_passed.metrics["success"] == 1.0 and all_passed.reason == ""
    lenient = GenViReJudge(ScriptedVLM([_genvire_answer([True, False, True, True, True])]), success_threshold=0.8)
    assert lenient.score(MAZE, _video()).success is True


def test_genvire_prompt_has_instruction_criteria_and_sampled_frames():
    vlm = ScriptedVLM([_genvire_answer([True] * 5)])
    GenViReJudge(vlm, num_frames=4, max_side=64).score(MAZE, _video(frames=10, size=(96, 128)))
    (message,) = vlm.messages[0]
    images = [p["image"] for p in message["content"] if p["type"] == "image"]
    text = message["content"][-1]["text"]
    assert len(images) == 4 and all(image.shape == (48, 64, 3) for image in images)
    assert MAZE.prompt in text and "4 frames" in text
    assert all(f"{i}. {c}" in text for i, c in enumerate(MAZE_CRITERIA, start=1))
    assert "$" not in text  # every placeholder was filled


def test_genvire_matches_reordered_names_and_falls_back_to_positions():
    shuffled = [MAZE_CRITERIA[i] for i in (4, 3, 2, 1, 0)]
    passed = [True, True, True, False, True]  # the entry named MAZE_CRITERIA[1] failed
    score = GenViReJudge(ScriptedVLM([_genvire_answer(passed, names=shuffled)])).score(MAZE, _video())
    assert [c["passed"] for c in score.trace["criteria"]] == [True, False, True, True, True]

    paraphrased = ["walls respected", "reached goal", "maze same", "only agent", "no teleport"]
    score = GenViReJudge(ScriptedVLM([_genvire_answer([True, False, True, True, True],
                                                      names=paraphrased)])).score(MAZE, _video())
    assert score.metrics["criterion_1"] == 0.0
    assert score.trace["criteria"][1]["answered_name"] == "reached goal"


def test_genvire_retries_a_malformed_answer_then_scores():
    bad = json.dumps({"criteria": [{"name": c, "passed": "yes"} for c in MAZE_CRITERIA]})
    vlm = ScriptedVLM([bad, _genvire_answer([True] * 5)])
    score = GenViReJudge(vlm).score(MAZE, _video())
    assert score.success is True and score.metrics["vlm_calls"] == 2
    assert 'needs "passed": true or false' in vlm.messages[1][-1]["content"]


def test_genvire_records_a_judge_failure_never_a_zero():
    answers = ["The agent reaches the goal.", _genvire_answer([True, True]), '{"criteria": "all good"}']
    vlm = ScriptedVLM(answers)
    score = GenViReJudge(vlm, retries=2).score(MAZE, _video())
    assert score.success is False and vlm.calls == 3
    assert score.metrics["judge_failed"] == 1.0
    assert math.isnan(score.metrics["judge_score"]) and math.isnan(score.metrics["success"])
    assert score.reason.startswith("judge failure: no valid JSON answer after 3 attempts")
    assert score.trace["raw_answers"] == answers and score.trace["usage"]["calls"] == 3
    assert score.to_dict()["metrics"]["judge_score"] is None  # NaN becomes null, not 0


def test_genvire_criteria_sources():
    sokoban = SimpleNamespace(task="maze/sokoban-v1", prompt="Push the box.")
    tangram = SimpleNamespace(task="tangram-v1", prompt="Fill the shape.")
    other = SimpleNamespace(task="physics/ball-v1", prompt="Drop it.")
    judge = GenViReJudge(ScriptedVLM([]))
    assert judge.criteria_for(MAZE) == MAZE_CRITERIA
    assert judge.criteria_for(sokoban) == list(DEFAULT_CRITERIA["maze/sokoban"])
    assert judge.criteria_for(tangram) == list(DEFAULT_CRITERIA["tangram"])
    assert judge.criteria_for(other) == list(DEFAULT_CRITERIA["default"])
    assert GenViReJudge(None, ["a", "b"]).criteria_for(MAZE) == ["a", "b"]
    assert GenViReJudge(None, {"maze/grid": ["g"], "default": ["d"]}).criteria_for(MAZE) == ["g"]
    assert GenViReJudge(None, {"maze/grid": ["g"], "default": ["d"]}).criteria_for(tangram) == ["d"]
    assert GenViReJudge(None, lambda inst: [inst.prompt]).criteria_for(other) == ["Drop it."]
    with pytest.raises(UserError, match="non-empty strings"):
        GenViReJudge(None, []).criteria_for(MAZE)
    with pytest.raises(UserError, match="got a str"):
        GenViReJudge(None, "the agent wins")

    vlm = ScriptedVLM([_genvire_answer([True, False], criteria=["a", "b"])])
    score = GenViReJudge(vlm, ["a", "b"]).score(MAZE, _video())
    assert score.metrics["judge_score"] == 0.5 and "2 in all" in vlm.messages[0][0]["content"][-1]["text"]


def test_genvire_on_a_real_instance_and_video():
    from gen_reason.puzzles.registry import get_task

    instance = get_task("maze/grid").generate(0, "easy")
    vlm = ScriptedVLM([_genvire_answer([True] * 5)])
    score = GenViReJudge(vlm).score(instance, instance.solution_video(9))
    frames = score.trace["frames"]
    assert score.success is True and len(frames) == 8 and frames[0] == 0 and frames[-1] == 8
    assert instance.prompt in vlm.messages[0][0]["content"][-1]["text"]


# --- MME-CoF --------------------------------------------------------------------------


def test_mmecof_scores_five_dimensions():
    vlm = ScriptedVLM([_mmecof_answer([4, 3, 4, 2, 3])])
    score = MMECoFJudge(vlm).score(MAZE, _video())
    assert {d: score.metrics[d] for d in MMECOF_DIMENSIONS} == dict(zip(MMECOF_DIMENSIONS, [4, 3, 4, 2, 3]))
    assert score.metrics["judge_mean"] == pytest.approx(3.2)
    assert score.metrics["judge_score"] == pytest.approx(0.8)
    assert score.success is True and score.metrics["success"] == 1.0 and score.metrics["judge_failed"] == 0.0
    assert score.trace["ratings"]["content_fidelity"] == {"score": 2, "reason": "content_fidelity looks 2"}
    text = vlm.messages[0][0]["content"][-1]["text"]
    assert MAZE.prompt in text and all(d in text for d in MMECOF_DIMENSIONS) and "$" not in text

    low = MMECoFJudge(ScriptedVLM([_mmecof_answer([1, 2, 4, 4, 0])])).score(MAZE, _video())
    assert low.success is False and low.metrics["judge_score"] == pytest.approx(0.55)
    assert low.reason == ("mean rating 2.20/4; low: instruction_alignment 1/4, temporal_consistency 2/4, "
                          "focus_relevance 0/4")


def test_mmecof_accepts_bare_and_integral_scores_rejects_the_rest():
    bare = json.dumps(dict(zip(MMECOF_DIMENSIONS, [4, 4.0, 3, 3, 4])))
    score = MMECoFJudge(ScriptedVLM([bare])).score(MAZE, _video())
    assert score.metrics["temporal_consistency"] == 4.0 and score.trace["ratings"]["visual_stability"]["reason"] is None

    for bad, problem in [(_mmecof_answer([5, 3, 3, 3, 3]), "instruction_alignment score 5 is outside 0-4"),
                         (_mmecof_answer([3, 2.5, 3, 3, 3]), "temporal_consistency score must be an integer"),
                         (_mmecof_answer([3, 3, True, 3, 3]), "visual_stability score must be an integer"),
                         (_mmecof_answer([3, 3, 3, "3", 3]), "content_fidelity score must be an integer"),
                         (_mmecof_answer([3, 3, 3, 3]), "missing dimension focus_relevance")]:
        vlm = ScriptedVLM([bad, _mmecof_answer([3, 3, 3, 3, 3])])
        assert MMECoFJudge(vlm).score(MAZE, _video()).metrics["judge_mean"] == 3.0
        assert problem in vlm.messages[1][-1]["content"], problem


def test_mmecof_records_a_judge_failure():
    vlm = ScriptedVLM([_mmecof_answer([9, 9, 9, 9, 9])] * 2)
    score = MMECoFJudge(vlm, retries=1).score(MAZE, _video())
    assert score.success is False and score.metrics["judge_failed"] == 1.0
    assert math.isnan(score.metrics["judge_score"]) and "instruction_alignment" not in score.metrics
    assert "after 2 attempts" in score.reason and "outside 0-4" in score.reason


# --- shared behaviour -------------------------------------------------------------------


def test_server_failure_is_a_judge_failure():
    with serve_scripted_openai([(500, {"error": {"message": "GPU fell over"}})] * 2) as url:
        vlm = OpenAICompatibleVLM(url, "judge", max_retries=1, retry_backoff=0.0)
        score = MMECoFJudge(vlm).score(MAZE, _video())
    assert score.metrics["judge_failed"] == 1.0 and "GPU fell over" in score.reason
    assert score.reason.startswith("judge failure:")


def test_judge_over_http_end_to_end():
    with serve_scripted_openai(["Here you go:\n```json\n" + _mmecof_answer([4] * 5) + "\n```"]) as url:
        vlm = OpenAICompatibleVLM(url, "judge", retry_backoff=0.0)
        score = MMECoFJudge(vlm, num_frames=3).score(MAZE, _video())
        parts = url.requests[0]["messages"][0]["content"]
    assert score.success is True and score.metrics["judge_score"] == 1.0
    assert [p["type"] for p in parts] == ["image_url"] * 3 + ["text"]
    assert all(p["image_url"]["url"].startswith("data:image/png;base64,") for p in parts[:3])


def test_invalid_video_is_a_recorded_failure_without_asking():
    vlm = ScriptedVLM([])
    score = GenViReJudge(vlm).score(MAZE, np.zeros((0, 8, 8, 3), np.uint8))
    assert score.success is False and score.metrics["invalid_video"] == 1.0 and vlm.calls == 0
    assert score.reason.startswith("invalid video:")


def test_bad_settings_and_prompt_templates():
    with pytest.raises(UserError, match="num_frames"):
        MMECoFJudge(None, num_frames=0)
    with pytest.raises(UserError, match="success_threshold"):
        GenViReJudge(None, success_threshold=2)
    with pytest.raises(UserError, match="no prompt template"):
        load_prompt("judge_nothing")
    assert "$criteria" in load_prompt("judge_genvire").template
    custom = MMECoFJudge(ScriptedVLM([_mmecof_answer([2] * 5)]), template="Rate: $instruction ($num_frames)")
    custom.score(MAZE, _video())
    assert custom.vlm.messages[0][0]["content"][-1]["text"] == f"Rate: {MAZE.prompt} (8)"
