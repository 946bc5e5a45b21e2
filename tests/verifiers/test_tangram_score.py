"""The tangram referee: ground truth passes (raw, H.264 crf 35, half-size round trip, other
resolutions); a misplaced, missing, mirrored or resized piece and a static video fail."""

import math

import cv2
import numpy as np
import pytest

from gen_reason.puzzles import get_task
from gen_reason.puzzles.tangram import piece_vertices
from gen_reason.verifiers.tangram import rotation_error, score_tangram, segment_pieces
from gen_reason.video import read_video, write_mp4


@pytest.fixture(scope="module", params=["easy", "medium", "hard"])
def case(request):
    task = get_task("tangram")
    inst = task.generate(4, request.param)
    return task, inst, inst.solution_video(49)


def _compressed(video, path):
    return read_video(write_mp4(path / "v.mp4", video, crf=35))


def _down_up(video):
    h, w = video.shape[1:3]
    return np.stack([cv2.resize(cv2.resize(f, (w // 2, h // 2), interpolation=cv2.INTER_AREA), (w, h),
                                interpolation=cv2.INTER_LINEAR) for f in video])


def _final_with(task, inst, changes):
    """The solved frame with some target poses changed (``{name: {field: value}}``)."""
    solution = {"pieces": [{**p, **changes.get(p["piece"], {})} for p in inst.solution["pieces"]]}
    return task._draw(task.scene(inst.spec), inst.spec, solution, 7.0)


def _video_ending_with(inst, frame):
    return np.stack([inst.first_frame, frame, frame])


def test_ground_truth_passes(case):
    _, inst, video = case
    score = score_tangram(inst, video)
    assert score.success, score.reason
    assert score.metrics["pieces_placed"] == 7 and score.metrics["silhouette_iou"] > 0.98
    assert score.metrics["max_position_error"] < 0.1 and score.metrics["max_rotation_error_deg"] < 4
    assert score.trace["failed_pieces"] == [] and score.trace["swapped"] == []


def test_ground_truth_passes_after_compression_and_resizing(case, tmp_path):
    _, inst, video = case
    compressed = _compressed(video, tmp_path)
    for candidate in (compressed, _down_up(compressed)):
        score = score_tangram(inst, candidate)
        assert score.success, score.reason
        assert score.metrics["silhouette_iou"] > 0.93
    h, w = video.shape[1:3]
    small = np.stack([cv2.resize(f, (w // 2, h // 2), interpolation=cv2.INTER_AREA) for f in compressed[-3:]])
    assert score_tangram(inst, small).success  # scored at another resolution


def test_misplaced_piece_fails_naming_it(case, tmp_path):
    task, inst, _ = case
    target = next(p for p in inst.solution["pieces"] if p["piece"] == "square")
    frame = _final_with(task, inst, {"square": {"x": target["x"] + 3 * inst.spec["unit_px"]}})
    for video in (_video_ending_with(inst, frame), _compressed(_video_ending_with(inst, frame), tmp_path)):
        score = score_tangram(inst, video)
        assert not score.success
        assert score.trace["failed_pieces"] == ["square"]
        assert score.metrics["square_placed"] == 0 and score.metrics["pieces_placed"] == 6
        assert score.metrics["square_position_error"] == pytest.approx(3, abs=0.2)
        assert "square" in score.reason


def test_rotated_piece_fails(case):
    task, inst, _ = case
    # small_2 is drawn last, so the turned piece is fully visible on top of its neighbours
    target = next(p for p in inst.solution["pieces"] if p["piece"] == "small_2")
    frame = _final_with(task, inst, {"small_2": {"rotation_deg": target["rotation_deg"] + 90}})
    score = score_tangram(inst, _video_ending_with(inst, frame))
    # the turned triangle may also hide part of a neighbour, which then fails as reshaped
    assert not score.success and "small_2" in score.trace["failed_pieces"]
    assert score.metrics["small_2_rotation_error"] == pytest.approx(90, abs=4)


def test_missing_piece_fails(case):
    task, inst, video = case
    frame = video[-1].copy()
    k = [p["name"] for p in inst.spec["pieces"]].index("small_1")
    frame[segment_pieces(inst.spec, frame) == k] = inst.spec["colors"]["silhouette"]
    score = score_tangram(inst, _video_ending_with(inst, frame))
    assert not score.success
    assert score.trace["pieces"]["small_1"]["status"] == "missing"
    assert score.metrics["pieces_missing"] == 1 and math.isnan(score.metrics["small_1_position_error"])
    assert "small_1 missing" in score.reason


def test_static_video_fails(case):
    _, inst, _ = case
    score = score_tangram(inst, np.repeat(inst.first_frame[None], 8, axis=0))
    assert not score.success
    assert score.metrics["pieces_placed"] == 0 and score.metrics["silhouette_iou"] < 0.2
    assert sorted(score.trace["failed_pieces"]) == sorted(p["name"] for p in inst.spec["pieces"])


def test_swapped_identical_pieces_still_pass(case):
    task, inst, _ = case
    poses = {p["piece"]: p for p in inst.solution["pieces"]}
    fields = ("x", "y", "rotation_deg")
    frame = _final_with(task, inst, {"large_1": {f: poses["large_2"][f] for f in fields},
                                     "large_2": {f: poses["large_1"][f] for f in fields}})
    score = score_tangram(inst, _video_ending_with(inst, frame))
    assert score.success, score.reason
    assert sorted(map(sorted, score.trace["swapped"])) == [["large_1", "large_2"], ["large_1", "large_2"]]


def test_mirrored_parallelogram_and_grown_piece_fail(case):
    task, inst, video = case
    target = next(p for p in inst.solution["pieces"] if p["piece"] == "parallelogram")
    frame = _final_with(task, inst, {"parallelogram": {"flip": not target["flip"]}})
    score = score_tangram(inst, _video_ending_with(inst, frame))
    assert not score.success and score.trace["failed_pieces"] == ["parallelogram"]
    # a piece drawn 1.6x too large has changed shape
    spec = inst.spec
    piece = next(p for p in spec["pieces"] if p["name"] == "medium")
    pose = next(p for p in inst.solution["pieces"] if p["piece"] == "medium")
    frame = video[-1].copy()
    verts = piece_vertices("medium", pose["x"], pose["y"], pose["rotation_deg"], False, spec["unit_px"] * 1.6)
    cv2.fillPoly(frame, [np.round(verts).astype(np.int32)], tuple(piece["color"]))
    score = score_tangram(inst, _video_ending_with(inst, frame))
    assert not score.success and score.trace["pieces"]["medium"]["status"] == "shape_changed"
    assert score.metrics["pieces_shape_changed"] >= 1


def test_rotation_error_respects_symmetry():
    assert rotation_error(359, 1, 360) == pytest.approx(2)
    assert rotation_error(95, 0, 90) == pytest.approx(5)
    assert rotation_error(170, 0, 180) == pytest.approx(10)
    assert rotation_error(180, 0, 360) == pytest.approx(180)
