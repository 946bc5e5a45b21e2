"""The settings both trainers share (gen_reason.train.settings.TrainingConfig): one name and one
meaning each, older names still read (with a one-line warning), checkpoints of older runs
resumed under the new names, gradient accumulation for the embedded trainer too."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml

from gen_reason.errors import UserError
from gen_reason.train.checkpoint import save_state
from gen_reason.train.embedded import train_embedded
from gen_reason.train.embedded_config import EmbeddedTrainConfig
from gen_reason.train.embedded_weights import checkpoint_state
from gen_reason.train.lora_config import LoraTrainConfig, load_lora_config
from gen_reason.train.settings import TrainingConfig


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


def test_an_older_run_folder_resumes(tmp_path, tiny_config, logged):
    """A run folder as an older genreason left it (one checkpoint.safetensors, the settings
    under their old names in it and in config.yaml) resumes to what an uninterrupted run
    ends with; the new checkpoints go to checkpoints/step-*/."""
    import shutil

    config = tiny_config(max_steps=3, log_every=1)
    train_embedded(config, tmp_path / "straight", progress=False, validate=False)
    run = tmp_path / "old"
    train_embedded(config, run, progress=False, validate=False, stop_after_steps=2)
    new = checkpoint_state(run)
    saved = dict(new["config"])
    saved["log_every_steps"], saved["validate_every_steps"] = saved.pop("log_every"), saved.pop("validate_every")
    for added in ("adam_epsilon", "gradient_accumulation_steps", "checkpoint_every", "checkpoints_keep", "resume"):
        saved.pop(added)
    rng = new["rng-0"]
    save_state(run / "checkpoint.safetensors", {
        "config": saved, "step": new["step"], "train_seconds": new["train_seconds"], "unet": new["unet"],
        "ema": new["ema"], "optimizer": new["optimizer"], "torch_rng": rng["torch"], "numpy_rng": rng["numpy"],
        "python_rng": rng["python"], "loss_window": new["loss_window"]})
    shutil.rmtree(run / "checkpoints")
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    assert checkpoint_state(run)["step"] == 2  # read from the older file
    train_embedded(config, run, progress=False, validate=False)
    a, b = checkpoint_state(tmp_path / "straight"), checkpoint_state(run)
    assert a["step"] == b["step"] == 3 and (run / "checkpoints").is_dir()
    assert all(torch.equal(tensor, b["unet"][name]) for name, tensor in a["unet"].items())
    assert all(torch.equal(x, y) for x, y in zip(a["ema"]["shadow_params"], b["ema"]["shadow_params"]))
    assert logged(run) == logged(tmp_path / "straight")
    assert yaml.safe_load((run / "config.yaml").read_text()) == config.to_dict()  # rewritten under today's names


def test_embedded_gradient_accumulation_resumes_bit_exact(tmp_path, tiny_config, logged):
    config = tiny_config(max_steps=3, gradient_accumulation_steps=2, batch_size=2, fresh_per_step=2, log_every=1)
    one_batch = tiny_config(max_steps=3, batch_size=2, fresh_per_step=2, log_every=1)
    train_embedded(config, tmp_path / "straight", progress=False, validate=False)
    train_embedded(one_batch, tmp_path / "plain", progress=False, validate=False)
    train_embedded(config, tmp_path / "resumed", progress=False, validate=False, stop_after_steps=1)
    train_embedded(config, tmp_path / "resumed", progress=False, validate=False)
    a, b = checkpoint_state(tmp_path / "straight"), checkpoint_state(tmp_path / "resumed")
    plain = checkpoint_state(tmp_path / "plain")
    assert a["step"] == b["step"] == 3 and b["data_position"] == 6
    assert all(torch.equal(tensor, b["unet"][name]) for name, tensor in a["unet"].items())
    assert logged(tmp_path / "resumed") == logged(tmp_path / "straight")
    # Two micro-batches per step train on other data than one: the weights differ.
    assert not all(torch.equal(tensor, plain["unet"][name]) for name, tensor in a["unet"].items())


def test_both_trainers_keep_one_run_folder_layout(tmp_path, tiny_config, tiny_model, dataset):
    """config.yaml, losses.jsonl and checkpoints/step-*/ (the same files in each) for both trainers."""
    from gen_reason.models import testing
    from gen_reason.train.lora import train_lora

    train_embedded(tiny_config(max_steps=2, checkpoint_every=1, checkpoints_keep=1, log_every=1), tmp_path / "embedded",
                   progress=False, validate=False)
    geometry = testing.TINY_GEOMETRY["wan2.1-i2v"]
    train_lora(load_lora_config(None, dict(model=str(tiny_model("wan2.1-i2v")), data=str(dataset), rank=2, max_steps=2,
                                           batch_size=1, checkpoint_every=1, checkpoints_keep=1,
                                           height=geometry["size"][0], width=geometry["size"][1],
                                           num_frames=geometry["num_frames"], output_dir=str(tmp_path / "lora"))),
               progress=False)
    for run in (tmp_path / "embedded", tmp_path / "lora"):
        assert (run / "config.yaml").is_file() and len((run / "losses.jsonl").read_text().splitlines()) == 2
        assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-000000002"]  # checkpoints_keep: 1
        assert {p.name for p in (run / "checkpoints" / "step-000000002").iterdir()} >= {
            "trainable.safetensors", "optimizer.safetensors", "lr_scheduler.safetensors", "rng-0.safetensors",
            "state.json"}
    assert not (tmp_path / "embedded" / "checkpoint.safetensors").exists()


def test_the_run_folder_refuses_a_changed_config_and_a_second_process(tmp_path, tiny_config):
    """A folder with a checkpoint resumes under the same config only (or starts over when
    told: resume false); one without holds nothing to resume and starts over; a folder
    another process holds is refused."""
    import shutil

    from gen_reason.folders import RunFolder

    run = tmp_path / "run"
    train_embedded(tiny_config(), run, progress=False, validate=False, stop_after_steps=1)
    with pytest.raises(UserError, match="other values of learning_rate"):
        train_embedded(tiny_config(learning_rate=1e-2), run, progress=False, validate=False)
    train_embedded(tiny_config(learning_rate=1e-2), run, progress=False, validate=False, resume=False,
                   stop_after_steps=1)
    assert yaml.safe_load((run / "config.yaml").read_text())["learning_rate"] == 1e-2  # started over
    shutil.rmtree(run / "checkpoints")  # as if killed before its first checkpoint: nothing to resume
    train_embedded(tiny_config(), run, progress=False, validate=False, stop_after_steps=1)
    assert yaml.safe_load((run / "config.yaml").read_text())["learning_rate"] == tiny_config().learning_rate
    assert train_embedded(tiny_config(max_steps=7), run, progress=False, validate=False,
                          stop_after_steps=2)["step"] == 2  # max_steps may grow (before the decay)
    with RunFolder(run, yaml.safe_load((run / "config.yaml").read_text())):  # another process holds it
        with pytest.raises(UserError, match="in use by another genreason process"):
            train_embedded(tiny_config(max_steps=7), run, progress=False, validate=False)


def test_a_mistake_found_after_the_folder_opened_leaves_nothing(tmp_path, tiny_model, dataset, monkeypatch):
    """A refusal once the run folder is open (here: encoding the dataset fails) takes
    config.yaml back, so the corrected command runs there as if nothing happened."""
    from gen_reason.train import lora

    geometry = {"height": 16, "width": 16, "num_frames": 9}
    settings = dict(model=str(tiny_model("wan2.1-i2v")), data=str(dataset), rank=2, max_steps=1, batch_size=1,
                    output_dir=str(tmp_path / "run"), **geometry)

    def fail(*args, **kwargs):
        assert (tmp_path / "run" / "config.yaml").is_file()  # the folder is open by now
        raise UserError("a video of the dataset cannot be read")

    monkeypatch.setattr(lora, "fill_cache", fail)
    with pytest.raises(UserError, match="cannot be read"):
        lora.train_lora(load_lora_config(None, settings), progress=False)
    assert not (tmp_path / "run" / "config.yaml").exists()
    monkeypatch.undo()
    lora.train_lora(load_lora_config(None, {**settings, "learning_rate": 1e-3}), progress=False)
    assert list((tmp_path / "run" / "checkpoints").glob("step-*"))


def test_one_schedule_setting_for_both_trainers(tmp_path, tiny_config, tiny_model, dataset, logged):
    """lr_scheduler is shared: the embedded trainer runs a diffusers schedule, fine-tuning the
    embedded trainer's warm-up / hold / decay curve; each row's rate is the schedule's."""
    from diffusers.optimization import get_scheduler

    from gen_reason.train.lora import train_lora

    config = tiny_config(max_steps=4, lr_scheduler="cosine", warmup_steps=1, log_every=1)
    train_embedded(config, tmp_path / "embedded", progress=False, validate=False)
    reference = get_scheduler("cosine", optimizer=torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))],
                                                                  lr=config.learning_rate),
                              num_warmup_steps=1, num_training_steps=4)
    expected = []
    for _ in range(4):
        expected.append(reference.get_last_lr()[0])
        reference.optimizer.step()
        reference.step()
    assert [row["lr"] for row in logged(tmp_path / "embedded")] == expected

    lora = load_lora_config(None, dict(model=str(tiny_model("wan2.1-i2v")), data=str(dataset), rank=2, max_steps=4,
                                       batch_size=1, checkpoint_every=0, height=16, width=16, num_frames=9,
                                       lr_scheduler="warmup_hold_decay", warmup_steps=2, decay_steps=2,
                                       output_dir=str(tmp_path / "lora")))
    train_lora(lora, progress=False)
    rates = [row["lr"] for row in logged(tmp_path / "lora")]
    assert rates == [lora.learning_rate_at(step, 4) for step in range(4)]
    assert rates[0] < rates[1] == lora.learning_rate > rates[3] > 0  # warm-up, hold, decay


def test_one_resume_check_for_both_trainers():
    """TrainingConfig.check_resumable: a changed setting is refused with the trainer's words; the
    run's length (max_steps, or epochs for fine-tuning) may change only where the schedule allows."""
    embedded = EmbeddedTrainConfig(max_steps=3000, decay_steps=1000)  # warmup_hold_decay: decay from step 2000
    saved = {**embedded.to_dict(), "learning_rate": 1.0}
    with pytest.raises(UserError, match=r"^the checkpoint was made with other values of learning_rate; use a new"):
        embedded.check_resumable(saved, 10, "the checkpoint was", "use a new --out folder or the same config")
    longer = {**embedded.to_dict(), "max_steps": 4000, "log_every_steps": 7}  # an older genreason's name too
    del longer["log_every"]
    embedded.check_resumable(longer, 2000, "held", "hint")  # the decay has begun at neither length
    with pytest.raises(UserError, match="only before the learning-rate decay starts"):
        embedded.check_resumable(longer, 2001, "held", "hint")

    lora = LoraTrainConfig(model="m", data="d", lr_scheduler="cosine")
    with pytest.raises(UserError, match="cannot change under lr_scheduler 'cosine'"):
        lora.check_resumable({**dataclasses.asdict(lora), "epochs": lora.epochs + 1}, 1, "out holds a run", "hint")
    constant = LoraTrainConfig(model="m", data="d")
    constant.check_resumable({**dataclasses.asdict(constant), "epochs": 9, "max_steps": 50}, 1, "held", "hint")
    with pytest.raises(UserError, match=r"^out holds a run made with other values of rank; resume: false"):
        constant.check_resumable({**dataclasses.asdict(constant), "rank": 64}, 1, "out holds a run", "resume: false")
