"""The settings both trainers share (gen_reason.train.loop.TrainingConfig): one name and one
meaning each, older names still read (with a one-line warning), checkpoints of older runs
resumed under the new names, gradient accumulation for the embedded trainer too."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml

from gen_reason.errors import UserError
from gen_reason.train.checkpoint import load_state, save_state
from gen_reason.train.embedded import EmbeddedTrainConfig, train_embedded
from gen_reason.train.lora_config import LoraTrainConfig, load_lora_config
from gen_reason.train.loop import TrainingConfig


def test_both_configs_share_one_definition_of_the_common_settings():
    shared = {f.name: f.type for f in dataclasses.fields(TrainingConfig)}
    for config in (EmbeddedTrainConfig, LoraTrainConfig):
        assert issubclass(config, TrainingConfig)
        fields = {f.name: f.type for f in dataclasses.fields(config)}
        assert {name: fields[name] for name in shared} == shared  # same names, same types
        assert not set(fields) & set(TrainingConfig.RENAMED)  # no old name left anywhere
    # A name only one trainer has is not a second name of a shared setting.
    embedded_only = {f.name for f in dataclasses.fields(EmbeddedTrainConfig)} - set(shared)
    lora_only = {f.name for f in dataclasses.fields(LoraTrainConfig)} - set(shared)
    assert not embedded_only & lora_only - {"num_frames", "validation_steps"}, embedded_only & lora_only


def test_old_names_are_read_under_the_new_ones_with_one_warning(tmp_path, capsys, tiny_config):
    data = tiny_config().to_dict()
    data["log_every_steps"], data["validate_every_steps"] = data.pop("log_every"), data.pop("validate_every")
    data["log_every_steps"], data["validate_every_steps"] = 7, 9
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(data))
    capsys.readouterr()
    config = EmbeddedTrainConfig.from_yaml(path)
    assert (config.log_every, config.validate_every) == (7, 9)
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 2 and "'log_every_steps' is now called 'log_every'" in warnings[0], warnings

    lora = tmp_path / "lora.yaml"
    lora.write_text("model: m\ndata: d\nlr_warmup_steps: 3\n")
    assert load_lora_config(lora).warmup_steps == 3
    assert "'lr_warmup_steps' is now called 'warmup_steps'" in capsys.readouterr().err
    assert load_lora_config(lora, {"lr_warmup_steps": "5"}).warmup_steps == 5  # as a flag too (--lr_warmup_steps 5)
    with pytest.raises(UserError, match="both 'lr_warmup_steps' and 'warmup_steps'"):
        lora.write_text("model: m\ndata: d\nlr_warmup_steps: 3\nwarmup_steps: 2\n")
        load_lora_config(lora)


def test_a_near_miss_names_the_new_name(tmp_path, tiny_config):
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump({**tiny_config().to_dict(), "log_evry": 3}))
    with pytest.raises(UserError, match="did you mean log_every"):
        EmbeddedTrainConfig.from_yaml(path)
    with pytest.raises(UserError, match="did you mean warmup_steps"):
        load_lora_config(None, {"model": "m", "data": "d", "warmup_step": "2"})


def test_shared_checks_are_the_same_for_both(tiny_config):
    for bad, message in (({"gradient_accumulation_steps": 0}, "gradient_accumulation_steps must be >= 1"),
                         ({"ema_decay": 1.0}, "ema_decay must be in [0, 1)"),
                         ({"trackers": "mlflow"}, "trackers must be one of"),
                         ({"checkpoint_minutes": -1.0}, "checkpoint_minutes must be >= 0")):
        with pytest.raises(UserError, match=message.replace("[", r"\[").replace(")", r"\)")):
            tiny_config(**bad)
        with pytest.raises(UserError, match=message.replace("[", r"\[").replace(")", r"\)")):
            LoraTrainConfig(model="m", data="d", **bad).validate()


def test_a_checkpoint_under_the_old_names_resumes(tmp_path, tiny_config, logged):
    config = tiny_config(max_steps=3, log_every=1)
    train_embedded(config, tmp_path / "straight", progress=False, validate=False)
    run = tmp_path / "old"
    train_embedded(config, run, progress=False, validate=False, stop_after_steps=2)
    state = load_state(run / "checkpoint.safetensors")  # as an older genreason wrote it: old names, fewer fields
    saved = state["config"]
    saved["log_every_steps"], saved["validate_every_steps"] = saved.pop("log_every"), saved.pop("validate_every")
    for added in ("adam_epsilon", "gradient_accumulation_steps", "checkpoint_every", "checkpoints_keep", "resume"):
        saved.pop(added)
    save_state(run / "checkpoint.safetensors", state)
    train_embedded(config, run, progress=False, validate=False)
    a, b = load_state(tmp_path / "straight" / "checkpoint.safetensors"), load_state(run / "checkpoint.safetensors")
    assert a["step"] == b["step"] == 3
    assert all(torch.equal(tensor, b["unet"][name]) for name, tensor in a["unet"].items())
    assert logged(run) == logged(tmp_path / "straight")


def test_embedded_gradient_accumulation_resumes_bit_exact(tmp_path, tiny_config, logged):
    config = tiny_config(max_steps=3, gradient_accumulation_steps=2, batch_size=2, fresh_per_step=2, log_every=1)
    one_batch = tiny_config(max_steps=3, batch_size=2, fresh_per_step=2, log_every=1)
    train_embedded(config, tmp_path / "straight", progress=False, validate=False)
    train_embedded(one_batch, tmp_path / "plain", progress=False, validate=False)
    train_embedded(config, tmp_path / "resumed", progress=False, validate=False, stop_after_steps=1)
    train_embedded(config, tmp_path / "resumed", progress=False, validate=False)
    a, b = load_state(tmp_path / "straight" / "checkpoint.safetensors"), load_state(tmp_path / "resumed" / "checkpoint.safetensors")
    plain = load_state(tmp_path / "plain" / "checkpoint.safetensors")
    assert a["step"] == b["step"] == 3
    assert all(torch.equal(tensor, b["unet"][name]) for name, tensor in a["unet"].items())
    assert logged(tmp_path / "resumed") == logged(tmp_path / "straight")
    # Two micro-batches per step train on other data than one: the weights differ.
    assert not all(torch.equal(tensor, plain["unet"][name]) for name, tensor in a["unet"].items())
