"""Resolve a model name or folder to a :class:`VideoGenerator`.

``"embedded"`` is the small default model shipped inside the package
(``gen_reason/assets/embedded``); anything else is a local diffusers model folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gen_reason.errors import UserError

EMBEDDED_DIR = Path(__file__).resolve().parents[1] / "assets" / "embedded"
EMBEDDED_NAMES = ("embedded", "default")


def resolve_model_path(path: str | Path) -> Path:
    """The folder a model name points to (the shipped embedded model for ``"embedded"``)."""
    if str(path) in EMBEDDED_NAMES:
        if not (EMBEDDED_DIR / "model_index.json").exists():
            raise UserError(f"the embedded model is missing from this installation ({EMBEDDED_DIR})")
        return EMBEDDED_DIR
    return Path(path).expanduser()


def load_generator(path: str | Path = "embedded", **options: Any):
    """Load a video generator from a model name or local folder.

    ``options`` go to :meth:`DiffusersVideoGenerator.from_pretrained` (``lora``,
    ``lora_scale``, ``device``, ``dtype``, ``steps``, ``num_frames``, ...); ``None``
    values are dropped so config defaults fall through to the model family's.
    """
    from gen_reason.models.diffusers_backend import DiffusersVideoGenerator

    options = {k: v for k, v in options.items() if v is not None}
    return DiffusersVideoGenerator.from_pretrained(resolve_model_path(path), **options)


def model_task_defaults(model_path: str | Path) -> dict:
    """The puzzle settings a model folder asks for in its ``genreason.json``.

    Keys: ``task_config``, ``task_config_by_difficulty``, ``difficulty``, ``num_frames``
    (e.g. the embedded model's 32x32 high-contrast mazes). Empty when there is none.
    """
    meta = Path(model_path) / "genreason.json"
    return json.loads(meta.read_text()) if meta.exists() else {}


def task_config_for(defaults: dict, difficulty: str, overrides: dict | None = None) -> dict:
    """The task config for ``difficulty``: the model's general settings, then its
    per-difficulty geometry (room size that fills its resolution), then the caller's."""
    return {**defaults.get("task_config", {}),
            **defaults.get("task_config_by_difficulty", {}).get(str(difficulty).lower(), {}),
            **(overrides or {})}
