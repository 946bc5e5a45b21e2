"""The model options (--size, --dtype, --device, --offload, --vae-tiling, --attention, --compile,
--max-batch) reach the loader from every entry point under one set of names, and a bad value
is one line, exit 2, before anything loads."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

from gen_reason.cli import main
from gen_reason.errors import UserError

GIVEN = ["--size", "32x32", "--dtype", "fp32", "--device", "cpu", "--offload", "none", "--vae-tiling", "off",
         "--attention", "sdpa", "--compile", "--max-batch", "2"]
EXPECTED = {"size": (32, 32), "dtype": "float32", "device": "cpu", "offload": "none", "vae_tiling": "off",
            "attention": "sdpa", "compile": True, "max_batch": 2}
BAD = [(["--size", "0x5"], "size"), (["--size", "big"], "size"), (["--dtype", "float7"], "dtype"),
       (["--offload", "foo"], "offload"), (["--attention", "bogus"], "attention"),
       (["--max-batch", "0"], "max_batch"), (["--vae-tiling", "maybe"], "vae_tiling")]


class Stop(UserError):
    """Raised by the spy loader once it has seen the options."""


@pytest.fixture
def spy_loader(monkeypatch):
    """Replace the model loader: record what it was given, then stop the command (exit 2)."""
    from gen_reason.models.diffusers_backend import DiffusersVideoGenerator

    seen = {}

    def from_pretrained(path, **kwargs):
        seen.update(kwargs, path=str(path))
        raise Stop("stopped by the test before loading")

    monkeypatch.setattr(DiffusersVideoGenerator, "from_pretrained", staticmethod(from_pretrained))
    return seen


def _tiny_dataset(tmp_path):
    from gen_reason.datasets import DatasetSpec, make_dataset

    return make_dataset(DatasetSpec(task="maze/grid", n=2, num_frames=9), tmp_path / "data", workers=1, progress=False)


def _commands(tmp_path):
    return {
        "solve": ["solve", "--model", "embedded", "--out", str(tmp_path / "solve")],
        "probe": ["probe", "--model", "embedded", "--instances", "2", "--seeds", "1", "--out", str(tmp_path / "probe")],
    }


@pytest.mark.parametrize("command", ["solve", "probe"])
def test_flags_reach_the_loader(command, tmp_path, spy_loader, capsys):
    code = main(_commands(tmp_path)[command] + GIVEN)
    assert code == 2 and "stopped by the test" in capsys.readouterr().err
    assert {key: spy_loader.get(key) for key in EXPECTED} == EXPECTED


def _dotted(flags):
    """``--offload none`` -> ``--model.offload none`` (``--compile`` -> ``--model.compile true``)."""
    out, i = [], 0
    while i < len(flags):
        name = flags[i][2:].replace("-", "_")
        if name == "compile":
            out += ["--model.compile", "true"]
            i += 1
        else:
            out += [f"--model.{name}", flags[i + 1]]
            i += 2
    return out


@pytest.mark.parametrize("command", ["solve", "probe"])
def test_dotted_model_flags_are_the_same_options(command, tmp_path, spy_loader, capsys):
    code = main(_commands(tmp_path)[command] + _dotted(GIVEN))
    assert code == 2 and "stopped by the test" in capsys.readouterr().err
    assert {key: spy_loader.get(key) for key in EXPECTED} == EXPECTED


@pytest.mark.parametrize("flags,words", [
    (["--model.ofload", "none"], "did you mean --model.offload?"),
    (["--model.offload", "none", "--offload", "model"], "both given"),
    (["--model.offload", "bogus"], "offload must be one of"),
])
@pytest.mark.parametrize("command", ["solve", "probe"])
def test_dotted_model_flag_mistakes_are_one_line(command, flags, words, tmp_path, spy_loader, capsys):
    assert main(_commands(tmp_path)[command] + flags) == 2
    err = capsys.readouterr().err
    assert words in err and "stopped by the test" not in err and len(err.strip().splitlines()) == 1


def test_eval_config_fields_reach_the_loader(tmp_path, spy_loader, capsys):
    fields = ["--model.size", "32x32", "--model.dtype", "fp32", "--model.device", "cpu", "--model.offload", "none",
              "--model.vae_tiling", "off", "--model.attention", "sdpa", "--model.compile", "true",
              "--model.max_batch", "2", "--data.n", "1"]
    code = main(["eval", "--config", "configs/embedded_quick.yaml", "--out", str(tmp_path / "run"), *fields])
    assert code == 2 and "stopped by the test" in capsys.readouterr().err
    assert {key: spy_loader.get(key) for key in EXPECTED} == EXPECTED


def test_train_lora_flags_reach_the_loader(tmp_path, spy_loader, capsys):
    data = _tiny_dataset(tmp_path)
    flags = ["--vae-tiling", "off", "--attention", "sdpa", "--compile", "--max-batch", "2", "--model.dtype", "fp32",
             "--device", "cpu"]
    code = main(["train", "lora", "--model", "embedded", "--data", str(data), "--out", str(tmp_path / "lora"), *flags])
    assert code == 2 and "stopped by the test" in capsys.readouterr().err
    assert spy_loader["offload"] == "none"  # training keeps the model on its device
    assert (spy_loader["vae_tiling"], spy_loader["attention"], spy_loader["compile"], spy_loader["max_batch"]) == \
        ("off", "sdpa", True, 2)
    assert str(spy_loader["dtype"]) == "torch.float32"


@pytest.mark.parametrize("flags,name", BAD)
@pytest.mark.parametrize("command", ["solve", "probe"])
def test_bad_values_are_one_line_before_anything_loads(command, flags, name, tmp_path, spy_loader, capsys):
    code = main(_commands(tmp_path)[command] + flags)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and name in err and "Traceback" not in err
    assert spy_loader == {}  # nothing was loaded


@pytest.mark.parametrize("flags,name", BAD[:4])
def test_bad_values_in_eval_and_train_are_one_line(flags, name, tmp_path, spy_loader, capsys):
    field = "--model." + flags[0][2:].replace("-", "_")
    code = main(["eval", "--config", "configs/embedded_quick.yaml", "--out", str(tmp_path / "run"), field, flags[1]])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and name in err, err
    code = main(["train", "lora", "--model", "embedded", "--data", str(tmp_path), "--out", str(tmp_path / "l"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and name in err, err
    assert spy_loader == {}


@pytest.mark.parametrize("flags,words", [
    (["--size", "64x64"], ("embedded model generates 32x32", "64x64")),
    (["--vae-tiling", "on"], ("no VAE",)),
    (["--attention", "xformers"], ("xformers", "sdpa")),
    (["--offload", "model"], ("CUDA",)),
])
def test_the_embedded_model_refuses_what_it_cannot_take(flags, words, tmp_path, capsys):
    code = main(_commands(tmp_path)["solve"] + flags)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and all(word in err for word in words), err


def test_the_embedded_model_runs_with_every_option_it_can_take(tmp_path, capsys):
    from gen_reason.models.loading import load_generator

    generator = load_generator("embedded", size="32x32", dtype="fp32", device="cpu", offload="none",
                               vae_tiling="off", attention="sdpa", max_batch=3)
    assert generator.max_batch == 3 and generator.default_size == (32, 32)
    assert (generator.plan.offload, generator.plan.vae_tiling) == ("none", False)
    assert set(generator.plan.forced) == {"max_batch", "offload", "vae_tiling"}


def test_compile_reaches_the_embedded_models_unet():
    """--compile compiles the denoiser (the transformer(s), or the embedded model's UNet); nothing runs here."""
    from gen_reason.models.loading import load_generator

    generator = load_generator("embedded", compile=True)
    assert getattr(generator.pipeline.unet, "_compiled_call_impl", None) is not None
