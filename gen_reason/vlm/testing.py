"""Test doubles for the VLM interface, for this package's tests and everyone else's.

- :class:`ScriptedVLM`: answers from a script, records what it was asked (no torch).
- :func:`serve_scripted_openai`: a real OpenAI-compatible HTTP server on loopback that
  answers from a script and records every request body (no torch).
- :func:`build_tiny_qwen25vl`: a ~91k-parameter random-weight Qwen2.5-VL with its
  tokenizer and image processor, built in-process (nothing downloaded) and saved to a
  folder that :meth:`TransformersVLM.from_pretrained` loads. Its answers are noise.

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
from pathlib import Path
from typing import Callable, Iterator, Sequence

from gen_reason.vlm.base import VLM, check_messages

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
    HTTP headers (a dict each), ``paths`` the path of every POST.
    """

    requests: list[dict]
    headers: list[dict]
    paths: list[str]


@contextlib.contextmanager
def serve_scripted_openai(answers, *, model: str = "scripted-vlm") -> Iterator[ScriptedServerURL]:
    """A real OpenAI-compatible chat server on ``127.0.0.1`` (a free port), answering from a script.

    Yields its base URL (``http://127.0.0.1:PORT/v1``) as a :class:`ScriptedServerURL`
    whose ``.requests`` records every ``POST /v1/chat/completions`` body. ``answers`` is a
    list consumed in order, or ``answers(request_body) -> item``; an item is the answer
    text (a ``str``), or ``(status, body)`` to send a raw HTTP reply (``body`` a dict
    sent as JSON, or a str sent as is) for testing error handling. When the script runs
    out the server answers 500. ``GET /v1/models`` lists ``model``.
    """
    script = answers if callable(answers) else list(answers)
    requests: list[dict] = []
    headers: list[dict] = []
    paths: list[str] = []
    lock = threading.Lock()
    position = [0]

    def next_item(body: dict):
        with lock:
            if callable(script):
                return script(body)
            if position[0] >= len(script):
                return 500, {"error": {"message": "the scripted server ran out of answers"}}
            position[0] += 1
            return script[position[0] - 1]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

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
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": model, "object": "model"}]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            with lock:
                paths.append(self.path)
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                self._send(400, {"error": {"message": "request body is not JSON"}})
                return
            with lock:
                requests.append(body)
                headers.append(dict(self.headers.items()))
            item = next_item(body)
            if isinstance(item, tuple):
                self._send(int(item[0]), item[1])
                return
            text = str(item)
            self._send(200, {
                "id": f"chatcmpl-{len(requests)}", "object": "chat.completion", "created": 0,
                "model": body.get("model", model),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": len(raw) // 4, "completion_tokens": len(text.split()),
                          "total_tokens": len(raw) // 4 + len(text.split())},
            })

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    # A short poll interval: shutdown() waits up to one interval, once per test.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              name="scripted-openai", daemon=True)
    thread.start()
    url = ScriptedServerURL(f"http://127.0.0.1:{server.server_address[1]}/v1")
    url.requests = requests
    url.headers = headers
    url.paths = paths
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- a tiny random Qwen2.5-VL ---------------------------------------------------------

_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                   "<|image_pad|>", "<|video_pad|>"]
_WORDS = (
    "system user assistant you are a helpful judge video frame frames maze agent goal wall corridor "
    "moves reaches only json criteria name passed reason score true false yes no { } [ ] : , \" "
    "instruction temporal visual content focus 0 1 2 3 4"
).split()
TINY_VOCAB_SIZE = 64


def tiny_qwen_tokenizer():
    """A word-level tokenizer with Qwen's special tokens and a made-up 64-token vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {"<unk>": 0}
    for token in _SPECIAL_TOKENS + _WORDS:
        vocab.setdefault(token, len(vocab))
    for i in range(TINY_VOCAB_SIZE - len(vocab)):  # fill up so every id the model can emit decodes
        vocab[f"w{i}"] = len(vocab)
    if len(vocab) != TINY_VOCAB_SIZE:
        raise RuntimeError(f"tiny vocabulary has {len(vocab)} tokens, expected {TINY_VOCAB_SIZE}")
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", additional_special_tokens=_SPECIAL_TOKENS)


def build_tiny_qwen25vl(path, seed: int = 0) -> Path:
    """Build a random ~91k-parameter Qwen2.5-VL, its tokenizer and image processor; save to ``path``.

    The configuration is FIELD_NOTES' ("Vision-language models"); the image processor
    keeps at most 28*28*16 pixels per image (<= 16 visual tokens), so a chat with a few
    frames runs in well under a second on a CPU. Weights are saved as safetensors.
    Returns ``path`` as a ``Path``.
    """
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil

    path = Path(path)
    tokenizer = tiny_qwen_tokenizer()
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in _SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=TINY_VOCAB_SIZE, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2,
            rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": [2, 1, 1]},
            eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], bos_token_id=None,
        ),
        vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=32, num_heads=4, out_hidden_size=32, patch_size=14,
            spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1],
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config).eval()
    image_processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16, patch_size=14,
                                               merge_size=2, temporal_patch_size=2)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    image_processor.save_pretrained(path)
    return path
