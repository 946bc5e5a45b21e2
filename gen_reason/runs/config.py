"""Run configs: dataclasses, loaded from YAML, every field overridable by a dotted flag.

``configs/*.yaml`` hold the shipped protocols; ``genreason eval --config X.yaml
--model.steps 30 --data.n 50`` overrides fields; the resolved config is written into the
run folder and decides whether a rerun may resume there.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gen_reason.errors import UserError


@dataclass
class DataConfig:
    """Which puzzles: a dataset folder, or tasks x difficulties x seeds made on the fly."""

    tasks: list[str] = field(default_factory=lambda: ["maze/grid"])
    difficulties: list[str] = field(default_factory=lambda: ["easy"])
    seed: int = 1_000_000  # item i of a (task, difficulty) uses seed + i; >= 1e6 is held out from training
    n: int = 10  # instances per (task, difficulty)
    dataset: str | None = None  # a folder written by make-dataset (overrides tasks/difficulties/n)
    split: str | None = None  # with dataset: "train" or "test"
    task_config: dict = field(default_factory=dict)


@dataclass
class ModelConfig:
    """Which video generator and how to sample it."""

    path: str = "embedded"  # "embedded" (shipped default) or a local diffusers model folder
    lora: str | None = None
    lora_scale: float = 1.0
    steps: int | None = None
    guidance: float | None = None
    num_frames: int | None = None
    device: str | None = None
    dtype: str | None = None
    max_batch: int | None = None  # videos per model call (None: the backend's default, 4)


@dataclass
class SolverSpec:
    """One solver to run: registry name, its parameters, and an optional label."""

    name: str = "single"
    params: dict = field(default_factory=dict)
    label: str | None = None

    @property
    def key(self) -> str:
        """The label used in results (name unless given)."""
        return self.label or self.name


@dataclass
class EvalConfig:
    """A whole evaluation run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    solvers: list[SolverSpec] = field(default_factory=lambda: [SolverSpec()])
    budget: dict = field(default_factory=dict)  # Budget fields (nfe, clips, vlm_calls, seconds)
    verifier: str = "rule"  # what solvers may use at test time ("rule")
    vlm: str | None = None  # for VLM solvers: an OpenAI-compatible base URL or a local model folder
    save_videos: bool = True
    out: str = "runs/eval"


def from_dict(cls, data: dict | None, where: str = ""):
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys with a clear error."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(f"unknown config key {where + unknown[0]!r}; known: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_dict(hint, value, f"{where}{name}.")
        elif typing.get_origin(hint) is list and typing.get_args(hint) and dataclasses.is_dataclass(typing.get_args(hint)[0]):
            item_cls = typing.get_args(hint)[0]
            if not isinstance(value, list):
                raise UserError(f"config key {where + name!r} must be a list")
            value = [from_dict(item_cls, v if isinstance(v, dict) else {"name": v}, f"{where}{name}[].") for v in value]
        kwargs[name] = value
    return cls(**kwargs)


def to_dict(config) -> dict:
    """A plain nested dict of a config dataclass."""
    return dataclasses.asdict(config)


def apply_overrides(data: dict, overrides: dict[str, Any]) -> dict:
    """Set dotted keys (``{"model.steps": 30}``) in a nested dict (``solvers.0.params.n`` indexes lists)."""
    data = yaml.safe_load(yaml.safe_dump(data))  # deep copy
    for dotted, value in overrides.items():
        node = data
        parts = dotted.split(".")
        for part in parts[:-1]:
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise UserError(f"bad index {part!r} in --{dotted}")
                node = node[int(part)]
            else:
                node = node.setdefault(part, {})
                if not isinstance(node, (dict, list)):
                    raise UserError(f"--{dotted}: {part!r} is not a section")
        last = parts[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise UserError(f"bad index {last!r} in --{dotted}")
            node[int(last)] = value
        else:
            node[last] = value
    return data


def load_config(path: str | None, overrides: dict[str, Any] | None = None) -> EvalConfig:
    """Load an :class:`EvalConfig` from YAML (or defaults) and apply dotted overrides."""
    data: dict = {}
    if path:
        p = Path(path)
        if not p.exists():
            raise UserError(f"config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"cannot parse {p}: {exc}") from None
        if not isinstance(data, dict):
            raise UserError(f"{p} must hold a mapping at the top level")
    data = apply_overrides(data, overrides or {})
    return from_dict(EvalConfig, data)
