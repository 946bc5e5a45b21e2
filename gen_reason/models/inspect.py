"""``genreason inspect-model PATH``: what a model folder is, whether it is complete, and what it needs.

Reads configuration files only, so it works on a folder whose weights are not (yet)
downloaded. Every model component is built from its ``config.json`` on the meta device
(sizes, no data), which gives exact parameter counts, and the pipeline object is built
around those components, so the family's own size and latent rules apply unchanged. The
memory estimates are :mod:`gen_reason.models.planner`'s.

A folder can be:
- complete (every listed component has its config and its weights);
- config-only (no component has weights: everything but generation works, e.g. the
  copies of the real Hub folders in ``tests/models/real_configs``);
- broken: a listed component folder or config is missing, a safetensors file is shorter
  than its header says (an interrupted download), a file is a git-lfs pointer instead of
  the weights, a shard listed in an index is missing, or only some components have
  weights. Each problem is one line in :attr:`ModelReport.problems`.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gen_reason.errors import UserError

LFS_POINTER_PREFIX = b"version https://git-lfs"
#: Files that hold a tokenizer's vocabulary (large; a config-only copy leaves them out).
NO_WEIGHT_WORDS = ("Scheduler", "Tokenizer", "Processor")
DEFAULT_GPU_GIB = 80.0


class IncompleteModel(UserError):
    """A model folder with missing or half-downloaded files that cannot even be described;
    ``problems`` holds one line per problem (the message is the first)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems[0])
        self.problems = problems


@dataclass
class MetaModel:
    """A model folder built on the meta device: the pipeline object, its family and configs."""

    path: Path
    model_index: dict
    pipeline_class: type
    family: Any
    pipeline: Any
    dtypes: dict
    configs: dict


@dataclass
class ModelReport:
    """Everything ``inspect-model`` prints (``to_json`` is the ``--json`` object)."""

    path: str
    family: str
    folder_pipeline: str
    pipeline: str
    default_size: tuple[int, int]
    default_frames: int
    fps: int
    steps: int
    fixed_size: tuple[int, int] | None
    size_multiple: int
    frame_step: int
    components: list[dict]
    weights: str
    problems: list[str]
    gpu_memory_gib: float
    estimates: list[dict] = field(default_factory=list)
    plan: dict = field(default_factory=dict)
    peak_gib: float = 0.0
    calibrated: bool = True

    def to_json(self) -> dict:
        """A JSON-ready dict (``default_size`` as ``[height, width]``)."""
        data = dict(self.__dict__)
        data["default_size"] = list(self.default_size)
        data["fixed_size"] = list(self.fixed_size) if self.fixed_size else None
        return data


# -- the folder's files ------------------------------------------------------------------------
def check_files(path: Path, model_index: dict) -> tuple[list[str], str]:
    """One line per problem with the folder's files, and the weights' state:
    ``complete``, ``config-only`` or ``partial``."""
    from gen_reason.models.model_folder import TOKENIZER_FILES, listed_components

    problems: list[str] = []
    with_weights, without_weights = [], []
    for name, (library, class_name) in listed_components(model_index).items():
        folder = path / name
        if not folder.is_dir():
            problems.append(f"{name}/ is missing (model_index.json lists {class_name})")
            continue
        if "Scheduler" in class_name:
            if not (folder / "scheduler_config.json").is_file():
                problems.append(f"{name}/scheduler_config.json is missing")
            continue
        if "Processor" in class_name:
            if not (folder / "preprocessor_config.json").is_file():
                problems.append(f"{name}/preprocessor_config.json is missing")
            continue
        if "Tokenizer" in class_name:
            if not (folder / "tokenizer_config.json").is_file():
                problems.append(f"{name}/tokenizer_config.json is missing")
            has_vocabulary = any((folder / file).is_file() for file in TOKENIZER_FILES)
            (with_weights if has_vocabulary else without_weights).append(name)
            continue
        if not (folder / "config.json").is_file():
            problems.append(f"{name}/config.json is missing")
        files = sorted(folder.glob("*.safetensors"))
        problems += _check_index(folder, name)
        for file in files:
            problem = _check_safetensors(file)
            if problem:
                problems.append(f"{name}/{file.name} {problem}")
        (with_weights if files else without_weights).append(name)
    if not with_weights:
        return problems, "config-only"
    for name in without_weights:
        if any(word in model_index[name][1] for word in ("Tokenizer",)):
            problems.append(f"{name}/ has no vocabulary file ({' or '.join(TOKENIZER_FILES[:2])}): incomplete download")
        else:
            problems.append(f"{name}/ has no .safetensors weights while other components have theirs: "
                            "incomplete download")
    return problems, "partial" if problems else "complete"


def _check_index(folder: Path, name: str) -> list[str]:
    problems = []
    for index_file in folder.glob("*.safetensors.index.json"):
        try:
            weight_map = json.loads(index_file.read_text(encoding="utf-8")).get("weight_map", {})
        except (OSError, ValueError, AttributeError):
            problems.append(f"{name}/{index_file.name} cannot be read")
            continue
        for shard in sorted(set(weight_map.values())):
            if not (folder / shard).is_file():
                problems.append(f"{name}/{shard} is missing (listed in {index_file.name})")
    return problems


def _check_safetensors(file: Path) -> str | None:
    """Why ``file`` is not a whole safetensors file, or ``None``."""
    size = file.stat().st_size
    with open(file, "rb") as handle:
        head = handle.read(8)
        if head.startswith(LFS_POINTER_PREFIX[:8]) and handle.read(len(LFS_POINTER_PREFIX) - 8) == LFS_POINTER_PREFIX[8:]:
            return "is a git-lfs pointer, not the weights (run `git lfs pull` in the model folder)"
        if len(head) < 8:
            return f"is truncated ({size} bytes): the download stopped part way"
        (header_length,) = struct.unpack("<Q", head)
        if header_length > size - 8:
            return f"is truncated ({size} bytes, header of {header_length}): the download stopped part way"
        try:
            header = json.loads(handle.read(header_length))
        except ValueError:
            return "has an unreadable header (not a safetensors file, or damaged)"
    end = max((int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"), default=0)
    expected = 8 + header_length + end
    if size < expected:
        return f"is truncated ({size} of {expected} bytes): the download stopped part way"
    return None


# -- building on the meta device --------------------------------------------------------------
def build_meta(path: str | Path, dtype: Any = None, device: Any = "meta",
               pipeline_cls: type | None = None) -> MetaModel:
    """Build the model folder at ``path`` on the meta device from its configs (no weights read).

    ``dtype``: the compute dtype (default bfloat16, what a GPU run uses); each component's
    load dtype follows the family (e.g. Wan's VAE in float32). Components that cannot be
    built (a missing config) and tokenizers and processors are left out of the pipeline.
    ``device="cuda"`` builds the same model with random weights on a GPU instead
    (``bench/gpu_check.py``). ``pipeline_cls`` replaces the class genreason runs for the
    folder (a test's subclass of it).
    """
    import torch

    from gen_reason.models.model_folder import component_dtypes, listed_components, read_model_folder

    folder = read_model_folder(path, check_files=False)
    dtypes = component_dtypes(folder.family, folder.model_index, dtype or torch.bfloat16)
    components: dict[str, Any] = {}
    for name, (library, class_name) in listed_components(folder.model_index).items():
        if name not in folder.configs or any(word in class_name for word in ("Tokenizer", "Processor")):
            continue
        components[name] = _build_component(folder.path / name, library, class_name, dtypes.get(name), device)
    pipeline_cls = pipeline_cls or folder.pipeline_cls
    pipe = _assemble(pipeline_cls, components, folder.model_index)
    return MetaModel(folder.path, folder.model_index, pipeline_cls, folder.family, pipe, dtypes, folder.configs)


def _build_component(folder: Path, library: str, class_name: str, dtype: Any, device: Any = "meta") -> Any:
    import importlib

    import torch

    try:
        cls = getattr(importlib.import_module(library), class_name)
    except (ImportError, AttributeError):
        raise UserError(f"{folder.name}: {library} has no class {class_name} (is the library too old?)") from None
    try:
        if "Scheduler" in class_name:
            return cls.from_pretrained(str(folder))  # a scheduler is its config
        default = torch.get_default_dtype()
        if dtype is not None and device != "meta":
            torch.set_default_dtype(dtype)  # made in its dtype: no float32 copy of a 14B model on the GPU
        try:
            if library == "transformers":
                config = cls.config_class.from_pretrained(str(folder))
                with torch.device(device):
                    model = cls._from_config(config, **({"dtype": dtype} if device != "meta" and dtype else {}))
            else:
                with torch.device(device):
                    model = cls.from_config(cls.load_config(str(folder)))
        finally:
            torch.set_default_dtype(default)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        from gen_reason.models.model_folder import first_line

        raise UserError(f"cannot build {folder.name} ({class_name}) from its config: {first_line(exc)}") from None
    if dtype is None:
        return model
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # "cast with to()": sizes are all that matter here
    try:
        return model.to(dtype)
    finally:
        diffusers_logging.set_verbosity(level)


def _assemble(pipeline_cls: type, components: dict, model_index: dict) -> Any:
    """The pipeline object around meta components (``None`` for tokenizers and processors)."""
    import inspect

    parameters = inspect.signature(pipeline_cls.__init__).parameters
    arguments = {}
    for name in parameters:
        if name == "self":
            continue
        if name in components:
            arguments[name] = components[name]
        elif name in model_index and not isinstance(model_index[name], list):
            arguments[name] = model_index[name]  # boundary_ratio, expand_timesteps
        elif parameters[name].default is inspect.Parameter.empty:
            arguments[name] = None
    return pipeline_cls(**arguments)


# -- the report -----------------------------------------------------------------------------------
def gpu_memory_default() -> float:
    """The visible GPU's memory in GiB, else :data:`DEFAULT_GPU_GIB`."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory / 2**30
    return DEFAULT_GPU_GIB


def inspect_model(path: str | Path, gpu_memory_gib: float | None = None, size: tuple[int, int] | None = None,
                  num_frames: int | None = None) -> ModelReport:
    """Inspect the model folder at ``path`` (configs only); see the module docstring.

    ``gpu_memory_gib``: the GPU to plan for (default: the visible one, else 80 GiB);
    ``size`` / ``num_frames``: the video to plan for (default: the model's).
    """
    from gen_reason.models import planner
    from gen_reason.models.families import Geometry
    from gen_reason.models.loading import resolve_model_path

    path = resolve_model_path(path)  # "embedded" names the shipped model
    problems, weights, meta = _read_folder(path)
    family, pipe = meta.family, meta.pipeline
    limits = family.limits(meta.configs)
    defaults = family.defaults
    family.check_request(limits, size, num_frames)
    height, width = size or limits.fixed_size or defaults.size
    frames = num_frames or defaults.num_frames
    gpu = float(gpu_memory_gib) if gpu_memory_gib is not None else gpu_memory_default()
    if not gpu > 0:
        raise UserError(f"--gpu-memory must be a positive number of GiB; got {gpu_memory_gib}")
    components = planner.pipeline_components(pipe, meta.dtypes)
    compute = meta.dtypes.get("transformer") or next(iter(meta.dtypes.values()), None)
    workload = planner.workload_for(pipe, family, Geometry(frames, height, width), compute, meta.dtypes.get("vae"))
    budget = planner.device_budget(gpu_memory_gib=gpu)
    estimates = _estimates(components, workload, budget, tilings=(False, True) if getattr(pipe, "vae", None) is not None
                           else (False,))
    choice = planner.plan(components, workload, budget)
    resident = planner.estimate(components, workload, batch=1)
    return ModelReport(
        path=str(path), family=family.name, folder_pipeline=str(meta.model_index.get("_class_name")),
        pipeline=meta.pipeline_class.__name__, default_size=(int(height), int(width)), default_frames=int(frames),
        fps=defaults.fps, steps=defaults.steps, fixed_size=limits.fixed_size, size_multiple=limits.size_multiple,
        frame_step=limits.frame_step,
        components=[{"name": c.name, "class": c.class_name, "params": c.params, "dtype": c.dtype,
                     "gib": round(c.nbytes / 2**30, 2)} for c in components],
        weights=weights, problems=problems, gpu_memory_gib=round(gpu, 2), estimates=estimates,
        plan={"max_batch": choice.max_batch, "offload": choice.offload, "vae_tiling": choice.vae_tiling,
              "peak_gib": round(choice.estimate.peak_gib, 2), "fits": choice.fits, "line": choice.describe()},
        peak_gib=round(resident.peak_gib, 2), calibrated=workload.calibrated,
    )


def _read_folder(path: Path) -> tuple[list[str], str, "MetaModel"]:
    """The folder's file problems, the state of its weights (see :func:`check_files`) and its
    description (:func:`build_meta`); :class:`IncompleteModel` when a folder with missing
    or broken files cannot even describe itself."""
    from gen_reason.models.families import Geometry
    from gen_reason.models.model_folder import read_model_index

    model_index = read_model_index(path)
    problems, weights = check_files(path, model_index)
    try:
        meta = build_meta(path)
        # a folder that lacks a listed part may not even describe itself: say what is missing instead
        meta.family.limits(meta.configs)
        meta.family.latent_shape(meta.pipeline, Geometry(1, 64, 64))
    except (UserError, AttributeError, TypeError, KeyError, ValueError):
        if problems:
            raise IncompleteModel(problems) from None
        raise
    return problems, weights, meta


def _estimates(components, workload, budget, *, tilings: tuple[bool, ...]) -> list[dict]:
    """The peak memory of one video and the most videos that fit ``budget``, for every
    offload mode and VAE tiling."""
    from gen_reason.models import planner

    estimates = []
    for offload in planner.OFFLOAD_ORDER:
        for tiling in tilings:
            one = planner.estimate(components, workload, batch=1, offload=offload, vae_tiling=tiling)
            chosen = planner.plan(components, workload, budget, offload=offload, vae_tiling=tiling)
            estimates.append({"offload": offload, "vae_tiling": tiling, "batch1_gib": round(one.peak_gib, 2),
                              "phases_gib": {k: round(v / 2**30, 2) for k, v in one.phases.items()},
                              "max_batch": chosen.max_batch if chosen.fits else 0,
                              "max_batch_gib": round(chosen.estimate.peak_gib, 2) if chosen.fits else None})
    return estimates


def format_report(report: ModelReport) -> str:
    """The human-readable report."""
    h, w = report.default_size
    lines = [f"{report.path}",
             f"  family      {report.family}",
             f"  pipeline    {report.folder_pipeline}" + (f" (runs as {report.pipeline})"
                                                           if report.pipeline != report.folder_pipeline else ""),
             f"  defaults    {h}x{w}, {report.default_frames} frames at {report.fps} fps, {report.steps} steps",
             f"  sizes       " + (f"only {report.fixed_size[0]}x{report.fixed_size[1]}" if report.fixed_size
                                  else f"multiples of {report.size_multiple}")
             + f"; frames {report.frame_step}k+1",
             "  components"]
    for c in report.components:
        lines.append(f"    {c['name']:14s} {c['class']:32s} {c['params'] / 1e9:7.3f} B params  {c['dtype']:9s} "
                     f"{c['gib']:7.2f} GiB")
    weights = {"complete": "complete", "partial": "INCOMPLETE (see problems)",
               "config-only": "none present (config-only folder: inspect works, generation needs the weights)"}
    lines.append(f"  weights     {weights[report.weights]}")
    note = "" if report.calibrated else " (approximate: this model's classes are not calibrated)"
    lines.append(f"  memory      estimated peak at {h}x{w}x{report.default_frames}, GPU of "
                 f"{report.gpu_memory_gib:g} GiB{note}:")
    lines.append(f"    {'offload':10s} {'VAE tiling':10s} {'batch 1':>9s}   largest batch that fits")
    for row in report.estimates:
        fits = (f"{row['max_batch']} ({row['max_batch_gib']:.1f} GiB)" if row["max_batch"] else "none")
        lines.append(f"    {row['offload']:10s} {'on' if row['vae_tiling'] else 'off':10s} "
                     f"{row['batch1_gib']:7.1f} GiB   {fits}")
    lines.append(f"  planner     {report.plan['line']}")
    for problem in report.problems:
        lines.append(f"  PROBLEM     {problem}")
    return "\n".join(lines)
