"""VR-Bench's own levels read as instances: every ground-truth video scores SR = EM = 1, also
degraded, and cheats built from those videos fail with the right reason.

VR-Bench's evaluator, replaying these same videos, scores maze 0/30 with its default NCC
tracker, maze3d 0.4-0.8, and sokoban 0.6-0.8 with CSRT (fixtures README). maze3d's nodes
are projected with VR-Bench's matplotlib camera, recomputed from the state alone.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np
import pytest

from gen_reason.errors import UserError
from gen_reason.interop.vrbench_read import (
    find_levels,
    is_vrbench_folder,
    level_instance,
    list_videos,
    load_levels,
    match_videos,
)
from gen_reason.verifiers.registry import verifier_for
from gen_reason.video import read_video

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "vrbench"
STATES = sorted(FIXTURES.glob("*/*/*/states/*.json")) if FIXTURES.is_dir() else []
SUPPORTED = STATES  # every game VR-Bench generates
MAZE3D = [s for s in STATES if s.relative_to(FIXTURES).parts[0] == "maze3d"]
DEGRADE = ("h264_crf38", "resize_down_up", "resize_down", "noise", "drop_frames")

pytestmark = pytest.mark.skipif(not STATES, reason=f"VR-Bench fixtures not found at {FIXTURES}")


def _id(state: Path) -> str:
    return f"{state.relative_to(FIXTURES).parts[0]}/{state.stem}"


@functools.lru_cache(maxsize=1)  # tests of one level run in a row; pathfinder videos are ~700 MB decoded
def _level(state: Path):
    """(instance, level, GT video, state dict, GT score) of one fixture level."""
    level = next(lv for lv in find_levels(state.parent.parent) if lv.state == state)
    instance = level_instance(level)
    video = read_video(level.gt_videos()[0])
    gt = verifier_for(instance.task, "reference").score(instance, video)
    return instance, level, video, json.loads(state.read_text()), gt


def test_finds_every_fixture_level_with_its_place_in_the_tree():
    levels = find_levels(FIXTURES)
    assert len(levels) == len(STATES) == 20
    assert {lv.game for lv in levels} == {"maze", "pathfinder", "maze3d", "trapfield", "sokoban"}
    assert all(lv.skin == "1" and lv.difficulty in ("easy", "medium", "hard") for lv in levels)
    assert all(lv.image.exists() and len(lv.gt_videos()) == 1 for lv in levels)
    assert is_vrbench_folder(FIXTURES) and is_vrbench_folder(FIXTURES / "maze" / "1" / "easy")
    assert not is_vrbench_folder(Path(__file__).parent)
    # One game, one skin, one difficulty: the same levels, found from below.
    assert [lv.state for lv in find_levels(FIXTURES / "trapfield")] == [lv.state for lv in levels
                                                                        if lv.game == "trapfield"]


def test_loaded_instances_have_distinct_uids_and_prompts():
    loaded, skipped = load_levels(FIXTURES)
    assert len(loaded) == len(SUPPORTED) and not skipped
    assert {inst.task for inst, _ in loaded} == {f"vrbench/{g}" for g in
                                                 ("maze", "pathfinder", "maze3d", "trapfield", "sokoban")}
    assert len({inst.uid for inst, _ in loaded}) == len(loaded)
    inst, level = loaded[0]
    assert inst.task == f"vrbench/{level.game}" and inst.seed == 10000 + int(level.stem.split("_")[1])
    assert inst.prompt and inst.config["level"] == level.stem


def test_a_level_it_cannot_read_is_skipped_with_the_reason(tmp_path):
    import shutil

    state = next(s for s in STATES if s.relative_to(FIXTURES).parts[0] == "maze")
    root = tmp_path / "tetris" / "1" / "easy"
    (root / "states").mkdir(parents=True)
    shutil.copytree(state.parent.parent / "images", root / "images")
    (root / "states" / state.name).write_text(json.dumps({**json.loads(state.read_text()), "game_type": "tetris"}))
    loaded, skipped = load_levels(tmp_path)
    assert not loaded and len(skipped) == 1 and "'tetris' is not supported" in skipped[0][1]


@pytest.mark.parametrize("state", MAZE3D, ids=_id)
def test_maze3d_projection_puts_the_ball_where_the_state_says(state):
    # The state stores the ball's pixel centre at start and goal (measured by VR-Bench on a
    # render): our camera, computed from grid_size alone, must land there (to its int()).
    from gen_reason.verifiers.vrbench_maze3d import MAZE3D_DATA_SCALES, project_maze3d

    data = json.loads(state.read_text())
    meta, ents = data["metadata"], data["entities"]
    size = (data["render"]["image_height"], data["render"]["image_width"])
    balls = np.array([meta["start_pos"], meta["goal_pos"]], float) + (0.5, 0.5, 1.35)
    seen = [[ents[k]["pixel_pos"]["x"], ents[k]["pixel_pos"]["y"]] for k in ("player", "goal")]
    here = project_maze3d(balls, meta["grid_size"], size, MAZE3D_DATA_SCALES["matplotlib>=3.9"])
    assert np.abs(here - seen).max() <= 1.0, (here, seen)
    # The older matplotlib convention is far off (so the state tells the two apart).
    other = project_maze3d(balls, meta["grid_size"], size, MAZE3D_DATA_SCALES["matplotlib<3.9"])
    assert np.abs(other - seen).max() > 5.0
    instance, _, video, _, gt = _level(state)
    assert instance.spec["camera"] == "matplotlib>=3.9"
    # The tracked ball follows VR-Bench's animation (constant speed along metadata.path,
    # projected) within 2 px in every frame.
    segments = [(np.array(s["start"], float), np.array(s["end"], float)) for s in meta["path"]]
    lengths = np.array([np.linalg.norm(b - a) for a, b in segments])
    ends = np.concatenate([[0.0], np.cumsum(lengths)])
    t = np.linspace(0.0, ends[-1], len(video))
    k = np.clip(np.searchsorted(ends, t, side="right") - 1, 0, len(segments) - 1)
    u = ((t - ends[k]) / lengths[k])[:, None]
    route = np.array([segments[i][0] for i in k]) * (1 - u) + np.array([segments[i][1] for i in k]) * u
    expected = project_maze3d(route + (0.5, 0.5, 1.35), meta["grid_size"], size)
    tracked = np.array(gt.trace["agent_positions"], float)
    assert np.linalg.norm(tracked - expected, axis=1).max() < 2.0


def test_maze3d_places_the_picture_cannot_tell_apart_share_a_node():
    # medium_0001: the rungs of ladder (3,1,0)->(3,1,3) sit on screen in front of those of
    # ladder (5,3,0)->(5,3,6), one cube higher: (2,2,1) is nearly the line of sight.
    from gen_reason.puzzles.maze.grid import check_node_path

    state = next(s for s in MAZE3D if s.parent.parent.name == "medium")
    instance = _level(state)[0]
    spec = instance.spec
    shared = sorted(sorted(map(tuple, m)) for m in spec["nodes_3d"] if len(m) > 1)
    assert [(3, 1, 0), (5, 3, 1)] in shared and [(3, 1, 2), (5, 3, 3)] in shared
    nodes = np.asarray(spec["nodes"])
    gaps = np.linalg.norm(nodes[:, None] - nodes[None], axis=2) + np.eye(len(nodes)) * 1e9
    assert gaps.min() >= 0.3 * spec["step_px"]
    assert check_node_path(spec, instance.solution["path"]) == (True, "ok")
    # The solution is metadata.path, one node per cube: 2 per walk, 3 per ladder.
    segments = json.loads(state.read_text())["metadata"]["path"]
    assert len(instance.solution["path"]) - 1 == sum(2 if s["type"] == "walk" else 3 for s in segments)


def test_maze3d_state_not_drawn_by_its_camera_is_a_user_error():
    state = json.loads(MAZE3D[0].read_text())
    state["entities"]["player"]["pixel_pos"]["x"] += 40
    from gen_reason.verifiers.vrbench import spec_from_state

    with pytest.raises(UserError, match="camera"):
        spec_from_state(state, np.zeros((740, 740, 3), np.uint8))


@pytest.mark.parametrize("state", SUPPORTED, ids=_id)
def test_ground_truth_scores_sr_em_1(state):
    instance, _, _, _, score = _level(state)
    m = score.metrics
    assert score.success, score.reason
    assert m["success_lenient"] == 1.0 and m["exact_match"] == 1.0 and m["exact_match_strict"] == 1.0, m
    assert m["track_coverage"] == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("degradation", DEGRADE)
@pytest.mark.parametrize("state", SUPPORTED, ids=_id)
def test_degraded_ground_truth_still_scores_sr_em_1(state, degradation):
    from gen_reason.verifiers.degrade import DEGRADATIONS, resize

    instance, _, video, _, _ = _level(state)
    while degradation == "noise" and video.shape[1] > 256:
        # Per-pixel noise on a 1024 px, 300-frame video costs ~40 s here: halve it first
        # (resized and then noisy is a harder test, not an easier one).
        video = resize(video, (video.shape[1] // 2, video.shape[2] // 2))
    score = verifier_for(instance.task, "reference").score(instance, DEGRADATIONS[degradation](video))
    assert score.success, f"{degradation}: {score.reason}"
    assert score.metrics["exact_match"] == 1.0, (degradation, score.metrics)


@pytest.mark.slow
@pytest.mark.parametrize("cheat", ("through_wall", "teleport", "stops_early", "static", "end_state_only"))
@pytest.mark.parametrize("state", SUPPORTED, ids=_id)
def test_cheats_fail_with_the_right_reason(state, cheat, cheats):
    instance, level, video, state_dict, gt = _level(state)
    bad = cheats.make(cheat, video, state_dict, instance, gt.trace["agent_positions"])
    score = verifier_for(instance.task, "reference").score(instance, bad)
    assert not score.success and score.metrics["exact_match_strict"] == 0.0, score.reason
    first = score.trace.get("first_violation")
    if cheat == "stops_early":
        assert first is None and "did not reach the goal" in score.reason, score.reason
        assert score.metrics["success_lenient"] == 0.0
        return
    expected = cheats.sokoban.get(cheat, cheats.expected[cheat]) if level.game == "sokoban" else cheats.expected[cheat]
    if level.game == "sokoban" and cheat == "through_wall":
        expected = expected | {"agent_through_box"}
    assert first is not None and first["rule"] in expected, (score.reason, score.trace.get("violations"))
    assert score.reason.startswith(first["rule"])
    if cheat in ("teleport", "end_state_only") or (cheat == "through_wall" and level.game != "sokoban"):
        # VR-Bench's lenient success counts these as solved: the goal box was reached.
        assert score.metrics["success_lenient"] == 1.0


def _link(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(src, dst)
    return dst


def test_outputs_named_as_vrbench_names_them_are_matched(tmp_path):
    levels = find_levels(FIXTURES)
    trap = [lv for lv in levels if lv.game == "trapfield"]
    # One game: a flat folder of <stem>_<sample>.mp4 and <stem>.mp4.
    flat = tmp_path / "flat"
    _link(trap[0].gt_videos()[0], flat / f"{trap[0].stem}_0.mp4")
    _link(trap[1].gt_videos()[0], flat / f"{trap[1].stem}.mp4")
    _link(trap[1].gt_videos()[0], flat / "notes_0001.mp4")
    matches, problems = match_videos(list_videos(flat), trap)
    assert sorted((v.name, lv.stem) for v, lv in matches) == sorted(
        [(f"{trap[0].stem}_0.mp4", trap[0].stem), (f"{trap[1].stem}.mp4", trap[1].stem)])
    assert [v.name for v, _ in problems] == ["notes_0001.mp4"]
    # Every game shares easy_0001: a flat folder is ambiguous, game/skin folders are not.
    matches, problems = match_videos([flat / f"{trap[0].stem}_0.mp4"], levels)
    assert not matches and "ambiguous" in problems[0][1]
    nested = _link(trap[0].gt_videos()[0], tmp_path / "out" / "trapfield" / "1" / f"{trap[0].stem}_0.mp4")
    matches, _ = match_videos([nested], levels)
    assert matches[0][1] == trap[0]


def test_not_a_vrbench_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no VR-Bench levels"):
        find_levels(tmp_path)
    with pytest.raises(UserError, match="not found"):
        find_levels(tmp_path / "missing")
    (tmp_path / "x" / "states").mkdir(parents=True)
    (tmp_path / "x" / "states" / "easy_0001.json").write_text("{broken")
    with pytest.raises(UserError, match="cannot read VR-Bench state"):
        find_levels(tmp_path)


def test_solution_cells_written_by_us_replace_the_derived_solution(tmp_path):
    # make-dataset --format vrbench stores the path its video shows (trap fields and sokoban
    # rooms can have several optimal ones); the reader must use it, not re-derive one.
    import shutil

    state = next(s for s in SUPPORTED if s.relative_to(FIXTURES).parts[0] == "trapfield")
    root = tmp_path / "trapfield" / "1" / "easy"
    (root / "states").mkdir(parents=True)
    shutil.copytree(state.parent.parent / "images", root / "images")
    data = json.loads(state.read_text())
    base = level_instance(next(lv for lv in find_levels(state.parent.parent) if lv.state == state))
    cell = data["render"]["cell_size"]
    cells = [[int(y // cell), int(x // cell)] for x, y in np.asarray(base.spec["nodes"])[base.solution["path"]]]
    data["metadata"]["genreason"] = {"prompt": "walk", "solution_cells": {"agent": cells[:2]}}
    (root / "states" / state.name).write_text(json.dumps(data))
    inst = level_instance(find_levels(root)[0])
    assert inst.prompt == "walk" and inst.solution["path"] == base.solution["path"][:2]


@pytest.mark.slow
@pytest.mark.parametrize("state", MAZE3D, ids=_id)
def test_maze3d_climbing_without_a_ladder_fails(state, cheats):
    # The ground truth up to its first cube with no ladder, then the ball rises three cubes
    # straight up there (as on a ladder) and stays.
    from gen_reason.verifiers.vrbench_maze3d import project_maze3d

    instance, _, video, data, gt = _level(state)
    spec, meta = instance.spec, data["metadata"]
    bases = {tuple(lad["base_pos"]) for lad in meta["ladders"]}
    path, frames = gt.trace["node_path"], gt.trace["node_frames"]
    k = next(i for i, n in enumerate(path)
             if len(spec["nodes_3d"][n]) == 1 and tuple(spec["nodes_3d"][n][0]) not in bases)
    place = np.array(spec["nodes_3d"][path[k]][0], float) + (0.5, 0.5, 1.35)
    size = (data["render"]["image_height"], data["render"]["image_width"])
    top = project_maze3d([place + (0, 0, 3)], meta["grid_size"], size)[0]
    sprite = cheats.Sprite(video, data)
    climb = cheats.glide(sprite, video[0], [spec["nodes"][path[k]], top], spec["step_px"] / 12, hold=24)
    bad = np.concatenate([video[: frames[k] + 1], climb[1:]])
    score = verifier_for(instance.task, "reference").score(instance, bad)
    first = score.trace.get("first_violation")
    assert not score.success and first is not None and first["rule"] in ("wall_crossing", "off_board"), score.reason
    assert first["frame"] > frames[k]


def test_maze3d_drawn_by_an_older_matplotlib_gets_its_camera():
    # matplotlib < 3.9 drew the scene 24/25 the size: a state whose ball positions say so
    # gets that camera (its nodes lie up to a quarter step from the newer camera's).
    from gen_reason.verifiers.vrbench import spec_from_state
    from gen_reason.verifiers.vrbench_maze3d import MAZE3D_DATA_SCALES, project_maze3d
    from gen_reason.video import read_image

    path = MAZE3D[0]
    state = json.loads(path.read_text())
    meta, size = state["metadata"], (state["render"]["image_height"], state["render"]["image_width"])
    first = read_image(path.parent.parent / "images" / (path.stem + ".png"))
    new, _ = spec_from_state(state, first)
    for key, pos in (("player", meta["start_pos"]), ("goal", meta["goal_pos"])):
        x, y = project_maze3d([np.add(pos, (0.5, 0.5, 1.35))], meta["grid_size"], size,
                              MAZE3D_DATA_SCALES["matplotlib<3.9"])[0]
        state["entities"][key]["pixel_pos"] = {"x": int(x), "y": int(y)}
    old, solution = spec_from_state(state, first)
    assert new["camera"] == "matplotlib>=3.9" and old["camera"] == "matplotlib<3.9"
    assert old["edges"] == new["edges"] and solution["path"]
    assert np.abs(np.subtract(old["nodes"], new["nodes"])).max() > 5.0
