"""Structured answers: get a validated JSON object out of a VLM, or a clear failure.

VLMs wrap JSON in prose and ```json fences, drop keys, and write ``"yes"`` where a bool
belongs. :func:`chat_json` finds the object, checks it, and on a problem re-asks with
the problem spelled out; when the retries run out it raises :class:`VLMFailure` with
every raw answer. It never repairs or fills in a value: a judge's verdict is either
what the model said or a recorded failure.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from gen_reason.vlm.base import VLM


class VLMFailure(RuntimeError):
    """The VLM gave no usable answer (malformed after retries, server error, timeout).

    ``reason`` says why in one line; ``raw_answers`` holds every answer received, in
    order, so a human can see what the model actually wrote.
    """

    def __init__(self, reason: str, raw_answers: list[str] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.raw_answers = list(raw_answers or [])


_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


def extract_json_object(text: str) -> dict:
    """The first JSON object in ``text``: inside a ```json fence if there is one, else anywhere.

    Leading and trailing prose is ignored. Raises ``ValueError`` saying what is wrong
    when no complete JSON object is found (invalid JSON is not repaired).
    """
    return _find_json_object(text)[0]


def _find_json_object(text: str) -> tuple[dict, str]:
    """``(object, note)``: the object, and a note on invalid JSON met before it ("" if none).

    The note matters when a broken outer object hides a valid inner one: the inner one
    then fails the key checks, and the re-ask should name the real problem.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the answer is empty")
    candidates = [match.group(1) for match in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    first_error = None
    for candidate in candidates:
        for start in (i for i, ch in enumerate(candidate) if ch == "{"):
            try:
                value, _ = decoder.raw_decode(candidate, start)
            except json.JSONDecodeError as error:
                first_error = first_error or error
                continue
            if isinstance(value, dict):
                note = f"invalid JSON ({first_error.msg} at char {first_error.pos})" if first_error else ""
                return value, note
    if first_error is not None:
        raise ValueError(f"the answer holds no valid JSON object ({first_error.msg} at char {first_error.pos})")
    raise ValueError("the answer holds no JSON object (no '{' found)")


def check_required(obj: dict, required: dict[str, type] | None) -> None:
    """Raise ``ValueError`` if a required key is missing or has the wrong JSON type.

    ``float`` accepts integers too (JSON writes ``3`` for ``3.0``); ``int`` and
    ``float`` reject booleans; ``bool`` accepts only ``true``/``false``.
    """
    for key, expected in (required or {}).items():
        if key not in obj:
            raise ValueError(f"missing key {key!r}")
        value = obj[key]
        if not _is_json_type(value, expected):
            raise ValueError(f"key {key!r} must be {_type_name(expected)}; got {type(value).__name__} {value!r:.60}")


def _is_json_type(value: Any, expected: type | tuple) -> bool:
    if isinstance(expected, tuple):
        return any(_is_json_type(value, one) for one in expected)
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, expected)


def _type_name(expected: type | tuple) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "an object"}
    if isinstance(expected, tuple):
        return " or ".join(names.get(t, t.__name__) for t in expected)
    return names.get(expected, expected.__name__)


def chat_json(
    vlm: VLM,
    messages: list[dict],
    *,
    required: dict[str, type] | None = None,
    retries: int = 2,
    validate: Callable[[dict], Any] | None = None,
    max_tokens: int = 512,
    temperature: float = 0.0,
) -> dict:
    """Ask ``vlm`` and return the JSON object of its answer, validated.

    The object is taken from the answer with :func:`extract_json_object`, then checked
    against ``required`` (``{key: type}``, see :func:`check_required`) and by
    ``validate(obj)``, which signals a problem by raising ``ValueError`` / ``TypeError``
    / ``KeyError`` or by returning an error string (``None`` means fine). On a problem
    the conversation continues with the model's answer and a user turn naming the
    problem, up to ``retries`` more times. Then :class:`VLMFailure` is raised with the
    last problem and every raw answer. A ``VLMFailure`` from the backend itself
    (server error, timeout) is passed on with the answers received so far.
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0; got {retries}")
    conversation = list(messages)
    raw_answers: list[str] = []
    problem = ""
    for _attempt in range(retries + 1):
        try:
            answer = vlm.chat(conversation, max_tokens=max_tokens, temperature=temperature)
        except VLMFailure as failure:
            raise VLMFailure(failure.reason, raw_answers + failure.raw_answers) from failure
        raw_answers.append(answer)
        obj, problem = _usable_object(answer, required, validate)
        if obj is not None:
            return obj
        conversation = conversation + [
            {"role": "assistant", "content": answer},
            {"role": "user", "content": (
                f"Your answer could not be used: {problem}. Answer again with only the JSON object "
                "in the requested format, with every required field, and no other text.")},
        ]
    attempts = retries + 1
    raise VLMFailure(f"no valid JSON answer after {attempts} attempt{'s' * (attempts > 1)}: {problem}", raw_answers)


def _usable_object(answer: str, required: dict[str, type] | None,
                   validate: Callable[[dict], Any] | None) -> tuple[dict | None, str]:
    """``(the answer's JSON object, "")`` when it passes ``required`` and ``validate``, else
    ``(None, what is wrong)`` in words the model is told on a retry."""
    try:
        obj, note = _find_json_object(answer)
    except ValueError as error:
        return None, str(error)
    try:
        check_required(obj, required)
        if validate is not None:
            verdict = validate(obj)
            if isinstance(verdict, str) and verdict:
                raise ValueError(verdict)
            if verdict is False:
                raise ValueError("the answer failed validation")
        return obj, ""
    except (ValueError, TypeError, KeyError) as error:
        return None, _describe(error) + (f" (the answer also holds {note})" if note else "")


def _describe(error: Exception) -> str:
    # KeyError's str() wraps the message in quotes; show the plain message instead.
    if isinstance(error, KeyError) and error.args:
        return f"missing {error.args[0]}"
    return str(error) or type(error).__name__
