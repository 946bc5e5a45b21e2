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
- a :class:`CheckpointStore` (every trainer's is :class:`~gen_reason.train.run_folder.RunCheckpoints`);
- ``validate(step)``: held-out sampling scored by the referee;
- ``log_row(step, window, lr, progress) -> dict``: the row of ``losses.jsonl``.

Every trainer's run folder is a :class:`~gen_reason.folders.RunFolder`
(:mod:`gen_reason.train.run_folder`: ``config.yaml`` checked against a rerun, the folder held
by one process per rank, the logs, the checkpoints ``checkpoints/step-*/``); the settings
every trainer shares are :class:`~gen_reason.train.settings.TrainingConfig`'s. Building the
model and its trainable parameters, and what is saved at the end (an exported pipeline,
LoRA weights), stay with the trainer that calls the loop.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol

import torch

from gen_reason.folders import JsonlLog


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


#: Mixed precision settings and the dtype each computes in.
MIXED_PRECISION = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class CheckpointStore(Protocol):
    """Where the loop's checkpoints go (``run_folder.RunCheckpoints`` for every trainer; tests may keep them in memory)."""

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


def start_trackers(accelerator, name: str, config: dict) -> None:
    """Start the accelerator's trackers (if any) with the run's config, flattened to scalars."""
    if accelerator.log_with:
        flat = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in config.items()}
        accelerator.init_trackers(name, config=flat)


def finite_row(row: dict) -> dict:
    """``row`` with each non-finite float (a diverged loss) as ``None``: JSON has no NaN."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


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
