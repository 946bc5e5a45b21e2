"""VLM-driven strategies against real backends: a scripted OpenAI-compatible server on
loopback and a tiny random Qwen2.5-VL in-process. An answer that is not the JSON asked
for is retried, then recorded as a failure; it never becomes a choice or a prompt."""

import json

import pytest

from gen_reason.solvers import get_solver
from gen_reason.vlm import OpenAICompatibleVLM
from gen_reason.vlm.testing import serve_scripted_openai

NOT_JSON = "The second video is clearly the best one."


def test_selector_over_http_retries_then_records_the_failure(maze, make_generator, make_verifier):
    generator = make_generator()
    with serve_scripted_openai([NOT_JSON, "{not json at all", '{"best": "one"}']) as url:
        vlm = OpenAICompatibleVLM(url, "scripted-vlm")
        attempt = get_solver("best-of-n", n=3, seed=1, selector="vlm", vlm=vlm).solve(
            maze, generator, make_verifier(generator)
        )
        assert len(url.requests) == 3
        # The retries tell the model what was wrong, in the same conversation.
        assert url.requests[-1]["messages"][-1]["role"] == "user"
    (failure,) = attempt.meta["vlm_failures"]
    assert failure["purpose"] == "selector" and "best" in failure["reason"]
    assert attempt.compute.vlm_calls == 3 and attempt.chosen == attempt.meta["rule_choice"]


def test_videotpo_over_http(maze, make_generator, make_verifier):
    generator = make_generator()
    critique = {"candidates": [{"strengths": "a", "weaknesses": "b"}, {"strengths": "c", "weaknesses": "d"}]}
    answers = [json.dumps(critique), '```json\n{"prompt": "Slide the red circle to the green square."}\n```']
    with serve_scripted_openai(answers) as url:
        vlm = OpenAICompatibleVLM(url, "scripted-vlm")
        attempt = get_solver("videotpo", rounds=2, seed=1, vlm=vlm).solve(maze, generator, make_verifier(generator))
        image_parts = [p for p in url.requests[0]["messages"][0]["content"] if p["type"] == "image_url"]
        assert len(image_parts) == 2  # both candidates shown to the critic
    assert generator.calls[1]["prompt"] == "Slide the red circle to the green square."
    assert attempt.meta["final_prompt"] == generator.calls[1]["prompt"] and not attempt.meta["vlm_failures"]


@pytest.mark.slow
def test_tiny_transformers_vlm_noise_is_recorded_as_failures(tmp_path, maze, make_generator, make_verifier):
    pytest.importorskip("transformers")
    from gen_reason.vlm.testing import build_tiny_qwen25vl
    from gen_reason.vlm.transformers_client import TransformersVLM

    vlm = TransformersVLM.from_pretrained(build_tiny_qwen25vl(tmp_path / "qwen"), device="cpu")
    generator = make_generator(gt_frames=9, num_frames=9)
    good = generator.good_seeds(10)[0]
    attempt = get_solver("closed-loop", planner="vlm", judge="both", max_steps=1, seed=good, vlm=vlm,
                         vlm_frames=2, vlm_max_tokens=16).solve(maze, generator, make_verifier(generator))
    # Random weights answer noise: each request is tried three times, then recorded.
    assert [f["purpose"] for f in attempt.meta["vlm_failures"]] == ["planner", "clip judge"]
    assert all(len(f["raw_answers"]) == 3 for f in attempt.meta["vlm_failures"])
    assert attempt.compute.vlm_calls == 6 and attempt.compute.vlm_tokens > 0
    assert attempt.success  # the fixed plan and the rule verdict stood in
