"""One model loader: every command takes the same model names, and a model is given only
the tasks it was trained for (one line, exit 2, naming what it knows)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP threads spin on a busy CPU

import pytest

from gen_reason.cli import main
from gen_reason.errors import UserError
from gen_reason.models.loading import EMBEDDED_DIR, model_task_defaults, task_for_model
from gen_reason.puzzles import TASKS

OTHER_TASKS = sorted({TASKS.canonical(name).rsplit("-v", 1)[0] for name in TASKS.names()} - {"maze/grid"})


@pytest.mark.parametrize("task", OTHER_TASKS)
def test_solve_on_an_untrained_task_is_one_line(task, capsys, tmp_path):
    code = main(["solve", "--task", task, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "Traceback" not in err[0]
    assert f"not {task}" in err[0] and "maze/grid" in err[0] and "--model" in err[0]
    assert not (tmp_path / "out").exists()  # refused before anything was generated or written


def test_trained_task_gets_the_models_puzzle_settings():
    defaults = model_task_defaults(EMBEDDED_DIR)
    task = task_for_model(defaults, "maze", "5x5", model="embedded")
    assert task.name.startswith("maze/grid")
    assert task.config.skin == "tiny" and task.config.cell_px == 5  # genreason.json's settings, not the task's own


def test_a_folder_without_genreason_json_takes_any_task():
    for name in OTHER_TASKS:
        assert task_for_model({}, name, "easy").name.startswith(name)
    with pytest.raises(UserError, match="model models/x was trained for maze/grid"):
        task_for_model({"task": "maze/grid"}, "tangram", "easy", model="models/x")


@pytest.mark.slow
def test_train_lora_accepts_the_embedded_name(tmp_path):
    data = tmp_path / "data"
    assert main(["make-dataset", "--task", "maze/grid", "--n", "2", "--difficulty", "5x5", "--frames", "8",
                 "--task.skin", "tiny", "--task.trail", "true", "--task.wall_style", "thin", "--task.cell_px", "5",
                 "--task.margin", "0", "--task.wall_px", "1", "--lossless", "--quiet", "--out", str(data)]) == 0
    config = tmp_path / "lora.yaml"
    config.write_text("max_steps: 1\nmixed_precision: 'no'\ngradient_checkpointing: false\ncheckpoint_every: 100\n")
    out = tmp_path / "run"
    assert main(["train", "lora", "--model", "embedded", "--data", str(data), "--config", str(config),
                 "--out", str(out), "--quiet"]) == 0
    assert (out / "pytorch_lora_weights.safetensors").exists() or any(out.glob("*.safetensors"))
