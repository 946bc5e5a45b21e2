"""The one training loop: every trainer of genreason (the embedded model from scratch, LoRA
or full fine-tuning of any diffusers family) runs through :class:`Trainer`.

The loop owns the skeleton: accelerate, the AdamW optimizer and its learning-rate
schedule, EMA, gradient accumulation and clipping, the loss log (``losses.jsonl``, append
only and, after a resume, as an uninterrupted run's), trackers, the progress bar, when to
checkpoint and validate, ``stop_after_steps``, and (for one-process runs) a polite stop on
SIGTERM / Ctrl-C and a checkpoint when the data source fails. A trainer hands it only what
differs:

- ``data(position) -> (batch, noise)``: the micro-batch at data position ``position`` and
  the random source of its noise (a pure function of the position, so a resumed run draws
  what an uninterrupted one would);
- an objective with ``loss(model, batch, noise) -> tensor`` (:mod:`gen_reason.train.losses`);
- a :class:`CheckpointStore` (every trainer's is :class:`RunCheckpoints`: ``checkpoints/step-*/``);
- ``validate(step)``: held-out sampling scored by the referee;
- ``log_row(step, window, lr, progress) -> dict``: the row of ``losses.jsonl``.

Every trainer's run folder is a :class:`~gen_reason.folders.RunFolder` (:func:`open_run`:
``config.yaml`` checked against a rerun, the folder held by one process per rank), with the
logs of :func:`training_logs` and the checkpoints of :class:`RunCheckpoints`; its settings
shared by every trainer are :class:`TrainingConfig`'s. Building the model and its trainable
parameters, and what is saved at the end (an exported pipeline, LoRA weights), stay with
the trainer that calls the loop.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Protocol

import torch

from gen_reason.folders import JsonlLog, RunFolder
from gen_reason.train.checkpoint import Checkpoint, TrainableState, load_latest, save_checkpoint

LOGS = ("losses.jsonl", "validation.jsonl")
#: What ``trackers`` may name (accelerate's trackers; ``none``: the logs in the run folder only).
TRACKERS = ("none", "tensorboard", "wandb")


@dataclass
class Progress:
    """Where a run stands: what a checkpoint saves beside the weights and what a resume restores."""

    step: int = 0  # optimizer steps done
    position: int = 0  # micro-batches consumed (data position)
    train_seconds: float = 0.0  # seconds spent in optimizer steps, over every sitting
    wall_seconds: float = 0.0  # seconds the step loops of earlier sittings ran (checkpoints, validation included)
    sitting_began: float | None = None  # when this sitting's step loop began (set by the loop)
    window: list[float] = field(default_factory=list)  # losses since the last row of losses.jsonl
    loss: float | None = None  # the last step's loss

    @property
    def elapsed(self) -> float:
        """Seconds of step loop since the run began, over every sitting (checkpoints, validation included)."""
        return self.wall_seconds + (0.0 if self.sitting_began is None else time.time() - self.sitting_began)


@dataclass
class LoopSettings:
    """When the loop does what (steps are optimizer steps)."""

    max_steps: int  # the run's length (the progress bar's, and the learning-rate schedule's)
    last_step: int  # this sitting ends here (``stop_after_steps``)
    accumulation: int = 1  # micro-batches per optimizer step
    max_grad_norm: float = 0.0  # 0: no clipping
    autocast: bool = False  # the loss (not only the prepared model) under accelerate's autocast
    log_every: int = 1
    log_last: bool = False  # also a row at max_steps
    checkpoint_every: int = 0  # steps; 0: only at max_steps (and as below)
    checkpoint_minutes: float | None = None  # also when this long has passed since the last one (0: every step)
    checkpoint_before_validation: bool = False  # a validation takes a while: never lose the steps before it
    checkpoint_when_sitting_ends: bool = False  # also when stopped early (signal, stop_after_steps)
    save_on_interrupt: bool = False  # stop politely on SIGTERM / Ctrl-C; checkpoint when the data source fails
    validate_every: int = 0  # steps; 0: never
    desc: str = "train"
    progress: bool = True

    def validation_due(self, step: int) -> bool:
        """Whether a validation follows ``step``: every ``validate_every`` steps and at the end."""
        return bool(self.validate_every and (step % self.validate_every == 0 or step == self.max_steps))

    def checkpoint_due(self, step: int, since_last: float, validation_due: bool) -> bool:
        """Whether a checkpoint follows ``step``, ``since_last`` seconds after the last one."""
        return bool((self.checkpoint_every and step % self.checkpoint_every == 0)
                    or step == self.max_steps
                    or (self.checkpoint_minutes is not None and since_last >= 60 * self.checkpoint_minutes)
                    or (validation_due and self.checkpoint_before_validation))


#: The learning-rate schedules: diffusers' (``get_scheduler``), and ``warmup_hold_decay``: a
#: linear warm-up, a constant rate, then a linear decay to 0 over the run's last ``decay_steps``.
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial",
                 "warmup_hold_decay")
#: Mixed precision settings and the dtype each computes in.
MIXED_PRECISION = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class TrainingConfig:
    """The settings every trainer shares, under one name and with one meaning: the base of
    :class:`~gen_reason.train.embedded.EmbeddedTrainConfig` and
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


class CheckpointStore(Protocol):
    """Where the loop's checkpoints go (:class:`RunCheckpoints` for every trainer; tests may keep them in memory)."""

    def save(self, trainer: "Trainer", progress: Progress) -> None:
        """Write a checkpoint of ``trainer`` at ``progress`` (every process calls it)."""


class FunctionSchedule:
    """A learning rate that is a pure function of the step, set on the optimizer right before
    each step (a torch scheduler's interface, for a hand-written schedule). The optimizer's
    state keeps the rate of the step last taken, as the embedded trainer always saved it."""

    def __init__(self, optimizer: torch.optim.Optimizer, rate: Callable[[int], float], step: int = 0) -> None:
        self.optimizer, self.rate, self.current = optimizer, rate, step

    def get_last_lr(self) -> list[float]:
        """The learning rate of the coming step (as a torch scheduler's)."""
        return [self.rate(self.current)]

    def before_step(self) -> None:
        """Set the coming step's learning rate on the optimizer."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.rate(self.current)

    def step(self) -> None:
        """Move to the next optimizer step."""
        self.current += 1

    def state_dict(self) -> dict:
        """``{"step": n}``."""
        return {"step": self.current}

    def load_state_dict(self, state: dict) -> None:
        """Go to step ``state["step"]``."""
        self.current = int(state["step"])


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


def start_trackers(accelerator, name: str, config: dict) -> None:
    """Start the accelerator's trackers (if any) with the run's config, flattened to scalars."""
    if accelerator.log_with:
        flat = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in config.items()}
        accelerator.init_trackers(name, config=flat)


def open_run(root: Path, config: TrainingConfig, *, fresh: bool, rank: int = 0) -> RunFolder:
    """The trainer's run folder (:class:`~gen_reason.folders.RunFolder`), held until closed:
    ``config.yaml`` written, or checked against this config when the folder holds a run.

    The fields a resumed sitting may change (:attr:`TrainingConfig.RESUMABLE`) may differ;
    a field added since the folder was written is compared with its default, and a field
    an older genreason named otherwise (:attr:`TrainingConfig.RENAMED`) under its new name.
    ``fresh`` (the run starts over): every field may change.
    """
    import yaml

    from gen_reason.config import rename_keys

    saved: dict = {}
    path = Path(root) / RunFolder.CONFIG
    if path.is_file():
        try:
            saved = yaml.safe_load(path.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError):
            saved = {}  # RunFolder says it is unreadable
    saved = saved if isinstance(saved, dict) else {}
    current = dataclasses.asdict(config)
    defaults = dataclasses.asdict(type(config)()) if _has_defaults(type(config)) else {}
    defaults.update({new: saved[old] for old, new in config.RENAMED.items() if old in saved})
    dropped = set(rename_keys(type(config), saved, warn=False)) - set(current)  # fields this version no longer has
    may_change = set(config.RESUMABLE) | set(config.RENAMED) | dropped  # old names: compared under the new ones
    if fresh:
        may_change |= set(current) | set(saved)
    return RunFolder(root, current, rank=rank, may_change=may_change, defaults=defaults)


def training_logs(run: RunFolder, resumed_at: int | None) -> dict[str, JsonlLog]:
    """The run's logs (``losses.jsonl``, ``validation.jsonl``) ready for a sitting: resuming
    at step ``resumed_at``, the rows past it dropped (they belong to steps that run again);
    starting over (``None``), the rows of an earlier run removed."""
    logs = {name: run.log(name) for name in LOGS}
    for log in logs.values():
        if resumed_at is None:
            log.path.unlink(missing_ok=True)
        else:
            log.truncate_after(resumed_at)
    return logs


def finite_row(row: dict) -> dict:
    """``row`` with each non-finite float (a diverged loss) as ``None``: JSON has no NaN."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


class RunCheckpoints:
    """Every trainer's checkpoints, ``checkpoints/step-*/`` in the run folder
    (:func:`~gen_reason.train.checkpoint.save_checkpoint`): the trained parameters
    (``trainable``), the optimizer, the learning-rate schedule, the EMA if any, each
    process's random states, and ``state.json`` with where the run stands
    (:class:`Progress`) and the config; the newest ``checkpoints_keep`` are kept."""

    def __init__(self, root: Path, config: TrainingConfig, model: torch.nn.Module, accelerator=None) -> None:
        self.root, self.config, self.accelerator = Path(root), config, accelerator
        self.trainable = TrainableState(model)

    def _objects(self, trainer: "Trainer") -> dict:
        objects = {"trainable": self.trainable, "optimizer": trainer.optimizer, "lr_scheduler": trainer.lr_scheduler}
        if trainer.ema is not None:
            objects["ema"] = trainer.ema
        return objects

    def latest(self) -> Checkpoint | None:
        """The newest complete checkpoint, or ``None``."""
        return load_latest(self.root)

    def save(self, trainer: "Trainer", progress: Progress) -> None:
        """Write the checkpoint of ``trainer`` at ``progress`` (every process calls it)."""
        state = {"step": progress.step, "data_position": progress.position, "loss": progress.loss,
                 "loss_window": list(progress.window), "train_seconds": progress.train_seconds,
                 "wall_seconds": progress.elapsed, "config": dataclasses.asdict(self.config)}
        save_checkpoint(self.root, self._objects(trainer), state, accelerator=self.accelerator,
                        keep=self.config.checkpoints_keep)

    def restore(self, trainer: "Trainer", checkpoint: Checkpoint) -> Progress:
        """Put ``checkpoint`` back into ``trainer``; where the run stands."""
        checkpoint.restore(self._objects(trainer), accelerator=self.accelerator)
        if trainer.ema is not None:
            trainer.ema.to(trainer.accelerator.device)  # loaded on the CPU
        state = checkpoint.state
        # A fine-tuning checkpoint of an older genreason kept only the seconds since the run began.
        wall = state.get("wall_seconds", state.get("train_seconds", 0.0))
        return Progress(step=checkpoint.step, position=int(state["data_position"]), loss=state.get("loss"),
                        train_seconds=float(state.get("train_seconds", 0.0)), wall_seconds=float(wall),
                        window=[float(x) for x in state.get("loss_window", [])])

    def discard(self) -> None:
        """A fresh start: nothing of an earlier run in this folder may mix into this one."""
        import shutil

        shutil.rmtree(self.root, ignore_errors=True)


class PoliteStop:
    """While open (and ``enabled``, on the main thread), SIGTERM and Ctrl-C ask the loop to stop
    after its step instead of killing it; :meth:`close` puts the previous handlers back."""

    def __init__(self, enabled: bool) -> None:
        self.requested = False
        self._previous = {}
        if enabled and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._request)

    def _request(self, *_) -> None:
        self.requested = True

    def close(self) -> None:
        """Restore the signal handlers that were there before."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


class Trainer:
    """The optimizer, schedule, EMA and step loop around one model.

    ``model``: the network that trains (prepared here with its optimizer); ``parameters``:
    what trains (the optimizer's and the EMA's); ``schedule(optimizer) -> scheduler`` the
    learning-rate schedule (stepped once per optimizer step, by this loop only);
    ``ema_decay``: keep an EMA of ``parameters`` (``None``: none).
    """

    def __init__(self, accelerator, model: torch.nn.Module, parameters: Iterable[torch.nn.Parameter], *,
                 learning_rate: float, betas: tuple[float, float], weight_decay: float, eps: float = 1e-8,
                 schedule: Callable[[torch.optim.Optimizer], Any], ema_decay: float | None = None,
                 tracker: str | None = None) -> None:
        self.accelerator = accelerator
        self.parameters = list(parameters)
        self.ema = None
        if ema_decay is not None:
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel(self.parameters, decay=ema_decay)
        optimizer = torch.optim.AdamW(self.parameters, lr=learning_rate, betas=betas, eps=eps,
                                      weight_decay=weight_decay)
        # Stepped by the loop once per optimizer step (not prepared: accelerate would step it once per process).
        self.lr_scheduler = schedule(optimizer)
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        if self.ema is not None:
            self.ema.to(accelerator.device)
        self.tracker = tracker
        self.progress = Progress()  # where the run stands (the loop updates it; a resume replaces it)

    @property
    def unwrapped(self) -> torch.nn.Module:
        """The model without accelerate's wrapping (for its state dict)."""
        return self.accelerator.unwrap_model(self.model)

    def run(self, settings: LoopSettings, progress: Progress, data: Callable[[int], tuple[Any, Any]], objective,
            store: CheckpointStore, log: JsonlLog | None,
            log_row: Callable[[int, list[float], float, Progress], dict],
            validate: Callable[[int], None] | None = None,
            validate_now: Callable[[int], bool] = lambda step: False) -> Progress:
        """Train from ``progress`` to ``settings.last_step`` (or a polite stop); return where it ended.

        ``validate_now(step)``: whether the sitting opens with a validation (an untrained
        baseline, or one a kill interrupted). ``log`` (``losses.jsonl``) None: this process writes no log.
        """
        from tqdm.auto import tqdm
        import sys

        accelerator = self.accelerator
        self.progress = progress
        saved_at = [None]
        last_save = [time.time()]

        def save() -> None:
            store.save(self, progress)
            saved_at[0], last_save[0] = progress.step, time.time()

        if validate is not None and validate_now(progress.step):
            validate(progress.step)
        progress.sitting_began = time.time()
        bar = tqdm(total=settings.max_steps, initial=progress.step, desc=settings.desc, dynamic_ncols=True,
                   disable=not (settings.progress and accelerator.is_main_process),
                   mininterval=1.0 if sys.stderr.isatty() else 30.0)
        autocast = accelerator.autocast if settings.autocast else nullcontext
        self.model.train()
        in_step = False  # True while a step changes the weights: a failure then leaves no consistent state to save
        stop = PoliteStop(settings.save_on_interrupt)
        try:
            while progress.step < settings.last_step and not stop.requested:
                in_step = True
                started = time.time()
                losses = self._step(settings, progress, data, objective, autocast)
                in_step = False
                progress.train_seconds += time.time() - started
                self._after_step(settings, progress, losses, bar, log, log_row)
                step = progress.step
                validation_due = validate is not None and settings.validation_due(step)
                if settings.checkpoint_due(step, time.time() - last_save[0], validation_due):
                    save()
                if validation_due:
                    validate(step)
                if stop.requested:
                    tqdm.write(f"stopping at step {step} (signal); rerun the same command to resume")
        except Exception:
            # The data source died (killed, out of memory) or bookkeeping failed: keep every
            # finished step, then let the error through. The next run resumes from here.
            if settings.save_on_interrupt and not in_step and saved_at[0] != progress.step:
                save()
            raise
        finally:
            stop.close()
        bar.close()
        if settings.checkpoint_when_sitting_ends and saved_at[0] != progress.step:
            save()
        return progress

    def _step(self, settings: LoopSettings, progress: Progress, data, objective, autocast) -> list[torch.Tensor]:
        """One optimizer step over ``settings.accumulation`` micro-batches; their losses."""
        accelerator = self.accelerator
        losses = []
        if hasattr(self.lr_scheduler, "before_step"):  # a schedule that sets the rate itself
            self.lr_scheduler.before_step()
        for _ in range(settings.accumulation):
            batch, noise = data(progress.position)
            with accelerator.accumulate(self.model):
                with autocast():
                    loss = objective.loss(self.model, batch, noise)
                accelerator.backward(loss)
                if accelerator.sync_gradients and settings.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(self.parameters, settings.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach().float())
            progress.position += 1
        if self.ema is not None:
            self.ema.step(self.parameters)
        progress.step += 1
        return losses

    def _after_step(self, settings: LoopSettings, progress: Progress, losses, bar, log, log_row) -> None:
        """The step's loss into the window, the bar, the log and the tracker; the schedule moves on."""
        lr = self.lr_scheduler.get_last_lr()[0]
        self.lr_scheduler.step()
        step = progress.step
        progress.loss = float(self.accelerator.reduce(torch.stack(losses).mean(), reduction="mean"))
        progress.window.append(progress.loss)
        bar.update(1)
        bar.set_postfix(loss=f"{progress.loss:.4f}", refresh=False)
        if step % settings.log_every == 0 or (settings.log_last and step == settings.max_steps):
            if log is not None:
                log.append(finite_row(log_row(step, progress.window, lr, progress)))
            progress.window.clear()
        if self.tracker:
            self.accelerator.log({"train/loss": progress.loss, "train/lr": lr}, step=step)
