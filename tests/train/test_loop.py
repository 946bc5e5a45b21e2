"""The one training loop (gen_reason.train.loop) on a toy regression: what it owns, with no model family."""

from __future__ import annotations

import json

import pytest
import torch

from gen_reason.errors import UserError
from gen_reason.folders import RunFolder
from gen_reason.train.loop import FunctionSchedule, LoopSettings, Progress, Trainer
from gen_reason.train.settings import check_tracker
from gen_reason.train.run_folder import training_logs


class Regression:
    """A toy objective: mean squared error of a linear model on a fixed random batch per position."""

    def loss(self, model, batch, noise):
        x, y = batch
        return torch.nn.functional.mse_loss(model(x) + 0.01 * noise, y)


def toy_data(position: int):
    generator = torch.Generator().manual_seed(position)
    x = torch.randn(8, 3, generator=generator)
    return (x, x.sum(dim=1, keepdim=True)), torch.randn(8, 1, generator=generator)


class MemoryStore:
    """A checkpoint store in memory: the weights, optimizer, EMA and where the run stands."""

    def __init__(self):
        self.saved = {}

    def save(self, trainer, progress):
        self.saved = {"model": {k: v.clone() for k, v in trainer.unwrapped.state_dict().items()},
                      "optimizer": trainer.optimizer.state_dict(), "ema": trainer.ema.state_dict(),
                      "schedule": trainer.lr_scheduler.state_dict(),
                      "progress": dict(step=progress.step, position=progress.position, window=list(progress.window))}
        self.saved_steps = getattr(self, "saved_steps", []) + [progress.step]

    def restore(self, trainer):
        trainer.unwrapped.load_state_dict(self.saved["model"])
        trainer.optimizer.load_state_dict(self.saved["optimizer"])
        trainer.ema.load_state_dict(self.saved["ema"])
        trainer.lr_scheduler.load_state_dict(self.saved["schedule"])
        return Progress(**self.saved["progress"])


def make_trainer():
    from accelerate import Accelerator

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    return Trainer(Accelerator(cpu=True), model, model.parameters(), learning_rate=0.05, betas=(0.9, 0.99),
                   weight_decay=0.0, schedule=lambda opt: FunctionSchedule(opt, lambda step: 0.05 / (1 + step)),
                   ema_decay=0.9)


def row(step, window, lr, progress):
    return {"step": step, "loss": sum(window) / len(window), "lr": lr}


def settings(last_step, **changes):
    values = dict(max_steps=6, last_step=last_step, accumulation=2, max_grad_norm=1.0, log_every=2,
                  checkpoint_every=2, checkpoint_when_sitting_ends=True, progress=False)
    values.update(changes)
    return LoopSettings(**values)


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path):
    straight, store = make_trainer(), MemoryStore()
    with RunFolder(tmp_path / "a", {}) as run:
        log = training_logs(run, None)["losses.jsonl"]
        done = straight.run(settings(6), Progress(), toy_data, Regression(), store, log, row)
    assert (done.step, done.position) == (6, 12)  # two micro-batches per step
    assert store.saved_steps == [2, 4, 6]  # every checkpoint_every steps, the last once

    first, cut_store = make_trainer(), MemoryStore()
    with RunFolder(tmp_path / "b", {}) as run:
        first.run(settings(3), Progress(), toy_data, Regression(), cut_store, training_logs(run, None)["losses.jsonl"],
                  row)
    assert cut_store.saved_steps == [2, 3]  # the sitting's end is saved too
    second = make_trainer()
    resumed = cut_store.restore(second)
    with RunFolder(tmp_path / "b", {}) as run:
        with open(run.root / "losses.jsonl", "a") as fh:  # a row a killed sitting wrote past its checkpoint
            fh.write('{"step": 4, "loss": 9.0}\n{"step"')
        second.run(settings(6), resumed, toy_data, Regression(), cut_store,
                   training_logs(run, resumed.step)["losses.jsonl"], row)

    for a, b in zip(straight.unwrapped.parameters(), second.unwrapped.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(straight.ema.shadow_params, second.ema.shadow_params):
        assert torch.equal(a, b)
    logs = [[json.loads(line) for line in (tmp_path / name / "losses.jsonl").read_text().splitlines()]
            for name in ("a", "b")]
    assert logs[0] == logs[1] and [r["step"] for r in logs[0]] == [2, 4, 6]
    assert logs[0][0]["lr"] == pytest.approx(0.05 / 2)  # the second step's rate (steps count from 0)
    assert logs[0][-1]["loss"] < logs[0][0]["loss"]  # it learns


def test_validation_and_checkpoint_timing():
    plan = settings(6, checkpoint_every=0, validate_every=4, checkpoint_before_validation=True)
    assert [s for s in range(1, 7) if plan.validation_due(s)] == [4, 6]  # every 4 steps and at the end
    assert [s for s in range(1, 7) if plan.checkpoint_due(s, 0.0, plan.validation_due(s))] == [4, 6]
    timed = settings(6, checkpoint_every=0, checkpoint_minutes=0.5)
    assert timed.checkpoint_due(1, 31.0, False) and not timed.checkpoint_due(1, 29.0, False)
    assert settings(6, checkpoint_every=0, checkpoint_minutes=0.0).checkpoint_due(1, 0.0, False)  # 0: every step


def test_validation_runs_when_due_and_at_the_start_when_asked(tmp_path):
    trainer, seen = make_trainer(), []
    trainer.run(settings(5, validate_every=2), Progress(), toy_data, Regression(), MemoryStore(), None, row,
                validate=seen.append, validate_now=lambda step: step == 0)
    assert seen == [0, 2, 4]


def test_function_schedule_sets_the_rate_before_each_step():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    schedule = FunctionSchedule(optimizer, lambda step: 10.0 + step)
    schedule.load_state_dict({"step": 3})
    assert schedule.get_last_lr() == [13.0]
    schedule.before_step()
    assert optimizer.param_groups[0]["lr"] == 13.0
    schedule.step()
    assert schedule.state_dict() == {"step": 4} and optimizer.param_groups[0]["lr"] == 13.0


def test_a_tracker_is_checked_before_anything_runs(monkeypatch):
    import importlib.util

    assert check_tracker("none") is None
    with pytest.raises(UserError, match="one of none, tensorboard, wandb"):
        check_tracker("mlflow")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # as on a machine without wandb
    with pytest.raises(UserError, match="pip install wandb"):
        check_tracker("wandb")
