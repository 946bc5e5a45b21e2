"""chat_json, the message helpers and the scripted VLM: no torch, no network."""

import subprocess
import sys

import numpy as np
import pytest

from gen_reason.vlm import VLMUsage, check_messages, fit_max_side, sample_frame_indices, sample_frames, user_message
from gen_reason.vlm.structured import VLMFailure, chat_json, check_required, extract_json_object
from gen_reason.vlm.testing import ScriptedVLM

ASK = [{"role": "user", "content": "Give me JSON."}]


# --- extracting the object -----------------------------------------------------------


@pytest.mark.parametrize("text", [
    '{"a": 1}',
    'Sure! Here is the answer:\n{"a": 1}\nHope this helps.',
    '```json\n{"a": 1}\n```',
    'Reasoning first.\n```\n{"a": 1}\n```\ntrailing',
    '```JSON\n  {"a": 1}```',
])
def test_extract_tolerates_fences_and_prose(text):
    assert extract_json_object(text) == {"a": 1}


def test_extract_returns_nested_objects_whole():
    assert extract_json_object('x {"c": [{"n": 1}, {"n": 2}], "d": {"e": true}} y') == {
        "c": [{"n": 1}, {"n": 2}], "d": {"e": True}}


def test_extract_skips_braces_in_prose_before_the_object():
    assert extract_json_object('I use {curly} words. {"ok": false}') == {"ok": False}


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("no json here", "no '{'"),
    ('{"a": yes}', "no valid JSON"),
    ("{'a': 1}", "no valid JSON"),  # Python repr is not JSON, and is not repaired
])
def test_extract_failures_say_why(text, message):
    with pytest.raises(ValueError, match=message):
        extract_json_object(text)


def test_check_required_types():
    check_required({"n": 3, "x": 2, "ok": True, "s": "t", "l": []},
                   {"n": int, "x": float, "ok": bool, "s": str, "l": list})
    with pytest.raises(ValueError, match="missing key 'n'"):
        check_required({}, {"n": int})
    with pytest.raises(ValueError, match="must be an integer"):
        check_required({"n": True}, {"n": int})  # a bool is not a number here
    with pytest.raises(ValueError, match="must be a boolean"):
        check_required({"ok": "yes"}, {"ok": bool})
    with pytest.raises(ValueError, match="must be a number"):
        check_required({"x": "2"}, {"x": float})


# --- chat_json -----------------------------------------------------------------------


def test_chat_json_returns_first_valid_answer():
    vlm = ScriptedVLM(['```json\n{"score": 3}\n```'])
    assert chat_json(vlm, ASK, required={"score": int}) == {"score": 3}
    assert vlm.calls == 1


def test_chat_json_re_asks_with_the_problem_then_succeeds():
    vlm = ScriptedVLM(["I think it is fine.", '{"score": "high"}', '{"score": 4}'])
    assert chat_json(vlm, ASK, required={"score": int}, retries=2) == {"score": 4}
    assert vlm.calls == 3
    second, third = vlm.messages[1], vlm.messages[2]
    # The conversation grows: the bad answer, then a user turn naming the problem.
    assert second[:1] == ASK and second[1] == {"role": "assistant", "content": "I think it is fine."}
    assert second[2]["role"] == "user" and "no JSON object" in second[2]["content"]
    assert "'score' must be an integer" in third[-1]["content"]


def test_chat_json_raises_failure_with_every_raw_answer():
    answers = ["nope", "{broken", '{"other": 1}']
    vlm = ScriptedVLM(answers)
    with pytest.raises(VLMFailure) as caught:
        chat_json(vlm, ASK, required={"score": int}, retries=2)
    assert caught.value.raw_answers == answers
    assert "after 3 attempts" in caught.value.reason and "missing key 'score'" in caught.value.reason


def test_chat_json_retries_zero_asks_once():
    vlm = ScriptedVLM(["nope", '{"a": 1}'])
    with pytest.raises(VLMFailure, match="after 1 attempt:"):
        chat_json(vlm, ASK, retries=0)
    assert vlm.calls == 1


def test_chat_json_validate_by_exception_or_message():
    def in_range(obj):
        if not 0 <= obj["score"] <= 4:
            raise ValueError(f"score {obj['score']} is outside 0-4")

    vlm = ScriptedVLM(['{"score": 7}', '{"score": 2}'])
    assert chat_json(vlm, ASK, validate=in_range) == {"score": 2}
    assert "score 7 is outside 0-4" in vlm.messages[1][-1]["content"]

    vlm = ScriptedVLM(['{"score": 7}'])
    with pytest.raises(VLMFailure, match="too big"):
        chat_json(vlm, ASK, retries=0, validate=lambda obj: "too big" if obj["score"] > 4 else None)


def test_chat_json_names_broken_outer_json_hiding_an_inner_object():
    vlm = ScriptedVLM(['{"criteria": [{"name": "a", "passed": true}, oops]}'])
    with pytest.raises(VLMFailure) as caught:
        chat_json(vlm, ASK, required={"criteria": list}, retries=0)
    assert "missing key 'criteria'" in caught.value.reason and "invalid JSON" in caught.value.reason


def test_chat_json_passes_backend_failures_on_with_answers_so_far():
    class Flaky(ScriptedVLM):
        def chat(self, messages, **kwargs):
            if self.calls == 1:
                raise VLMFailure("server error 500")
            return super().chat(messages, **kwargs)

    vlm = Flaky(["not json"])
    with pytest.raises(VLMFailure) as caught:
        chat_json(vlm, ASK)
    assert caught.value.reason == "server error 500" and caught.value.raw_answers == ["not json"]


# --- messages, frames, usage ---------------------------------------------------------


def test_check_messages_normalises_and_rejects_bad_parts():
    image = np.zeros((4, 5, 3), np.uint8)
    checked = check_messages([{"role": "system", "content": "be strict"}, user_message("hi", images=[image])])
    assert checked[0]["content"] == [{"type": "text", "text": "be strict"}]
    assert [p["type"] for p in checked[1]["content"]] == ["image", "text"]
    with pytest.raises(ValueError, match="uint8 array of shape"):
        check_messages([user_message("x", images=[np.zeros((4, 5, 3), np.float32)])])
    with pytest.raises(ValueError, match="role"):
        check_messages([{"role": "tool", "content": "x"}])
    with pytest.raises(ValueError, match="only text"):
        check_messages([{"role": "assistant", "content": [{"type": "image", "image": image}]}])
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        check_messages([user_message(video=image)])
    with pytest.raises(ValueError, match="non-empty"):
        check_messages([])


def test_sample_frames_even_spacing_and_max_side():
    assert sample_frame_indices(49, 5) == [0, 12, 24, 36, 48]
    assert sample_frame_indices(3, 8) == [0, 1, 2]
    assert sample_frame_indices(10, 1) == [0]
    video = np.zeros((9, 100, 60, 3), np.uint8)
    indices, frames = sample_frames(video, 3, max_side=50)
    assert indices == [0, 4, 8] and frames[0].shape == (50, 30, 3)
    small = np.zeros((20, 10, 3), np.uint8)
    assert fit_max_side(small, 50) is small  # never enlarged


def test_usage_snapshot_and_difference():
    usage = VLMUsage()
    usage.record(prompt_tokens=10, completion_tokens=2, seconds=0.5)
    before = usage.snapshot()
    usage.record(prompt_tokens=5, completion_tokens=1, seconds=0.25)
    assert usage.since(before) == VLMUsage(1, 5, 1, 0.25) == usage - before
    assert before.calls == 1 and (before + usage).calls == 3
    assert usage.to_dict() == {"calls": 2, "prompt_tokens": 15, "completion_tokens": 3, "seconds": 0.75}


def test_scripted_vlm_records_and_runs_out():
    vlm = ScriptedVLM(["one two", "three"])
    assert vlm.chat(ASK, max_tokens=9) == "one two"
    assert vlm.chat(ASK) == "three"
    assert vlm.calls == 2 and vlm.remaining == 0 and vlm.settings[0]["max_tokens"] == 9
    assert vlm.usage.calls == 2 and vlm.usage.completion_tokens == 3
    with pytest.raises(RuntimeError, match="ran out"):
        vlm.chat(ASK)
    echo = ScriptedVLM(lambda messages: messages[-1]["content"].upper())
    assert echo.chat(ASK) == "GIVE ME JSON."


def test_vlm_clients_and_judges_import_without_torch():
    code = ("import sys; import gen_reason.vlm, gen_reason.vlm.testing, gen_reason.verifiers.vlm_judge; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
