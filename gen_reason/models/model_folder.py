"""A diffusers model folder: read and checked before anything loads, then loaded.

Everything here reads ``model_index.json`` and the components' configuration files only
(no weights), so a folder that cannot work is a one-line :class:`UserError` in a second,
before a load that may take minutes: :func:`read_model_folder` does every such check and
returns what the folder says (:class:`ModelFolder`); :func:`load_pipeline` then loads it
offline from safetensors, without remote code.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gen_reason.errors import UserError
from gen_reason.models.families import PIPELINES, Family, Limits, family_for

#: Tokenizer files, any one of which makes a tokenizer folder loadable (``*_config.json`` alone does not).
TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "tokenizer.model", "vocab.json", "vocab.txt",
                   "sentencepiece.bpe.model")
try:
    from safetensors import SafetensorError
except ImportError:  # older safetensors
    SafetensorError = OSError
#: What a model folder's broken files raise inside diffusers/transformers loading (a truncated
#: shard, a tokenizer.json cut short): OSError for missing files, the rest for bad contents.
_LOAD_ERRORS = (OSError, ValueError, KeyError, SafetensorError)


@dataclass(frozen=True)
class ModelFolder:
    """What a model folder says about itself: its ``model_index.json``, the pipeline class
    and family it runs as, and each listed component's configuration (by name)."""

    path: Path
    model_index: dict
    pipeline_cls: type
    family: Family
    configs: dict[str, dict]

    @property
    def limits(self) -> Limits:
        """The sizes and frame counts the model takes (from its configs)."""
        return self.family.limits(self.configs)


def read_model_folder(path: str | Path, *, check_files: bool = True) -> ModelFolder:
    """Read the model folder at ``path``; a one-line :class:`UserError` when it is missing, is
    not a diffusers model, names an unsupported pipeline or (``check_files``) lacks a listed
    component, safetensors weights or a tokenizer's vocabulary (config-only folders pass
    ``check_files=False``)."""
    path = Path(path).expanduser()
    model_index = read_model_index(path)
    pipeline_cls = pipeline_class(model_index.get("_class_name"), path)
    if check_files:
        check_components(path, model_index)
    family = model_family(path, model_index, pipeline_cls)
    return ModelFolder(path, model_index, pipeline_cls, family, read_component_configs(path, model_index))


def read_model_index(path: Path) -> dict:
    """The parsed ``model_index.json`` of a model folder, or a one-line :class:`UserError`."""
    if not path.exists():
        raise UserError(f"model folder not found: {path}")
    if not path.is_dir():
        raise UserError(f"model path is not a folder: {path}")
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise UserError(f"{path} is not a diffusers model folder (no model_index.json)")
    model_index = read_json(index_file)
    if not isinstance(model_index, dict):
        raise UserError(f"{index_file} does not hold a JSON object")
    return model_index


def pipeline_class(class_name: Any, path: Path) -> type:
    """The pipeline class for ``_class_name``, or a :class:`UserError` naming the supported ones."""
    if not isinstance(class_name, str):
        raise UserError(f"{path}/model_index.json has no usable _class_name (custom pipeline code is never run)")
    if class_name not in PIPELINES:
        raise UserError(
            f"unsupported pipeline {class_name} in {path}; supported: {', '.join(PIPELINES.names())}"
        )
    try:
        cls = PIPELINES.get(class_name)
    except (ImportError, AttributeError) as exc:
        message = f"pipeline {class_name} is registered but cannot be imported: {first_line(exc)}"
        raise UserError(message) from None
    from diffusers import DiffusionPipeline

    if not (isinstance(cls, type) and issubclass(cls, DiffusionPipeline)):
        raise UserError(f"pipeline {class_name} resolves to {cls!r}, not a diffusers pipeline class")
    return cls


def listed_components(model_index: dict) -> dict[str, tuple[str, str]]:
    """``name -> (library, class)`` of every component ``model_index.json`` lists as present."""
    return {name: tuple(spec) for name, spec in model_index.items()
            if not name.startswith("_") and isinstance(spec, list) and len(spec) == 2 and None not in spec}


def check_components(path: Path, model_index: dict) -> None:
    """Raise a :class:`UserError` for a component ``model_index.json`` lists but the folder lacks,
    a model component without safetensors weights, or a tokenizer without its vocabulary."""
    for name, (_, class_name) in listed_components(model_index).items():
        folder = path / name
        if not folder.is_dir():
            raise UserError(f"{path} lists component {name!r} in model_index.json but has no {name}/ folder")
        is_model = (folder / "config.json").is_file()
        if is_model and not any(folder.glob("*.safetensors")):
            raise UserError(
                f"component {name!r} in {path} has no .safetensors weights (only safetensors are loaded)"
            )
        if "Tokenizer" in class_name and not any((folder / file).is_file() for file in TOKENIZER_FILES):
            raise UserError(f"tokenizer {name!r} in {path} has no vocabulary file "
                            f"({' or '.join(TOKENIZER_FILES[:2])}); the download is incomplete")


def read_component_configs(path: Path, model_index: dict) -> dict[str, dict]:
    """Each listed component's configuration (``config.json``, ``scheduler_config.json`` or
    ``preprocessor_config.json``), by component name; nothing is loaded. A component whose
    configuration is missing is left out (:func:`check_components` reports missing folders)."""
    configs: dict[str, dict] = {}
    for name in listed_components(model_index):
        for file_name in ("config.json", "scheduler_config.json", "preprocessor_config.json"):
            file = path / name / file_name
            if file.is_file():
                configs[name] = read_json(file)
                break
    return configs


def model_family(path: Path, model_index: dict, pipeline_cls: type | None = None) -> Family:
    """The :class:`Family` of the model folder at ``path``, from its configs alone.

    A ``WanPipeline`` folder without ``expand_timesteps`` is a text-to-video model (Wan2.1-T2V,
    Wan2.2-T2V-A14B), which has no way to take the first frame: a :class:`UserError`.
    """
    class_name = model_index.get("_class_name")
    if class_name == "WanPipeline" and not model_index.get("expand_timesteps"):
        raise UserError(f"{path} is a Wan text-to-video model (WanPipeline without expand_timesteps); genreason needs "
                        "an image-to-video one (Wan2.1-I2V, Wan2.2-I2V-A14B or Wan2.2-TI2V-5B)")
    configs = read_component_configs(path, model_index)
    return family_for(class_name, pipeline_cls, model_index, configs, folder_name=path.name)


def model_limits(path: str | Path) -> tuple[Family, Limits]:
    """The family of a model folder and the sizes and frame counts it takes, from configs only."""
    folder = read_model_folder(path, check_files=False)
    return folder.family, folder.limits


def check_request(path: str | Path, size: tuple[int, int] | None = None, num_frames: int | None = None) -> None:
    """Raise a one-line :class:`UserError` when the model folder at ``path`` cannot take ``size``
    or ``num_frames`` (reads configs only: call it before loading anything, e.g. before training)."""
    family, limits = model_limits(path)
    family.check_request(limits, size, num_frames)


def check_fixed_size(path: str | Path, height: int, width: int) -> None:
    """Raise a one-line :class:`UserError` when the model folder at ``path`` runs only at one
    size (CogVideoX-5b-I2V: 480x720) and ``height`` x ``width`` is not it; reads configs only,
    so training can refuse a dataset before the model loads and the cache fills."""
    family, limits = model_limits(path)
    if limits.fixed_size is not None:
        family.check_request(dataclasses.replace(limits, size_multiple=1), size=(height, width))


def component_dtypes(family: Family, model_index: dict, dtype: torch.dtype) -> dict[str, torch.dtype]:
    """The dtype each listed model component loads in at compute ``dtype`` (schedulers, tokenizers
    and processors have none)."""
    dtypes = {}
    for name, (_, class_name) in listed_components(model_index).items():
        if any(word in class_name for word in ("Scheduler", "Tokenizer", "Processor")):
            continue
        dtypes[name] = torch.float32 if name in family.fp32_components else dtype
    return dtypes


def load_pipeline(folder: ModelFolder, dtype: torch.dtype):
    """The folder's pipeline, loaded on the CPU in ``dtype`` (the family's fragile components,
    such as Wan's VAE, in float32); unreadable or corrupt files are a one-line :class:`UserError`."""
    torch_dtype: Any = dtype
    if dtype != torch.float32 and folder.family.fp32_components:
        torch_dtype = {"default": dtype, **{name: torch.float32 for name in folder.family.fp32_components}}
    try:
        return folder.pipeline_cls.from_pretrained(
            str(folder.path), **{_dtype_keyword(): torch_dtype}, local_files_only=True, use_safetensors=True
        )
    except _LOAD_ERRORS as exc:  # unreadable, missing, truncated or corrupt files in the folder
        raise UserError(f"cannot load model {folder.path}: {type(exc).__name__}: {first_line(exc)}") from None


def _dtype_keyword() -> str:
    """``dtype`` on diffusers that renamed it (``torch_dtype`` is deprecated there), else ``torch_dtype``."""
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def read_json(file: Path) -> Any:
    """The parsed contents of the JSON file ``file``; unreadable or invalid JSON is a one-line :class:`UserError`."""
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {file}: {first_line(exc)}") from None


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
