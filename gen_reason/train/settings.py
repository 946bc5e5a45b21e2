"""The settings every trainer shares (:class:`TrainingConfig`, the base of both trainers'
configs): one name and one meaning each, one set of checks, one rule for what a resumed run
may change, and the loop's :class:`~gen_reason.train.loop.Trainer` and
:class:`~gen_reason.train.loop.LoopSettings` built from them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable

import torch

from gen_reason.train.loop import MIXED_PRECISION, FunctionSchedule, LoopSettings, Trainer


#: What ``trackers`` may name (accelerate's trackers; ``none``: the logs in the run folder only).
TRACKERS = ("none", "tensorboard", "wandb")


#: The learning-rate schedules: diffusers' (``get_scheduler``), and ``warmup_hold_decay``: a
#: linear warm-up, a constant rate, then a linear decay to 0 over the run's last ``decay_steps``.
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial",
                 "warmup_hold_decay")


@dataclass
class TrainingConfig:
    """The settings every trainer shares, under one name and with one meaning: the base of
    :class:`~gen_reason.train.embedded_config.EmbeddedTrainConfig` and
    :class:`~gen_reason.train.lora.LoraTrainConfig`, which add their own settings and may
    give these other defaults (each field's type and meaning stay as here).

    Steps are optimizer steps; a micro-batch is ``batch_size`` samples on each process, and
    ``gradient_accumulation_steps`` micro-batches make one step.
    """

    #: Names an older genreason used (old -> new): a config file or flag that still says the old
    #: name is read under the new one, with a one-line warning (gen_reason.config.rename_keys).
    RENAMED: ClassVar[dict[str, str]] = {"log_every_steps": "log_every", "validate_every_steps": "validate_every",
                                         "lr_warmup_steps": "warmup_steps"}
    #: Fields a resumed sitting may change without changing what the run computes.
    RESUMABLE: ClassVar[frozenset[str]] = frozenset({
        "max_steps", "log_every", "validate_every", "validation_count", "checkpoint_every", "checkpoint_minutes",
        "checkpoints_keep", "resume", "trackers"})

    # the run's length and batches
    max_steps: int | None = None  # optimizer steps; None: as the trainer decides (fine-tuning: epochs over the data)
    batch_size: int = 1  # samples per micro-batch, per process
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step
    seed: int = 0
    # the optimizer (AdamW), its learning rate and the weights kept
    learning_rate: float = 1e-4
    lr_scheduler: str = "constant"  # one of LR_SCHEDULERS
    warmup_steps: int = 0  # the learning rate rises linearly from 0 over these first steps
    decay_steps: int = 0  # warmup_hold_decay: the linear decay to 0 over the run's last this many steps
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    weight_decay: float = 1e-4
    max_grad_norm: float = 1.0  # gradient clipping; 0: none
    ema_decay: float | None = None  # keep an EMA of the trained weights (None: no EMA)
    mixed_precision: str = "no"  # no | fp16 | bf16
    # bookkeeping: rows of losses.jsonl, checkpoints, validation, trackers
    log_every: int = 1  # a row of losses.jsonl every this many steps
    checkpoint_every: int = 500  # a checkpoint every this many steps (0: none by count); the last step always
    checkpoint_minutes: float | None = None  # also one when this long has passed since the last (0: every step)
    checkpoints_keep: int = 2  # the newest this many checkpoints are kept
    resume: bool = True  # rerunning in a run folder resumes from its newest checkpoint; False: start over
    validate_every: int = 0  # held-out success (the referee) every this many steps and at the end; 0: never
    validation_count: int = 4  # held-out puzzles per validation
    trackers: str = "none"  # none | tensorboard | wandb (accelerate's): loss, learning rate, validation

    def check_training(self) -> None:
        """Raise :class:`UserError` naming the first shared setting with an impossible value."""
        from gen_reason.errors import UserError

        for name in ("batch_size", "gradient_accumulation_steps", "log_every", "validation_count",
                     "checkpoints_keep"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise UserError(f"max_steps must be >= 1 or null; got {self.max_steps}")
        for name in ("warmup_steps", "decay_steps", "weight_decay", "max_grad_norm", "checkpoint_every",
                     "validate_every"):
            if not getattr(self, name) >= 0:
                raise UserError(f"{name} must be >= 0; got {getattr(self, name)}")
        if self.checkpoint_minutes is not None and not self.checkpoint_minutes >= 0:
            raise UserError(f"checkpoint_minutes must be >= 0 or null; got {self.checkpoint_minutes}")
        if not (self.learning_rate >= 0 and math.isfinite(self.learning_rate)):
            raise UserError(f"learning_rate must be a finite number >= 0; got {self.learning_rate}")
        if not self.adam_epsilon > 0:
            raise UserError(f"adam_epsilon must be > 0; got {self.adam_epsilon}")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"{name} must be in [0, 1); got {getattr(self, name)}")
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise UserError(f"ema_decay must be in [0, 1) or null; got {self.ema_decay}")
        for name, allowed in (("lr_scheduler", LR_SCHEDULERS), ("mixed_precision", tuple(MIXED_PRECISION)),
                              ("trackers", TRACKERS)):
            if getattr(self, name) not in allowed:
                raise UserError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")

    def changed_since(self, saved: dict) -> list[str]:
        """The settings of ``saved`` (a checkpoint's config, perhaps an older genreason's) that
        differ from this config's, by their current names, leaving out those a resumed sitting
        may change (:attr:`RESUMABLE`). A setting added since the checkpoint held its default then."""
        from gen_reason.config import rename_keys

        saved = rename_keys(type(self), saved, warn=False)
        current = dataclasses.asdict(self)
        defaults = dataclasses.asdict(type(self)()) if _has_defaults(type(self)) else {}
        changed = sorted(k for k in set(saved) | set(current) if saved.get(k, defaults.get(k)) != current.get(k))
        return [k for k in changed if k not in self.RESUMABLE]

    def check_resumable(self, saved: dict, step: int, held: str, hint: str) -> None:
        """Refuse to resume at ``step`` a checkpoint made under ``saved`` (its config) when a
        setting that changes the run differs (:meth:`changed_since`: the :class:`UserError`
        reads "``held`` made with other values of ...; ``hint``"), or when the run's length
        (``max_steps``, or ``epochs`` where a trainer has it) changes where the learning-rate
        schedule depends on it (:meth:`check_length_change`)."""
        from gen_reason.config import rename_keys
        from gen_reason.errors import UserError

        fixed = self.changed_since(saved)
        if fixed:
            raise UserError(f"{held} made with other values of {', '.join(fixed)}; {hint}")
        saved = rename_keys(type(self), saved, warn=False)
        current = dataclasses.asdict(self)
        defaults = dataclasses.asdict(type(self)()) if _has_defaults(type(self)) else {}
        if any(saved.get(k, defaults.get(k)) != current.get(k) for k in ("max_steps", "epochs")):
            self.check_length_change(step, saved.get("max_steps", defaults.get("max_steps")), self.max_steps)

    def learning_rate_at(self, step: int, max_steps: int) -> float:
        """``warmup_hold_decay``'s rate at ``step`` of a ``max_steps`` run: warm-up, constant,
        then linear decay to 0 at ``max_steps`` (a pure function of the step)."""
        warm = min(1.0, (step + 1) / max(1, self.warmup_steps))
        decay = min(1.0, max(0.0, (max_steps - step) / max(1, self.decay_steps)))
        return self.learning_rate * warm * decay

    def schedule(self, max_steps: int) -> Callable[[torch.optim.Optimizer], Any]:
        """``optimizer -> scheduler``: this config's learning-rate schedule over a ``max_steps`` run."""
        if self.lr_scheduler == "warmup_hold_decay":
            from functools import partial

            return lambda optimizer: FunctionSchedule(optimizer, partial(self.learning_rate_at, max_steps=max_steps))
        from diffusers.optimization import get_scheduler

        return lambda optimizer: get_scheduler(self.lr_scheduler, optimizer=optimizer,
                                               num_warmup_steps=self.warmup_steps, num_training_steps=max_steps)

    def check_length_change(self, step: int, before: int | None, after: int | None) -> None:
        """Refuse to resume at ``step`` a run whose length (optimizer steps) changes from
        ``before`` to ``after`` (``None``: not known in steps) where the schedule depends on
        it: never under a constant rate; under ``warmup_hold_decay`` only while the decay has
        begun at neither length (until then the rate is the same constant)."""
        from gen_reason.errors import UserError

        if self.lr_scheduler in ("constant", "constant_with_warmup"):
            return
        if self.lr_scheduler == "warmup_hold_decay" and before is not None and after is not None:
            decay_start = min(before, after) - self.decay_steps
            if step <= decay_start:
                return
            raise UserError(f"max_steps can change only before the learning-rate decay starts (step {decay_start}); "
                            f"the checkpoint is at step {step}")
        raise UserError(f"the run length cannot change under lr_scheduler {self.lr_scheduler!r} "
                        "(the schedule spans the whole run)")

    def make_trainer(self, accelerator, model: torch.nn.Module, parameters: Iterable[torch.nn.Parameter],
                     max_steps: int, tracker: str | None) -> "Trainer":
        """The one loop's :class:`Trainer` over ``parameters`` with this config's optimizer, its
        learning-rate schedule over a ``max_steps`` run, and its EMA."""
        return Trainer(accelerator, model, parameters, learning_rate=self.learning_rate,
                       betas=(self.adam_beta1, self.adam_beta2), eps=self.adam_epsilon,
                       weight_decay=self.weight_decay, schedule=self.schedule(max_steps), ema_decay=self.ema_decay,
                       tracker=tracker)

    def loop_settings(self, max_steps: int, stop_after_steps: int | None, **own) -> LoopSettings:
        """When the loop does what, from this config; ``own``: the trainer's other :class:`LoopSettings`."""
        return LoopSettings(
            max_steps=max_steps, last_step=max_steps if stop_after_steps is None else min(max_steps, stop_after_steps),
            accumulation=self.gradient_accumulation_steps, max_grad_norm=self.max_grad_norm, log_every=self.log_every,
            checkpoint_every=self.checkpoint_every, checkpoint_minutes=self.checkpoint_minutes,
            validate_every=self.validate_every, **own)


def _has_defaults(schema: type) -> bool:
    """Whether every field of dataclass ``schema`` has a default."""
    return all(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
               for f in dataclasses.fields(schema))


def check_tracker(trackers: str) -> str | None:
    """The accelerate tracker a config names (``None`` for ``none``); a :class:`UserError` when
    it is unknown or its package is not installed (checked before anything is written)."""
    from gen_reason.errors import UserError

    if trackers not in TRACKERS:
        raise UserError(f"trackers must be one of {', '.join(TRACKERS)}; got {trackers!r}")
    if trackers == "none":
        return None
    import importlib.util

    modules = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",)}[trackers]
    if not any(importlib.util.find_spec(module) for module in modules):
        raise UserError(f"trackers: {trackers} needs the {modules[0]} package (pip install {modules[0]})")
    return trackers
