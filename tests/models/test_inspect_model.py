"""``genreason inspect-model``: every config-only copy of a real Hub folder is described from
its configs alone, and a half-downloaded folder is one line per problem with exit 2."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json
import shutil
from pathlib import Path

import pytest

from gen_reason.cli import main

REAL_CONFIGS = Path(__file__).parent / "real_configs"
# folder -> family, folder's pipeline, pipeline run, [height, width], frames (each model's documentation)
EXPECTED = {
    "Wan2.1-I2V-14B-480P-Diffusers": ("wan2.1-i2v", "WanImageToVideoPipeline", "WanImageToVideoPipeline",
                                      [480, 832], 81),
    "Wan2.1-I2V-14B-720P-Diffusers": ("wan2.1-i2v-720p", "WanImageToVideoPipeline", "WanImageToVideoPipeline",
                                      [720, 1280], 81),
    "Wan2.2-TI2V-5B-Diffusers": ("wan2.2-ti2v", "WanPipeline", "WanImageToVideoPipeline", [704, 1280], 121),
    "Wan2.2-I2V-A14B-Diffusers": ("wan2.2-i2v-a14b", "WanImageToVideoPipeline", "WanImageToVideoPipeline",
                                  [720, 1280], 81),
    "CogVideoX-5b-I2V": ("cogvideox-i2v", "CogVideoXImageToVideoPipeline", "CogVideoXImageToVideoPipeline",
                         [480, 720], 49),
    "CogVideoX1.5-5B-I2V": ("cogvideox1.5-i2v", "CogVideoXImageToVideoPipeline", "CogVideoXImageToVideoPipeline",
                            [768, 1360], 81),
    "LTX-Video-0.9.0": ("ltx-i2v", "LTXPipeline", "LTXImageToVideoPipeline", [512, 704], 161),
    "LTX-Video-0.9.1": ("ltx-i2v", "LTXPipeline", "LTXImageToVideoPipeline", [512, 704], 161),
    "LTX-Video-0.9.7-dev": ("ltx-condition", "LTXConditionPipeline", "LTXConditionPipeline", [512, 768], 161),
}
FOLDERS = sorted(p.name for p in REAL_CONFIGS.iterdir() if (p / "model_index.json").is_file()) \
    if REAL_CONFIGS.is_dir() else []


def _run(capsys, *argv):
    code = main(["inspect-model", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.skipif(not FOLDERS, reason="tests/models/real_configs is absent")
@pytest.mark.parametrize("folder", FOLDERS)
def test_every_real_folder_is_described_from_its_configs(folder, capsys):
    code, out, err = _run(capsys, REAL_CONFIGS / folder, "--json", "--gpu-memory", "80")
    assert code == 0, err
    report = json.loads(out)
    family, folder_pipeline, pipeline, size, frames = EXPECTED[folder]
    assert (report["family"], report["folder_pipeline"], report["pipeline"]) == (family, folder_pipeline, pipeline)
    assert report["default_size"] == size and report["default_frames"] == frames
    assert report["weights"] == "config-only" and report["problems"] == []
    assert report["peak_gib"] > sum(c["gib"] for c in report["components"])  # weights plus activations
    assert report["calibrated"]
    rows = {(row["offload"], row["vae_tiling"]): row for row in report["estimates"]}
    assert rows[("none", False)]["batch1_gib"] == report["peak_gib"]
    assert rows[("model", False)]["batch1_gib"] < report["peak_gib"]
    assert rows[("none", True)]["batch1_gib"] <= report["peak_gib"]
    assert report["plan"]["fits"] and report["plan"]["peak_gib"] <= 80 * 0.9


@pytest.mark.skipif(not FOLDERS, reason="tests/models/real_configs is absent")
def test_parameter_counts_come_from_the_configs(capsys):
    """Wan2.2-I2V-A14B: two 14.3B experts (as published), the 5.7B UMT5-XXL, a float32 VAE."""
    code, out, _ = _run(capsys, REAL_CONFIGS / "Wan2.2-I2V-A14B-Diffusers", "--json")
    components = {c["name"]: c for c in json.loads(out)["components"]}
    assert code == 0
    assert components["transformer"]["params"] == components["transformer_2"]["params"]
    assert 14.2e9 < components["transformer"]["params"] < 14.4e9
    assert 5.6e9 < components["text_encoder"]["params"] < 5.8e9
    assert (components["transformer"]["dtype"], components["vae"]["dtype"]) == ("bfloat16", "float32")


@pytest.mark.skipif(not FOLDERS, reason="tests/models/real_configs is absent")
def test_a_smaller_gpu_gets_offload_and_a_table(capsys):
    code, out, _ = _run(capsys, REAL_CONFIGS / "Wan2.2-I2V-A14B-Diffusers", "--gpu-memory", "24")
    assert code == 0
    assert "planner     memory plan:" in out and "offload none" not in out.split("planner")[1]
    assert "none (config-only folder" in out or "config-only folder" in out


@pytest.fixture
def complete_folder(tmp_path):
    """LTX-Video 0.9.0's real configs with tiny stand-in weight files and vocabulary: a "complete" folder."""
    if not FOLDERS:
        pytest.skip("tests/models/real_configs is absent")
    import torch
    from safetensors.torch import save_file

    folder = tmp_path / "ltx"
    shutil.copytree(REAL_CONFIGS / "LTX-Video-0.9.0", folder)
    for name in ("transformer", "vae", "text_encoder"):
        save_file({"weight": torch.zeros(4)}, str(folder / name / "diffusion_pytorch_model.safetensors"))
    (folder / "tokenizer" / "spiece.model").write_bytes(b"\0" * 16)
    return folder


def test_a_complete_folder_passes(complete_folder, capsys):
    code, out, err = _run(capsys, complete_folder, "--json")
    assert code == 0, err
    assert json.loads(out)["weights"] == "complete"


def _one_problem(capsys, folder, *words):
    code, out, err = _run(capsys, folder)
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err
    assert len(lines) == 1 and all(word in lines[0] for word in words), err
    return lines[0]


def test_a_truncated_shard_is_named(complete_folder, capsys):
    weights = complete_folder / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    _one_problem(capsys, complete_folder, "transformer/diffusion_pytorch_model.safetensors", "truncated")


def test_a_git_lfs_pointer_is_named(complete_folder, capsys):
    (complete_folder / "vae" / "diffusion_pytorch_model.safetensors").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 123456\n")
    _one_problem(capsys, complete_folder, "vae/", "git-lfs pointer")


def test_a_missing_shard_of_an_index_is_named(complete_folder, capsys):
    index = {"metadata": {}, "weight_map": {"a": "diffusion_pytorch_model-00001-of-00002.safetensors",
                                            "b": "diffusion_pytorch_model-00002-of-00002.safetensors"}}
    folder = complete_folder / "transformer"
    (folder / "diffusion_pytorch_model.safetensors").rename(folder / "diffusion_pytorch_model-00001-of-00002.safetensors")
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    _one_problem(capsys, complete_folder, "00002-of-00002", "is missing")


def test_a_missing_vocabulary_and_config_are_named(complete_folder, capsys):
    (complete_folder / "tokenizer" / "spiece.model").unlink()
    _one_problem(capsys, complete_folder, "tokenizer/", "vocabulary")
    (complete_folder / "tokenizer" / "spiece.model").write_bytes(b"\0" * 16)
    (complete_folder / "text_encoder" / "config.json").unlink()
    _one_problem(capsys, complete_folder, "text_encoder/config.json is missing")


def test_a_missing_component_folder_is_one_line(complete_folder, capsys):
    shutil.rmtree(complete_folder / "vae")
    _one_problem(capsys, complete_folder, "vae/ is missing")


def test_not_a_model_folder_is_one_line(tmp_path, capsys):
    code, _, err = _run(capsys, tmp_path / "nothing")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not found" in err
    code, _, err = _run(capsys, tmp_path, "--gpu-memory", "lots")
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_the_embedded_model_is_described_too(capsys):
    code, out, err = _run(capsys, "embedded", "--json")
    report = json.loads(out)
    assert code == 0, err
    assert (report["family"], report["weights"], report["default_size"]) == ("embedded", "complete", [32, 32])
    assert {row["vae_tiling"] for row in report["estimates"]} == {False}  # no VAE to tile
