"""The embedded pipeline: Wan-style call, exact first frame, per-sample seeds, save/load, the backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gen_reason.models.embedded import EmbeddedVideoPipeline
from gen_reason.models.embedded_parts import make_scheduler, make_unet, pad_image

SHIPPED = Path(__file__).resolve().parents[2] / "gen_reason" / "assets" / "embedded"


def tiny_pipeline() -> EmbeddedVideoPipeline:
    torch.manual_seed(0)
    unet = make_unet(num_frames=4, resolution=16, block_out_channels=(16, 32), attention_levels=(False, True),
                     attention_head_dim=16, norm_num_groups=8)
    pipe = EmbeddedVideoPipeline(unet=unet, scheduler=make_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def maze_image(size: int = 15) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)


def test_call_returns_frames_of_the_image_size_with_its_first_frame():
    pipe = tiny_pipeline()
    image = maze_image(15)
    frames = pipe(image=image, prompt="ignored", num_inference_steps=3,
                  generator=[torch.Generator().manual_seed(1)]).frames
    assert frames.shape == (1, 4, 15, 15, 3) and frames.dtype == np.float32
    assert 0.0 <= frames.min() and frames.max() <= 1.0
    assert np.array_equal(np.rint(frames[0, 0] * 255).astype(np.uint8), image)


def test_each_video_depends_only_on_its_own_generator():
    pipe = tiny_pipeline()
    image = maze_image(16)
    alone = pipe(image=image, num_inference_steps=3, generator=[torch.Generator().manual_seed(7)]).frames
    pair = pipe(image=image, num_inference_steps=3, num_videos_per_prompt=2,
                generator=[torch.Generator().manual_seed(3), torch.Generator().manual_seed(7)]).frames
    assert np.allclose(alone[0], pair[1], atol=1e-5)
    assert not np.allclose(pair[0], pair[1])


def test_callback_sees_latents_and_clean_estimate():
    pipe = tiny_pipeline()
    seen = []

    def callback(p, i, t, tensors):
        seen.append((i, tuple(tensors["latents"].shape), tuple(tensors["pred_original_sample"].shape)))
        return {}

    out = pipe(image=[maze_image(16), maze_image(12)], num_inference_steps=2, output_type="latent",
               callback_on_step_end=callback,
               callback_on_step_end_tensor_inputs=["latents", "pred_original_sample"]).frames
    assert out.shape == (2, 3, 4, 16, 16)
    assert seen == [(0, (2, 3, 4, 16, 16), (2, 3, 4, 16, 16)), (1, (2, 3, 4, 16, 16), (2, 3, 4, 16, 16))]


def test_save_and_load_round_trip(tmp_path):
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path / "model", safe_serialization=True)
    assert (tmp_path / "model" / "unet" / "diffusion_pytorch_model.safetensors").exists()
    loaded = EmbeddedVideoPipeline.from_pretrained(tmp_path / "model")
    loaded.set_progress_bar_config(disable=True)
    image = maze_image(16)
    a = pipe(image=image, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).frames
    b = loaded(image=image, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).frames
    assert np.array_equal(a, b)
    assert loaded.config.pad_color == [255, 255, 255]


def test_default_sampler_is_saved_with_the_weights_and_stochastic_sampling_is_per_seed(tmp_path):
    """``default_steps`` / ``default_eta`` travel in model_index.json and reach the backend;
    with eta > 0 every step's noise comes from each video's own generator, so a seed still
    fixes its video whatever shares the batch, and eta changes the result."""
    backend = pytest.importorskip("gen_reason.models.diffusers_backend")
    pipe = tiny_pipeline()
    assert pipe.config.default_steps == 50 and pipe.config.default_eta == 0.0  # DDIM's usual defaults
    stochastic = EmbeddedVideoPipeline(unet=pipe.unet, scheduler=pipe.scheduler, default_steps=3, default_eta=1.0)
    stochastic.save_pretrained(tmp_path / "model", safe_serialization=True)
    loaded = EmbeddedVideoPipeline.from_pretrained(tmp_path / "model")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.config.default_steps == 3 and loaded.config.default_eta == 1.0
    image = maze_image(16)
    alone = loaded(image=image, generator=[torch.Generator().manual_seed(7)]).frames
    pair = loaded(image=image, num_videos_per_prompt=2,
                  generator=[torch.Generator().manual_seed(3), torch.Generator().manual_seed(7)]).frames
    assert np.allclose(alone[0], pair[1], atol=1e-5)
    explicit = loaded(image=image, num_inference_steps=3, eta=1.0, generator=[torch.Generator().manual_seed(7)]).frames
    assert np.array_equal(alone, explicit)  # the defaults are exactly 3 steps at eta 1
    deterministic = loaded(image=image, eta=0.0, generator=[torch.Generator().manual_seed(7)]).frames
    assert not np.allclose(alone, deterministic, atol=1e-3)
    untouched = torch.Generator().manual_seed(7)
    with pytest.raises(ValueError, match="eta must be >= 0"):
        loaded(image=image, eta=-0.5, generator=[untouched])
    assert torch.equal(untouched.get_state(), torch.Generator().manual_seed(7).get_state())  # refused before any draw
    generator = backend.DiffusersVideoGenerator.from_pretrained(tmp_path / "model")
    assert generator.options.steps == 3
    via_backend = generator.generate(image, "", seeds=[7])[0]
    assert np.array_equal(via_backend, np.rint(alone[0] * 255).astype(np.uint8))


def test_pad_image_keeps_coordinates():
    image = maze_image(15)
    padded = pad_image(image, 16, (255, 255, 255))
    assert np.array_equal(padded[:15, :15], image) and (padded[15] == 255).all()
    assert padded.shape == (16, 16, 3) and padded.dtype == np.uint8 and (padded[:, 15] == 255).all()
    assert np.array_equal(pad_image(padded, 16, (0, 0, 0)), padded)  # already at size: unchanged
    grey = pad_image(image[:10], 16, (7, 8, 9))
    assert np.array_equal(grey[:10, :15], image[:10]) and (grey[10:] == (7, 8, 9)).all()


def test_backend_drives_the_pipeline(tmp_path):
    backend = pytest.importorskip("gen_reason.models.diffusers_backend")
    tiny_pipeline().save_pretrained(tmp_path / "model", safe_serialization=True)
    generator = backend.DiffusersVideoGenerator.from_pretrained(tmp_path / "model", num_frames=4, size=(16, 16),
                                                                steps=2)
    videos = generator.generate(maze_image(15), "solve the maze", seeds=[0, 1])
    assert len(videos) == 2 and videos[0].shape == (4, 15, 15, 3) and videos[0].dtype == np.uint8


@pytest.mark.skipif(not (SHIPPED / "model_index.json").exists(), reason="no shipped embedded weights yet")
def test_shipped_weights_load_through_the_backend_and_solve_a_maze():
    backend = pytest.importorskip("gen_reason.models.diffusers_backend")
    from gen_reason.train.data import held_out_instances

    assert backend.DiffusersVideoGenerator.from_pretrained(SHIPPED).options.steps == 20  # the shipped sampler
    generator = backend.DiffusersVideoGenerator.from_pretrained(SHIPPED, steps=10)
    instance = held_out_instances(4, 1)[0]
    padded = pad_image(instance.first_frame, 32, (255, 255, 255))
    video = generator.generate(padded, instance.prompt, seeds=[0])[0]
    assert video.shape == (generator.default_num_frames, 32, 32, 3) and video.dtype == np.uint8
    assert np.array_equal(video[0], padded)
    native = generator.generate(instance.first_frame, instance.prompt, seeds=[0])[0]
    assert native.shape[1:] == instance.first_frame.shape
    sizes = sum(p.stat().st_size for p in SHIPPED.rglob("*.safetensors"))
    assert sizes <= 25 * 2**20


def test_backend_defaults_come_from_the_weights(tmp_path):
    """With no options the generator makes the UNet's own frame count at its resolution."""
    backend = pytest.importorskip("gen_reason.models.diffusers_backend")
    tiny_pipeline().save_pretrained(tmp_path / "model", safe_serialization=True)
    generator = backend.DiffusersVideoGenerator.from_pretrained(tmp_path / "model", steps=2)
    assert generator.default_num_frames == 4 and generator.default_size == (16, 16)
    assert generator.generate(maze_image(15), "", seeds=[0])[0].shape == (4, 15, 15, 3)


def test_lora_loads_through_the_backend_like_a_diffusers_lora(tmp_path):
    """A LoRA saved by the trainer goes in with ``from_pretrained(lora=...)`` (as for Wan)
    and changes the output; its scale mixes it in."""
    backend = pytest.importorskip("gen_reason.models.diffusers_backend")
    peft = pytest.importorskip("peft")
    from gen_reason.train.outputs import save_embedded_lora

    tiny_pipeline().save_pretrained(tmp_path / "model", safe_serialization=True)
    trained = tiny_pipeline()
    config = peft.LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "conv1"])
    peft.inject_adapter_in_model(config, trained.unet)
    torch.manual_seed(1)
    for name, param in trained.unet.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    layers = peft.get_peft_model_state_dict(trained.unet)
    (tmp_path / "lora").mkdir()
    save_embedded_lora(tmp_path / "lora", layers, config)

    def output(**options):
        generator = backend.DiffusersVideoGenerator.from_pretrained(tmp_path / "model", steps=2, **options)
        return generator.generate(maze_image(15), "", seeds=[0])[0]

    base = output()
    with_lora = output(lora=tmp_path / "lora")
    off = output(lora=tmp_path / "lora", lora_scale=0.0)
    assert not np.array_equal(base, with_lora)
    assert np.array_equal(base, off)


def test_stochastic_sampling_stays_finite_on_long_first_steps():
    """At eta 1 the first step out of pure noise leaves DDIM no room for the predicted noise
    (sqrt of 0, which rounding can make negative): the cap keeps every step real."""
    from gen_reason.models.embedded_parts import safe_eta

    pipe = tiny_pipeline()
    for steps in (2, 3, 5, 20):
        pipe.scheduler.set_timesteps(steps)
        for t in pipe.scheduler.timesteps.tolist():
            eta = safe_eta(pipe.scheduler, t, 1.0)
            assert 0.99 <= eta <= 1.0
        latents = pipe(image=maze_image(16), num_inference_steps=steps, eta=1.0, output_type="latent",
                       generator=[torch.Generator().manual_seed(s) for s in range(4)], num_videos_per_prompt=4).frames
        assert torch.isfinite(latents).all(), steps
    assert safe_eta(pipe.scheduler, 999, 0.0) == 0.0


def test_ddim_variance_is_diffusers_own():
    """Our DDIM variance (public attributes only) equals the one DDIMScheduler.step uses;
    should diffusers change its formula or the helper's name, this says so."""
    from gen_reason.models.embedded_parts import ddim_variance

    scheduler = tiny_pipeline().scheduler
    for steps in (2, 5, 20, 50):
        scheduler.set_timesteps(steps)
        for t in scheduler.timesteps.tolist():
            prev = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
            ours, _ = ddim_variance(scheduler, t)
            assert ours == float(scheduler._get_variance(t, prev))
