"""A trainer's run folder: a :class:`~gen_reason.folders.RunFolder` (:func:`open_run`:
``config.yaml`` checked against a rerun, held by one process per rank), its logs
(:func:`training_logs`: ``losses.jsonl``, ``validation.jsonl``) and its checkpoints
(:class:`RunCheckpoints`: ``checkpoints/step-*/``), the same for every trainer.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from gen_reason.folders import JsonlLog, RunFolder
from gen_reason.train.checkpoint import Checkpoint, TrainableState, load_latest, save_checkpoint
from gen_reason.train.loop import Progress, Trainer
from gen_reason.train.settings import TrainingConfig, _has_defaults


LOGS = ("losses.jsonl", "validation.jsonl")


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
