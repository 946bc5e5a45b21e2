"""Vision-language models behind one interface: ``VLM.chat(messages) -> str``.

Backends: :class:`OpenAICompatibleVLM` (any OpenAI-compatible server by base URL:
vLLM, SGLang, llama.cpp) and :class:`TransformersVLM` (a local image-text-to-text model
folder through transformers' auto classes: Qwen2.5-VL, Qwen3-VL, Gemma 3, ...; imported
lazily because it needs torch). :func:`load_vlm` makes either from ``--vlm URL_OR_FOLDER``. :func:`chat_json` turns an answer into
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
    """The VLM that ``--vlm URL_OR_FOLDER`` names: the one place a command-line VLM is made.

    - ``http(s)://...``: any OpenAI-compatible server (vLLM, SGLang, llama.cpp, ...) as an
      :class:`OpenAICompatibleVLM`: ``http://host:8000``, ``http://host:8000/v1`` or
      ``.../v1/chat/completions``; the model name is asked of the server (``/v1/models``)
      unless given as ``URL#MODEL`` or ``model``.
    - a local folder: a transformers image-text-to-text model (Qwen2.5-VL, Qwen3-VL,
      Gemma 3, ...) as a :class:`TransformersVLM`, checked before it loads.

    Other keyword arguments go to :class:`OpenAICompatibleVLM` or
    :meth:`TransformersVLM.from_pretrained`. Anything else is a one-line
    :class:`~gen_reason.errors.UserError`.
    """
    from pathlib import Path

    target = str(target).strip()
    if not target:
        raise UserError("--vlm needs a server URL (http://host:8000/v1) or a local model folder")
    if "://" in target:
        return OpenAICompatibleVLM(target, model, **kwargs)
    if model:
        raise UserError(f"a model name ({model!r}) only goes with a server URL; {target} is read as a local folder")
    if not Path(target).expanduser().is_dir():
        raise UserError(f"--vlm {target}: neither an http(s):// server URL nor an existing model folder")
    from gen_reason.vlm.transformers_client import TransformersVLM

    return TransformersVLM.from_pretrained(target, **kwargs)
