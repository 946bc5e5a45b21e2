"""Run configs: dataclasses, loaded from YAML, every field overridable by a dotted flag.

``configs/*.yaml`` hold the shipped protocols; ``genreason eval --config X.yaml
--model.steps 30 --data.n 50`` overrides fields; the resolved config is written into the
run folder and decides whether a rerun may resume there.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from gen_reason.config import build, load, set_dotted, to_plain
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

    def __post_init__(self) -> None:
        if self.split not in (None, "train", "test"):
            raise UserError(f"config key 'data.split' must be train, test or null; got {self.split!r}")
        if self.split is not None and self.dataset is None:
            raise UserError("config key 'data.split' needs data.dataset (a folder written by make-dataset)")


@dataclass
class ModelConfig:
    """Which video generator and how to sample it."""

    path: str = "embedded"  # "embedded" (shipped default) or a local diffusers model folder
    lora: str | None = None
    lora_scale: float = 1.0
    steps: int | None = None
    guidance: float | None = None
    num_frames: int | None = None
    # The model options every command shares (gen_reason.models.options): flags of the same
    # name on solve, probe and train lora. None: the model's default or the memory planner's choice.
    device: str | None = None
    dtype: str | None = None
    max_batch: int | str | None = None  # videos per model call; None or "auto": the planner's
    size: str | tuple[int, int] | None = None  # "HxW" in pixels, e.g. "480x832", or [480, 832]
    offload: str | None = None  # auto | none | model | sequential | group
    vae_tiling: bool | str | None = None  # auto | on | off
    attention: str | None = None  # auto, sdpa, or a diffusers attention backend
    compile: bool = False

    def __post_init__(self) -> None:
        from gen_reason.models.options import MODEL_OPTIONS, check_model_options

        for name in ("steps", "num_frames"):  # caught here, not after the model has loaded
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"config key 'model.{name}' must be >= 1 (or null for the model's default); got {value}")
        if self.guidance is not None and self.guidance < 0:
            raise UserError(f"config key 'model.guidance' must be >= 0; got {self.guidance}")
        check_model_options(**{name: getattr(self, name) for name in MODEL_OPTIONS})

    def model_options(self) -> dict:
        """The model options set here, checked, as :func:`~gen_reason.models.loading.load_generator` takes them."""
        from gen_reason.models.options import MODEL_OPTIONS, check_model_options

        return check_model_options(**{name: getattr(self, name) for name in MODEL_OPTIONS})


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
    """Build config dataclass ``cls`` from a nested dict (:func:`gen_reason.config.build`:
    unknown keys refused with "did you mean", types checked)."""
    return build(cls, data, what="config")


def to_dict(config) -> dict:
    """A plain nested dict of a config dataclass."""
    return to_plain(config)


def apply_overrides(data: dict, overrides: dict[str, Any]) -> dict:
    """A copy of ``data`` with dotted keys set (``{"model.steps": 30}``; ``solvers.0.params.n``
    indexes lists)."""
    data = copy.deepcopy(data)
    for dotted, value in overrides.items():
        set_dotted(data, dotted, value)
    return data


def _solver_names(data: dict) -> dict:
    """A solver may be given by name alone: ``solvers: [single, best-of-n]``."""
    if isinstance(data.get("solvers"), list):
        data["solvers"] = [{"name": item} if isinstance(item, str) else item for item in data["solvers"]]
    return data


def load_config(path: str | None, overrides: dict[str, Any] | None = None) -> EvalConfig:
    """Load an :class:`EvalConfig`: defaults, the YAML file, then dotted overrides
    (:func:`gen_reason.config.load`)."""
    return load(EvalConfig, path, overrides, prepare=_solver_names)
