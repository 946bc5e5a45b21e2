"""DiffusersVideoGenerator on tiny random-weight pipelines of every supported family.

Each model is saved to disk with safetensors and loaded back through ``from_pretrained``,
exactly as a user's model folder would be. Fixtures: tests/models/conftest.py.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from gen_reason.errors import UserError
from gen_reason.models import DiffusersVideoGenerator, StepState, testing
from gen_reason.models import families, model_folder

KINDS = list(testing.TINY_GEOMETRY)
PROMPT = "a red dot moves to the green goal"


def first_frame(height=20, width=24, seed=0):
    """A random RGB image; deliberately not the working size, to exercise resizing."""
    return np.random.RandomState(seed).randint(0, 256, (height, width, 3), dtype=np.uint8)


def working_size_frame(kind):
    height, width = testing.TINY_GEOMETRY[kind]["size"]
    return first_frame(height, width)


# -- loading ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kind, family",
    [
        ("wan2.1-i2v", families.WAN21_I2V),
        ("wan2.2-ti2v", families.WAN22_TI2V),
        ("wan2.2-i2v-a14b", families.WAN22_I2V_A14B),
        ("cogvideox-i2v", families.COGVIDEOX_I2V),
        ("ltx-i2v", families.LTX_I2V),
        ("ltx-condition", families.LTX_CONDITION),
    ],
)
def test_loads_each_family_from_its_folder(tiny_generator, kind, family):
    generator = tiny_generator(kind)
    assert generator.family is family
    assert generator.default_size == testing.TINY_GEOMETRY[kind]["size"]
    assert generator.fps == family.defaults.fps
    expected = "v_prediction" if kind.startswith("cogvideox") else "flow_prediction"
    assert generator.prediction_type == expected
    assert next(generator.pipeline.transformer.parameters()).dtype == torch.float32  # CPU default


def test_a14b_loads_both_experts(tiny_generator):
    pipe = tiny_generator("wan2.2-i2v-a14b").pipeline
    assert pipe.transformer is not None and pipe.transformer_2 is not None
    assert pipe.config.boundary_ratio == pytest.approx(0.9)


def test_a14b_takes_boundary_ratio_and_a_second_guidance(tiny_model_dir, monkeypatch):
    generator = DiffusersVideoGenerator.from_pretrained(
        tiny_model_dir("wan2.2-i2v-a14b"), steps=2, boundary_ratio=0.5, guidance_2=1.5,
        **testing.TINY_GEOMETRY["wan2.2-i2v-a14b"])
    assert generator.pipeline.config.boundary_ratio == 0.5
    seen = {}
    original = type(generator.pipeline).__call__

    def spy(self, *args, **kwargs):
        seen.update(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(generator.pipeline), "__call__", spy)
    generator.generate(first_frame(), PROMPT, seeds=[0], output="latents")
    assert seen["guidance_scale_2"] == 1.5


def test_cogvideox_dynamic_cfg_reaches_the_pipeline(tiny_model_dir):
    folder, geometry = tiny_model_dir("cogvideox-i2v"), testing.TINY_GEOMETRY["cogvideox-i2v"]
    plain = DiffusersVideoGenerator.from_pretrained(folder, steps=2, **geometry)
    dynamic = DiffusersVideoGenerator.from_pretrained(folder, steps=2, dynamic_cfg=True, **geometry)
    latents = [g.generate(first_frame(), PROMPT, seeds=[1], output="latents")[0] for g in (plain, dynamic)]
    assert not torch.allclose(latents[0], latents[1])  # the guidance scale now follows the step


def test_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="model folder not found"):
        DiffusersVideoGenerator.from_pretrained(tmp_path / "nope")


def test_folder_without_model_index_is_a_user_error(tmp_path):
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match="not a diffusers model folder"):
        DiffusersVideoGenerator.from_pretrained(tmp_path)


def test_unreadable_json_files_of_a_folder_are_one_line_user_errors(tmp_path):
    """A cut-short model_index.json, component config or lora_experts.json names the file."""
    from gen_reason.models.loras import expert_lora_files

    (tmp_path / "model_index.json").write_text('{"_class_name": "WanImageToVideoPipeline", ')
    with pytest.raises(UserError, match=r"cannot read .*model_index\.json: ") as caught:
        DiffusersVideoGenerator.from_pretrained(tmp_path)
    assert "\n" not in str(caught.value)
    index = {"_class_name": "WanImageToVideoPipeline", "vae": ["diffusers", "AutoencoderKLWan"]}
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text('{"z_dim": ')
    with pytest.raises(UserError, match=r"cannot read .*vae/config\.json: "):
        model_folder.model_limits(tmp_path)
    (tmp_path / "lora").mkdir()
    (tmp_path / "lora" / "lora_experts.json").write_text("{")
    with pytest.raises(UserError, match=r"cannot read .*lora_experts\.json: "):
        expert_lora_files(tmp_path / "lora")


def test_unsupported_pipeline_class_is_a_user_error(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(UserError, match="unsupported pipeline StableDiffusionPipeline.*WanImageToVideoPipeline"):
        DiffusersVideoGenerator.from_pretrained(tmp_path)


def test_missing_component_is_a_user_error(tmp_path):
    index = {
        "_class_name": "WanImageToVideoPipeline",
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "vae": ["diffusers", "AutoencoderKLWan"],
        "transformer_2": [None, None],  # absent optional components are fine
    }
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    (tmp_path / "scheduler").mkdir()
    with pytest.raises(UserError, match="component 'vae'"):
        DiffusersVideoGenerator.from_pretrained(tmp_path)


def test_pickle_weights_are_refused(tmp_path):
    index = {"_class_name": "WanImageToVideoPipeline", "vae": ["diffusers", "AutoencoderKLWan"]}
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text("{}")
    (tmp_path / "vae" / "diffusion_pytorch_model.bin").write_bytes(b"")
    with pytest.raises(UserError, match="no .safetensors weights"):
        DiffusersVideoGenerator.from_pretrained(tmp_path)


def test_error_messages_are_one_line(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "NoSuchPipeline"}))
    with pytest.raises(UserError) as caught:
        DiffusersVideoGenerator.from_pretrained(tmp_path)
    assert "\n" not in str(caught.value)


def test_unknown_option_is_a_user_error(tiny_model_dir):
    with pytest.raises(UserError, match="unknown generator option.*colour"):
        DiffusersVideoGenerator.from_pretrained(tiny_model_dir("ltx-i2v"), colour="red")


def test_embedded_pipeline_is_registered_lazily():
    assert "EmbeddedVideoPipeline" in families.PIPELINES.names()


def test_registered_pipeline_that_cannot_import_is_a_user_error(tmp_path, monkeypatch):
    registry = families.Registry("pipeline")
    registry.register("GhostPipeline", "gen_reason.models.no_such_module:GhostPipeline")
    monkeypatch.setattr(model_folder, "PIPELINES", registry)
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "GhostPipeline"}))
    with pytest.raises(UserError, match="GhostPipeline is registered but cannot be imported"):
        DiffusersVideoGenerator.from_pretrained(tmp_path)


def test_a_registered_pipeline_class_loads_with_its_own_family(tmp_path, monkeypatch):
    from diffusers import LTXImageToVideoPipeline

    class MyVideoPipeline(LTXImageToVideoPipeline):
        genreason_family = families.LTX_I2V

    registry = families.Registry("pipeline")
    registry.register("MyVideoPipeline", MyVideoPipeline)
    monkeypatch.setattr(model_folder, "PIPELINES", registry)
    folder = testing.save_tiny_pipeline("ltx-i2v", tmp_path / "mine")
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": "MyVideoPipeline"}))

    generator = DiffusersVideoGenerator.from_pretrained(folder, steps=2, **testing.TINY_GEOMETRY["ltx-i2v"])
    assert isinstance(generator.pipeline, MyVideoPipeline)
    assert generator.family is families.LTX_I2V
    assert generator.generate(first_frame(), PROMPT)[0].shape == (9, 20, 24, 3)


def test_flow_shift_override_rebuilds_the_scheduler(tiny_model_dir):
    generator = DiffusersVideoGenerator.from_pretrained(tiny_model_dir("wan2.1-i2v"), flow_shift=3.0)
    assert generator.pipeline.scheduler.config.shift == 3.0
    generator = DiffusersVideoGenerator.from_pretrained(tiny_model_dir("wan2.2-ti2v"), flow_shift=8.0)
    assert generator.pipeline.scheduler.config.flow_shift == 8.0
    with pytest.raises(UserError, match="flow_shift does not apply"):
        DiffusersVideoGenerator.from_pretrained(tiny_model_dir("cogvideox-i2v"), flow_shift=3.0)


def test_xformers_without_cuda_is_a_user_error(tiny_model_dir):
    with pytest.raises(UserError, match="xformers"):
        DiffusersVideoGenerator.from_pretrained(tiny_model_dir("ltx-i2v"), device="cpu", attention="xformers")


def test_importing_the_package_does_not_import_torch():
    code = "import sys, gen_reason.models; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- generating ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_generates_uint8_videos_at_the_image_size(tiny_generator, kind):
    videos = tiny_generator(kind).generate(first_frame(), PROMPT, seeds=[3, 4], num_frames=6)
    assert len(videos) == 2
    for video in videos:
        # 6 frames asked: the pipeline ran the next valid count (9) and the rest was dropped.
        assert video.shape == (6, 20, 24, 3)
        assert video.dtype == np.uint8


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_video_other_seed_other_latents(tiny_generator, kind):
    generator = tiny_generator(kind)
    image = first_frame()
    first = generator.generate(image, PROMPT, seeds=[7])[0]
    again = generator.generate(image, PROMPT, seeds=7)[0]
    np.testing.assert_array_equal(first, again)
    seven, eight = generator.generate(image, PROMPT, seeds=[7, 8], output="latents")
    assert not torch.allclose(seven, eight)


@pytest.mark.parametrize("kind", KINDS)
def test_a_sample_does_not_depend_on_its_batch(tiny_generator, kind, monkeypatch):
    generator = tiny_generator(kind)
    pipe = generator.pipeline
    initial = []
    original = pipe.prepare_latents

    def spy(*args, **kwargs):
        prepared = original(*args, **kwargs)
        initial.append(prepared[0].clone())
        return prepared

    monkeypatch.setattr(pipe, "prepare_latents", spy)
    image = first_frame()
    batched = generator.generate(image, PROMPT, seeds=[1, 2])
    alone = generator.generate(image, PROMPT, seeds=[2])
    # The random inputs are bit-identical; the batched matmuls may round differently.
    assert torch.equal(initial[0][1:2], initial[1])
    assert np.abs(batched[1].astype(int) - alone[0].astype(int)).max() <= 1


def test_seeds_are_split_into_batches_of_max_batch(tiny_model_dir, monkeypatch):
    generator = DiffusersVideoGenerator.from_pretrained(
        tiny_model_dir("ltx-i2v"), steps=2, max_batch=2, **testing.TINY_GEOMETRY["ltx-i2v"]
    )
    batch_sizes = []
    original = generator.pipeline.prepare_latents

    def spy(*args, **kwargs):
        prepared = original(*args, **kwargs)
        batch_sizes.append(prepared[0].shape[0])
        return prepared

    monkeypatch.setattr(generator.pipeline, "prepare_latents", spy)
    videos = generator.generate(first_frame(), PROMPT, seeds=[1, 2, 3, 4, 5])
    assert batch_sizes == [2, 2, 1]
    assert len(videos) == 5


@pytest.mark.parametrize("kind", KINDS)
def test_on_step_sees_every_step(tiny_generator, kind):
    generator = tiny_generator(kind)
    states: list[StepState] = []
    generator.generate(first_frame(), PROMPT, seeds=[5, 6], on_step=states.append)
    assert [state.step for state in states] == [0, 1]
    expected_shape = (2, *generator.latent_shape())
    for state in states:
        assert state.num_steps == 2
        assert state.seeds == (5, 6)
        assert state.latents.shape == expected_shape
        assert state.x0 is not None and state.x0.shape == expected_shape
        assert 0.0 <= state.next_sigma < state.sigma <= 1.0
    assert states[0].timestep > states[1].timestep
    assert states[0].next_sigma == pytest.approx(states[1].sigma)
    assert states[-1].next_sigma == 0.0


@pytest.mark.parametrize("kind", ["wan2.1-i2v", "cogvideox-i2v", "ltx-i2v", "ltx-condition"])
def test_last_step_x0_is_the_final_latents(tiny_generator, kind):
    # Euler and DDIM land exactly on their clean estimate at sigma 0.
    generator = tiny_generator(kind)
    states: list[StepState] = []
    final = generator.generate(first_frame(), PROMPT, seeds=[1], on_step=states.append, output="latents")[0]
    torch.testing.assert_close(states[-1].x0[0].float(), final, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_on_step_returning_the_same_latents_changes_nothing(tiny_generator, kind):
    generator = tiny_generator(kind)
    plain = generator.generate(first_frame(), PROMPT, seeds=[9], output="latents")[0]
    hooked = generator.generate(
        first_frame(), PROMPT, seeds=[9], output="latents", on_step=lambda state: state.latents.clone()
    )[0]
    assert torch.equal(plain, hooked)


@pytest.mark.parametrize("kind", KINDS)
def test_on_step_can_replace_the_latents(tiny_generator, kind):
    generator = tiny_generator(kind)

    def flatten_at_the_end(state):
        return torch.full_like(state.latents, 0.5) if state.step == state.num_steps - 1 else None

    final = generator.generate(first_frame(), PROMPT, seeds=[9], output="latents", on_step=flatten_at_the_end)[0]
    # Frame 0 may be the conditioning image's latent (Wan 2.2 TI2V-5B pins it).
    assert torch.all(final[:, 1:] == 0.5)


def test_on_step_with_a_wrong_shape_fails_loudly(tiny_generator):
    generator = tiny_generator("wan2.1-i2v")
    with pytest.raises(ValueError, match="on_step returned latents of shape"):
        generator.generate(first_frame(), PROMPT, on_step=lambda state: state.latents[:, :1])


@pytest.mark.parametrize("kind", KINDS)
def test_latents_output_decodes_to_the_same_frames(tiny_generator, kind):
    generator = tiny_generator(kind)
    image = working_size_frame(kind)  # no resize, so frames compare directly
    latents = generator.generate(image, PROMPT, seeds=[4], num_frames=5, output="latents")
    assert latents[0].shape == generator.latent_shape(num_frames=5)
    frames = generator.generate(image, PROMPT, seeds=[4], num_frames=5)[0]
    decoded = generator.decode_latents(latents[0], num_frames=5)[0]
    np.testing.assert_array_equal(decoded, frames)


def test_initial_latents_replace_the_seeded_noise(tiny_generator):
    generator = tiny_generator("wan2.1-i2v")
    shape = generator.latent_shape()
    # Wan draws its noise first, so the seed's own noise reproduces the seeded video.
    noise = torch.randn((1, *shape), generator=torch.Generator().manual_seed(2))
    seeded = generator.generate(first_frame(), PROMPT, seeds=[2], output="latents")[0]
    given = generator.generate(first_frame(), PROMPT, seeds=[2], latents=noise, output="latents")[0]
    torch.testing.assert_close(given, seeded, atol=0, rtol=0)
    # One unbatched tensor serves every seed, and then the seeds no longer matter.
    other = torch.randn(shape, generator=torch.Generator().manual_seed(11))
    first, second = generator.generate(first_frame(), PROMPT, seeds=[1, 2], latents=other, output="latents")
    torch.testing.assert_close(first, second, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["cogvideox-i2v", "ltx-i2v"])
def test_initial_latents_reach_families_with_other_layouts(tiny_generator, kind):
    generator = tiny_generator(kind)
    noise = torch.zeros((1, *generator.latent_shape()))
    with_zeros = generator.generate(first_frame(), PROMPT, seeds=[2], latents=noise, output="latents")[0]
    with_seed = generator.generate(first_frame(), PROMPT, seeds=[2], output="latents")[0]
    assert not torch.allclose(with_zeros, with_seed)


def test_initial_latents_of_the_wrong_shape_are_a_user_error(tiny_generator):
    generator = tiny_generator("wan2.1-i2v")
    with pytest.raises(UserError, match="latents have shape"):
        generator.generate(first_frame(), PROMPT, seeds=[1, 2], latents=torch.zeros(1, 2, 3))


def test_bad_requests_are_user_errors(tiny_generator):
    generator = tiny_generator("ltx-i2v")
    with pytest.raises(UserError, match="output must be"):
        generator.generate(first_frame(), PROMPT, output="gif")
    with pytest.raises(UserError, match="no seeds"):
        generator.generate(first_frame(), PROMPT, seeds=[])
    with pytest.raises(UserError, match="uint8 RGB image"):
        generator.generate(np.zeros((8, 8), np.float32), PROMPT)


@pytest.mark.parametrize("kind", ["wan2.1-i2v", "wan2.2-i2v-a14b"])
def test_lora_is_loaded_and_scaled(tiny_model_dir, tmp_path, kind):
    lora = testing.save_tiny_lora(kind, tmp_path / "lora")
    folder, geometry = tiny_model_dir(kind), testing.TINY_GEOMETRY[kind]
    base = DiffusersVideoGenerator.from_pretrained(folder, steps=2, **geometry)
    with_lora = DiffusersVideoGenerator.from_pretrained(folder, steps=2, lora=lora, **geometry)
    muted = DiffusersVideoGenerator.from_pretrained(folder, steps=2, lora=[lora], lora_scale=[0.0], **geometry)
    assert with_lora.name.endswith("+lora")
    if kind == "wan2.2-i2v-a14b":
        assert "lora0" in with_lora.pipeline.transformer_2.peft_config
    outputs = [g.generate(first_frame(), PROMPT, seeds=[1], output="latents")[0] for g in (base, with_lora, muted)]
    assert not torch.allclose(outputs[0], outputs[1])
    torch.testing.assert_close(outputs[0], outputs[2])


def test_missing_lora_is_a_user_error(tiny_model_dir, tmp_path):
    with pytest.raises(UserError, match="LoRA not found"):
        DiffusersVideoGenerator.from_pretrained(tiny_model_dir("ltx-i2v"), lora=tmp_path / "none")
