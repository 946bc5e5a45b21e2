"""Prompts and VLM messages for solvers: prompt files with fields filled, a video as a
message part, one user turn."""

from __future__ import annotations

from typing import Any

import numpy as np


def load_prompt(name: str, **fields: Any) -> str:
    """The prompt file ``gen_reason/prompts/<name>.txt`` with ``$field`` placeholders filled.

    ``string.Template`` substitution, so the JSON examples in the prompts keep their
    braces; a placeholder without a value is a bug and raises ``KeyError``.
    """
    import string
    from importlib import resources

    text = (resources.files("gen_reason") / "prompts" / f"{name}.txt").read_text(encoding="utf-8")
    return string.Template(text).substitute({key: str(value) for key, value in fields.items()}).strip()


def media_part(video: np.ndarray, media: str, frames: int) -> dict:
    """A VLM message part showing ``video``: a filmstrip image of ``frames`` frames, or the video."""
    from gen_reason.video import filmstrip

    if media == "video":
        return {"type": "video", "video": video}
    return {"type": "image", "image": filmstrip(video, n=frames)}


def single_turn(*parts: dict | str) -> list[dict]:
    """One user message (OpenAI style) from text strings and media parts."""
    content = [{"type": "text", "text": part} if isinstance(part, str) else part for part in parts]
    return [{"role": "user", "content": content}]
