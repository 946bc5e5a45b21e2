"""The ``probe`` job end to end on a tiny random embedded model and 16 px mazes.

Fixtures: tests/probe/conftest.py.
"""

import json

import pytest
from safetensors import safe_open

from gen_reason.errors import UserError
from gen_reason.config import load
from gen_reason.probe import run_probe
from gen_reason.probe.run import ProbeConfig

TINY_MAZES = {"skin": "tiny", "wall_style": "thin", "trail": True, "cell_px": 4, "wall_px": 1, "margin": 0}


def test_run_probe_writes_every_output(tiny_generator, tmp_path):
    generator = tiny_generator("embedded")
    summary = run_probe("maze", None, tmp_path / "probe", generator=generator, instances=3, seeds=2, every=2,
                        difficulty="3x3", task_config=TINY_MAZES, intervention_steps=[0, 2], progress=False)
    out = tmp_path / "probe"
    for name in ("summary.json", "filmstrip.png", "step_metrics.png", "emergence.png", "layer_probe.png",
                 "scores.jsonl", "x0.safetensors", "features.safetensors"):
        assert (out / name).is_file(), name
    assert len(list((out / "filmstrips").glob("*.png"))) == 2
    written = json.loads((out / "summary.json").read_text())
    assert written == summary
    # The resolved config: the given settings, and the model's frame count filled in; it builds again.
    config = load(ProbeConfig, out / "config.yaml")
    assert (config.instances, config.seeds, config.every, config.difficulty) == (3, 2, 2, "3x3")
    assert config.task_config == TINY_MAZES and config.intervention_steps == [0, 2] and config.num_frames == 8
    assert summary["num_steps"] == 4 and summary["emergence"]["steps"] == [0, 2, 3]
    assert summary["instances"] == [f"maze-grid-v1_3x3_{1_000_000 + i}" for i in range(3)]
    assert set(summary["emergence"]) >= {"metrics", "final_agreement", "commit_steps", "mean_commit_step"}
    assert len(summary["emergence"]["commit_steps"]) == 6
    assert len(summary["exploration"]["instances"]) == 3
    probe = summary["layer_probe"]
    assert probe["layers"] == summary["settings"]["layers"] and probe["steps"] == [0, 2, 3]
    assert len(probe["accuracy"]["agent_cell"]) == len(probe["layers"])
    assert [(row["kind"], row["step"]) for row in summary["interventions"]] == [
        ("noise", 0), ("noise", 2), ("swap", 0), ("swap", 2)]
    lines = (out / "scores.jsonl").read_text().splitlines()
    assert len(lines) == 3 * 2 * 3 and "node_path" in json.loads(lines[0])
    with safe_open(str(out / "x0.safetensors"), "pt") as tensors:
        assert list(tensors.keys()) == ["x0/maze-grid-v1_3x3_1000000"]
        assert tuple(tensors.get_tensor("x0/maze-grid-v1_3x3_1000000").shape) == (2, 3, 3, 8, 16, 16)
    with safe_open(str(out / "features.safetensors"), "pt") as tensors:
        layer = probe["layers"][0]
        assert tuple(tensors.get_tensor(f"features/{layer}").shape)[:2] == (6, 3)
        assert tensors.get_tensor("instance_of_sample").tolist() == [0, 0, 1, 1, 2, 2]
        assert json.loads(tensors.metadata()["layers"]) == probe["layers"]


def test_run_probe_without_layers_or_interventions(tiny_generator, tmp_path):
    generator = tiny_generator("embedded")
    summary = run_probe("maze", None, tmp_path, generator=generator, instances=1, seeds=[7], every=4,
                        difficulty="3x3", task_config=TINY_MAZES, layer_probe=False, interventions=False,
                        save_x0="none", progress=False)
    assert summary["layer_probe"] == {"skipped": "layer_probe=False"} and summary["interventions"] == []
    assert summary["seeds"] == [7] and not (tmp_path / "x0.safetensors").exists()
    assert not (tmp_path / "layer_probe.png").exists()


def test_one_instance_records_layers_but_skips_the_linear_probes(tiny_generator, tmp_path):
    summary = run_probe("maze", None, tmp_path, generator=tiny_generator("embedded"), instances=1, seeds=1,
                        difficulty="3x3", task_config=TINY_MAZES, interventions=False, progress=False)
    assert "at least two instances" in summary["layer_probe"]["skipped"]
    assert (tmp_path / "features.safetensors").is_file()


def test_a_model_folder_supplies_its_puzzle_settings(tiny_generator, tmp_path):
    folder = tmp_path / "model"
    tiny_generator("embedded").pipeline.save_pretrained(folder, safe_serialization=True)
    (folder / "genreason.json").write_text(json.dumps({
        "difficulty": "3x3", "num_frames": 8, "task_config": {"skin": "tiny", "wall_style": "thin", "trail": True},
        "task_config_by_difficulty": {"3x3": {"cell_px": 4, "wall_px": 1, "margin": 0}},
    }))
    summary = run_probe("maze", str(folder), tmp_path / "out", instances=1, seeds=1, steps=2, layer_probe=False,
                        interventions=False, progress=False)
    assert summary["difficulty"] == "3x3" and summary["image_size"] == [16, 16] and summary["num_frames"] == 8


@pytest.mark.parametrize("options, message", [
    ({"save_x0": "some"}, "save_x0 must be"),
    ({"agent_targets": "mine"}, "agent_targets must be"),
    ({"instances": 0}, "instances must be at least 1"),
    ({"seeds": 0}, "seeds must be at least 1"),
    ({"every": 0}, "every must be at least 1"),
    ({"evry": 2}, "unknown probe key 'evry'; did you mean every"),
    ({"instances": "few"}, "probe key 'instances'"),
])
def test_bad_options_are_user_errors(tiny_generator, tmp_path, options, message):
    with pytest.raises(UserError, match=message):
        run_probe("maze", None, tmp_path, generator=tiny_generator("embedded"), difficulty="3x3",
                  task_config=TINY_MAZES, progress=False, **options)


def test_the_command_line_writes_what_its_flags_set_into_config_yaml(tiny_generator, tmp_path, capsys):
    from gen_reason.cli import main

    folder = tmp_path / "model"
    tiny_generator("embedded").pipeline.save_pretrained(folder, safe_serialization=True)
    (folder / "genreason.json").write_text(json.dumps({
        "difficulty": "3x3", "num_frames": 8, "task_config": {"skin": "tiny", "wall_style": "thin", "trail": True},
        "task_config_by_difficulty": {"3x3": {"cell_px": 4, "wall_px": 1, "margin": 0}},
    }))
    out = tmp_path / "probe"
    code = main(["probe", "--model", str(folder), "--instances", "1", "--seeds", "1", "--steps", "2", "--no-layers",
                 "--no-interventions", "--probe.save_x0", "none", "--probe.early_fraction", "0.25",
                 "--task.skin", "tiny", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    config = load(ProbeConfig, out / "config.yaml")
    assert (config.model, config.instances, config.seeds, config.steps) == (str(folder), 1, 1, 2)
    assert (config.layer_probe, config.interventions, config.save_x0, config.early_fraction) == (False, False, "none", 0.25)
    assert config.task_config == {"skin": "tiny"} and (config.difficulty, config.num_frames) == ("3x3", 8)
    assert json.loads((out / "summary.json").read_text())["settings"]["early_fraction"] == 0.25
