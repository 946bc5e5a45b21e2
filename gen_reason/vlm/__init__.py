"""Vision-language models behind one interface: ``VLM.chat(messages) -> str``.

Backends: :class:`OpenAICompatibleVLM` (any OpenAI-compatible server by base URL:
vLLM, SGLang, llama.cpp) and :class:`TransformersVLM` (a local Qwen2-VL / Qwen2.5-VL
folder; imported lazily because it needs torch). :func:`chat_json` turns an answer into
a validated JSON object or a :class:`VLMFailure`. Test doubles live in
:mod:`gen_reason.vlm.testing`.

Importing this package imports no torch (the verifiers use it).
"""

from __future__ import annotations

from gen_reason.errors import UserError
from gen_reason.vlm.base import (
    VLM,
    VLMUsage,
    check_messages,
    fit_max_side,
    image_part,
    sample_frame_indices,
    sample_frames,
    text_part,
    user_message,
    video_part,
)
from gen_reason.vlm.openai_client import OpenAICompatibleVLM
from gen_reason.vlm.structured import VLMFailure, chat_json, extract_json_object

__all__ = [
    "VLM", "VLMUsage", "VLMFailure", "chat_json", "extract_json_object", "OpenAICompatibleVLM", "TransformersVLM",
    "load_vlm", "check_messages", "text_part", "image_part", "video_part", "user_message", "sample_frames",
    "sample_frame_indices", "fit_max_side",
]


def __getattr__(name: str):
    # TransformersVLM pulls in torch only when someone actually asks for it.
    if name == "TransformersVLM":
        from gen_reason.vlm.transformers_client import TransformersVLM

        return TransformersVLM
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_vlm(target: str, model: str | None = None, **kwargs) -> VLM:
    """A VLM from a command-line style target: an ``http(s)://`` base URL or a local model folder.

    A URL needs ``model`` (the name the server serves); other keyword arguments go to
    :class:`OpenAICompatibleVLM` or :meth:`TransformersVLM.from_pretrained`.
    """
    target = str(target)
    if target.startswith(("http://", "https://")):
        if not model:
            raise UserError(f"a VLM server URL ({target}) needs a model name too")
        return OpenAICompatibleVLM(target, model, **kwargs)
    if model:
        raise UserError(f"a model name ({model!r}) only goes with a server URL; {target} is read as a local folder")
    from gen_reason.vlm.transformers_client import TransformersVLM

    return TransformersVLM.from_pretrained(target, **kwargs)
