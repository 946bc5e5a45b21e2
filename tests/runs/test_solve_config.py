"""``genreason solve`` writes its resolved settings beside its files: the seed it drew, the task
settings the model supplied, the solver and model options; rerun with that seed, it repeats."""

import json
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import yaml

from gen_reason.cli import main


def test_solve_writes_a_config_that_reproduces_the_run(tmp_path, capsys):
    first = tmp_path / "first"
    assert main(["solve", "--task", "maze", "--solver", "best-of-n", "--solver.n", "2", "--steps", "3",
                 "--model.dtype", "fp32", "--out", str(first)]) == 0
    config = yaml.safe_load((first / "config.yaml").read_text())
    assert config["task"] == "maze/grid-v1" and config["solver"] == "best-of-n"
    assert config["solver_params"] == {"n": 2} and config["steps"] == 3
    assert config["model_options"] == {"dtype": "float32"} and config["model"] == "embedded"
    assert isinstance(config["seed"], int) and config["task_config"]  # the drawn seed, the model's task settings

    again = tmp_path / "again"
    assert main(["solve", "--task", "maze", "--difficulty", config["difficulty"], "--seed", str(config["seed"]),
                 "--solver", "best-of-n", "--solver.n", "2", "--steps", "3", "--model.dtype", "fp32",
                 "--out", str(again)]) == 0
    assert yaml.safe_load((again / "config.yaml").read_text()) == config
    scores = [json.loads((folder / "score.json").read_text()) for folder in (first, again)]
    assert scores[0]["instance"] == scores[1]["instance"]
    assert scores[0]["reference"] == scores[1]["reference"]
