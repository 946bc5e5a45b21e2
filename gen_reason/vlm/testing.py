"""Test doubles for the VLM interface, for this package's tests and everyone else's.

- :class:`ScriptedVLM`: answers from a script, records what it was asked (no torch).
- :func:`serve_scripted_openai`: a real OpenAI-compatible HTTP server on loopback that
  answers from a script and records every request body (no torch).
- :func:`build_tiny_vlm`: a random-weight VLM of a few hundred thousand parameters in
  the layout of a real model folder (Qwen2.5-VL, Qwen3-VL, Gemma 3: the same config keys,
  tiny sizes, a tiny tokenizer), built in-process (nothing downloaded) and saved to a
  folder that :meth:`TransformersVLM.from_pretrained` loads; :func:`build_tiny_qwen25vl`
  makes the Qwen2.5-VL one without a real folder at hand. Their answers are noise. They
  live in :mod:`gen_reason.vlm.tiny` and are importable from here.

Example::

    from gen_reason.vlm.testing import ScriptedVLM
    vlm = ScriptedVLM(['{"criteria": [...]}'])
    score = GenViReJudge(vlm).score(instance, video)
    assert vlm.calls == 1 and vlm.messages[0][0]["role"] == "system"
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator, Sequence

from gen_reason.vlm.base import VLM, check_messages
from gen_reason.vlm.tiny import (  # the tiny random VLMs, importable from here too
    TINY_VOCAB_SIZE,
    TINY_WIDTH,
    build_tiny_qwen25vl,
    build_tiny_vlm,
    tiny_qwen_tokenizer,
    tiny_tokenizer,
)

__all__ = ["TINY_VOCAB_SIZE", "TINY_WIDTH", "ScriptedServerURL", "ScriptedVLM", "build_tiny_qwen25vl", "build_tiny_vlm",
           "serve_scripted_openai", "tiny_qwen_tokenizer", "tiny_tokenizer"]

Answers = Sequence[str] | Callable[[list[dict]], str]


class ScriptedVLM(VLM):
    """A VLM whose answers are scripted: a list consumed in order, or ``answers(messages) -> str``.

    Every call's messages are kept in :attr:`messages` (one list per call). Usage counts
    calls and rough token counts (whitespace-separated words; images count 1). Running
    out of scripted answers raises ``RuntimeError`` (a test that asks more than it
    scripted has a bug).
    """

    def __init__(self, answers: Answers, name: str = "scripted"):
        super().__init__()
        self.name = name
        self._answers = answers if callable(answers) else list(answers)
        self._next = 0
        self.messages: list[list[dict]] = []
        self.settings: list[dict] = []

    @property
    def calls(self) -> int:
        """How many times :meth:`chat` was called."""
        return len(self.messages)

    @property
    def remaining(self) -> int | None:
        """Scripted answers not yet given (``None`` for a callable script)."""
        return None if callable(self._answers) else len(self._answers) - self._next

    def chat(self, messages: list[dict], *, max_tokens: int = 512, temperature: float = 0.0) -> str:
        """The next scripted answer (the messages are validated and recorded first)."""
        started = time.perf_counter()
        checked = check_messages(messages)
        self.messages.append(list(messages))
        self.settings.append({"max_tokens": max_tokens, "temperature": temperature})
        if callable(self._answers):
            answer = self._answers(list(messages))
        else:
            if self._next >= len(self._answers):
                raise RuntimeError(f"ScriptedVLM ran out of answers after {len(self._answers)} calls")
            answer = self._answers[self._next]
            self._next += 1
        prompt_tokens = sum(len(p["text"].split()) if p["type"] == "text" else 1
                            for message in checked for p in message["content"])
        self.usage.record(prompt_tokens=prompt_tokens, completion_tokens=len(str(answer).split()),
                          seconds=time.perf_counter() - started)
        return answer


class ScriptedServerURL(str):
    """The base URL of a scripted server (a ``str``), carrying the server's records.

    ``requests`` holds every parsed chat request body in arrival order, ``headers`` their
    HTTP headers (a dict each), ``paths`` the path of every POST, ``gets`` of every GET.
    """

    requests: list[dict]
    headers: list[dict]
    paths: list[str]
    gets: list[str]


class _Script:
    """A scripted server's state: the answers it has left, and its records of every request
    (shared by the handler threads, under one lock)."""

    def __init__(self, answers, model: str, models: Sequence[str] | None) -> None:
        self.answers = answers if callable(answers) else list(answers)
        self.model = model
        self.listed = [model] if models is None else list(models)
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.paths: list[str] = []
        self.gets: list[str] = []
        self.lock = threading.Lock()
        self.position = 0

    def record(self, name: str, item) -> None:
        """Append ``item`` to the record ``name`` (requests, headers, paths or gets)."""
        with self.lock:
            getattr(self, name).append(item)

    def next_item(self, body: dict):
        """The next scripted answer (500 with a message once the script runs out)."""
        with self.lock:
            if callable(self.answers):
                return self.answers(body)
            if self.position >= len(self.answers):
                return 500, {"error": {"message": "the scripted server ran out of answers"}}
            self.position += 1
            return self.answers[self.position - 1]


def _completion(body: dict, raw: bytes, text: str, number: int, model: str) -> dict:
    """An OpenAI ``chat.completion`` body answering ``text``, with a rough token count."""
    return {
        "id": f"chatcmpl-{number}", "object": "chat.completion", "created": 0,
        "model": body.get("model", model),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": len(raw) // 4, "completion_tokens": len(text.split()),
                  "total_tokens": len(raw) // 4 + len(text.split())},
    }


class _ScriptedHandler(BaseHTTPRequestHandler):
    """``GET /v1/models`` and ``POST /v1/chat/completions`` answered from the server's :class:`_Script`."""

    protocol_version = "HTTP/1.1"

    @property
    def script(self) -> _Script:
        """The state of the server this request came to."""
        return self.server.script

    def log_message(self, *args):  # keep test output clean
        pass

    def _send(self, status: int, body) -> None:
        data = (json.dumps(body) if not isinstance(body, str) else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        """The model list, or 404."""
        self.script.record("gets", self.path)
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": name, "object": "model"} for name in self.script.listed]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self):
        """The next scripted answer to a chat request (recorded), or 404 / 400."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        self.script.record("paths", self.path)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            self._send(400, {"error": {"message": "request body is not JSON"}})
            return
        with self.script.lock:
            self.script.requests.append(body)
            self.script.headers.append(dict(self.headers.items()))
            number = len(self.script.requests)
        item = self.script.next_item(body)
        if isinstance(item, tuple):
            self._send(int(item[0]), item[1])
            return
        self._send(200, _completion(body, raw, str(item), number, self.script.model))


@contextlib.contextmanager
def serve_scripted_openai(answers, *, model: str = "scripted-vlm",
                          models: Sequence[str] | None = None) -> Iterator[ScriptedServerURL]:
    """A real OpenAI-compatible chat server on ``127.0.0.1`` (a free port), answering from a script.

    Yields its base URL (``http://127.0.0.1:PORT/v1``) as a :class:`ScriptedServerURL`
    whose ``.requests`` records every ``POST /v1/chat/completions`` body. ``answers`` is a
    list consumed in order, or ``answers(request_body) -> item``; an item is the answer
    text (a ``str``), or ``(status, body)`` to send a raw HTTP reply (``body`` a dict
    sent as JSON, or a str sent as is) for testing error handling. When the script runs
    out the server answers 500. ``GET /v1/models`` lists ``model`` (or ``models``, several
    names or none); ``.gets`` records the path of every GET.
    """
    script = _Script(answers, model, models)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ScriptedHandler)
    server.daemon_threads = True
    server.script = script
    # A short poll interval: shutdown() waits up to one interval, once per test.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              name="scripted-openai", daemon=True)
    thread.start()
    url = ScriptedServerURL(f"http://127.0.0.1:{server.server_address[1]}/v1")
    url.requests, url.headers, url.paths, url.gets = script.requests, script.headers, script.paths, script.gets
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


