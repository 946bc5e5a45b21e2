"""OpenAICompatibleVLM against a real HTTP server on loopback (gen_reason.vlm.testing)."""

import base64
import socket
import time

import cv2
import numpy as np
import pytest

from gen_reason.errors import UserError
from gen_reason.vlm import OpenAICompatibleVLM, load_vlm, user_message
from gen_reason.vlm.structured import VLMFailure, chat_json
from gen_reason.vlm.testing import serve_scripted_openai


def _image(seed=0, shape=(24, 32, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _decode_png_data_url(url: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    data = np.frombuffer(base64.b64decode(url[len(prefix):]), np.uint8)
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _vlm(url, **kwargs):
    kwargs.setdefault("retry_backoff", 0.0)
    return OpenAICompatibleVLM(url, "judge-model", **kwargs)


def test_request_carries_images_as_png_data_urls_and_returns_the_answer():
    image = _image()
    with serve_scripted_openai(["the answer"]) as url:
        vlm = _vlm(url, api_key="secret")
        answer = vlm.chat([{"role": "system", "content": "be strict"}, user_message("what?", images=[image])],
                          max_tokens=77, temperature=0.3)
        body, headers = url.requests[0], url.headers[0]
    assert answer == "the answer"
    assert url.paths == ["/v1/chat/completions"]
    assert body["model"] == "judge-model" and body["max_tokens"] == 77 and body["temperature"] == 0.3
    assert body["messages"][0] == {"role": "system", "content": "be strict"}
    parts = body["messages"][1]["content"]
    assert [p["type"] for p in parts] == ["image_url", "text"] and parts[1]["text"] == "what?"
    np.testing.assert_array_equal(_decode_png_data_url(parts[0]["image_url"]["url"]), image)  # PNG is lossless
    assert headers["Authorization"] == "Bearer secret"
    assert vlm.usage.calls == 1 and vlm.usage.completion_tokens == 2 and vlm.usage.prompt_tokens > 0


def test_video_is_sampled_frames_unless_the_server_takes_video(tmp_path):
    video = np.stack([np.full((16, 16, 3), 10 * i, np.uint8) for i in range(9)])
    with serve_scripted_openai(["a", "b"]) as url:
        _vlm(url, video_frames=3).chat([user_message("describe", video=video)])
        _vlm(url, supports_video=True).chat([user_message("describe", video=video)])
        as_frames, as_video = url.requests
    frames = [_decode_png_data_url(p["image_url"]["url"]) for p in as_frames["messages"][0]["content"][:-1]]
    assert [int(f[0, 0, 0]) for f in frames] == [0, 40, 80]  # frames 0, 4, 8 in order
    part = as_video["messages"][0]["content"][0]
    assert part["type"] == "video_url" and part["video_url"]["url"].startswith("data:video/mp4;base64,")
    from gen_reason.video import read_video

    mp4 = tmp_path / "sent.mp4"
    mp4.write_bytes(base64.b64decode(part["video_url"]["url"].split(",", 1)[1]))
    assert read_video(mp4).shape == (9, 16, 16, 3)


def test_chat_json_retries_malformed_answers_over_http_then_fails():
    with serve_scripted_openai(["I'd say yes.", '{"score": 3}']) as url:
        assert chat_json(_vlm(url), [user_message("rate")], required={"score": int}) == {"score": 3}
        assert len(url.requests) == 2
        # The re-ask carries the bad answer and the problem.
        retry_messages = url.requests[1]["messages"]
        assert retry_messages[1] == {"role": "assistant", "content": "I'd say yes."}
        assert "no JSON object" in retry_messages[2]["content"]
    with serve_scripted_openai(["nope", "{bad", "still no"]) as url:
        with pytest.raises(VLMFailure) as caught:
            chat_json(_vlm(url), [user_message("rate")], required={"score": int}, retries=2)
    assert caught.value.raw_answers == ["nope", "{bad", "still no"]


def test_server_errors_are_retried_then_reported():
    with serve_scripted_openai([(503, {"error": {"message": "warming up"}}), "fine"]) as url:
        assert _vlm(url, max_retries=1).chat([user_message("hi")]) == "fine"
    with serve_scripted_openai([(500, {"error": {"message": "boom"}})] * 3) as url:
        with pytest.raises(VLMFailure, match="failed 3 times: HTTP 500: boom"):
            _vlm(url, max_retries=2).chat([user_message("hi")])
        assert len(url.requests) == 3
    with serve_scripted_openai([(400, {"error": {"message": "prompt too long"}}), "unused"]) as url:
        with pytest.raises(VLMFailure, match="prompt too long"):
            _vlm(url).chat([user_message("hi")])
        assert len(url.requests) == 1  # a bad request is not retried


def test_user_mistakes_are_user_errors():
    with serve_scripted_openai([(404, {"error": {"message": "model nope does not exist"}})]) as url:
        with pytest.raises(UserError, match="404 for model 'judge-model'.*does not exist"):
            _vlm(url).chat([user_message("hi")])
    with serve_scripted_openai([(401, {"error": {"message": "invalid key"}})]) as url:
        with pytest.raises(UserError, match="check the API key"):
            _vlm(url).chat([user_message("hi")])
    with pytest.raises(UserError, match="http:// or https://"):
        OpenAICompatibleVLM("localhost:8000/v1", "m")
    with pytest.raises(UserError, match="http:// or https://"):
        load_vlm("ftp://127.0.0.1/v1")
    with pytest.raises(UserError, match="neither an http"):
        load_vlm("no/such/folder")
    with pytest.raises(UserError, match="model name .* only goes with a server URL"):
        load_vlm(".", model="m")


def test_unreachable_server_is_a_one_line_user_error():
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    vlm = _vlm(f"http://127.0.0.1:{port}/v1", max_retries=1)
    with pytest.raises(UserError, match=f"cannot reach the VLM server at http://127.0.0.1:{port}/v1"):
        vlm.chat([user_message("hi")])


def test_timeout_and_non_json_replies_are_failures():
    def slow(body):
        time.sleep(0.6)
        return "late"

    with serve_scripted_openai(slow) as url:
        with pytest.raises(VLMFailure, match="no answer within 0.2 s"):
            _vlm(url, timeout=0.2, max_retries=0).chat([user_message("hi")])
    with serve_scripted_openai([(200, "<html>not an API</html>")]) as url:
        with pytest.raises(VLMFailure, match="did not answer with JSON"):
            _vlm(url).chat([user_message("hi")])
    with serve_scripted_openai([(200, {"object": "chat.completion", "choices": []})]) as url:
        with pytest.raises(VLMFailure, match="without choices"):
            _vlm(url).chat([user_message("hi")])


def test_a_server_that_hangs_up_is_retried_then_a_failure():
    """A connection closed before any reply (http.client.RemoteDisconnected) is retried, then a VLMFailure."""
    import threading

    accepted = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def hang_up():
            for _ in range(2):
                connection, _ = server.accept()
                connection.recv(65536)
                accepted.append(1)
                connection.close()

        thread = threading.Thread(target=hang_up, daemon=True)
        thread.start()
        with pytest.raises(VLMFailure, match="failed 2 times: connection dropped"):
            _vlm(f"http://127.0.0.1:{port}/v1", max_retries=1, timeout=5).chat([user_message("hi")])
        thread.join(timeout=5)
    assert len(accepted) == 2


def test_full_endpoint_url_and_load_vlm():
    with serve_scripted_openai(["ok"]) as url:
        vlm = load_vlm(url + "/chat/completions", model="judge-model", retry_backoff=0.0)
        assert isinstance(vlm, OpenAICompatibleVLM) and vlm.chat([user_message("hi")]) == "ok"
        assert url.paths == ["/v1/chat/completions"]


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/", "/v1/chat/completions"])
def test_url_forms_all_reach_the_v1_api(suffix):
    with serve_scripted_openai(["ok"], model="served") as url:
        root = url[: -len("/v1")]
        vlm = load_vlm(root + suffix, retry_backoff=0.0)
        assert vlm.base_url == url and vlm.model == "served"  # asked of GET /v1/models
        assert vlm.chat([user_message("hi")]) == "ok"
        assert url.gets == ["/v1/models"] and url.paths == ["/v1/chat/completions"]
        assert url.requests[0]["model"] == "served"


def test_model_discovery_and_naming_the_model():
    with serve_scripted_openai(["ok"], models=["a", "b"]) as url:
        with pytest.raises(UserError, match=r"serves 2 models \(a, b\); choose one with .*#MODEL"):
            load_vlm(url)
        vlm = load_vlm(url + "#b", retry_backoff=0.0)  # URL#MODEL: no listing needed
        assert vlm.model == "b" and vlm.chat([user_message("hi")]) == "ok" and url.requests[0]["model"] == "b"
        assert url.gets == ["/v1/models"]  # only the first load asked
    with serve_scripted_openai([], models=[]) as url:
        with pytest.raises(UserError, match="serves no model"):
            load_vlm(url)
    with serve_scripted_openai([]) as url:
        with pytest.raises(UserError, match="has no /models"):
            load_vlm(url + "/api/other")  # a path that is not the API root
    with pytest.raises(UserError, match="no query string"):
        load_vlm("http://127.0.0.1:8000/v1?key=x")
