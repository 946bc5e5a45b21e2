"""VideoThinkBench draw-the-path mazes scored with ``maze/draw``'s rules, from a record and image.

The puzzles are our own ``maze/draw`` mazes (square, hexagon, circle = VideoThinkBench's
labyrinth) written as VideoThinkBench records (``data.json``: id, canvas_dimensions,
start_point, goal_point, image, and the generator's cell size), so the referee sees only
what a VideoThinkBench folder holds: no wall segments, no spec.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from gen_reason.errors import UserError
from gen_reason.interop.videothinkbench import load_puzzles, puzzle_from_record, score_answer, score_folder, wall_core
from gen_reason.puzzles import get_task
from gen_reason.video import write_image, write_mp4

SIZES = {"square": {"cell_size": 32}, "hexagon": {"cell_radius": 16, "wall_thickness": 3}, "circle": {"ring_width": 32}}


def _case(shape: str, seed: int = 0):
    instance = get_task("maze/draw", shape=shape).generate(seed, "medium")
    h, w = instance.spec["image_size"]
    dots = instance.spec["draw"]["dots"]
    record = {"id": f"{shape}-{seed}", "prompt": "Draw a red path connecting two red dots without touching the black "
              "walls.", "canvas_dimensions": [w, h], "start_point": dots[0], "goal_point": dots[1],
              "image": f"puzzles/{shape}-{seed}_puzzle.png", **SIZES[shape]}
    return instance, record


@pytest.mark.parametrize("shape", list(SIZES))
def test_ground_truth_video_and_final_frame_pass(shape):
    instance, record = _case(shape)
    puzzle = puzzle_from_record(record, instance.first_frame)
    video = instance.solution_video()
    assert score_answer(puzzle, video).success, score_answer(puzzle, video).reason
    assert score_answer(puzzle, video[-1]).success
    assert puzzle.shape == {"circle": "labyrinth"}.get(shape, shape)


@pytest.mark.parametrize("degradation", ["h264_crf38", "resize_down_up", "resize_down", "noise", "drop_frames"])
@pytest.mark.parametrize("shape", list(SIZES))
def test_degraded_ground_truth_passes(shape, degradation):
    from gen_reason.verifiers.degrade import DEGRADATIONS

    instance, record = _case(shape, seed=1)
    puzzle = puzzle_from_record(record, instance.first_frame)
    score = score_answer(puzzle, DEGRADATIONS[degradation](instance.solution_video()))
    assert score.success, score.reason


@pytest.mark.parametrize("shape", list(SIZES))
def test_cheats_fail_with_the_reason(shape):
    instance, record = _case(shape)
    puzzle = puzzle_from_record(record, instance.first_frame)
    video = instance.solution_video()
    a, b = (tuple(int(round(v)) for v in p) for p in instance.spec["draw"]["dots"])
    straight = video[0].copy()
    cv2.line(straight, a, b, (250, 45, 45), 5)
    assert "touches a wall" in score_answer(puzzle, straight).reason
    assert "does not reach the end dot" in score_answer(puzzle, video[len(video) // 2]).reason
    assert "no red path" in score_answer(puzzle, video[0]).reason
    broken = video[-1].copy()  # a gap in the middle of the path
    mid = np.asarray(instance.solution["polyline"][len(instance.solution["polyline"]) // 2], float).round().astype(int)
    cv2.circle(broken, tuple(int(v) for v in mid), 7, tuple(int(c) for c in instance.spec["colors"]["background"]), -1)
    assert not score_answer(puzzle, broken).success
    # Drawn, then erased: the final frame alone would pass, the sequence does not.
    erased = np.concatenate([video, video[:1], video[-1:]])
    assert score_answer(puzzle, erased[-1]).success and not score_answer(puzzle, erased).success


def test_wall_core_keeps_thin_walls_and_thins_thick_ones():
    walls = np.zeros((20, 20), bool)
    walls[:, 3] = True  # 1 px
    walls[:, 8:10] = True  # 2 px
    walls[:, 14:19] = True  # 5 px
    core = wall_core(walls, 1.0)
    assert core[:, 3].all() and core[:, 8:10].any(axis=1).all()
    assert not core[:, 14].any() and not core[:, 18].any() and core[:, 16].all()


def test_folder_of_records_and_answers(tmp_path):
    records = []
    for shape in SIZES:
        instance, record = _case(shape)
        write_image(tmp_path / record["image"], instance.first_frame)
        records.append(record)
        video = instance.solution_video()
        write_mp4(tmp_path / "answers" / f"{record['id']}_video.mp4", video, fps=16)
        write_image(tmp_path / "answers" / f"{record['id']}.png", video[len(video) // 2])
    (tmp_path / "data.json").write_text(json.dumps(records))
    (tmp_path / "answers" / "readme.txt").write_text("not an answer")
    (tmp_path / "answers" / f"{records[0]['id']}_broken.mp4").write_bytes(b"not a video")
    assert len(load_puzzles(tmp_path)) == 3
    rows = score_folder(tmp_path, tmp_path / "answers")
    by_answer = {r["answer"].rsplit("/", 1)[-1]: r for r in rows}
    assert len(rows) == 7
    assert all(by_answer[f"{r['id']}_video.mp4"]["success"] for r in records)
    assert not any(by_answer[f"{r['id']}.png"]["success"] for r in records)
    assert "unreadable answer" in by_answer[f"{records[0]['id']}_broken.mp4"]["reason"]
    with pytest.raises(UserError, match="no data.json"):
        load_puzzles(tmp_path / "answers")
