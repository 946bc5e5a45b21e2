"""The embedded model's training loop: data purity, loss going down, bit-exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gen_reason.errors import UserError
from gen_reason.models.embedded_parts import make_scheduler
from gen_reason.train.data import (HELD_OUT_SEED_START, TRAIN_SEED_LIMIT, MazeVideoData, ReplayStream,
                                   held_out_instances, maze_geometry)
from gen_reason.train.embedded import _step_generator, train_embedded
from gen_reason.train.embedded_config import EmbeddedTrainConfig
from gen_reason.train.embedded_weights import checkpoint_state
from gen_reason.train.losses import diffusion_loss

# tiny_config and logged: fixtures in conftest.py


def test_geometry_fills_the_working_size():
    for rooms in (3, 4, 5, 6, 7):
        geometry = maze_geometry(rooms, 32)
        side = rooms * geometry["cell_px"] + rooms + 1 + 2 * geometry["margin"]
        assert 30 <= side <= 32


def test_batches_are_pure_and_use_training_seeds_only():
    data = MazeVideoData(sizes=(3,), size_weights=(1.0,), num_frames=4, resolution=16)
    assert data.draw(5, 8) == data.draw(5, 8)
    assert data.draw(5, 8) != data.draw(6, 8)
    assert all(seed < TRAIN_SEED_LIMIT for _, seed in data.draw(0, 64))
    assert all(inst.seed >= HELD_OUT_SEED_START for inst in held_out_instances(3, 2, 16))
    batch = data.batch(0, 2)
    assert batch["video"].shape == (2, 3, 4, 16, 16) and batch["condition"].shape == (2, 3, 16, 16)
    assert torch.equal(batch["video"][:, :, 0], batch["condition"])


def test_replay_pool_is_a_function_of_the_step():
    data = MazeVideoData(sizes=(3,), size_weights=(1.0,), num_frames=4, resolution=16)
    in_order = ReplayStream(data, 4, 0, 5, fresh=2, capacity=6)
    batches = [in_order[i] for i in range(5)]
    resumed = ReplayStream(data, 4, 3, 5, fresh=2, capacity=6)  # a fresh process starting at step 3
    assert torch.equal(resumed[0]["video"], batches[3]["video"])
    assert torch.equal(resumed[1]["video"], batches[4]["video"])


def test_learning_rate_warms_up_holds_and_decays(tiny_config):
    config = tiny_config(max_steps=100, warmup_steps=10, decay_steps=20)
    assert config.lr_scheduler == "warmup_hold_decay"  # the embedded trainer's default
    assert config.learning_rate_at(0, config.max_steps) == pytest.approx(config.learning_rate / 10)
    assert config.learning_rate_at(50, config.max_steps) == config.learning_rate
    assert config.learning_rate_at(90, config.max_steps) == pytest.approx(config.learning_rate / 2)


def test_short_run_lowers_the_loss(tmp_path, tiny_config):
    config = tiny_config(max_steps=30, decay_steps=1)
    batch = config.data.batch(10**6, 8)  # a batch the run never trains on
    scheduler = make_scheduler()

    def fixed_loss(unet) -> float:
        with torch.no_grad():
            return float(diffusion_loss(unet, scheduler, batch["video"], batch["condition"], _step_generator(0, 0)))

    before = fixed_loss(config.build_unet())
    train_embedded(config, tmp_path / "run", progress=False, validate=False)
    state = checkpoint_state(tmp_path / "run")
    unet = config.build_unet()
    unet.load_state_dict(state["unet"])
    assert state["step"] == 30
    assert fixed_loss(unet) < 0.8 * before
    assert (tmp_path / "run" / "losses.jsonl").exists() or config.log_every > 30


def test_resume_is_bit_exact(tmp_path, tiny_config, logged):
    config = tiny_config(log_every=2)
    train_embedded(config, tmp_path / "straight", progress=False, validate=False)
    train_embedded(config, tmp_path / "resumed", progress=False, validate=False, stop_after_steps=3)
    halfway = checkpoint_state(tmp_path / "resumed")
    assert halfway["step"] == 3
    # Rows a killed sitting wrote past its checkpoint are dropped on resume, not repeated.
    with open(tmp_path / "resumed" / "losses.jsonl", "a") as fh:
        fh.write('{"step": 4, "loss": 9.0}\n{"step": 6, "lo')
    train_embedded(config, tmp_path / "resumed", progress=False, validate=False)
    # The log equals an uninterrupted run's: the loss window open at the checkpoint (step 3 of 2..4) was saved.
    assert [row["step"] for row in logged(tmp_path / "resumed")] == [2, 4, 6]
    assert logged(tmp_path / "resumed") == logged(tmp_path / "straight")
    a = checkpoint_state(tmp_path / "straight")
    b = checkpoint_state(tmp_path / "resumed")
    assert a["step"] == b["step"] == 6
    for name, tensor in a["unet"].items():
        assert torch.equal(tensor, b["unet"][name]), name
    for x, y in zip(a["ema"]["shadow_params"], b["ema"]["shadow_params"]):
        assert torch.equal(x, y)
    for key, moments in a["optimizer"]["state"].items():
        assert torch.equal(moments["exp_avg"], b["optimizer"]["state"][key]["exp_avg"])


def test_resume_refuses_a_different_run(tmp_path, tiny_config):
    train_embedded(tiny_config(max_steps=2), tmp_path / "run", progress=False, validate=False)
    with pytest.raises(UserError, match="learning_rate"):
        train_embedded(tiny_config(max_steps=2, learning_rate=1e-2), tmp_path / "run", progress=False, validate=False)


def test_validation_writes_a_curve(tmp_path, tiny_config):
    config = tiny_config(max_steps=2, validate_every=2)
    train_embedded(config, tmp_path / "run", progress=False, validate=True)
    assert (tmp_path / "run" / "validation.jsonl").read_text().count("\n") == 1
    assert (tmp_path / "run" / "validation.png").exists()


def test_validation_killed_midway_is_redone_once(tmp_path, tiny_config):
    """A sitting killed during a validation (checkpoint written, row not yet) redoes it on
    rerun; rerunning a finished run adds no second row for the same step."""
    import json

    config = tiny_config(max_steps=3, validate_every=2)
    train_embedded(config, tmp_path / "run", progress=False, validate=True)
    log = tmp_path / "run" / "validation.jsonl"
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [2, 3]
    train_embedded(config, tmp_path / "run", progress=False, validate=True)  # finished: nothing to add
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [2, 3]
    train_embedded(config, tmp_path / "cut", progress=False, validate=True, stop_after_steps=2)
    (tmp_path / "cut" / "validation.jsonl").write_text("")  # killed before the row of step 2 was written
    train_embedded(config, tmp_path / "cut", progress=False, validate=True)
    rows = [json.loads(line) for line in (tmp_path / "cut" / "validation.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [2, 3]


def test_unknown_config_key_is_a_user_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sizes: [3]\nsize_weights: [1.0]\nlearning_rat: 0.1\n")
    with pytest.raises(UserError, match="learning_rat"):
        EmbeddedTrainConfig.from_yaml(path)


@pytest.mark.parametrize("name", ["embedded_maze.yaml", "embedded_maze_continue.yaml"])
def test_shipped_config_loads(name):
    from pathlib import Path

    from gen_reason.train.embedded_weights import initial_weights

    root = Path(__file__).resolve().parents[2]
    config = EmbeddedTrainConfig.from_yaml(root / "configs" / name)
    unet = config.build_unet()
    assert config.num_frames * 3 + 3 == unet.config.in_channels
    assert np.isclose(sum(config.size_weights), 1.0)
    if config.init_from:  # the continuation starts from the shipped weights, which fit its UNet
        unet.load_state_dict(initial_weights(root / config.init_from))


def test_fixed_speed_videos_hold_at_the_goal():
    data = MazeVideoData(sizes=(3,), size_weights=(1.0,), num_frames=20, resolution=32, frames_per_move=2)
    first, video = data.example(3, 5)
    assert video.shape == (20, 32, 32, 3) and np.array_equal(video[0], first)
    moves = len(held_out_instances(3, 1)[0].solution["path"])  # any 3x3 path is <= 8 moves: 17 frames
    assert moves <= 9 and np.array_equal(video[-1], video[-2])


def test_second_stage_starts_from_the_first_stages_ema(tmp_path, tiny_config):
    from gen_reason.train.embedded_weights import ema_unet

    train_embedded(tiny_config(max_steps=2), tmp_path / "one", progress=False, validate=False)
    first, _, _ = ema_unet(tmp_path / "one")
    second = tiny_config(max_steps=1, init_from=str(tmp_path / "one"), learning_rate=0.0)
    train_embedded(second, tmp_path / "two", progress=False, validate=False)
    state = checkpoint_state(tmp_path / "two")
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, state["unet"][name]), name


def test_export_writes_the_puzzle_settings_solve_reads(tmp_path, tiny_config):
    """The exported folder loads through the backend at the trained frame count and tells
    solve/eval which puzzles it knows (genreason.json from the training config)."""
    from gen_reason.models.diffusers_backend import DiffusersVideoGenerator
    from gen_reason.models.loading import model_task_defaults, task_config_for
    from gen_reason.models.embedded import EmbeddedVideoPipeline
    from gen_reason.train.data import maze_geometry
    from gen_reason.train.embedded_weights import export_pipeline

    train_embedded(tiny_config(max_steps=2), tmp_path / "run", progress=False, validate=False)
    folder = export_pipeline(tmp_path / "run", tmp_path / "model")
    defaults = model_task_defaults(folder)
    assert defaults["num_frames"] == 4 and defaults["difficulty"] == "3x3"
    assert task_config_for(defaults, "3x3") == {"skin": "tiny", "trail": True, "wall_style": "thin",
                                                **maze_geometry(3, 16)}
    generator = DiffusersVideoGenerator.from_pretrained(folder, steps=2)
    assert generator.default_num_frames == 4
    # The default sampler: the run's own config, or the config the export is given.
    assert DiffusersVideoGenerator.from_pretrained(folder).options.steps == 50
    sampler = tiny_config(max_steps=2, sample_steps=7, sample_eta=1.0)
    folder = export_pipeline(tmp_path / "run", tmp_path / "model2", sampler)
    assert DiffusersVideoGenerator.from_pretrained(folder).options.steps == 7
    assert EmbeddedVideoPipeline.from_pretrained(folder).config.default_eta == 1.0


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_signal_to_the_process_group_checkpoints_and_resumes_bit_exact(tmp_path, signame, tiny_config):
    """A signal to the whole group (Ctrl-C in a terminal, a scheduler's preemption, a
    ``pkill -f``) reaches the data worker too; the worker must ignore it so the trainer
    finishes its step and checkpoints, rather than crash on a dead worker."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    config = tiny_config(max_steps=4000, decay_steps=2, data_workers=1, checkpoint_minutes=100.0, log_every=1)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    run = tmp_path / "run"
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.Popen([sys.executable, "-m", "gen_reason.train.embedded", "--config", str(path), "--out", str(run)],
                            env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    losses = run / "losses.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not losses.exists() or len(losses.read_text().splitlines()) < 5):
        time.sleep(0.2)
    os.killpg(proc.pid, getattr(signal, signame))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]
    state = checkpoint_state(run)
    done = int(state["step"])
    assert done >= 5 and json.loads(out.decode().strip().splitlines()[-1])["step"] == done
    # The interrupted run equals a run told to stop at the same step.
    train_embedded(config, tmp_path / "straight", progress=False, validate=False, stop_after_steps=done)
    straight = checkpoint_state(tmp_path / "straight")
    for name, tensor in straight["unet"].items():
        assert torch.equal(tensor, state["unet"][name]), name


def test_second_stage_starts_from_an_exported_pipeline_folder(tmp_path, tiny_config):
    """A later sitting without the first run's folder continues from the exported
    (safetensors) weights, as from the shipped model."""
    from gen_reason.train.embedded_weights import ema_unet, export_pipeline

    train_embedded(tiny_config(max_steps=2), tmp_path / "one", progress=False, validate=False)
    first, _, _ = ema_unet(tmp_path / "one")
    export_pipeline(tmp_path / "one", tmp_path / "exported")
    second = tiny_config(max_steps=1, init_from=str(tmp_path / "exported"), learning_rate=0.0)
    train_embedded(second, tmp_path / "two", progress=False, validate=False)
    state = checkpoint_state(tmp_path / "two")
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, state["unet"][name]), name
    with pytest.raises(UserError):
        train_embedded(tiny_config(init_from=str(tmp_path / "nowhere")), tmp_path / "three", progress=False,
                       validate=False)
    with pytest.raises(UserError, match="does not fit"):  # weights of another shape: one line, no traceback
        train_embedded(tiny_config(num_frames=6, init_from=str(tmp_path / "exported")), tmp_path / "four",
                       progress=False, validate=False)
