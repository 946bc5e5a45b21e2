"""Any OpenAI-compatible chat server (vLLM, SGLang, llama.cpp, LM Studio, OpenAI) as a :class:`VLM`.

Only the standard library is used (``urllib``): no ``openai`` package needed. Images go
as PNG data URLs in ``image_url`` parts; a video goes as an MP4 data URL in a
``video_url`` part when the server takes video (``supports_video=True``, e.g. vLLM or
SGLang serving Qwen2.5-VL), else as ``video_frames`` evenly spaced frames sent as images.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import NoReturn

import numpy as np

from gen_reason.errors import UserError
from gen_reason.vlm.base import VLM, check_messages, sample_frames
from gen_reason.vlm.structured import VLMFailure

#: HTTP statuses worth another try: rate limits and server-side trouble.
_RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAICompatibleVLM(VLM):
    """A VLM served over the OpenAI chat-completions API.

    ``base_url`` is the API root, as for the ``openai`` client, e.g.
    ``http://localhost:8000/v1``; the server's bare address (``http://localhost:8000``,
    read as ``.../v1``) and a full ``.../chat/completions`` URL work too (see
    :func:`split_server_url`). ``model`` is the name the server serves the model under;
    ``None`` asks the server (``GET {base_url}/models``) and takes the one model it
    serves (vLLM, SGLang and llama.cpp serve one), and a server with several says which
    to choose. ``api_key`` defaults to the ``OPENAI_API_KEY`` environment variable; local servers
    started without a key need none. Timeouts, connection drops, 429 and 5xx answers are
    retried ``max_retries`` times with exponential backoff from ``retry_backoff``
    seconds.

    Errors: a server that cannot be reached (refused, unknown host) or that rejects the
    key, model or path raises :class:`~gen_reason.errors.UserError` (the CLI prints one
    line); a request that fails after retries (timeout, 5xx, malformed reply) raises
    :class:`~gen_reason.vlm.structured.VLMFailure`, which judges record per video.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 60,
        max_retries: int = 2,
        *,
        supports_video: bool = False,
        video_frames: int = 8,
        video_fps: float = 8,
        image_format: str = "png",
        retry_backoff: float = 0.5,
        extra_body: dict | None = None,
        name: str | None = None,
    ):
        super().__init__()
        if image_format not in ("png", "jpeg"):
            raise UserError(f"image_format must be 'png' or 'jpeg'; got {image_format!r}")
        url, named = split_server_url(base_url)
        self.base_url = url
        self.endpoint = url + "/chat/completions"
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.retry_backoff = float(retry_backoff)
        self.model = model or named or self.discover_model()
        self.supports_video = bool(supports_video)
        self.video_frames = int(video_frames)
        self.video_fps = float(video_fps)
        self.image_format = image_format
        self.extra_body = dict(extra_body or {})
        self.name = name or f"openai:{self.model}"

    # --- request ---------------------------------------------------------------------

    def request_body(self, messages: list[dict], *, max_tokens: int = 512, temperature: float = 0.0) -> dict:
        """The JSON body :meth:`chat` posts for ``messages`` (images encoded as data URLs)."""
        converted = []
        for message in check_messages(messages):
            parts = []
            for part in message["content"]:
                parts.extend(self._convert_part(part))
            # Text-only turns go as plain strings: some servers' chat templates accept a
            # list of parts only in user turns, and every server accepts a string.
            if all(p["type"] == "text" for p in parts):
                converted.append({"role": message["role"], "content": "".join(p["text"] for p in parts)})
            else:
                converted.append({"role": message["role"], "content": parts})
        body = {"model": self.model, "messages": converted, "max_tokens": int(max_tokens),
                "temperature": float(temperature)}
        body.update(self.extra_body)
        return body

    def _convert_part(self, part: dict) -> list[dict]:
        if part["type"] == "text":
            return [{"type": "text", "text": part["text"]}]
        if part["type"] == "image":
            return [self._image_url_part(part["image"])]
        video = part["video"]
        if self.supports_video:
            return [{"type": "video_url", "video_url": {"url": _mp4_data_url(video, self.video_fps)}}]
        _, frames = sample_frames(video, self.video_frames)
        return [self._image_url_part(frame) for frame in frames]

    def _image_url_part(self, image: np.ndarray) -> dict:
        return {"type": "image_url", "image_url": {"url": image_data_url(image, self.image_format)}}

    # --- chat ------------------------------------------------------------------------

    def chat(self, messages: list[dict], *, max_tokens: int = 512, temperature: float = 0.0) -> str:
        """Post the conversation to ``{base_url}/chat/completions`` and return the answer text."""
        body = json.dumps(self.request_body(messages, max_tokens=max_tokens, temperature=temperature)).encode()
        started = time.perf_counter()
        reply = self._request_with_retries(self.endpoint, body)
        try:
            choice = reply["choices"][0]
            content = choice["message"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise VLMFailure(f"the server at {self.endpoint} sent a reply without choices[0].message: "
                             f"{json.dumps(reply)[:200]}") from None
        if isinstance(content, list):  # some servers answer with a list of text parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        answer = content if isinstance(content, str) else ""
        usage = reply.get("usage") or {}
        self.usage.record(prompt_tokens=usage.get("prompt_tokens") or 0,
                          completion_tokens=usage.get("completion_tokens") or 0,
                          seconds=time.perf_counter() - started)
        return answer

    def list_models(self) -> list[str]:
        """The model names the server serves (``GET {base_url}/models``)."""
        reply = self._request_with_retries(self.base_url + "/models", None)
        data = reply.get("data") if isinstance(reply, dict) else None
        if not isinstance(data, list):
            raise UserError(f"the server at {self.base_url} answered /models without a model list; "
                            "give the model name as URL#MODEL")
        return [str(item["id"]) for item in data if isinstance(item, dict) and item.get("id")]

    def discover_model(self) -> str:
        """The one model the server serves; a :class:`UserError` when it serves none or several."""
        names = self.list_models()
        if len(names) == 1:
            return names[0]
        if not names:
            raise UserError(f"the VLM server at {self.base_url} serves no model (GET /models is empty)")
        raise UserError(f"the VLM server at {self.base_url} serves {len(names)} models ({', '.join(names)}); "
                        f"choose one with {self.base_url}#MODEL")

    def _request_with_retries(self, url: str, body: bytes | None) -> dict:
        """POST ``body`` (or GET when ``None``) to ``url`` and parse the JSON reply, with retries
        (backing off exponentially) on what may pass: busy or failing servers, timeouts,
        dropped and refused connections."""
        listing = body is None
        headers = self._headers(json_body=not listing)
        problem, unreachable = "", False
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.retry_backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(url, data=body, headers=headers, method="GET" if listing else "POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = response.read()
            except urllib.error.HTTPError as error:
                problem, unreachable = self._retryable_http_error(error, listing), False
                continue
            except (OSError, http.client.HTTPException) as error:  # timeouts, URLError, dropped connections
                problem, unreachable = self._transport_problem(error)
                continue
            return self._parse_reply(payload, url, listing)
        self._give_up(problem, unreachable, listing)

    def _headers(self, *, json_body: bool) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if json_body:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _retryable_http_error(self, error: urllib.error.HTTPError, listing: bool) -> str:
        """What went wrong, for an HTTP error worth retrying; a one-line :class:`UserError`
        (bad key, wrong URL or model) or :class:`VLMFailure` (a refusal) for any other."""
        detail = _error_detail(error)
        if error.code in (401, 403):
            raise UserError(f"the VLM server at {self.base_url} rejected the request "
                            f"(HTTP {error.code}: {detail}); check the API key") from None
        if error.code == 404 and listing:
            raise UserError(f"the VLM server at {self.base_url} has no /models ({detail}); check that the "
                            "URL is the API root (e.g. http://host:8000/v1), or give the model name as "
                            "URL#MODEL") from None
        if error.code == 404:
            raise UserError(f"the VLM server at {self.base_url} answered 404 for model {self.model!r} "
                            f"({detail}); check the model name and that the URL ends with /v1") from None
        problem = f"HTTP {error.code}: {detail}"
        if error.code not in _RETRYABLE_STATUS and listing:
            raise UserError(f"the VLM server at {self.base_url} refused to list its models ({problem})") from None
        if error.code not in _RETRYABLE_STATUS:
            raise VLMFailure(f"the VLM server at {self.base_url} refused the request ({problem})") from None
        return problem

    def _transport_problem(self, error: BaseException) -> tuple[str, bool]:
        """``(what went wrong, whether the server looks unreachable)`` for a failure below HTTP."""
        if isinstance(error, (TimeoutError, socket.timeout)):
            return f"no answer within {self.timeout:g} s", False
        if isinstance(error, urllib.error.URLError):
            if isinstance(error.reason, (TimeoutError, socket.timeout)):
                return f"no answer within {self.timeout:g} s", False
            # Refused, unknown host, unreachable network: probably a wrong URL or a
            # server still starting, so worth the retries before blaming the user.
            return f"{error.reason}", True
        return f"connection dropped ({type(error).__name__}: {error})", False

    def _parse_reply(self, payload: bytes, url: str, listing: bool) -> dict:
        """The reply's JSON; a reply that is not JSON is a wrong URL (listing) or a failure."""
        try:
            return json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            if listing:
                raise UserError(f"the server at {url} did not answer with JSON; is {self.base_url} "
                                "an OpenAI-compatible API root?") from None
            raise VLMFailure(f"the server at {url} did not answer with JSON "
                             f"(is this an OpenAI-compatible API?): {payload[:120]!r}") from None

    def _give_up(self, problem: str, unreachable: bool, listing: bool) -> NoReturn:
        """Raise the error for a request every retry failed: the server looks down, would not
        list its models, or kept failing."""
        attempts = self.max_retries + 1
        if unreachable:
            raise UserError(f"cannot reach the VLM server at {self.base_url} ({problem}); is it running?")
        if listing:
            raise UserError(f"the VLM server at {self.base_url} did not list its models: {problem}")
        raise VLMFailure(f"the VLM server at {self.base_url} failed {attempts} time{'s' * (attempts > 1)}: {problem}")


def split_server_url(url: str) -> tuple[str, str | None]:
    """``(API root, model or None)`` from a server URL as users write it.

    ``http://host:8000`` -> ``http://host:8000/v1`` (vLLM, SGLang and llama.cpp serve the
    OpenAI API under ``/v1``); ``.../v1`` and other paths (``https://host/openai/v1``) are
    kept; a trailing ``/chat/completions`` is dropped; ``URL#MODEL`` names the model
    (``http://host:8000/v1#Qwen/Qwen2.5-VL-7B-Instruct``). Raises
    :class:`~gen_reason.errors.UserError` for anything but an http(s) URL with a host.
    """
    text = str(url).strip()
    text, _, model = text.partition("#")
    parsed = urllib.parse.urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UserError(f"VLM server URL must start with http:// or https://; got {url!r}")
    if parsed.query:
        raise UserError(f"a VLM server URL takes no query string (?{parsed.query}); give the API root, "
                        "e.g. http://localhost:8000/v1")
    path = parsed.path.rstrip("/")
    if path.endswith("/chat/completions"):
        path = path[: -len("/chat/completions")]
    if not path:
        path = "/v1"
    return urllib.parse.urlunparse((parsed.scheme, parsed.netloc, path, "", "", "")), (model.strip() or None)


def _error_detail(error: urllib.error.HTTPError) -> str:
    """The server's own error message from an HTTP error reply, shortened."""
    try:
        text = error.read().decode("utf-8", "replace")
    except Exception:  # the body is a courtesy; the status code already says enough
        return error.reason or ""
    try:
        data = json.loads(text)
        message = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(message, dict):
            message = message.get("message", message)
        text = str(message)
    except json.JSONDecodeError:
        pass
    return " ".join(text.split())[:200] or (error.reason or "")


def image_data_url(image: np.ndarray, image_format: str = "png") -> str:
    """An RGB ``(H, W, 3)`` uint8 image as a ``data:image/png;base64,...`` (or jpeg) URL."""
    import cv2

    extension = ".png" if image_format == "png" else ".jpg"
    ok, encoded = cv2.imencode(extension, cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode an image of shape {image.shape} as {image_format}")
    return f"data:image/{image_format};base64,{base64.b64encode(encoded.tobytes()).decode('ascii')}"


def _mp4_data_url(video: np.ndarray, fps: float) -> str:
    """A ``(T, H, W, 3)`` video as a ``data:video/mp4;base64,...`` URL (H.264 via gen_reason.video)."""
    from gen_reason.video import write_mp4

    with tempfile.TemporaryDirectory(prefix="genreason-vlm-") as folder:
        path = write_mp4(Path(folder) / "video.mp4", video, fps=fps)
        data = path.read_bytes()
    return f"data:video/mp4;base64,{base64.b64encode(data).decode('ascii')}"
