"""The real Hub folders, as their authors ship them (tests/models/real_configs: every config, no weights).

Each folder is read by the one loading path (``DiffusersVideoGenerator.from_pretrained``
and the functions it calls), built at full size on the meta device, and checked for:
the family detected, the pipeline class we run, the defaults the model's documentation
gives, and every argument our backend passes against the installed pipeline's real
``__call__`` signature. Slow tests at the end build a random-weight model at the real width
(one transformer layer) in each folder's layout and generate with it on the CPU.
"""

import inspect
import json
import shutil

import numpy as np
import pytest
import torch

from gen_reason.errors import UserError
from gen_reason.models import DiffusersVideoGenerator, diffusers_backend, families, runtime, testing
from gen_reason.models.inspect import build_meta
from gen_reason.models.loading import load_generator

REAL = testing.REAL_CONFIGS_DIR
PROMPT = "a red dot moves to the green goal"

# Per folder: the family, the pipeline class genreason runs, parameters of the largest
# denoiser (billions, as published: Wan2.1-I2V-14B's transformer with its image
# projections is 16.4B), (size multiple, frame step, fixed size), and the defaults.
EXPECTED = {
    "Wan2.1-I2V-14B-480P-Diffusers": dict(
        family=families.WAN21_I2V, pipeline="WanImageToVideoPipeline", billions=16.4, limits=(16, 4, None),
        defaults=dict(size=(480, 832), num_frames=81, fps=16, guidance=5.0, flow_shift=None)),
    "Wan2.1-I2V-14B-720P-Diffusers": dict(
        family=families.WAN21_I2V_720P, pipeline="WanImageToVideoPipeline", billions=16.4, limits=(16, 4, None),
        defaults=dict(size=(720, 1280), num_frames=81, fps=16, guidance=5.0, flow_shift=5.0)),
    "Wan2.2-TI2V-5B-Diffusers": dict(
        family=families.WAN22_TI2V, pipeline="WanImageToVideoPipeline", billions=5.0, limits=(32, 4, None),
        defaults=dict(size=(704, 1280), num_frames=121, fps=24, steps=50, guidance=5.0)),
    "Wan2.2-I2V-A14B-Diffusers": dict(
        family=families.WAN22_I2V_A14B, pipeline="WanImageToVideoPipeline", billions=14.3, limits=(16, 4, None),
        defaults=dict(size=(720, 1280), num_frames=81, fps=16, steps=40, guidance=3.5, guidance_2=3.5,
                      flow_shift=5.0)),
    "CogVideoX-5b-I2V": dict(
        family=families.COGVIDEOX_I2V, pipeline="CogVideoXImageToVideoPipeline", billions=5.57,
        limits=(16, 4, (480, 720)), defaults=dict(size=(480, 720), num_frames=49, fps=8, guidance=6.0)),
    "CogVideoX1.5-5B-I2V": dict(
        family=families.COGVIDEOX15_I2V, pipeline="CogVideoXImageToVideoPipeline", billions=5.57,
        limits=(16, 16, None), defaults=dict(size=(768, 1360), num_frames=81, fps=16, guidance=6.0)),
    "LTX-Video-0.9.0": dict(
        family=families.LTX_I2V, pipeline="LTXImageToVideoPipeline", billions=1.92, limits=(32, 8, None),
        defaults=dict(fps=25, decode_timestep=0.03, decode_noise_scale=0.025)),
    "LTX-Video-0.9.1": dict(
        family=families.LTX_I2V, pipeline="LTXImageToVideoPipeline", billions=1.92, limits=(32, 8, None),
        defaults=dict(fps=25, decode_timestep=0.03, decode_noise_scale=0.025)),
    "LTX-Video-0.9.7-dev": dict(
        family=families.LTX_CONDITION, pipeline="LTXConditionPipeline", billions=13.0, limits=(32, 8, None),
        defaults=dict(fps=25, decode_timestep=0.05, decode_noise_scale=0.025)),
}
NAMES = list(EXPECTED)


class _Called(Exception):
    """Raised by the spy pipeline once it has the call's arguments: nothing runs on meta tensors."""


_META: dict = {}


def meta_pipeline(name):
    """The folder's pipeline built on the meta device, as a subclass of the class we run whose
    ``__call__`` records its arguments, checks them against the real signature, and stops."""
    if name not in _META:
        model_index = diffusers_backend.read_model_index(REAL / name)
        real_cls = diffusers_backend.pipeline_class(model_index["_class_name"], REAL / name)

        def __call__(self, **kwargs):
            inspect.signature(real_cls.__call__).bind(self, **kwargs)  # TypeError on an argument it lacks
            self.calls.append(kwargs)
            raise _Called

        spy = type(f"Spy{real_cls.__name__}", (real_cls,), {"__call__": __call__})
        pipe = build_meta(REAL / name, pipeline_cls=spy).pipeline
        pipe.calls = []
        _META[name] = (pipe, real_cls)
    return _META[name]


def folder_with_fake_weights(name, tmp_path):
    """A copy of the real folder whose weight and vocabulary files exist but are empty: every
    check that reads configs passes, and anything that actually loaded would fail."""
    folder = shutil.copytree(REAL / name, tmp_path / name)
    model_index = json.loads((folder / "model_index.json").read_text())
    for component, (_, class_name) in diffusers_backend.listed_components(model_index).items():
        if (folder / component / "config.json").is_file():
            (folder / component / "model.safetensors").write_bytes(b"")
        if "Tokenizer" in class_name:
            (folder / component / "tokenizer.json").write_text("{}")
    return folder


# -- detection, full-size build, defaults ---------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_detects_family_and_pipeline_from_configs_alone(name):
    expected = EXPECTED[name]
    family, limits = diffusers_backend.model_limits(REAL / name)
    assert family is expected["family"]
    model_index = diffusers_backend.read_model_index(REAL / name)
    assert diffusers_backend.pipeline_class(model_index["_class_name"], REAL / name).__name__ == expected["pipeline"]
    assert (limits.size_multiple, limits.frame_step, limits.fixed_size) == expected["limits"]


@pytest.mark.parametrize("name", NAMES)
def test_builds_at_full_size_on_meta_and_agrees_with_the_configs(name):
    pipe, real_cls = meta_pipeline(name)
    family = EXPECTED[name]["family"]
    denoisers = [model for model in (pipe.transformer, getattr(pipe, "transformer_2", None)) if model is not None]
    billions = max(sum(p.numel() for p in model.parameters()) for model in denoisers) / 1e9
    assert billions == pytest.approx(EXPECTED[name]["billions"], rel=0.02)
    assert all(p.device.type == "meta" for p in pipe.transformer.parameters())
    # What the loaded pipeline says equals what the configs said before loading.
    _, limits = diffusers_backend.model_limits(REAL / name)
    assert family.frame_step(pipe) == limits.frame_step
    assert family.size_multiple(pipe) == limits.size_multiple
    assert family.fixed_size(pipe) == limits.fixed_size
    if name.startswith("Wan2.2-I2V-A14B"):
        assert pipe.config.boundary_ratio == 0.9 and pipe.transformer_2 is not None
    if name.startswith("Wan2.2-TI2V"):
        assert pipe.config.expand_timesteps is True and pipe.image_encoder is None


@pytest.mark.parametrize("name", NAMES)
def test_defaults_follow_the_model_documentation_and_are_valid(name):
    family = EXPECTED[name]["family"]
    for field, value in EXPECTED[name]["defaults"].items():
        assert getattr(family.defaults, field) == value, field
    _, limits = diffusers_backend.model_limits(REAL / name)
    family.check_request(limits, family.defaults.size, family.defaults.num_frames)  # raises if invalid


def test_component_dtypes_keep_wan_vae_and_image_encoder_in_float32():
    model_index = diffusers_backend.read_model_index(REAL / "Wan2.1-I2V-14B-480P-Diffusers")
    dtypes = diffusers_backend.component_dtypes(families.WAN21_I2V, model_index, torch.bfloat16)
    assert dtypes == {"vae": torch.float32, "image_encoder": torch.float32, "text_encoder": torch.bfloat16,
                      "transformer": torch.bfloat16}


# -- every call argument against the real signature -----------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_call_arguments_exist_in_the_installed_pipeline(name):
    pipe, real_cls = meta_pipeline(name)
    family = EXPECTED[name]["family"]
    generator = DiffusersVideoGenerator(pipe, family, name=name)
    image = np.zeros((64, 64, 3), np.uint8)
    pipe.calls.clear()
    with pytest.raises(_Called):
        generator.generate(image, PROMPT, seeds=[0, 1], on_step=lambda state: None)
    (kwargs,) = pipe.calls
    height, width = family.defaults.size
    assert (kwargs["height"], kwargs["width"], kwargs["num_frames"]) == (height, width, family.defaults.num_frames)
    assert kwargs["output_type"] == "latent" and kwargs["callback_on_step_end"] is not None
    assert len(kwargs["generator"]) == 2
    if family is families.WAN22_I2V_A14B:
        assert kwargs["guidance_scale_2"] == 3.5
    if isinstance(family, families.CogVideoXFamily):
        assert kwargs["use_dynamic_cfg"] is False
        assert kwargs["max_sequence_length"] == 226
    if isinstance(family, families.LTXFamily):
        assert kwargs["frame_rate"] == 25
    if family is families.LTX_CONDITION:
        (condition,) = kwargs["conditions"]
        assert condition.frame_index == 0 and condition.strength == 1.0 and condition.image is not None
        assert "image" not in kwargs
    else:
        assert "image" in kwargs


def test_cogvideox_5b_generation_at_another_size_is_one_line_before_the_pipeline_runs():
    pipe, _ = meta_pipeline("CogVideoX-5b-I2V")
    generator = DiffusersVideoGenerator(pipe, families.COGVIDEOX_I2V, name="cogvideox")
    pipe.calls.clear()
    with pytest.raises(UserError, match="generates only at 480x720"):
        generator.generate(np.zeros((64, 64, 3), np.uint8), PROMPT, size=(480, 832))
    assert pipe.calls == []


# -- one clear line before anything loads ---------------------------------------------------
def test_real_folder_without_weights_is_one_line():
    with pytest.raises(UserError, match="has no .safetensors weights") as caught:
        DiffusersVideoGenerator.from_pretrained(REAL / "Wan2.2-TI2V-5B-Diffusers")
    assert "\n" not in str(caught.value)


def test_missing_tokenizer_vocabulary_is_one_line(tmp_path):
    folder = folder_with_fake_weights("LTX-Video-0.9.1", tmp_path)
    (folder / "tokenizer" / "tokenizer.json").unlink()  # as in the committed config-only copy
    with pytest.raises(UserError, match="tokenizer 'tokenizer' .* has no vocabulary file") as caught:
        DiffusersVideoGenerator.from_pretrained(folder)
    assert "\n" not in str(caught.value)


def test_truncated_weights_are_one_line(tmp_path):
    folder = folder_with_fake_weights("LTX-Video-0.9.1", tmp_path)  # every weight file 0 bytes
    testing.tiny_unigram_tokenizer().save_pretrained(folder / "tokenizer")
    with pytest.raises(UserError, match="cannot load model .*") as caught:
        DiffusersVideoGenerator.from_pretrained(folder)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name, options, message", [
    ("CogVideoX-5b-I2V", dict(size=(480, 832)), "cogvideox-i2v generates only at 480x720"),
    ("Wan2.1-I2V-14B-480P-Diffusers", dict(size=(500, 832)), "multiples of 16; got 500x832 .nearest: 496x832"),
    ("Wan2.2-TI2V-5B-Diffusers", dict(size=(720, 1280)), "multiples of 32"),
    ("CogVideoX1.5-5B-I2V", dict(num_frames=41), r"takes 16k\+1 frames \(e.g. 33 or 49\)"),
    ("LTX-Video-0.9.1", dict(num_frames=100), "takes 8k.1 frames .e.g. 97 or 105"),
    ("Wan2.1-I2V-14B-480P-Diffusers", dict(dynamic_cfg=True), "dynamic_cfg do not apply to wan2.1-i2v"),
    ("LTX-Video-0.9.1", dict(guidance_2=2.0), "guidance_2 do not apply to ltx-i2v"),
    ("CogVideoX-5b-I2V", dict(attention="xformers"), "do not support xformers attention"),
    ("Wan2.1-I2V-14B-480P-Diffusers", dict(attention="nope"), "unknown attention 'nope'"),
    ("Wan2.1-I2V-14B-480P-Diffusers", dict(offload="disk"), "unknown offload 'disk'"),
])
def test_bad_requests_are_one_line_before_loading(tmp_path, name, options, message):
    folder = folder_with_fake_weights(name, tmp_path)
    with pytest.raises(UserError, match=message) as caught:
        DiffusersVideoGenerator.from_pretrained(folder, **options)
    assert "\n" not in str(caught.value)


def test_cogvideox_frames_rule_accepts_16n_plus_1(tmp_path):
    family, limits = diffusers_backend.model_limits(REAL / "CogVideoX1.5-5B-I2V")
    family.check_request(limits, (768, 1360), 161)
    family.check_request(limits, None, 49)
    with pytest.raises(UserError, match="16k"):
        family.check_request(limits, None, 45)


def test_text_to_video_wan_folder_is_refused_in_one_line(tmp_path):
    folder = folder_with_fake_weights("Wan2.2-TI2V-5B-Diffusers", tmp_path)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "expand_timesteps": False}))
    with pytest.raises(UserError, match="text-to-video"):
        DiffusersVideoGenerator.from_pretrained(folder)


def test_training_refuses_another_size_for_cogvideox_5b_before_loading():
    with pytest.raises(UserError, match="generates only at 480x720 .*; got 512x512"):
        diffusers_backend.check_fixed_size(REAL / "CogVideoX-5b-I2V", 512, 512)
    diffusers_backend.check_fixed_size(REAL / "CogVideoX-5b-I2V", 480, 720)
    diffusers_backend.check_fixed_size(REAL / "CogVideoX1.5-5B-I2V", 512, 512)  # any size


def test_lora_training_on_cogvideox_5b_refuses_another_size_before_the_model_loads(tmp_path):
    from gen_reason.datasets import DatasetSpec, make_dataset
    from gen_reason.train.lora import load_lora_config, train_lora

    data = make_dataset(DatasetSpec(task="maze/grid", n=1, num_frames=9, task_config={"cell_px": 4}),
                        tmp_path / "data", workers=1, progress=False)
    config = load_lora_config(None, dict(model=str(REAL / "CogVideoX-5b-I2V"), data=str(data),
                                         output_dir=str(tmp_path / "out"), max_steps=1))
    # The folder has no weights: reaching the load would say so instead.
    with pytest.raises(UserError, match="generates only at 480x720"):
        train_lora(config, progress=False)


# -- attention ------------------------------------------------------------------------------
class _AttentionRecorder:
    """Stands in for a pipeline: records which attention switch was thrown."""

    def __init__(self):
        self.calls = []
        self.transformer = None

    def enable_xformers_memory_efficient_attention(self):
        self.calls.append("xformers")


@pytest.mark.parametrize("family, expected", [
    (families.COGVIDEOX_I2V, []),
    (families.COGVIDEOX15_I2V, []),
    (families.WAN21_I2V, ["xformers"]),
    (families.LTX_I2V, ["xformers"]),
])
def test_auto_attention_never_picks_xformers_for_cogvideox(monkeypatch, family, expected):
    # As on a CUDA machine with xformers installed.
    monkeypatch.setattr(runtime.importlib.util, "find_spec", lambda name: object())
    pipe = _AttentionRecorder()
    runtime.set_attention(pipe, family, "auto", torch.device("cuda"))
    assert pipe.calls == expected


def test_attention_backends_per_family():
    assert diffusers_backend.attention_backends(families.COGVIDEOX_I2V) == ["sdpa"]
    wan = diffusers_backend.attention_backends(families.WAN21_I2V)
    assert wan[0] == "sdpa" and "xformers" in wan and "flash" in wan
    assert not any(name.endswith("_hub") or name.startswith("_") for name in wan)  # nothing downloads at run time


# -- random weights at the real width, in the real layout, end to end on the CPU -------------
E2E = [  # one folder per pipeline path; (size, frames) the smallest each takes
    ("Wan2.2-TI2V-5B-Diffusers", (32, 32), 5),
    ("Wan2.1-I2V-14B-480P-Diffusers", (16, 16), 5),
    ("Wan2.2-I2V-A14B-Diffusers", (16, 16), 5),
    ("CogVideoX1.5-5B-I2V", (16, 16), 17),
    ("LTX-Video-0.9.0", (32, 32), 9),
    ("LTX-Video-0.9.1", (32, 32), 9),
    ("LTX-Video-0.9.7-dev", (32, 32), 9),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, size, frames", E2E)
def test_real_layout_model_generates_end_to_end(tmp_path, name, size, frames):
    folder = testing.save_real_layout_model(REAL / name, tmp_path / name)
    saved = json.loads((folder / "model_index.json").read_text())
    assert saved == json.loads((REAL / name / "model_index.json").read_text())  # the real _class_name
    # bfloat16 as on a GPU (the weights are saved so; Wan's VAE stays float32): half the memory of float32.
    generator = load_generator(folder, steps=2, size=size, num_frames=frames, dtype="bfloat16")
    assert generator.family is EXPECTED[name]["family"]
    assert type(generator.pipeline).__name__ == EXPECTED[name]["pipeline"]
    config = generator.pipeline.transformer.config
    real = json.loads((REAL / name / "transformer" / "config.json").read_text())
    assert config.num_attention_heads * config.attention_head_dim == real["num_attention_heads"] * real[
        "attention_head_dim"]  # the real width
    states = []
    image = np.random.RandomState(0).randint(0, 256, (*size, 3), dtype=np.uint8)
    video = generator.generate(image, PROMPT, seeds=[0], on_step=states.append)[0]
    assert video.shape == (frames, *size, 3) and video.dtype == np.uint8
    assert [state.step for state in states] == [0, 1]
    assert all(torch.isfinite(state.x0).all() for state in states)


@pytest.mark.slow
def test_cogvideox_5b_real_layout_generates_at_its_fixed_size(tmp_path):
    name = "CogVideoX-5b-I2V"
    folder = testing.save_real_layout_model(REAL / name, tmp_path / name)
    # One latent frame, no CFG, bfloat16: the cheapest run at 480x720.
    generator = load_generator(folder, steps=1, num_frames=1, guidance=1.0, dtype="bfloat16")
    assert generator.default_size == (480, 720)
    video = generator.generate(np.zeros((48, 72, 3), np.uint8), PROMPT, seeds=[0])[0]
    assert video.shape == (1, 48, 72, 3)  # returned at the image's size
    with pytest.raises(UserError, match="480x720"):
        load_generator(folder, size=(240, 360))
