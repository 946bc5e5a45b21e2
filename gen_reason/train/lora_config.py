"""The settings of a fine-tuning run (``genreason train lora``): :class:`LoraTrainConfig`,
read from YAML and ``--field value`` flags by :func:`load_lora_config`."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

from gen_reason.config import build, config_flags, parse_value, read_yaml, rename_keys
from gen_reason.errors import UserError
from gen_reason.train.losses import EXPERTS, SCHEMES, NoiseSettings
from gen_reason.train.settings import TrainingConfig



@dataclass
class LoraTrainConfig(TrainingConfig):
    """Every setting of a fine-tuning run (``configs/lora_*.yaml``; each is a CLI override too):
    the settings every trainer shares (:class:`~gen_reason.train.settings.TrainingConfig`:
    learning rate, warm-up, AdamW, EMA, accumulation, clipping, seed, mixed precision,
    max_steps, logging, checkpoints, validation, trackers) and fine-tuning's own."""

    RESUMABLE: ClassVar[frozenset[str]] = TrainingConfig.RESUMABLE | {
        "epochs", "validation_split", "validation_steps", "validation_guidance", "validation_seed",
        "cache_conditioning", "cache_latents", "output_dir"}

    # what: model folder, dataset folder (``genreason make-dataset``), split, run folder
    model: str = ""
    data: str = ""
    split: str | None = "train"
    output_dir: str = "runs/lora"
    # the adapter (``lora: false`` trains every parameter of the transformer / UNet instead)
    lora: bool = True
    target_modules: list[str] | None = None  # None: the family's attention q/k/v/o + feed-forward
    rank: int = 32
    alpha: float | None = None  # None: equal to rank (scale 1)
    dropout: float = 0.0
    experts: str = "both"  # Wan 2.2 A14B: both | high (transformer) | low (transformer_2); others: both
    # optimisation beyond the shared settings
    epochs: int = 5  # the run's length when max_steps is None
    gradient_checkpointing: bool = False
    # geometry: None takes the dataset's, rounded to what the model accepts
    height: int | None = None
    width: int | None = None
    num_frames: int | None = None
    fps: int | None = None  # LTX's temporal RoPE scale; None: the family default
    # timesteps (flow matching: Wan, LTX)
    weighting_scheme: str = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    mode_scale: float = 1.29
    flow_shift: float | None = None  # None: the scheduler's shift
    # encode-once caches
    cache_conditioning: bool = True
    cache_latents: bool = True
    # validation beyond the shared settings
    validation_split: str = "test"  # else fresh puzzles of the dataset's task, none trained on
    validation_steps: int | None = None  # denoising steps; None: the family default
    validation_guidance: float | None = None
    validation_seed: int = 0
    # The model options every command shares (gen_reason.models.options; None: the default, or
    # the memory planner's choice for the validation videos). Training keeps the model on its
    # device, so offload is none or auto only.
    size: str | None = None  # "HxW": height and width at once (height / width above win when set)
    dtype: str | None = None  # the frozen weights' dtype (None: mixed_precision's)
    device: str | None = None  # "cpu" forces the CPU; None: accelerate's choice
    offload: str | None = None
    vae_tiling: bool | str | None = None
    attention: str | None = None
    compile: bool = False  # torch.compile the transformer(s)
    max_batch: int | str | None = None  # validation videos per call

    def validate(self) -> "LoraTrainConfig":
        """Raise :class:`UserError` naming the first bad field; return ``self``."""
        if not self.model:
            raise UserError("no model given: set model in the config or pass --model PATH")
        if not self.data:
            raise UserError("no data given: set data in the config or pass --data DIR")
        build(type(self), self.to_dict())  # every field's type, checked as a config file's are
        self.check_training()
        for name in ("rank", "epochs"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1; got {getattr(self, name)}")
        for name in ("height", "width", "num_frames", "fps", "validation_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"{name} must be >= 1 or null; got {value}")
        if not 0 <= self.dropout < 1:
            raise UserError(f"dropout must be in [0, 1); got {self.dropout}")
        if self.alpha is not None and not self.alpha > 0:
            raise UserError(f"alpha must be > 0 or null; got {self.alpha}")
        choices = {"weighting_scheme": SCHEMES, "experts": EXPERTS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        from gen_reason.models.options import MODEL_OPTIONS, check_model_options

        model_options = check_model_options(**{name: getattr(self, name) for name in MODEL_OPTIONS})
        if model_options.get("offload", "auto") not in ("auto", "none"):
            raise UserError(f"offload {model_options['offload']} does not apply to training (the transformer trains on "
                            "its device); use gradient_checkpointing or a smaller size to save memory")
        if model_options.get("device") not in (None, "cpu", "cuda"):
            raise UserError(f"device {self.device} is not for training: it runs on cpu or cuda, and accelerate picks the "
                            "GPU (choose them with CUDA_VISIBLE_DEVICES or accelerate launch)")
        if self.target_modules is not None and (
            not isinstance(self.target_modules, list) or not all(isinstance(t, str) and t for t in self.target_modules)
        ):
            raise UserError(f"target_modules must be a list of module names; got {self.target_modules!r}")
        return self

    def to_dict(self) -> dict:
        """Plain dict (``config.yaml`` in the run folder)."""
        return dataclasses.asdict(self)

    @property
    def noise(self) -> NoiseSettings:
        """Timestep sampling settings for the objective."""
        return NoiseSettings(self.weighting_scheme, self.logit_mean, self.logit_std, self.mode_scale,
                             self.flow_shift, self.fps)


# Fields that hold text even when the value looks like a number or YAML ("1e-4" stays a float elsewhere).
_TEXT_FIELDS = {"model", "data", "split", "output_dir", "lr_scheduler", "mixed_precision", "weighting_scheme",
                "validation_split", "trackers", "experts", "size", "dtype", "device", "offload", "attention"}


def _coerce(name: str, value: Any) -> Any:
    """A CLI string -> the field's value (YAML scalars; comma lists for target_modules)."""
    if name in _TEXT_FIELDS and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # a flag's value read as a YAML number, for a text field (a folder named 2024)
    if not isinstance(value, str):
        return value
    if name in _TEXT_FIELDS:
        return None if value.lower() in ("none", "null") and name == "split" else value
    if name == "target_modules" and not value.strip().startswith("["):
        return None if value.lower() in ("none", "null", "") else [v.strip() for v in value.split(",") if v.strip()]
    return parse_value(value)


def load_lora_config(path: str | os.PathLike | None = None, overrides: dict | None = None) -> LoraTrainConfig:
    """A config from a YAML file (or the defaults when ``path`` is None) with ``overrides`` applied.

    Built by the one config builder (:func:`gen_reason.config.build`): unknown keys are a
    :class:`UserError` with the closest known one (a typo must not pass silently), wrong
    types one line naming the key; string override values (from the command line) are
    read as YAML scalars.
    """
    data: dict = {}
    if path is not None:
        data = read_yaml(path)  # missing, unreadable, invalid or not a mapping: one line
        if not data:
            raise UserError(f"config {path} is empty; it must hold the run's settings")
        data = rename_keys(LoraTrainConfig, data)  # an older genreason's names, with a warning
    overrides = rename_keys(LoraTrainConfig, {str(k).replace("-", "_"): v for k, v in (overrides or {}).items()
                                              if v is not None})
    data.update({key: _coerce(key, value) for key, value in overrides.items()})
    return build(LoraTrainConfig, data).validate()


def parse_overrides(arguments: Sequence[str]) -> dict:
    """``["--lora.rank", "8", "--train.max_steps=100", "--model.offload", "model"]`` ->
    ``{"rank": 8, "max_steps": 100, "offload": "model"}``: the one dotted flag grammar
    (:func:`gen_reason.config.config_flags`). ``--lora.FIELD`` and ``--train.FIELD`` set any
    field of the config, ``--model.FIELD`` a model option; ``--rank 8`` is refused with
    its dotted spelling.
    """
    from gen_reason.models.options import MODEL_OPTIONS

    return config_flags(list(arguments), ("lora", "train"), model_options=MODEL_OPTIONS)
