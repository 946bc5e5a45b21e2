"""kill -9 in the middle of a training run, then the same command again: the run ends
with exactly the state and the loss log of a run never interrupted (embedded trainer and
LoRA trainer, each in a real subprocess killed with SIGKILL after a checkpoint)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch

import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from gen_reason.train import checkpoint as ckpt

ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def assert_same(a, b, where="", skip=("train_seconds", "wall_seconds")):
    """Two loaded states are equal: every tensor exactly (values and dtype), every scalar."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            if key not in skip:
                assert_same(a[key], b[key], f"{where}.{key}", skip)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]", skip)
    elif hasattr(a, "shape"):  # numpy
        assert (a == b).all(), where
    else:
        assert a == b, where


def kill_after(command: list[str], reached, timeout: float = 240) -> None:
    """Start ``command`` in its own process group; SIGKILL the whole group once ``reached()``."""
    proc = subprocess.Popen(command, env=ENV, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    try:
        while not reached():
            if proc.poll() is not None:
                pytest.fail(f"the run ended before it was killed: {proc.stderr.read().decode()[-2000:]}")
            if time.time() > deadline:
                pytest.fail("the run made no checkpoint in time")
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def test_embedded_trainer_killed_then_rerun_equals_an_uninterrupted_run(tmp_path, tiny_config, logged):
    from gen_reason.train.embedded import main, train_embedded
    from gen_reason.train.embedded_weights import checkpoint_state

    # A checkpoint after every step; the sitting ends at step `last` (the LR schedule spans 400).
    config = tiny_config(max_steps=400, decay_steps=2, checkpoint_minutes=0.0, log_every=2)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    run, last = tmp_path / "run", 14

    def checkpointed() -> bool:
        try:
            state = checkpoint_state(run)
            return state is not None and state["step"] >= 3
        except Exception:  # not written yet
            return False

    kill_after([sys.executable, "-m", "gen_reason.train.embedded", "--config", str(path), "--out", str(run),
                "--stop-after-steps", str(last)], checkpointed)
    killed_at = checkpoint_state(run)["step"]
    assert 3 <= killed_at < last
    # The same command again (in this process), then a run never interrupted.
    command = ["--config", str(path), "--out", str(run), "--stop-after-steps", str(last)]
    torch.set_num_threads(1)
    assert main(command) == 0
    train_embedded(config, tmp_path / "straight", progress=False, validate=False, stop_after_steps=last)

    resumed = checkpoint_state(run)
    straight = checkpoint_state(tmp_path / "straight")
    assert resumed["step"] == straight["step"] == last
    assert_same(resumed, straight)
    assert [row["step"] for row in logged(run)] == list(range(2, last + 1, 2))
    assert logged(run) == logged(tmp_path / "straight")


def test_lora_trainer_killed_then_rerun_equals_an_uninterrupted_run(tmp_path, tiny_model, dataset, logged):
    from gen_reason.models import testing
    from gen_reason.train.lora import load_lora_config, train_lora

    kind = "wan2.1-i2v"
    geometry = testing.TINY_GEOMETRY[kind]
    # Dropout draws from the global RNG and accumulation splits steps: both must survive the kill.
    settings = dict(model=str(tiny_model(kind)), data=str(dataset), rank=4, learning_rate=1e-2, batch_size=1,
                    gradient_accumulation_steps=2, dropout=0.1, max_steps=400, checkpoint_every=1,
                    checkpoints_keep=2, height=geometry["size"][0], width=geometry["size"][1],
                    num_frames=geometry["num_frames"])
    path = tmp_path / "lora.yaml"
    path.write_text(yaml.safe_dump(settings))
    run, last = tmp_path / "run", 8

    def checkpointed() -> bool:
        latest = ckpt.load_latest(run / "checkpoints")
        return latest is not None and latest.step >= 2

    kill_after([sys.executable, "-m", "gen_reason.train.lora", "--config", str(path), "--out", str(run), "--quiet"],
               checkpointed)
    killed_at = ckpt.load_latest(run / "checkpoints").step
    assert 2 <= killed_at < last
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the killed process ran (OMP_NUM_THREADS=1): the same float sums
    try:
        # The same run again, ending this sitting at `last`; then a run never interrupted.
        train_lora(load_lora_config(path, {"output_dir": str(run)}), progress=False, stop_after_steps=last)
        train_lora(load_lora_config(path, {"output_dir": str(tmp_path / "straight")}), progress=False,
                   stop_after_steps=last)
    finally:
        torch.set_num_threads(threads)
    resumed, straight = ckpt.load_latest(run / "checkpoints"), ckpt.load_latest(tmp_path / "straight" / "checkpoints")
    assert resumed.step == straight.step == last
    for name in ("trainable", "optimizer", "lr_scheduler", "rng-0"):
        assert_same(ckpt.load_state(resumed.path / f"{name}.safetensors"),
                    ckpt.load_state(straight.path / f"{name}.safetensors"), name)
    assert [row["step"] for row in logged(run)] == list(range(1, last + 1))
    assert logged(run) == logged(tmp_path / "straight")
