"""The referee judges a puzzle returned at another aspect ratio: stretched over a model's
frame, letterboxed (centred, or bars of any colour and width), as arrays and as H.264
files; a video that does not show the puzzle at any placement is a FAIL row whose reason
says why in one line, never a crash."""

import cv2
import numpy as np
import pytest

from gen_reason.errors import UserError
from gen_reason.puzzles import get_task
from gen_reason.puzzles.registry import task_names
from gen_reason.verifiers.framing import frame_video, locate_puzzle
from gen_reason.verifiers.registry import verifier_for
from gen_reason.video import letterbox

LANDSCAPE, PORTRAIT = (480, 832), (832, 480)  # (H, W) of a Wan-like model's frame


def letterboxed(video, size):
    return np.stack([letterbox(f, size)[0] for f in video])


def stretched(video, size):
    return np.stack([cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_AREA) for f in video])


def in_black_bars(video, size, corner=False):
    """The puzzle at its own scale fitted into a black ``size`` frame, centred or top-left."""
    h, w = video.shape[1:3]
    scale = min(size[0] / h, size[1] / w) * 0.9
    fit = (int(w * scale), int(h * scale))
    out = np.zeros((len(video), *size, 3), np.uint8)
    y0, x0 = (0, 0) if corner else ((size[0] - fit[1]) // 2, (size[1] - fit[0]) // 2)
    for k, f in enumerate(video):
        out[k, y0:y0 + fit[1], x0:x0 + fit[0]] = cv2.resize(f, fit, interpolation=cv2.INTER_AREA)
    return out


@pytest.fixture(scope="module", params=task_names())
def case(request):
    task = get_task(request.param)
    instance = task.generate(5, task.difficulties[0])
    return instance, instance.solution_video(33)


@pytest.mark.parametrize("size", [LANDSCAPE, PORTRAIT], ids=["landscape", "portrait"])
@pytest.mark.parametrize("placement", [letterboxed, stretched])
def test_ground_truth_at_another_aspect_passes(case, size, placement):
    instance, video = case
    score = verifier_for(instance.task, "reference").score(instance, placement(video, size))
    assert score.success, score.reason


@pytest.mark.parametrize("corner", [False, True])
def test_bars_of_another_colour_and_place_are_found(case, corner):
    instance, video = case
    framed = in_black_bars(video, LANDSCAPE, corner)
    best = locate_puzzle(instance.first_frame, framed[0])[0]
    assert best[2] > 0.9
    score = verifier_for(instance.task, "rule").score(instance, framed)
    assert score.success, score.reason


def test_portrait_maze3d_from_a_landscape_model_file(tmp_path):
    """The case that was refused outright: a portrait 3d maze in a landscape H.264 file."""
    from gen_reason.runs.scoring import score_video
    from gen_reason.video import write_mp4

    instance = get_task("maze/3d").generate(5, "easy")
    assert instance.first_frame.shape[0] > instance.first_frame.shape[1]
    video = instance.solution_video(33)
    for name, placement in (("letterboxed", letterboxed), ("stretched", stretched)):
        path = write_mp4(tmp_path / f"{name}.mp4", placement(video, LANDSCAPE), crf=23)
        row = score_video(instance, path, "reference")
        assert row.success, (name, row.reason)
    noise = np.random.default_rng(0).integers(0, 256, (6, *LANDSCAPE, 3), dtype=np.uint8)
    row = score_video(instance, write_mp4(tmp_path / "noise.mp4", noise), "reference", out=tmp_path)
    assert row.status == "scored" and not row.success  # a FAIL row, not a crash
    assert row.reason.startswith("cannot judge the video:") and "aspect ratio 0.76" in row.reason


def test_a_video_that_does_not_show_the_puzzle_is_a_one_line_fail(case):
    instance, _ = case
    noise = np.random.default_rng(0).integers(0, 256, (6, *LANDSCAPE, 3), dtype=np.uint8)
    with pytest.raises(UserError, match="does not show this"):
        frame_video(instance, noise)
    for kind in ("rule", "reference"):
        score = verifier_for(instance.task, kind).score(instance, noise)
        assert not score.success
        assert score.reason.startswith("cannot judge the video:") and "\n" not in score.reason
        assert "stretched, letterboxed or inside bars" in score.reason and "aspect ratio" in score.reason


def test_same_aspect_videos_are_used_as_they_are(case):
    instance, video = case
    assert frame_video(instance, video) is video


def _shifted(video, dx, dy):
    move = np.float32([[1, 0, dx], [0, 1, dy]])
    return np.stack([cv2.warpAffine(f, move, (f.shape[1], f.shape[0]), borderMode=cv2.BORDER_REPLICATE)
                     for f in video])


def test_a_camera_shift_of_a_few_pixels_is_moved_back(case):
    from gen_reason.verifiers.framing import camera_shift

    instance, video = case
    assert camera_shift(instance.first_frame, video[0]) is None  # the ground truth is where it belongs
    found = camera_shift(instance.first_frame, _shifted(video[:1], 6, -4)[0])
    assert found is not None and abs(found[0] - 6) < 1 and abs(found[1] + 4) < 1
    for dx, dy in ((6, -4), (-8, 3)):
        score = verifier_for(instance.task, "reference").score(instance, _shifted(video, dx, dy))
        assert score.success, (dx, dy, score.reason)
