"""LoRA training of Wan 2.2 I2V-A14B's two experts (gen_reason.train.lora, WanExperts in gen_reason.train.losses).

The model is the tiny random-weight A14B pipeline of gen_reason.models.testing (two
2-layer transformers, ``boundary_ratio`` 0.9, UniPC with flow shift 5) saved to disk;
the data a 4-puzzle maze dataset. A run saves one diffusers LoRA per trained expert:
``pytorch_lora_weights.safetensors`` (``transformer``, high noise) and
``transformer_2/pytorch_lora_weights.safetensors`` (``transformer_2``, low noise).
"""

import json
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP threads spin on a busy CPU

import numpy as np
import pytest
import torch

from gen_reason.errors import UserError
from gen_reason.models import testing
from gen_reason.models.families import Geometry
from gen_reason.train import checkpoint as ckpt
from gen_reason.train.lora import train_lora
from gen_reason.train.lora_config import load_lora_config
from gen_reason.train.outputs import LORA_WEIGHTS

KIND = "wan2.2-i2v-a14b"
GEOMETRY = testing.TINY_GEOMETRY[KIND]
LOW_LORA = f"transformer_2/{LORA_WEIGHTS}"
BOUNDARY = 900.0  # boundary_ratio 0.9 x 1000 training timesteps


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return testing.save_tiny_pipeline(KIND, tmp_path_factory.mktemp("a14b") / "a14b")


def config_for(model, data, out, **overrides):
    """A small, fast run: rank 8, lr 1e-2, batch 2 at the tiny geometry."""
    settings = dict(model=str(model), data=str(data), output_dir=str(out), rank=8, learning_rate=1e-2,
                    batch_size=2, max_steps=4, checkpoint_every=0, height=GEOMETRY["size"][0],
                    width=GEOMETRY["size"][1], num_frames=GEOMETRY["num_frames"])
    settings.update(overrides)
    return load_lora_config(None, settings)


@pytest.fixture(scope="module")
def both_run(model, dataset, tmp_path_factory):
    """30 optimizer steps with an adapter on each expert."""
    out = tmp_path_factory.mktemp("both") / "run"
    return train_lora(config_for(model, dataset, out, max_steps=30, alpha=4.0), progress=False)


def losses_of(out):
    return [json.loads(line)["loss"] for line in (out / "losses.jsonl").read_text().splitlines()]


def load(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def generator_for(model, **options):
    from gen_reason.models import DiffusersVideoGenerator

    return DiffusersVideoGenerator.from_pretrained(model, steps=2, **GEOMETRY, **options)


def expert_inputs(seed=0):
    """One fixed input for a tiny expert: latents + condition (36 ch), text, timestep."""
    generator = torch.Generator().manual_seed(seed)
    return dict(hidden_states=torch.randn(2, 36, 3, 2, 2, generator=generator),
                encoder_hidden_states=torch.randn(2, 8, 32, generator=generator),
                timestep=torch.tensor([950.0, 300.0]), return_dict=False)


def expert_outputs(pipe):
    with torch.no_grad():
        return [getattr(pipe, name)(**expert_inputs())[0] for name in ("transformer", "transformer_2")]


def fixed_noise_loss(pipe, family, data, experts="both", positions=6):
    """The routed training objective over every sample on fixed noise and timesteps (no gradients).

    ``experts="high"`` / ``"low"`` draws only that expert's timesteps, so the loss is that expert's alone.
    """
    from gen_reason.train.conditioning import ConditioningCache, load_samples
    from gen_reason.train.losses import objective_for, sample_generator

    objective = objective_for(pipe, family, Geometry(GEOMETRY["num_frames"], *GEOMETRY["size"]), experts=experts)
    batch = ConditioningCache(objective, load_samples(data)).batch(range(4))
    with torch.no_grad():
        values = [float(objective.loss(objective.model, batch, [sample_generator(99, p, s) for s in range(4)]))
                  for p in range(positions)]
    return float(np.mean(values))


def lora_state(transformer, adapter):
    from peft.utils import get_peft_model_state_dict

    return {f"transformer.{k}": v for k, v in get_peft_model_state_dict(transformer, adapter_name=adapter).items()}


def assert_same_weights(a, b, tolerance=0.0):
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= tolerance


# -- both experts -----------------------------------------------------------------------------
def test_both_experts_learn_and_load_back_each_into_its_own_expert(model, dataset, both_run):
    out = both_run
    losses = losses_of(out)
    assert len(losses) == 30
    assert np.mean(losses[-8:]) < np.mean(losses[:8])
    for name in (LORA_WEIGHTS, LOW_LORA, "lora_experts.json", "README.md", "config.yaml"):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "lora_experts.json").read_text())
    assert (manifest["transformer"], manifest["transformer_2"]) == (LORA_WEIGHTS, LOW_LORA)
    assert "on both experts" in (out / "README.md").read_text()

    high, low = load(out / LORA_WEIGHTS), load(out / LOW_LORA)
    assert high.keys() == low.keys() and all(k.startswith("transformer.blocks.") for k in high)
    # LoRA B starts at zero: non-zero B everywhere means every adapted layer of each expert trained.
    assert all(high[k].abs().max() > 0 and low[k].abs().max() > 0 for k in high if "lora_B" in k)
    assert any(not torch.equal(high[k], low[k]) for k in high)  # two adapters, not one copied

    base = generator_for(model)
    tuned = generator_for(model, lora=out)  # the `genreason solve --lora` path
    pipe = tuned.pipeline
    assert_same_weights(lora_state(pipe.transformer, "lora0"), high)
    assert_same_weights(lora_state(pipe.transformer_2, "lora0"), low)
    for before, after in zip(expert_outputs(base.pipeline), expert_outputs(pipe)):
        assert not torch.allclose(before, after)

    # Each expert fits the training videos better on the timesteps it owns (measured: -17%, -10%, -19%;
    # the high-noise expert sees about a quarter of the samples and the noisiest targets).
    for experts in ("both", "high", "low"):
        before = fixed_noise_loss(base.pipeline, base.family, dataset, experts)
        after = fixed_noise_loss(pipe, tuned.family, dataset, experts)
        assert after < 0.95 * before, (experts, before, after)

    image = np.zeros((16, 16, 3), np.uint8)
    image[2:6, 2:6] = (255, 0, 0)
    videos = [generator.generate(image, "a maze", seeds=[0])[0] for generator in (base, tuned)]
    assert not np.array_equal(*videos)


def test_saved_loras_load_through_diffusers_own_calls(model, both_run):
    from diffusers import WanImageToVideoPipeline

    pipe = WanImageToVideoPipeline.from_pretrained(str(model), local_files_only=True)
    base = expert_outputs(pipe)
    pipe.load_lora_weights(str(both_run), adapter_name="puzzles")
    pipe.load_lora_weights(str(both_run / "transformer_2"), adapter_name="puzzles", load_into_transformer_2=True)
    assert_same_weights(lora_state(pipe.transformer, "puzzles"), load(both_run / LORA_WEIGHTS))
    assert_same_weights(lora_state(pipe.transformer_2, "puzzles"), load(both_run / LOW_LORA))
    for before, after in zip(base, expert_outputs(pipe)):
        assert not torch.allclose(before, after)


def test_each_sample_runs_through_and_trains_only_the_expert_owning_its_timestep():
    from gen_reason.models.families import WAN22_I2V_A14B
    from gen_reason.train.adapters import make_trainable
    from gen_reason.train.losses import WanExperts, objective_for

    pipe = testing.build_tiny_pipeline(KIND)
    objective = objective_for(pipe, WAN22_I2V_A14B, Geometry(9, 16, 16))
    make_trainable(pipe, objective, load_lora_config(None, dict(model="m", data="d", rank=4)))
    experts = objective.model
    assert isinstance(experts, WanExperts) and experts.boundary_timestep == BOUNDARY
    assert set(objective.trained_modules) == {"transformer", "transformer_2"}
    inputs = expert_inputs()
    inputs["timestep"] = torch.tensor([BOUNDARY, BOUNDARY - 0.5])  # the boundary itself is the high expert's

    mixed = experts(**inputs)[0]
    with torch.no_grad():
        alone = [expert(**{k: (v[i : i + 1] if torch.is_tensor(v) else v) for k, v in inputs.items()})[0]
                 for i, expert in enumerate((pipe.transformer, pipe.transformer_2))]
    torch.testing.assert_close(mixed.detach(), torch.cat(alone))

    def gradients(sample):
        experts.zero_grad(set_to_none=True)
        one = {k: (v[sample : sample + 1] if torch.is_tensor(v) else v) for k, v in inputs.items()}
        experts(**one)[0].square().mean().backward()
        return [[p.grad for n, p in expert.named_parameters() if "lora_B" in n]
                for expert in (pipe.transformer, pipe.transformer_2)]

    high_grads, low_grads = gradients(0)  # a high-noise sample
    assert all(g is not None and g.abs().max() > 0 for g in high_grads) and all(g is None for g in low_grads)
    high_grads, low_grads = gradients(1)  # a low-noise sample
    assert all(g is None for g in high_grads) and all(g is not None and g.abs().max() > 0 for g in low_grads)


def test_timesteps_are_drawn_from_the_trained_experts_range():
    from gen_reason.models.families import WAN22_I2V_A14B
    from gen_reason.train.losses import objective_for, sample_generator

    pipe = testing.build_tiny_pipeline(KIND)
    draws = {}
    for experts in ("both", "high", "low"):
        objective = objective_for(pipe, WAN22_I2V_A14B, Geometry(9, 16, 16), experts=experts)
        generators = [sample_generator(3, i) for i in range(200)]
        draws[experts] = objective.flow_sigmas(generators, sequence_length=12) * 1000.0
    assert bool((draws["high"] >= BOUNDARY).all()) and bool((draws["low"] < BOUNDARY).all())
    share_high = float((draws["both"] >= BOUNDARY).float().mean())
    assert 0.1 < share_high < 0.6  # logit-normal through shift 5: both experts get samples


# -- one expert ---------------------------------------------------------------------------------
@pytest.mark.parametrize("experts", ["high", "low"])
def test_one_expert_trains_and_loads_alone(experts, model, dataset, tmp_path):
    trained, untouched = ("transformer", "transformer_2") if experts == "high" else ("transformer_2", "transformer")
    out = train_lora(config_for(model, dataset, tmp_path / "run", experts=experts, max_steps=3, checkpoint_every=3),
                     progress=False)
    manifest = json.loads((out / "lora_experts.json").read_text())
    assert manifest[untouched] is None and manifest[trained] is not None
    assert (out / LORA_WEIGHTS).is_file() == (experts == "high")
    assert (out / LOW_LORA).is_file() == (experts == "low")
    saved = ckpt.load_state(ckpt.load_latest(out / "checkpoints").path / "trainable.safetensors")
    assert saved and all(name.startswith(f"{trained}.") for name in saved)  # only this expert's adapter trained

    base = generator_for(model)
    tuned = generator_for(model, lora=out)
    assert "lora0" in getattr(tuned.pipeline, trained).peft_config
    assert not getattr(getattr(tuned.pipeline, untouched), "peft_config", None)
    index = {"transformer": 0, "transformer_2": 1}
    before, after = expert_outputs(base.pipeline), expert_outputs(tuned.pipeline)
    assert not torch.allclose(before[index[trained]], after[index[trained]])
    torch.testing.assert_close(before[index[untouched]], after[index[untouched]])


# -- checkpoints ------------------------------------------------------------------------------
def test_resume_after_interruption_reproduces_both_adapters(model, dataset, tmp_path):
    # Batch 1 with accumulation: some optimizer steps see one expert only; dropout uses the global RNG.
    settings = dict(max_steps=6, batch_size=1, gradient_accumulation_steps=2, dropout=0.1, checkpoint_every=2,
                    lr_scheduler="cosine", warmup_steps=2)
    whole = train_lora(config_for(model, dataset, tmp_path / "whole", **settings), progress=False)

    cut_config = config_for(model, dataset, tmp_path / "cut", **settings)
    cut = train_lora(cut_config, progress=False, stop_after_steps=3)  # "killed" after step 3
    checkpoint = ckpt.load_latest(cut / "checkpoints")
    assert checkpoint.step == 2 and not (cut / LORA_WEIGHTS).exists()
    saved = ckpt.load_state(checkpoint.path / "trainable.safetensors")
    assert {name.split(".")[0] for name in saved} == {"transformer", "transformer_2"}
    with pytest.raises(UserError, match="experts"):
        train_lora(config_for(model, dataset, tmp_path / "cut", **settings, experts="high"), progress=False)
    train_lora(cut_config, progress=False)

    for name in (LORA_WEIGHTS, LOW_LORA):
        assert_same_weights(load(whole / name), load(cut / name), tolerance=1e-6)
    assert losses_of(cut) == pytest.approx(losses_of(whole), abs=1e-6)


# -- configs and user errors ------------------------------------------------------------------
def test_shipped_a14b_config_loads():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "configs" / "lora_wan22_a14b.yaml"
    config = load_lora_config(path, {"model": "m", "data": "d"})
    assert (config.rank, config.experts) == (32, "both") and config.learning_rate == pytest.approx(1e-4)
    assert load_lora_config(path, {"model": "m", "data": "d", "experts": "low"}).experts == "low"


def test_expert_choices_are_checked(both_run):
    from gen_reason.models import DiffusersVideoGenerator
    from gen_reason.models.families import WAN21_I2V
    from gen_reason.train.losses import objective_for

    with pytest.raises(UserError, match="experts must be one of"):
        load_lora_config(None, {"model": "m", "data": "d", "experts": "middle"})
    wan21 = testing.build_tiny_pipeline("wan2.1-i2v")
    with pytest.raises(UserError, match="applies to Wan 2.2 A14B"):
        objective_for(wan21, WAN21_I2V, Geometry(9, 16, 16), experts="high")
    objective_for(wan21, WAN21_I2V, Geometry(9, 16, 16))  # "both" is every model's default
    with pytest.raises(UserError, match="one LoRA per Wan 2.2 A14B expert"):
        DiffusersVideoGenerator(wan21, WAN21_I2V, name="wan").set_loras([both_run], [1.0])


# -- data parallel ------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_processes_equal_one_process_when_experts_are_idle_on_a_process(model, dataset, tmp_path):
    """Batch 1 per process: often one process's sample goes to the other expert (DDP's unused parameters)."""
    import shutil
    import subprocess
    import sys

    import yaml

    launcher = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or shutil.which("accelerate")
    if launcher is None:
        pytest.skip("the accelerate command is not installed")
    settings = dict(model=str(model), data=str(dataset), rank=4, max_steps=6, learning_rate=1e-2, height=16,
                    width=16, num_frames=9, checkpoint_every=2, gradient_accumulation_steps=2)
    config_file = tmp_path / "lora.yaml"
    config_file.write_text(yaml.safe_dump(settings))
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "gen_reason.train.lora",
               "--config", str(config_file), "--out", str(tmp_path / "two"), "--train.batch_size", "1", "--quiet"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]

    one = train_lora(load_lora_config(None, dict(settings, batch_size=2, output_dir=str(tmp_path / "one"))),
                     progress=False)
    for name in (LORA_WEIGHTS, LOW_LORA):
        assert_same_weights(load(one / name), load(tmp_path / "two" / name), tolerance=1e-5)
    assert losses_of(one) == pytest.approx(losses_of(tmp_path / "two"), abs=1e-5)
