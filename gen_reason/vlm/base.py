"""The VLM interface: one ``chat(messages) -> str`` over any vision-language model.

Every backend (a local transformers model, an OpenAI-compatible server, the scripted
test double) implements :class:`VLM`; planners, judges and prompt critics are prompts
over this one method.

Messages are OpenAI-style dicts::

    {"role": "system" | "user" | "assistant", "content": str | list[part]}

where a part is one of::

    {"type": "text", "text": str}
    {"type": "image", "image": np.ndarray (H, W, 3) uint8 RGB}
    {"type": "video", "video": np.ndarray (T, H, W, 3) uint8 RGB}

A backend that cannot take a video samples evenly spaced frames of it and sends them as
images, in order (each backend's docstring says which it does). :func:`user_message`,
:func:`text_part`, :func:`image_part` and :func:`video_part` build these dicts.

This module imports no torch: the verifiers use it and must work without torch.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, replace

import numpy as np

ROLES = ("system", "user", "assistant")


@dataclass
class VLMUsage:
    """What a VLM has spent so far: calls, tokens and wall-clock seconds.

    Solvers compare strategies at matched compute, so every backend counts here. Take a
    :meth:`snapshot` before some work and :meth:`since` after it for the work's share::

        before = vlm.usage.snapshot()
        ...  # chat calls
        spent = vlm.usage.since(before)   # or: vlm.usage - before
    """

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def record(self, *, prompt_tokens: int = 0, completion_tokens: int = 0, seconds: float = 0.0) -> None:
        """Count one finished call."""
        self.calls += 1
        self.prompt_tokens += int(prompt_tokens)
        self.completion_tokens += int(completion_tokens)
        self.seconds += float(seconds)

    def snapshot(self) -> "VLMUsage":
        """A frozen copy of the counters now (later calls do not change it)."""
        return replace(self)

    def since(self, earlier: "VLMUsage") -> "VLMUsage":
        """What was spent between ``earlier`` (a :meth:`snapshot`) and now."""
        return VLMUsage(
            calls=self.calls - earlier.calls,
            prompt_tokens=self.prompt_tokens - earlier.prompt_tokens,
            completion_tokens=self.completion_tokens - earlier.completion_tokens,
            seconds=self.seconds - earlier.seconds,
        )

    def __sub__(self, other: "VLMUsage") -> "VLMUsage":
        return self.since(other)

    def __add__(self, other: "VLMUsage") -> "VLMUsage":
        return VLMUsage(
            calls=self.calls + other.calls,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            seconds=self.seconds + other.seconds,
        )

    def to_dict(self) -> dict:
        """The counters as a plain JSON-ready dict."""
        return asdict(self)


class VLM(abc.ABC):
    """A vision-language model behind one method, :meth:`chat`.

    Subclasses set ``name`` (shown in traces and reports), call ``super().__init__()``
    (which creates ``usage``) and record every call in ``self.usage``.
    """

    name: str = "vlm"
    usage: VLMUsage

    def __init__(self) -> None:
        self.usage = VLMUsage()

    @abc.abstractmethod
    def chat(self, messages: list[dict], *, max_tokens: int = 512, temperature: float = 0.0) -> str:
        """Answer a conversation (see the module docstring for the message format).

        ``temperature=0`` asks for greedy, repeatable decoding. Returns the assistant's
        text. Raises :class:`gen_reason.vlm.structured.VLMFailure` when the model could
        not answer (server error, timeout), and :class:`gen_reason.errors.UserError`
        for a user mistake (unreachable server, missing model folder).
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


# --- building and checking messages -------------------------------------------------


def text_part(text: str) -> dict:
    """A text part of a message's content."""
    return {"type": "text", "text": str(text)}


def image_part(image: np.ndarray) -> dict:
    """An image part: ``image`` is an ``(H, W, 3)`` uint8 RGB array."""
    return {"type": "image", "image": image}


def video_part(video: np.ndarray) -> dict:
    """A video part: ``video`` is a ``(T, H, W, 3)`` uint8 RGB array."""
    return {"type": "video", "video": video}


def user_message(text: str | None = None, *, images=(), video: np.ndarray | None = None) -> dict:
    """A user message with the images first, then the video, then the text."""
    parts = [image_part(image) for image in images]
    if video is not None:
        parts.append(video_part(video))
    if text is not None:
        parts.append(text_part(text))
    return {"role": "user", "content": parts}


def check_messages(messages: list[dict]) -> list[dict]:
    """Validate ``messages`` and return them with every ``content`` as a list of parts.

    Raises ``ValueError`` naming the offending message and part: a malformed message is
    a bug in the calling code, so it is caught here rather than deep in a backend.
    """
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts")
    checked = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise ValueError(f"message {i} must be a dict with 'role' and 'content'; got {message!r:.80}")
        role = message["role"]
        if role not in ROLES:
            raise ValueError(f"message {i} has role {role!r}; expected one of {ROLES}")
        content = message["content"]
        if isinstance(content, str):
            parts = [text_part(content)]
        elif isinstance(content, (list, tuple)):
            parts = [_check_part(part, i, j) for j, part in enumerate(content)]
        else:
            raise ValueError(f"message {i} content must be a str or a list of parts; got {type(content).__name__}")
        if role != "user" and any(part["type"] != "text" for part in parts):
            raise ValueError(f"message {i} ({role}) may hold only text; images and videos go in user messages")
        checked.append({"role": role, "content": parts})
    return checked


def _check_part(part, i: int, j: int) -> dict:
    where = f"message {i} part {j}"
    if not isinstance(part, dict) or "type" not in part:
        raise ValueError(f"{where} must be a dict with a 'type'; got {part!r:.80}")
    kind = part["type"]
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise ValueError(f"{where} (text) needs a str 'text'")
        return part
    if kind in ("image", "video"):
        array = part.get(kind)
        ndim = 3 if kind == "image" else 4
        shape = "(H, W, 3)" if kind == "image" else "(T, H, W, 3)"
        if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim != ndim or array.shape[-1] != 3:
            got = f"{array.dtype} {array.shape}" if isinstance(array, np.ndarray) else type(array).__name__
            raise ValueError(f"{where} ({kind}) must be a uint8 array of shape {shape}; got {got}")
        if 0 in array.shape:
            raise ValueError(f"{where} ({kind}) is empty: shape {array.shape}")
        return part
    raise ValueError(f"{where} has unknown type {kind!r}; expected 'text', 'image' or 'video'")


# --- frames --------------------------------------------------------------------------


def sample_frame_indices(num_frames: int, k: int) -> list[int]:
    """``k`` evenly spaced frame indices of a ``num_frames``-long video, first and last included.

    Fewer than ``k`` come back when the video is shorter (every frame, once).
    """
    if num_frames <= 0:
        raise ValueError("cannot sample frames from an empty video")
    if k <= 0:
        raise ValueError(f"the number of frames to sample must be positive; got {k}")
    indices = np.linspace(0, num_frames - 1, min(k, num_frames))
    return sorted({int(round(x)) for x in indices})


def fit_max_side(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """``image`` shrunk (area interpolation, aspect kept) so its longer side is at most ``max_side``.

    Never enlarges; ``None`` returns the image unchanged. VLM cost grows with pixels, and
    judges do not need more than a few hundred pixels per side to see a maze.
    """
    height, width = image.shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return image
    import cv2

    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def sample_frames(video: np.ndarray, k: int, max_side: int | None = None) -> tuple[list[int], list[np.ndarray]]:
    """``k`` evenly spaced frames of ``video`` (see :func:`sample_frame_indices`), each fit to ``max_side``.

    Returns ``(indices, frames)``.
    """
    indices = sample_frame_indices(len(video), k)
    return indices, [np.ascontiguousarray(fit_max_side(video[i], max_side)) for i in indices]
