"""The agent tracker: known positions on ground-truth videos, any size, lost and duplicated agents."""

from __future__ import annotations

import numpy as np
import pytest

from gen_reason.errors import UserError
from gen_reason.puzzles.registry import get_task
from gen_reason.puzzles.skins import HELD_OUT_ICONS, SKINS, TRAIN_ICONS, draw_icon
from gen_reason.verifiers.degrade import resize
from gen_reason.verifiers.colours import build_lut
from gen_reason.verifiers.track import track_objects
from gen_reason.verifiers.work import check_video_size, prepare_video


def expected_positions(task, inst) -> np.ndarray:
    """Where the agent is in every GT frame of a block-style grid maze (one node per block)."""
    nodes = np.asarray(inst.spec["nodes"], float)[inst.solution["path"]]
    times = task.video_times(inst)
    steps = np.arange(len(nodes))
    return np.stack([np.interp(times, steps, nodes[:, 0]), np.interp(times, steps, nodes[:, 1])], 1)


@pytest.mark.parametrize("skin", list(SKINS))
@pytest.mark.parametrize("icon", TRAIN_ICONS + HELD_OUT_ICONS)
def test_tracks_every_skin_and_icon_to_a_pixel(skin, icon):
    task = get_task("maze/grid", skin=skin, agent_icon=icon)
    inst = task.generate(7, "easy")
    track = track_objects(inst.solution_video(), inst.spec)
    err = np.linalg.norm(track.agent.positions - expected_positions(task, inst), axis=1)
    assert not track.agent.lost.any() and not track.agent.duplicated.any()
    # Triangles and stars have their centroid a little off the drawing centre.
    assert err.max() < 2.5, err.max()


def test_resized_video_positions_come_back_in_spec_pixels():
    task = get_task("maze/grid")
    inst = task.generate(3, "medium")
    video = inst.solution_video()
    expected = expected_positions(task, inst)
    for size in ((176, 176), (704, 704), (480, 832)):
        track = track_objects(resize(video, size), inst.spec)
        err = np.linalg.norm(track.agent.positions - expected, axis=1)
        assert err.max() < 3.0, (size, err.max())


def test_large_video_is_tracked_on_a_small_copy():
    inst = get_task("maze/grid").generate(3, "hard")
    video = resize(inst.solution_video()[:20], (960, 960))
    work = prepare_video(video, inst.spec)
    assert max(work.frames.shape[1:3]) <= 320
    assert work.mean_scale * inst.spec["agent"]["size_px"] >= 8


def test_lost_is_reported_not_guessed():
    inst = get_task("maze/grid").generate(0, "easy")
    video = inst.solution_video().copy()
    floor = inst.spec["colors"]["floor"]
    # Paint the agent out of frames 10..14 (the maze stays).
    agent = np.all(np.abs(video.astype(int) - inst.spec["agent"]["color"]) < 60, axis=-1)
    for k in range(10, 15):
        video[k][agent[k]] = floor
    track = track_objects(video, inst.spec)
    assert list(np.flatnonzero(track.agent.lost)) == [10, 11, 12, 13, 14]
    assert track.agent.first_lost() == 10
    assert any(e["kind"] == "lost" and e["frame"] == 10 for e in track.events)
    assert track.to_trace()["agent_positions"][10] is None


def test_duplicate_agent_is_reported():
    inst = get_task("maze/grid").generate(0, "easy")
    spec = inst.spec
    video = inst.solution_video().copy()
    goal = spec["nodes"][spec["goal"]]
    for k in range(5, 9):
        draw_icon(video[k], spec["agent"]["icon"], goal, spec["agent"]["size_px"], tuple(spec["agent"]["color"]))
    track = track_objects(video, spec)
    assert list(np.flatnonzero(track.agent.duplicated)) == [5, 6, 7, 8]
    # The track itself stays on the real agent (nearest to its previous position).
    start = np.asarray(spec["nodes"][spec["start"]])
    assert np.linalg.norm(track.agent.positions[5] - start) < 2 * spec["step_px"]


def test_scene_in_the_agent_colour_is_not_the_agent():
    # A goal painted in the agent's own colour must not pull the track to it.
    task = get_task("maze/grid")
    inst = task.generate(0, "easy")
    spec = inst.spec
    video = inst.solution_video().copy()
    x0, y0, x1, y1 = spec["goal_box"]
    video[:, y0 + 4:y1 - 4, x0 + 4:x1 - 4] = spec["agent"]["color"]
    track = track_objects(video, spec)
    err = np.linalg.norm(track.agent.positions - expected_positions(task, inst), axis=1)
    assert np.nanmax(err[:-12]) < 2.5
    assert not track.agent.lost[:-12].any()
    assert any(e["kind"] == "static_colour_masked" for e in track.events)


def test_sokoban_box_is_tracked():
    task = get_task("maze/sokoban")
    inst = task.generate(1, "easy")
    track = track_objects(inst.solution_video(), inst.spec)
    assert track.box is not None and not track.box.lost.any()
    nodes = np.asarray(inst.spec["nodes"], float)
    assert np.linalg.norm(track.box.positions[0] - nodes[inst.spec["box"]["start"]]) < 2
    assert np.linalg.norm(track.box.positions[-1] - nodes[inst.spec["box"]["target"]]) < 2


def test_lut_prefers_the_nearest_colour():
    lut = build_lut({1: np.array([220, 30, 30])}, [np.array([255, 255, 255]), np.array([250, 170, 170])])
    def label(rgb):
        r, g, b = (np.array(rgb) >> 3)
        return lut[(r << 10) | (g << 5) | b]
    assert label([200, 50, 40]) == 1  # a compressed, darker red is still the agent
    assert label([250, 170, 170]) == 0  # the trail is not
    assert label([30, 160, 40]) == 0  # too far from everything


def test_video_size_checks():
    spec = get_task("maze/grid").generate(0, "easy").spec
    check_video_size(np.zeros((2, 112, 112, 3), np.uint8), spec)  # half size is fine
    with pytest.raises(UserError, match="aspect"):
        check_video_size(np.zeros((2, 100, 300, 3), np.uint8), spec)
    check_video_size(np.zeros((2, 480, 832, 3), np.uint8), spec)  # stretched to a model's size
    with pytest.raises(UserError, match="empty"):
        check_video_size(np.zeros((0, 100, 100, 3), np.uint8), spec)


@pytest.mark.parametrize("task_name", ["maze/trapfield", "maze/irregular", "maze/3d"])
def test_other_maze_tasks_track_without_loss(task_name):
    inst = get_task(task_name).generate(2, "easy")
    track = track_objects(inst.solution_video(), inst.spec)
    assert not track.agent.lost.any() and not track.agent.duplicated.any()
    goal = np.asarray(inst.spec["nodes"][inst.spec["goal"]], float)
    assert np.linalg.norm(track.agent.positions[-1] - goal) < 0.3 * inst.spec["step_px"]
