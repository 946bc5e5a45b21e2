"""LoRA / full fine-tuning (gen_reason.train.lora) on tiny random-weight pipelines.

Every model is a tiny diffusers pipeline built in-process (gen_reason.models.testing) and
saved to disk; the data is a 4-puzzle maze dataset written by gen_reason.datasets. The
two-process run is in test_lora_multiprocess.py.
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
from gen_reason.train.lora_config import load_lora_config, parse_overrides
from gen_reason.train.outputs import LORA_WEIGHTS
from gen_reason.video import read_image

KINDS = ["wan2.1-i2v", "wan2.2-ti2v", "cogvideox-i2v", "ltx-i2v"]


# dataset and tiny_model: fixtures in conftest.py


def config_for(kind, model, data, out, **overrides):
    """A small, fast run: rank 8, lr 1e-2, global batch 2 on the model's tiny geometry."""
    geometry = testing.TINY_GEOMETRY[kind]
    settings = dict(model=str(model), data=str(data), output_dir=str(out), rank=8, learning_rate=1e-2,
                    batch_size=2, max_steps=4, checkpoint_every=0, height=geometry["size"][0],
                    width=geometry["size"][1], num_frames=geometry["num_frames"])
    settings.update(overrides)
    return load_lora_config(None, settings)


def losses_of(out):
    return [json.loads(line)["loss"] for line in (out / "losses.jsonl").read_text().splitlines()]


def fixed_noise_loss(generator, kind, data, positions=6):
    """The training objective of every dataset sample on fixed noise and timesteps (no gradients)."""
    from gen_reason.train.conditioning import ConditioningCache, load_samples
    from gen_reason.train.losses import objective_for, sample_generator

    geometry = testing.TINY_GEOMETRY[kind]
    pipe = generator.pipeline
    objective = objective_for(pipe, generator.family, Geometry(geometry["num_frames"], *geometry["size"]))
    cache = ConditioningCache(objective, load_samples(data))
    batch = cache.batch(range(4))
    with torch.no_grad():
        values = [float(objective.loss(pipe.transformer, batch, [sample_generator(99, p, s) for s in range(4)]))
                  for p in range(positions)]
    return float(np.mean(values))


# -- training, output, loading back ----------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_lora_learns_and_loads_back_through_diffusers(kind, tiny_model, dataset, tmp_path):
    from gen_reason.models import DiffusersVideoGenerator

    model = tiny_model(kind)
    out = train_lora(config_for(kind, model, dataset, tmp_path / "run", max_steps=30, alpha=4.0), progress=False)

    losses = losses_of(out)
    assert len(losses) == 30
    assert np.mean(losses[-8:]) < np.mean(losses[:8])
    for name in (LORA_WEIGHTS, "README.md", "config.yaml", "validation.png"):
        assert (out / name).is_file(), name
    assert "rank 8, alpha 4.0" in (out / "README.md").read_text()

    generator = DiffusersVideoGenerator.from_pretrained(model, steps=2, **testing.TINY_GEOMETRY[kind])
    instance_image = read_image(sorted((dataset / "images").glob("*.png"))[0])
    before_video = generator.generate(instance_image, "a maze", seeds=[0])[0]
    before = fixed_noise_loss(generator, kind, dataset)
    generator.set_loras([out], [1.0])  # pipe.load_lora_weights(out): the diffusers format round trip
    after = fixed_noise_loss(generator, kind, dataset)
    after_video = generator.generate(instance_image, "a maze", seeds=[0])[0]
    # The loaded LoRA is the trained one (alpha included): it fits the training videos better.
    assert after < 0.9 * before, (before, after)
    assert not np.array_equal(before_video, after_video)


def test_lora_folder_loads_in_from_pretrained(tiny_model, dataset, tmp_path):
    from gen_reason.models import DiffusersVideoGenerator

    out = train_lora(config_for("wan2.1-i2v", tiny_model("wan2.1-i2v"), dataset, tmp_path / "run", max_steps=2),
                     progress=False)
    generator = DiffusersVideoGenerator.from_pretrained(tiny_model("wan2.1-i2v"), lora=out, steps=2,
                                                        **testing.TINY_GEOMETRY["wan2.1-i2v"])
    assert generator.name.endswith("+run")
    assert any("lora_A" in name for name, _ in generator.pipeline.transformer.named_parameters())


def test_resume_after_interruption_reproduces_the_uninterrupted_run(tiny_model, dataset, tmp_path):
    from safetensors.torch import load_file

    kind = "wan2.1-i2v"
    # Dropout draws from the global RNG, accumulation splits steps, cosine depends on the step:
    # each must be restored exactly for the weights to match.
    settings = dict(max_steps=6, batch_size=1, gradient_accumulation_steps=2, dropout=0.1, checkpoint_every=2,
                    lr_scheduler="cosine", warmup_steps=2)
    whole = train_lora(config_for(kind, tiny_model(kind), dataset, tmp_path / "whole", **settings), progress=False)

    cut_config = config_for(kind, tiny_model(kind), dataset, tmp_path / "cut", **settings)
    cut = train_lora(cut_config, progress=False, stop_after_steps=3)  # "killed" after step 3
    assert [p.name for p in ckpt.list_checkpoints(cut / "checkpoints")] == ["step-000000002"]
    assert not (cut / LORA_WEIGHTS).exists()
    with pytest.raises(UserError, match="rank"):
        train_lora(config_for(kind, tiny_model(kind), dataset, tmp_path / "cut", **settings, rank=4), progress=False)
    train_lora(cut_config, progress=False)

    a, b = load_file(whole / LORA_WEIGHTS), load_file(cut / LORA_WEIGHTS)
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    assert [json.loads(line)["step"] for line in (cut / "losses.jsonl").read_text().splitlines()] == list(range(1, 7))
    assert losses_of(cut) == pytest.approx(losses_of(whole), abs=1e-6)


def test_ema_weights_are_saved_and_resume_exactly(tiny_model, dataset, tmp_path):
    """With ema_decay the saved LoRA is the EMA of the weights (not the last ones), and a resumed run
    (its EMA restored from the checkpoint) saves what an uninterrupted one does."""
    from safetensors.torch import load_file

    kind = "wan2.1-i2v"
    settings = dict(max_steps=4, checkpoint_every=2, learning_rate=1e-2)
    plain = train_lora(config_for(kind, tiny_model(kind), dataset, tmp_path / "plain", **settings), progress=False)
    whole = train_lora(config_for(kind, tiny_model(kind), dataset, tmp_path / "whole", ema_decay=0.5, **settings),
                       progress=False)
    cut_config = config_for(kind, tiny_model(kind), dataset, tmp_path / "cut", ema_decay=0.5, **settings)
    cut = train_lora(cut_config, progress=False, stop_after_steps=3)
    assert (ckpt.list_checkpoints(cut / "checkpoints")[-1] / "ema.safetensors").is_file()
    train_lora(cut_config, progress=False)
    a, b, c = (load_file(run / LORA_WEIGHTS) for run in (whole, cut, plain))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert losses_of(whole) == losses_of(plain)  # the EMA never feeds back into training
    assert any(not torch.equal(a[k], c[k]) for k in a if "lora_B" in k)  # but what is saved differs


def test_uncached_checkpointed_run_equals_cached_run(tiny_model, dataset, tmp_path):
    """Encode-once caching and gradient checkpointing change the time, not the numbers."""
    kind = "cogvideox-i2v"  # its encoders draw (image noise, latent samples): the hardest case
    cached = train_lora(config_for(kind, tiny_model(kind), dataset, tmp_path / "cached", max_steps=3),
                        progress=False)
    uncached = train_lora(config_for(kind, tiny_model(kind), dataset, tmp_path / "uncached", max_steps=3,
                                     cache_conditioning=False, cache_latents=False, gradient_checkpointing=True),
                          progress=False)
    assert losses_of(uncached) == pytest.approx(losses_of(cached), abs=1e-5)


def test_cache_encodes_each_prompt_and_sample_once(tiny_model, dataset):
    from gen_reason.models import DiffusersVideoGenerator
    from gen_reason.train.conditioning import ConditioningCache, load_samples
    from gen_reason.train.losses import objective_for

    generator = DiffusersVideoGenerator.from_pretrained(tiny_model("wan2.1-i2v"))
    objective = objective_for(generator.pipeline, generator.family, Geometry(9, 16, 16))
    samples = load_samples(dataset)
    cached = ConditioningCache(objective, samples)
    uncached = ConditioningCache(objective, samples, cache_conditioning=False, cache_latents=False)
    for _ in range(2):
        a, b = cached.batch([0, 1, 2, 3]), uncached.batch([0, 1, 2, 3])
    assert cached.encoder_calls == {"text": len({s.prompt for s in samples}), "image": 4, "video": 4}
    assert uncached.encoder_calls == {"text": 8, "image": 8, "video": 8}
    assert set(a) == {"prompt_embeds", "image_embeds", "condition", "latent_mean"}
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    assert a["condition"].shape == (4, 20, 3, 2, 2)  # mask (4) + image latent (16), Wan 2.1's layout


def test_validation_scores_held_out_puzzles_and_draws_the_curve(tiny_model, dataset, tmp_path):
    out = train_lora(config_for("wan2.1-i2v", tiny_model("wan2.1-i2v"), dataset, tmp_path / "run", max_steps=2,
                                validate_every=2, validation_count=2, validation_steps=2), progress=False)
    rows = [json.loads(line) for line in (out / "validation.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [0, 2]  # the untrained baseline, then each validation
    for row in rows:
        assert row["count"] == 2 and row["success"] is not None and "exact_match" in row["metrics"]
    assert (out / "validation.png").stat().st_size > 0
    assert len(list((out / "validation" / "step-000000002").glob("*.mp4"))) == 2
    assert "held-out success" in (out / "README.md").read_text()


# -- the embedded model ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_embedded(tmp_path_factory):
    from gen_reason.models.embedded import EmbeddedVideoPipeline
    from gen_reason.models.embedded_parts import make_scheduler, make_unet

    torch.manual_seed(0)
    unet = make_unet(num_frames=8, resolution=32, block_out_channels=(8, 16), attention_levels=(False, True),
                     attention_head_dim=8, norm_num_groups=4)
    path = tmp_path_factory.mktemp("embedded") / "embedded"
    EmbeddedVideoPipeline(unet=unet, scheduler=make_scheduler()).save_pretrained(path, safe_serialization=True)
    return path


def test_embedded_model_lora_and_full_finetune(tiny_embedded, dataset, tmp_path):
    from gen_reason.models import DiffusersVideoGenerator
    from gen_reason.train.outputs import load_embedded_lora

    settings = dict(model=str(tiny_embedded), data=str(dataset), rank=4, max_steps=3, batch_size=2,
                    learning_rate=1e-2, checkpoint_every=0)
    image = np.full((28, 28, 3), 255, np.uint8)
    image[4:8, 4:8] = (255, 0, 0)

    lora_out = train_lora(load_lora_config(None, dict(settings, output_dir=str(tmp_path / "lora"))), progress=False)
    generator = DiffusersVideoGenerator.from_pretrained(tiny_embedded, steps=3)
    base = generator.generate(image, "", seeds=[0])[0]
    load_embedded_lora(generator.pipeline, lora_out)
    assert any("lora_A" in name for name, _ in generator.pipeline.unet.named_parameters())
    assert not np.array_equal(base, generator.generate(image, "", seeds=[0])[0])
    # The model card's own instructions load the LoRA as written.
    code = (lora_out / "README.md").read_text().split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - the card this run wrote
    assert any("lora_A" in name for name, _ in namespace["generator"].pipeline.unet.named_parameters())

    full_out = train_lora(load_lora_config(None, dict(settings, lora=False, learning_rate=1e-3,
                                                      output_dir=str(tmp_path / "full"))), progress=False)
    tuned = DiffusersVideoGenerator.from_pretrained(full_out, steps=3)  # the run folder is a model folder
    original = DiffusersVideoGenerator.from_pretrained(tiny_embedded, steps=3)
    changed = [not torch.equal(a, b) for a, b in zip(tuned.pipeline.unet.parameters(),
                                                      original.pipeline.unet.parameters())]
    assert all(changed)


# -- configs and user errors ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["lora_wan.yaml", "lora_cogvideox.yaml", "lora_ltx.yaml"])
def test_shipped_configs_load(name):
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "configs" / name
    config = load_lora_config(path, {"model": "m", "data": "d"})
    assert config.rank == 32 and config.learning_rate == pytest.approx(1e-4)


def test_overrides_are_parsed_and_checked():
    overrides = parse_overrides(["--lora.rank", "8", "--lora.dropout=0.1", "--lora.target_modules", "to_q,to_v",
                                 "--lora.gradient_checkpointing", "true", "--train.max_steps", "null",
                                 "--model.offload", "none"])
    assert overrides["offload"] == "none"
    config = load_lora_config(None, {**overrides, "model": "m", "data": "d"})
    assert (config.rank, config.dropout, config.target_modules) == (8, 0.1, ["to_q", "to_v"])
    assert config.gradient_checkpointing is True and config.max_steps is None
    with pytest.raises(UserError, match="did you mean rank"):
        load_lora_config(None, {"rnak": 8, "model": "m", "data": "d"})
    with pytest.raises(UserError, match="mixed_precision"):
        load_lora_config(None, {"mixed_precision": "fp8", "model": "m", "data": "d"})
    with pytest.raises(UserError, match="no model"):
        load_lora_config(None, {"data": "d"})
    with pytest.raises(UserError, match="config file not found"):
        load_lora_config("/nonexistent/lora.yaml")


def test_user_mistakes_are_one_line_errors(tiny_model, dataset, tmp_path):
    model = tiny_model("wan2.1-i2v")
    with pytest.raises(UserError, match="model folder not found"):
        train_lora(config_for("wan2.1-i2v", tmp_path / "nope", dataset, tmp_path / "a"), progress=False)
    with pytest.raises(UserError, match="data folder not found"):
        train_lora(config_for("wan2.1-i2v", model, tmp_path / "nodata", tmp_path / "a"), progress=False)
    with pytest.raises(UserError, match="match nothing"):
        train_lora(config_for("wan2.1-i2v", model, dataset, tmp_path / "a", target_modules=["qkv_proj"]),
                   progress=False)
    with pytest.raises(UserError, match="fewer than one global batch"):
        train_lora(config_for("wan2.1-i2v", model, dataset, tmp_path / "a", batch_size=8), progress=False)
    with pytest.raises(UserError, match="4k \\+ 1"):
        train_lora(config_for("wan2.1-i2v", model, dataset, tmp_path / "a", num_frames=8), progress=False)


# -- checkpoints ------------------------------------------------------------------------------
def test_checkpoints_are_atomic_pruned_and_restore_rng(tmp_path):
    layer = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(layer.parameters())
    objects = {"model": layer, "optimizer": optimizer}
    for step in (1, 2, 3):
        ckpt.save_checkpoint(tmp_path, objects, {"step": step, "data_position": 10 * step}, keep=2)
    (tmp_path / "step-000000009.tmp").mkdir()  # a save killed half-way is never "latest"
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-000000002", "step-000000003"]
    torch.manual_seed(5)
    ckpt.save_checkpoint(tmp_path, objects, {"step": 4}, keep=2)
    expected = torch.rand(3)
    with torch.no_grad():
        layer.weight.zero_()
    latest = ckpt.load_latest(tmp_path)
    assert latest.step == 4
    latest.restore(objects)
    assert layer.weight.abs().sum() > 0
    torch.testing.assert_close(torch.rand(3), expected)
    assert ckpt.load_latest(tmp_path / "empty") is None
