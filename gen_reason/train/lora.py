"""LoRA (or full) fine-tuning of image-to-video generators on puzzle datasets.

``genreason train lora --model PATH --data DIR --config configs/lora_wan.yaml`` runs
:func:`train_lora`: peft LoRA adapters on the pipeline's transformer (Wan 2.1 I2V,
Wan 2.2 TI2V-5B, CogVideoX I2V, LTX-Video I2V) or the embedded model's UNet, with the
base model frozen and the family's own objective (:mod:`gen_reason.train.losses`). The
recipe defaults are VR-Bench's: rank 32 on attention q/k/v/o and the feed-forward,
learning rate 1e-4, a few epochs.

Wan 2.2 I2V-A14B (``configs/lora_wan22_a14b.yaml``) has two experts: ``transformer``
denoises high-noise timesteps (``t >= boundary_ratio * 1000``), ``transformer_2`` the
rest. ``experts: both`` (default) puts an adapter on each; every sample draws its
timestep from the whole schedule and trains the expert that owns that timestep at
inference, a batch with samples on both sides being split between them (so only that
expert's adapter gets the sample's gradient; an expert with no sample in a step is not
stepped). ``experts: high`` / ``low`` trains one adapter and draws only its timesteps.

One run is one folder (``output_dir``)::

    config.yaml                         the resolved config
    pytorch_lora_weights.safetensors    the LoRA, diffusers format (pipe.load_lora_weights(dir))
                                        or, with ``lora: false``, the whole fine-tuned model folder;
                                        on Wan 2.2 A14B the high-noise expert's (pipe.transformer)
    transformer_2/pytorch_lora_weights.safetensors
                                        A14B: the low-noise expert's LoRA, same format
                                        (pipe.load_lora_weights(dir/transformer_2, load_into_transformer_2=True))
    lora_experts.json                   A14B: which expert each LoRA file belongs to (what
                                        DiffusersVideoGenerator / genreason solve --lora read)
    README.md                           a model card: base model, data, recipe, validation
    losses.jsonl                        loss, learning rate and seconds since the run began (over
                                        every sitting) per optimizer step; after a resume, as an
                                        uninterrupted run's (rows past the checkpoint are redone)
    validation.jsonl / validation.png   held-out success (the referee) over training
    validation/step-*/                  a few validation videos
    checkpoints/step-*/                 LoRA + optimizer + LR schedule + RNG + step + data position

The steps run in the one training loop (:class:`gen_reason.train.loop.Trainer`, shared with
the embedded model's trainer); this module gives it the pipeline and its trainable
parameters, the dataset's batches, the family's objective, the checkpoint folders,
validation and the saved weights.

Rerunning the same command resumes from the newest checkpoint, and the resumed run ends
with the weights an uninterrupted run would have: each sample's noise and timestep are
pure functions of (seed, data position, batch slot), the epoch order of (seed, epoch),
and the global random states (dropout) are saved per process.

Scale: ``accelerate launch --multi_gpu --num_processes N -m gen_reason.train.lora --config ...``
(also on a CPU-only machine, where the processes talk over gloo) shards every global batch (``batch_size`` per process) across processes; with the same
global batch the result equals a one-process run's up to float rounding. Mixed
precision, gradient accumulation, gradient checkpointing and trackers (tensorboard,
wandb) come from accelerate and diffusers.
"""

from __future__ import annotations

import os

# Idle OpenMP threads spin on a busy CPU and slow every step many times over;
# this only takes effect before torch is imported (running as a module or under accelerate).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import dataclasses  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, ClassVar, Sequence  # noqa: E402

import torch  # noqa: E402

from gen_reason.errors import UserError  # noqa: E402
from gen_reason.models.families import Geometry  # noqa: E402
from gen_reason.train.checkpoint import load_latest, rng_state, save_checkpoint, set_rng_state  # noqa: E402
from gen_reason.train.loop import (MIXED_PRECISION, Progress, Trainer, TrainingConfig, check_tracker,  # noqa: E402,F401
                                   start_logs, start_trackers)
from gen_reason.train.outputs import (LORA_WEIGHTS, load_embedded_lora, save_embedded_lora,  # noqa: E402,F401
                                      save_expert_loras, save_outputs, write_model_card)
from gen_reason.train.validation import Validator, plot_curves, read_jsonl, validation_instances  # noqa: E402,F401
from gen_reason.train.conditioning import ConditioningCache, Sample, load_samples  # noqa: E402
from gen_reason.train.losses import EXPERTS, SCHEMES, NoiseSettings, objective_for, sample_generator  # noqa: E402
from gen_reason.config import build, parse_value, read_yaml, rename_keys  # noqa: E402
from gen_reason.errors import check_writable  # noqa: E402
from gen_reason.config import ArgumentParser  # noqa: E402

LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")


@dataclass
class LoraTrainConfig(TrainingConfig):
    """Every setting of a fine-tuning run (``configs/lora_*.yaml``; each is a CLI override too):
    the settings every trainer shares (:class:`~gen_reason.train.loop.TrainingConfig`:
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
    lr_scheduler: str = "constant"  # diffusers' get_scheduler, with warmup_steps and the run's length
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
        choices = {"weighting_scheme": SCHEMES, "lr_scheduler": LR_SCHEDULERS, "experts": EXPERTS}
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
    if not isinstance(value, str):
        return value
    if name in _TEXT_FIELDS:
        return None if value.lower() in ("none", "null") and name == "split" else value
    if name == "target_modules" and not value.strip().startswith("["):
        return None if value.lower() in ("none", "null", "") else [v.strip() for v in value.split(",") if v.strip()]
    return parse_value(value)


def load_lora_config(path: str | os.PathLike | None = None, overrides: dict | None = None) -> LoraTrainConfig:
    """A config from a YAML file (or the defaults when ``path`` is None) with ``overrides`` applied.

    Unknown keys are a :class:`UserError` (a typo must not pass silently); string
    override values (from the command line) are read as YAML scalars.
    """
    data: dict = {}
    if path is not None:
        data = read_yaml(path)  # missing, unreadable, invalid or not a mapping: one line
        if not data:
            raise UserError(f"config {path} is empty; it must hold the run's settings")
        data = rename_keys(LoraTrainConfig, data)  # an older genreason's names, with a warning
    known = [f.name for f in dataclasses.fields(LoraTrainConfig)]
    overrides = rename_keys(LoraTrainConfig, {str(k).replace("-", "_"): v for k, v in (overrides or {}).items()
                                              if v is not None})
    for source, values in ((str(path), data), ("overrides", overrides)):
        unknown = sorted(set(values) - set(known))
        if unknown:
            import difflib

            hints = [f"{key} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(key, known, 1)) else key
                     for key in unknown]
            raise UserError(f"unknown config key(s) in {source}: {', '.join(hints)}")
    data.update({key: _coerce(key, value) for key, value in overrides.items()})
    return LoraTrainConfig(**data).validate()


# -- pieces of a run ----------------------------------------------------------------------------
class TrainableState:
    """``state_dict`` / ``load_state_dict`` over only the trainable parameters of a model (checkpoints)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.parameters = {name: p for name, p in model.named_parameters() if p.requires_grad}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().cpu().clone() for name, p in self.parameters.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = sorted(set(self.parameters) - set(state))
        if missing:
            raise UserError(f"the checkpoint lacks {len(missing)} trainable parameter(s), e.g. {missing[0]}")
        with torch.no_grad():
            for name, p in self.parameters.items():
                p.copy_(state[name].to(p.device, p.dtype))


def resolve_geometry(pipe, family, samples: Sequence[Sample], config: LoraTrainConfig) -> Geometry:
    """Frames and size to train at: the config's, else the dataset's rounded to what the model takes."""
    if type(pipe).__name__ == "EmbeddedVideoPipeline":
        fixed = Geometry(pipe.num_frames, pipe.resolution, pipe.resolution)
        for name in ("num_frames", "height", "width"):
            given = getattr(config, name)
            if given is not None and given != getattr(fixed, name):
                raise UserError(f"the embedded model trains at {name} {getattr(fixed, name)} (fixed by its UNet); "
                                f"got {given}")
        return fixed
    multiple = family.size_multiple(pipe)
    step = family.frame_step(pipe)
    sizes = []
    for name, data_value in (("height", samples[0].first_frame.shape[0]), ("width", samples[0].first_frame.shape[1])):
        given = getattr(config, name)
        if given is not None and given % multiple:
            raise UserError(f"{name} must be a multiple of {multiple} for this model; got {given}")
        sizes.append(given if given is not None else max(multiple, round(data_value / multiple) * multiple))
    frames = config.num_frames
    if frames is not None and (frames - 1) % step:
        raise UserError(f"num_frames must be {step}k + 1 for this model (e.g. {(frames - 1) // step * step + 1}); "
                        f"got {frames}")
    if frames is None:
        from gen_reason.video import read_video

        have = samples[0].num_frames or len(read_video(samples[0].video_path))
        frames = math.ceil((have - 1) / step) * step + 1
    geometry = Geometry(int(frames), int(sizes[0]), int(sizes[1]))
    family.check_geometry(pipe, geometry)  # e.g. CogVideoX-5b-I2V trains at 480x720 only
    return geometry


def add_lora(model: torch.nn.Module, config: LoraTrainConfig, targets: Sequence[str], seed: int):
    """Inject a peft LoRA into ``model`` (its own parameters frozen); return the peft config."""
    from peft import LoraConfig, inject_adapter_in_model

    names = [name for name, _ in model.named_modules()]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        examples = ", ".join(n for n in names if n.count(".") >= 2)[:300]
        raise UserError(f"target module(s) {', '.join(missing)} match nothing in {type(model).__name__}; "
                        f"its modules include: {examples} ...")
    lora_config = LoraConfig(r=config.rank, lora_alpha=config.alpha or config.rank, lora_dropout=config.dropout,
                             init_lora_weights=True, target_modules=list(targets))
    torch.manual_seed(seed)  # LoRA A's initialisation: the same on every process and every rerun
    if hasattr(model, "add_adapter"):  # diffusers models with peft support
        model.add_adapter(lora_config)
    else:  # e.g. UNet2DModel: peft directly
        inject_adapter_in_model(lora_config, model)
        for name, parameter in model.named_parameters():
            parameter.requires_grad_("lora_" in name)
    for parameter in model.parameters():
        if parameter.requires_grad:  # trainable weights in float32 whatever the base dtype
            parameter.data = parameter.data.float()
    return lora_config


#: Offsets of each network's LoRA initialisation seed (an expert trained alone starts as it would beside the other).
_SEED_OFFSETS = {"transformer_2": 1}


def make_trainable(pipe, objective, config: LoraTrainConfig) -> tuple[Any, list[str] | None]:
    """Freeze the pipeline, then make the objective's trained network(s) trainable: a LoRA or every weight.

    On Wan 2.2 A14B that is each expert ``config.experts`` names, with its own adapter.
    Returns the peft LoRA config (``None`` for full fine-tuning) and the target modules.
    """
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.requires_grad_(False)
            component.eval()
    lora_config, targets = None, None
    for name, model in objective.trained_modules.items():
        if config.lora:
            targets = list(config.target_modules or objective.default_targets)
            lora_config = add_lora(model, config, targets, config.seed + _SEED_OFFSETS.get(name, 0))
        else:
            if model.dtype != torch.float32:  # master weights in float32; autocast computes in low precision
                model.to(torch.float32)
            model.requires_grad_(True)
        if config.gradient_checkpointing:
            if not getattr(model, "_supports_gradient_checkpointing", False):
                raise UserError(f"{type(model).__name__} does not support gradient checkpointing")
            model.enable_gradient_checkpointing()
    objective.model.train()
    return lora_config, targets


def check_resumable(saved: dict, config: LoraTrainConfig) -> None:
    """Refuse to resume a checkpoint made under settings that would change the run."""
    fixed = config.changed_since(saved)
    if fixed:
        raise UserError(f"{config.output_dir} holds a run made with other values of {', '.join(fixed)}; "
                        "use another output_dir, the same settings, or resume: false to start over")
    saved = rename_keys(LoraTrainConfig, saved, warn=False)
    defaults = LoraTrainConfig()
    changed = [k for k in ("max_steps", "epochs") if saved.get(k, getattr(defaults, k)) != getattr(config, k)]
    if changed and config.lr_scheduler not in ("constant", "constant_with_warmup"):
        raise UserError(f"the run length cannot change under lr_scheduler {config.lr_scheduler!r} "
                        "(the schedule spans the whole run)")


class DataOrder:
    """Which samples each process trains on at each data position (micro-batch).

    Epoch ``e`` is a permutation drawn from (seed, e); data position ``p`` takes the
    ``p``-th global batch of ``batch_size * processes`` samples (an incomplete last one is
    dropped) and process ``r`` its slots ``[r * batch_size, (r + 1) * batch_size)``.
    """

    def __init__(self, num_samples: int, batch_size: int, processes: int, rank: int, seed: int) -> None:
        self.num_samples, self.batch_size, self.rank, self.seed = num_samples, batch_size, rank, seed
        self.global_batch = batch_size * processes
        self.per_epoch = num_samples // self.global_batch
        if self.per_epoch < 1:
            raise UserError(f"the dataset has {num_samples} training samples, fewer than one global batch "
                            f"({batch_size} per process x {processes} processes)")
        self._epoch: tuple[int, list[int]] | None = None

    def _permutation(self, epoch: int) -> list[int]:
        if self._epoch is None or self._epoch[0] != epoch:
            order = torch.randperm(self.num_samples, generator=sample_generator(self.seed, 1, epoch)).tolist()
            self._epoch = (epoch, order)
        return self._epoch[1]

    def slots(self) -> range:
        """This process's positions within a global batch."""
        return range(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)

    def indices(self, position: int) -> list[int]:
        """This process's sample indices at data position ``position``."""
        epoch, within = divmod(position, self.per_epoch)
        order = self._permutation(epoch)
        start = within * self.global_batch
        return [order[start + slot] for slot in self.slots()]

    def generators(self, position: int) -> list[torch.Generator]:
        """One generator per sample of this process's batch (noise, timesteps, latent samples)."""
        return [sample_generator(self.seed, 2, position, slot) for slot in self.slots()]


def total_steps(config: LoraTrainConfig, order: DataOrder) -> int:
    """Optimizer steps in the run: ``max_steps``, else ``epochs`` over the data."""
    if config.max_steps is not None:
        return config.max_steps
    return max(1, config.epochs * order.per_epoch // config.gradient_accumulation_steps)


def _has_two_experts(model: Path) -> bool:
    """Whether the model folder is a two-expert pipeline (Wan 2.2 A14B: a ``transformer_2``)."""
    from gen_reason.models.diffusers_backend import read_model_index

    return (read_model_index(model).get("transformer_2") or [None])[0] is not None


def _cpu_data_parallel() -> bool:
    """True for several processes on a machine without GPUs: accelerate then needs ``cpu=True`` to use gloo.

    (``accelerate launch --multi_gpu --num_processes N`` starts the processes through
    torchrun on any machine; without this they would each train alone.)
    """
    xpu = getattr(torch, "xpu", None)
    has_gpu = torch.cuda.is_available() or bool(xpu is not None and xpu.is_available())
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not has_gpu


# -- the pieces the training loop (gen_reason.train.loop) takes from this trainer ---------------
class LoraCheckpoints:
    """A fine-tuning run's checkpoints: ``checkpoints/step-*/`` folders (the trainable
    parameters, optimizer, LR schedule, each process's random states, and ``state.json``
    with the step, data position, loss, seconds and config), the newest few kept."""

    def __init__(self, out: Path, config: LoraTrainConfig, model: torch.nn.Module, accelerator) -> None:
        self.root, self.config, self.accelerator = out / "checkpoints", config, accelerator
        self.trainable = TrainableState(model)

    def _objects(self, trainer: Trainer) -> dict:
        objects = {"trainable": self.trainable, "optimizer": trainer.optimizer, "lr_scheduler": trainer.lr_scheduler}
        if trainer.ema is not None:
            objects["ema"] = trainer.ema
        return objects

    def save(self, trainer: Trainer, progress: Progress) -> None:
        """Write the checkpoint of ``trainer`` at ``progress`` (every process calls it)."""
        save_checkpoint(self.root, self._objects(trainer),
                        {"step": progress.step, "data_position": progress.position, "loss": progress.loss,
                         "train_seconds": progress.elapsed, "config": self.config.to_dict()},
                        accelerator=self.accelerator, keep=self.config.checkpoints_keep)

    def restore(self, trainer: Trainer) -> Progress | None:
        """Put the newest checkpoint back into ``trainer`` (``None``: there is none, or ``resume: false``)."""
        latest = load_latest(self.root) if self.config.resume else None
        if latest is None:
            return None
        check_resumable(latest.state["config"], self.config)
        latest.restore(self._objects(trainer), accelerator=self.accelerator)
        if trainer.ema is not None:
            trainer.ema.to(self.accelerator.device)  # loaded on the CPU
        return Progress(step=latest.step, position=int(latest.state["data_position"]), loss=latest.state.get("loss"),
                        wall_seconds=float(latest.state.get("train_seconds", 0.0)))

    def discard(self) -> None:
        """A fresh start: nothing of an earlier run in this folder may mix into this one."""
        import shutil

        shutil.rmtree(self.root, ignore_errors=True)


def dataset_batches(cache: ConditioningCache, order: "DataOrder", device):
    """``data(position) -> (batch, generators)`` for the loop: this process's samples at a data
    position, from the encode-once cache, and one noise generator per sample."""

    def data(position: int):
        return cache.batch(order.indices(position), device), order.generators(position)

    return data


def validation_step(config: LoraTrainConfig, trainer: Trainer, pipe, family, geometry: Geometry, out: Path,
                    cache: ConditioningCache, offload: bool):
    """``validate(step)`` for the loop: held-out puzzles generated with the current weights and
    scored by the referee on the main process (the others wait); the training's random
    streams and the cache's device placement are left as they were."""
    accelerator = trainer.accelerator
    validator = None
    if config.validate_every and accelerator.is_main_process:
        dataset_puzzles = {row.get("canonical_hash") for row in read_jsonl(Path(config.data) / "metadata.jsonl")}
        validator = Validator(config, pipe, family, geometry, out, dataset_puzzles - {None})

    def validate(step: int) -> None:
        if validator is not None:
            saved = rng_state()  # generation must not move the training's random streams
            trainer.unwrapped.eval()
            if offload:
                cache.move_idle(accelerator.device)
            row = validator.run(step)
            if offload:
                cache.move_idle("cpu")
            trainer.unwrapped.train()
            set_rng_state(saved)
            if trainer.tracker:
                accelerator.log({f"validation/{k}": v for k, v in {"success": row["success"], **row["metrics"]}.items()
                                 if v is not None}, step=step)
        accelerator.wait_for_everyone()

    return validate


def loss_row(step: int, window: list[float], lr: float, progress: Progress) -> dict:
    """A row of ``losses.jsonl``: the step's loss and learning rate, seconds since the run began."""
    return {"step": step, "loss": progress.loss, "lr": lr, "seconds": round(progress.elapsed, 3)}


# -- the run ------------------------------------------------------------------------------------
def resolve_config(config: LoraTrainConfig, stop_after_steps: int | None) -> tuple[LoraTrainConfig, dict]:
    """A checked copy of ``config`` with absolute paths (the model name resolved) and its model options."""
    from gen_reason.models.loading import resolve_model_path
    from gen_reason.models.options import MODEL_OPTIONS, check_model_options

    config = dataclasses.replace(config)
    config.validate()
    model_options = check_model_options(**{name: getattr(config, name) for name in MODEL_OPTIONS})
    if "size" in model_options:
        config.height = config.height or model_options["size"][0]
        config.width = config.width or model_options["size"][1]
    if stop_after_steps is not None and stop_after_steps < 1:
        raise UserError(f"stop_after_steps must be >= 1; got {stop_after_steps}")
    config.output_dir = str(Path(config.output_dir).expanduser().resolve())
    check_writable(config.output_dir)  # before anything loads; leaves nothing behind
    config.model = str(resolve_model_path(config.model).resolve())  # a name such as `embedded`, or a folder
    config.data = str(Path(config.data).expanduser().resolve())
    return config, model_options


def make_accelerator(config: LoraTrainConfig, model_options: dict, tracker: str | None):
    """The run's accelerator: mixed precision, accumulation, trackers, gloo on a CPU-only machine."""
    from accelerate import Accelerator

    handlers = []
    if config.experts == "both" and _has_two_experts(Path(config.model)):
        from accelerate.utils import DistributedDataParallelKwargs

        # A process's micro-batch may route every sample to one expert; the other's adapter is then unused.
        handlers.append(DistributedDataParallelKwargs(find_unused_parameters=True))
    return Accelerator(mixed_precision=config.mixed_precision,
                       gradient_accumulation_steps=config.gradient_accumulation_steps,
                       log_with=tracker, project_dir=str(Path(config.output_dir) / "logs"),
                       cpu=_cpu_data_parallel() or model_options.get("device") == "cpu",
                       kwargs_handlers=handlers)


def load_pipeline(config: LoraTrainConfig, model_options: dict, accelerator):
    """The pipeline on the accelerator's device in the frozen weights' dtype, and its family."""
    from gen_reason.models.loading import load_generator

    weight_dtype = MIXED_PRECISION[config.mixed_precision]
    if "dtype" in model_options:
        weight_dtype = getattr(torch, model_options["dtype"])
    generator = load_generator(  # the one loader every command uses
        config.model, device=accelerator.device, dtype=weight_dtype, offload="none",
        **{k: v for k, v in model_options.items() if k in ("vae_tiling", "attention", "compile", "max_batch")})
    return generator.pipeline, generator.family


def make_trainer(config: LoraTrainConfig, model: torch.nn.Module, accelerator, max_steps: int,
                 tracker: str | None) -> Trainer:
    """The loop's trainer over ``model``'s trainable parameters: AdamW and the config's LR schedule."""
    from diffusers.optimization import get_scheduler

    return config.make_trainer(
        accelerator, model, [p for p in model.parameters() if p.requires_grad], tracker=tracker,
        schedule=lambda optimizer: get_scheduler(config.lr_scheduler, optimizer=optimizer,
                                                 num_warmup_steps=config.warmup_steps, num_training_steps=max_steps))


def start_run(config: LoraTrainConfig, trainer: Trainer, store: LoraCheckpoints) -> Progress:
    """Resume from the newest checkpoint or start over; the run folder's logs and config to match;
    the trackers started. Returns where the run stands."""
    accelerator = trainer.accelerator
    resumed = store.restore(trainer)
    if accelerator.is_main_process:  # resuming, rows of steps after the checkpoint were lost with the kill
        if resumed is None:
            store.discard()
        start_logs(Path(config.output_dir), config.to_dict(), None if resumed is None else resumed.step)
    start_trackers(accelerator, "genreason-lora", config.to_dict())
    return resumed or Progress()


def fill_cache(config: LoraTrainConfig, objective, samples: Sequence[Sample], accelerator,
               progress: bool) -> tuple[ConditioningCache, bool]:
    """Encode the dataset once (what the config caches); ``(cache, offload)``, where ``offload``
    says the encoders whose outputs are all cached wait on the CPU (a GPU run)."""
    cache = ConditioningCache(objective, samples, cache_conditioning=config.cache_conditioning,
                              cache_latents=config.cache_latents, seed=config.seed)
    cache.fill(progress=progress and accelerator.is_main_process)
    offload = accelerator.device.type != "cpu"
    if offload:
        cache.move_idle("cpu")
    return cache, offload


def train_lora(config: LoraTrainConfig, progress: bool = True, *, stop_after_steps: int | None = None) -> Path:
    """Train (or resume) the run ``config`` describes; return the output folder.

    ``stop_after_steps`` ends this sitting after that many optimizer steps in total,
    without final outputs, as a kill would (for tests of resumption).
    """
    from accelerate.utils import set_seed

    from gen_reason.models.diffusers_backend import check_fixed_size

    # Everything a user can get wrong is checked before the model loads.
    config, model_options = resolve_config(config, stop_after_steps)
    out = Path(config.output_dir)
    samples = load_samples(config.data, config.split)
    tracker = check_tracker(config.trackers)
    # A model that runs at one size only (CogVideoX-5b-I2V) refuses any other before it loads.
    check_fixed_size(config.model, config.height or samples[0].first_frame.shape[0],
                     config.width or samples[0].first_frame.shape[1])

    accelerator = make_accelerator(config, model_options, tracker)
    pipe, family = load_pipeline(config, model_options, accelerator)
    geometry = resolve_geometry(pipe, family, samples, config)
    objective = objective_for(pipe, family, geometry, config.noise, experts=config.experts)
    lora_config, targets = make_trainable(pipe, objective, config)
    # Dropout differs per process (as data-parallel training should); everything else is seeded per sample.
    set_seed(config.seed, device_specific=True)
    order = DataOrder(len(samples), config.batch_size, accelerator.num_processes, accelerator.process_index,
                      config.seed)
    max_steps = total_steps(config, order)
    trainer = make_trainer(config, objective.model, accelerator, max_steps, tracker)
    store = LoraCheckpoints(out, config, objective.model, accelerator)
    start = start_run(config, trainer, store)
    cache, offload = fill_cache(config, objective, samples, accelerator, progress)

    settings = config.loop_settings(max_steps, stop_after_steps, log_last=True, progress=progress,
                                    desc="train lora" if config.lora else "fine-tune")
    done = trainer.run(settings, start, dataset_batches(cache, order, accelerator.device), objective,
                       store, out / "losses.jsonl" if accelerator.is_main_process else None, loss_row,
                       validate=validation_step(config, trainer, pipe, family, geometry, out, cache, offload),
                       validate_now=lambda step: step == 0)  # the untrained baseline opens the curve
    if done.step >= max_steps:  # else a sitting cut short: the checkpoints carry the run on
        if trainer.ema is not None:
            trainer.ema.copy_to(trainer.parameters)  # the averaged weights are the ones saved
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            save_outputs(out, pipe, objective, trainer.unwrapped, lora_config)
            write_model_card(out, config, family.name, geometry, done.step, len(samples), done.loss, targets)
            plot_curves(out)
        accelerator.wait_for_everyone()
    accelerator.end_training()
    return out


# -- command line (``python -m gen_reason.train.lora``, ``accelerate launch -m gen_reason.train.lora``) --
def parse_overrides(arguments: Sequence[str]) -> dict:
    """``["--rank", "8", "--lora.dropout=0.1"]`` -> ``{"rank": "8", "dropout": "0.1"}``.

    A dotted name's last part is the field (``--lora.rank 8`` is ``rank``).
    """
    overrides, index = {}, 0
    arguments = list(arguments)
    while index < len(arguments):
        item = arguments[index]
        if not item.startswith("--"):
            raise UserError(f"unexpected argument {item!r}; overrides look like --rank 8")
        key, _, value = item[2:].partition("=")
        if not _:
            if index + 1 >= len(arguments) or arguments[index + 1].startswith("--"):
                value = "true"  # a bare flag
            else:
                index += 1
                value = arguments[index]
        overrides[key.split(".")[-1].replace("-", "_")] = value
        index += 1
    return overrides


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``--config FILE --model PATH --data DIR --out DIR [--field value ...]``."""
    parser = ArgumentParser(prog="genreason train lora", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML config (configs/lora_wan.yaml, ...)")
    parser.add_argument("--model", help="diffusers model folder")
    parser.add_argument("--data", help="dataset folder made by genreason make-dataset")
    parser.add_argument("--out", dest="output_dir", help="run folder (output_dir)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--stop-after-steps", type=int, default=None,
                        help="end this sitting after this many optimizer steps (rerun the command to resume)")
    try:
        args, rest = parser.parse_known_args(argv)
        overrides = parse_overrides(rest)
        overrides.update({k: v for k, v in (("model", args.model), ("data", args.data),
                                            ("output_dir", args.output_dir)) if v})
        out = train_lora(load_lora_config(args.config, overrides), progress=not args.quiet,
                         stop_after_steps=args.stop_after_steps)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
