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


def check_model(path: str | Path = "embedded", lora: str | Path | None = None) -> Path:
    """The cheap checks of a model before anything is written or loaded: the folder exists,
    holds a ``model_index.json`` whose components are all there, and the LoRA exists.
    Returns the resolved folder; raises a one-line :class:`UserError` (as loading would)."""
    from gen_reason.models.model_folder import check_components, read_model_index

    folder = resolve_model_path(path)
    check_components(folder, read_model_index(folder))
    if lora is not None and not Path(lora).expanduser().exists():
        raise UserError(f"LoRA not found: {lora}")
    return folder


def load_generator(path: str | Path = "embedded", **options: Any):
    """Load a video generator from a model name or local folder.

    ``options`` go to :meth:`DiffusersVideoGenerator.from_pretrained` (``lora``,
    ``lora_scale``, ``steps``, ``num_frames``, ... and the model options every command
    shares: ``size``, ``dtype``, ``device``, ``offload``, ``vae_tiling``, ``attention``,
    ``compile``, ``max_batch``; see :mod:`gen_reason.models.options`); ``None`` values are
    dropped so config defaults fall through to the model family's and the memory planner's.
    Model options are checked (one-line :class:`UserError`) before anything loads.
    """
    from gen_reason.models.diffusers_backend import DiffusersVideoGenerator
    from gen_reason.models.options import MODEL_OPTIONS, check_model_options

    options = {k: v for k, v in options.items() if v is not None}
    options.update(check_model_options(**{k: options.pop(k) for k in MODEL_OPTIONS if k in options}))
    return DiffusersVideoGenerator.from_pretrained(resolve_model_path(path), **options)


def model_task_defaults(model_path: str | Path) -> dict:
    """The puzzle settings a model folder asks for in its ``genreason.json``.

    Keys: ``task_config``, ``task_config_by_difficulty``, ``difficulty``, ``num_frames``
    (e.g. the embedded model's 32x32 high-contrast mazes). Empty when there is none.
    """
    meta = Path(model_path) / "genreason.json"
    return json.loads(meta.read_text()) if meta.exists() else {}


def task_for_model(defaults: dict, task: str, difficulty: str, overrides: dict | None = None, *,
                   model: str | Path = "the model"):
    """The configured :class:`~gen_reason.puzzles.Task` a model should be given.

    ``defaults`` is the model folder's ``genreason.json`` (:func:`model_task_defaults`).
    A model that names the task it was trained for (the embedded model: ``maze/grid``)
    is given only that task, with its puzzle settings (:func:`task_config_for`); any
    other task is one line naming the tasks it knows and how to point ``--model`` at a
    diffusers model. A model whose ``genreason.json`` names no task, or that has none (a Hub
    folder), takes any task with its settings, if any, under the caller's ``overrides``.
    This is the one place every
    command (solve, eval, probe, training data) turns a model and a task name into a task.
    """
    from gen_reason.puzzles import TASKS, get_task

    trained = defaults.get("task")
    wanted = TASKS.canonical(task)
    if trained is not None and wanted != (known := TASKS.canonical(trained)):
        sizes = ", ".join(defaults.get("trained_sizes", [])) or defaults.get("difficulty", "")
        name = "the embedded model" if str(model) in EMBEDDED_NAMES else f"model {model}"
        raise UserError(
            f"{name} was trained for {known.rsplit('-v', 1)[0]} only ({sizes}), not {wanted.rsplit('-v', 1)[0]}; "
            "for other tasks point --model at a local diffusers image-to-video folder (Wan, CogVideoX, LTX), "
            "e.g. --model models/Wan2.1-I2V-14B-480P-Diffusers")
    return get_task(task, **task_config_for(defaults, difficulty, overrides))


def task_config_for(defaults: dict, difficulty: str, overrides: dict | None = None) -> dict:
    """The task config for ``difficulty``: the model's general settings, then its
    per-difficulty geometry (room size that fills its resolution), then the caller's."""
    return {**defaults.get("task_config", {}),
            **defaults.get("task_config_by_difficulty", {}).get(str(difficulty).lower(), {}),
            **(overrides or {})}
