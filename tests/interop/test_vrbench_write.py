"""Our maze-family datasets written in VR-Bench's layout and state schema, and read back.

Round trip: ``make-dataset --format vrbench`` -> ``verifiers.vrbench.load_level`` (via the
folder reader) -> our referee scores every written ground-truth video SR = EM = 1.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gen_reason.cli import main
from gen_reason.datasets import DatasetSpec
from gen_reason.errors import UserError
from gen_reason.interop.vrbench_read import find_levels, load_levels
from gen_reason.interop.vrbench_write import VRBENCH_FPS, make_diffsynth_dataset, make_vrbench_dataset, vrbench_state
from gen_reason.verifiers.registry import verifier_for
from gen_reason.video import read_video

GAMES = {"maze/grid": "maze", "maze/irregular": "pathfinder", "maze/trapfield": "trapfield", "maze/sokoban": "sokoban"}


def _write(tmp_path, task, n=2, **kw) -> Path:
    spec = DatasetSpec(task=task, n=n, difficulties=kw.pop("difficulties", ("easy", "medium")), num_frames=None, **kw)
    return make_vrbench_dataset(spec, tmp_path / task.replace("/", "_"), workers=1, progress=False)


@pytest.mark.parametrize("task", list(GAMES))
def test_round_trip_ground_truth_scores_sr_em_1(tmp_path, task):
    out = _write(tmp_path, task)
    game = GAMES[task]
    for difficulty in ("easy", "medium"):
        folder = out / game / "classic" / difficulty
        assert sorted(p.name for p in (folder / "states").iterdir()) == [f"{difficulty}_0001.json"]
        assert (folder / "images" / f"{difficulty}_0001.png").exists()
        assert (folder / "videos" / f"{difficulty}_0001.mp4").exists()
    loaded, skipped = load_levels(out)
    assert len(loaded) == 2 and not skipped
    for instance, level in loaded:
        assert instance.task == f"vrbench/{game}"
        video = read_video(level.gt_videos()[0])
        score = verifier_for(instance.task, "reference").score(instance, video)
        assert score.success, (level.key, score.reason)
        assert score.metrics["success_lenient"] == 1.0 and score.metrics["exact_match"] == 1.0, score.metrics
    # DiffSynth-Studio's metadata, as VR-Bench's own tool writes it: exactly three columns.
    with (out / "metadata.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["video", "prompt", "input_image"] and len(rows) == 3
    assert all((out / r[0]).exists() and (out / r[2]).exists() and r[1] for r in rows[1:])


def _check_entity(entity: dict, with_grid: bool) -> None:
    assert set(entity["pixel_pos"]) == {"x", "y"}
    assert set(entity["bbox"]) == {"x", "y", "width", "height", "center_x", "center_y"}
    assert entity["bbox"]["center_x"] == entity["bbox"]["x"] + entity["bbox"]["width"] // 2
    assert all(isinstance(v, int) for v in (*entity["pixel_pos"].values(), *entity["bbox"].values()))
    assert ("grid_pos" in entity) == with_grid


@pytest.mark.parametrize("task", list(GAMES))
def test_states_follow_unified_state_v1(task):
    from gen_reason.puzzles import get_task

    t = get_task(task)
    instance = t.generate(3, "easy")
    state = vrbench_state(instance, t)
    assert state["version"] == "1.0" and state["game_type"] == GAMES[task]
    assert set(state) >= {"version", "game_type", "entities", "render", "metadata"}
    h, w = instance.spec["image_size"]
    assert state["render"]["image_width"] == w and state["render"]["image_height"] == h
    grid_game = task != "maze/irregular"
    for name in ("player", "goal"):
        _check_entity(state["entities"][name], grid_game)
    if not grid_game:
        meta = state["metadata"]
        assert {"segments", "start_point", "end_point", "solution_segments", "solution_path", "road_width"} <= set(meta)
        assert "grid" not in state
        return
    grid = state["grid"]
    assert grid["height"] == len(grid["data"]) and grid["width"] == len(grid["data"][0])
    assert grid["height"] * state["render"]["cell_size"] == h
    player, goal = state["entities"]["player"]["grid_pos"], state["entities"]["goal"]["grid_pos"]
    cell = state["render"]["cell_size"]
    assert state["entities"]["player"]["pixel_pos"] == {"x": player["col"] * cell + cell // 2,
                                                        "y": player["row"] * cell + cell // 2}
    if task == "maze/sokoban":
        symbols = state["metadata"]["symbols"]
        assert grid["data"][player["row"]][player["col"]] == symbols["player"]
        assert grid["data"][goal["row"]][goal["col"]] == symbols["target"]
        box = state["entities"]["boxes"][0]["grid_pos"]
        assert grid["data"][box["row"]][box["col"]] == symbols["box"]
    else:
        assert grid["data"][player["row"]][player["col"]] == 2 and grid["data"][goal["row"]][goal["col"]] == 3
        assert {v for row in grid["data"] for v in row} <= {0, 1, 2, 3}
    assert state["metadata"]["genreason"]["solution_cells"]["agent"][0] == [player["row"], player["col"]]


def test_videos_are_24_fps_at_vrbench_pace(tmp_path):
    import av

    out = _write(tmp_path, "maze/grid", n=1, difficulties=("easy",))
    path = out / "maze" / "classic" / "easy" / "videos" / "easy_0001.mp4"
    with av.open(str(path)) as container:
        assert container.streams.video[0].average_rate == VRBENCH_FPS
    level = find_levels(out)[0]
    moves = len(json.loads(level.state.read_text())["metadata"]["genreason"]["solution_cells"]["agent"]) - 1
    assert len(read_video(path)) >= 12 * moves  # 12 frames per step, then the hold


def test_rerun_resumes_and_a_different_dataset_is_refused(tmp_path):
    out = _write(tmp_path, "maze/trapfield")
    state = out / "trapfield" / "classic" / "easy" / "states" / "easy_0001.json"
    before = state.read_bytes()
    state.unlink()
    _write(tmp_path, "maze/trapfield")
    assert state.read_bytes() == before
    with pytest.raises(UserError, match="different dataset"):
        _write(tmp_path, "maze/trapfield", n=3)


def test_test_split_writes_vrbench_train_and_eval_trees(tmp_path):
    out = _write(tmp_path, "maze/grid", n=8, difficulties=("easy",), test_fraction=0.5)
    splits = {lv.split for lv in find_levels(out)}
    assert splits == {"train", "eval"}
    assert (out / "train" / "metadata.csv").exists() and (out / "eval" / "metadata.csv").exists()
    assert len(find_levels(out, split="test")) == len(find_levels(out / "eval"))


@pytest.mark.parametrize("task,config,message", [
    ("maze/draw", {}, "no VR-Bench counterpart"),
    ("maze/maze3d", {}, "no VR-Bench counterpart"),
    ("tangram", {}, "no VR-Bench counterpart"),
    ("maze/grid", {"wall_style": "thin"}, "thin walls"),
    ("maze/grid", {"margin": 4}, "margin"),
])
def test_tasks_without_a_vrbench_layout_are_refused(tmp_path, task, config, message):
    with pytest.raises(UserError, match=message):
        make_vrbench_dataset(DatasetSpec(task=task, n=1, task_config=config), tmp_path / "x", workers=1, progress=False)
    assert not any((tmp_path / "x").glob("*/*")), "nothing written before refusing"


def test_diffsynth_format_has_exactly_the_training_columns(tmp_path):
    spec = DatasetSpec(task="maze/grid", n=4, difficulties=("3x3",), num_frames=9, test_fraction=0.5)
    out = make_diffsynth_dataset(spec, tmp_path / "d", workers=1, progress=False)
    rows = {}
    for name in ("metadata.csv", "metadata_test.csv"):
        with (out / name).open() as fh:
            rows[name] = list(csv.reader(fh))
        assert rows[name][0] == ["video", "prompt", "input_image"]
        assert all(len(r) == 3 and (out / r[0]).exists() and (out / r[2]).exists() for r in rows[name][1:])
    assert len(rows["metadata.csv"]) + len(rows["metadata_test.csv"]) == 2 + 4
    assert (out / "metadata.jsonl").exists()  # still a genreason dataset: score --dataset reads it


def test_make_dataset_cli_formats(tmp_path, capsys):
    assert main(["make-dataset", "--task", "maze/sokoban", "--n", "1", "--format", "vrbench", "--workers", "1",
                 "--quiet", "--out", str(tmp_path / "v")]) == 0
    assert "VR-Bench's layout" in capsys.readouterr().out
    assert len(find_levels(tmp_path / "v")) == 1
    assert main(["make-dataset", "--task", "maze/grid", "--n", "1", "--difficulty", "3x3", "--format", "diffsynth",
                 "--workers", "1", "--quiet", "--out", str(tmp_path / "d")]) == 0
    assert (tmp_path / "d" / "metadata.csv").read_text().splitlines()[0] == "video,prompt,input_image"
    proc = subprocess.run([sys.executable, "-m", "gen_reason", "make-dataset", "--task", "tangram", "--n", "1",
                           "--format", "vrbench", "--out", str(tmp_path / "t")], capture_output=True, text=True)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "no VR-Bench counterpart" in lines[0], proc.stderr
