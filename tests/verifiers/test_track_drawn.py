"""The referee's extracted track is drawn in every visual output: ``genreason solve``'s
side-by-side GIF, the debug strip of ``genreason score`` (maze family and the others) and
the report gallery. Each test counts the track colour's pixels in the written file against
the same output without the track."""

import numpy as np
import pytest

from gen_reason.puzzles import get_task
from gen_reason.runs.solve import TRACK_COLOURS, draw_track, solve
from gen_reason.verifiers.registry import verifier_for
from gen_reason.video import filmstrip, read_image


def _colour_px(image: np.ndarray, colour, tol: int = 40) -> int:
    return int(np.count_nonzero(np.abs(image.astype(int) - np.array(colour)).max(axis=-1) <= tol))


class GroundTruthGenerator:
    """A stand-in model: answers every puzzle with its ground-truth video."""

    name = "ground-truth"
    fps = 8

    def __init__(self, instance):
        self.instance = instance

    def generate(self, image, prompt, *, num_frames=None, seeds=(0,), **kwargs):
        return [self.instance.solution_video(num_frames or 25) for _ in np.atleast_1d(seeds)]


def test_draw_track_reads_the_referees_positions_and_scales_them():
    instance = get_task("maze/grid").generate(3, "easy")
    video = instance.solution_video(25)
    trace = verifier_for(instance.task, "rule").score(instance, video).to_dict()["trace"]
    assert trace["agent_positions"] and trace["image_size"] == list(instance.spec["image_size"])
    drawn = draw_track(video, trace)
    assert np.array_equal(drawn[0], video[0])  # one position: no line yet
    assert _colour_px(drawn[-1], TRACK_COLOURS["agent"]) > _colour_px(video[-1], TRACK_COLOURS["agent"]) + 50
    # at twice the size, the line lies on the agent's path at twice the coordinates
    big = np.repeat(np.repeat(video, 2, axis=1), 2, axis=2)
    drawn_big = draw_track(big, trace)
    goal = np.asarray(instance.spec["nodes"][instance.spec["goal"]], float)
    x, y = (goal * 2 + 0.5).astype(int)
    patch = drawn_big[-1, y - 3:y + 4, x - 3:x + 4]
    assert _colour_px(patch, TRACK_COLOURS["agent"]) > 0


def test_solve_side_by_side_gif_shows_the_track(tmp_path):
    import imageio.v3 as iio

    task = get_task("maze/grid")
    instance = task.generate(11, "easy")
    result = solve("maze/grid", difficulty="easy", seed=11, generator=GroundTruthGenerator(instance), frames=25,
                   out=tmp_path)
    assert result.success, result.summary()
    gif = iio.imread(result.files["side_by_side"])[..., :3]
    truth_only = _colour_px(gif[:, :, gif.shape[2] // 2:], TRACK_COLOURS["agent"])
    generated = _colour_px(gif[:, :, : gif.shape[2] // 2], TRACK_COLOURS["agent"])
    assert generated > truth_only + 200, (generated, truth_only)


@pytest.mark.parametrize("task_name", ["maze/sokoban", "tangram"])
def test_debug_strip_of_genreason_score_shows_the_track(tmp_path, task_name):
    from gen_reason.runs.scoring import score_video
    from gen_reason.video import write_mp4

    instance = get_task(task_name).generate(4, "easy")
    video = instance.solution_video(25)
    path = write_mp4(tmp_path / "v.mp4", video, crf=10)
    row = score_video(instance, path, "rule", out=tmp_path)  # drawn whatever the verdict
    assert row.trace["agent_positions" if task_name != "tangram" else "piece_positions"]
    strip = read_image(row.debug_strip)
    colour = TRACK_COLOURS["piece"] if task_name == "tangram" else (255, 255, 255)  # maze strips: white track
    plain = filmstrip(video, 8)
    plain = np.repeat(np.repeat(plain, strip.shape[0] // plain.shape[0], 0), strip.shape[0] // plain.shape[0], 1)
    assert _colour_px(strip, colour, 30) > _colour_px(plain, colour, 30) + 100


def test_report_gallery_strip_shows_the_track():
    from gen_reason.runs.report import _tracked_strip

    instance = get_task("maze/grid").generate(3, "easy")
    video = instance.solution_video(25)
    score = verifier_for(instance.task, "reference").score(instance, video)
    strip = _tracked_strip({"reference_trace": score.to_dict()["trace"]}, video)
    plain = filmstrip(video, 8)
    assert _colour_px(strip, TRACK_COLOURS["agent"]) > _colour_px(plain, TRACK_COLOURS["agent"]) + 100


def test_debug_strip_of_a_letterboxed_video_draws_the_track_on_the_puzzle(tmp_path):
    from gen_reason.runs.scoring import score_video
    from gen_reason.video import letterbox, write_mp4

    instance = get_task("tangram").generate(4, "easy")
    video = np.stack([letterbox(f, (480, 832))[0] for f in instance.solution_video(25)])
    row = score_video(instance, write_mp4(tmp_path / "v.mp4", video, crf=10), "rule", out=tmp_path)
    assert row.success, row.reason
    strip = read_image(row.debug_strip)
    assert strip.shape[0] == 480  # the strip shows the puzzle's part, bars cropped off
    assert _colour_px(strip, TRACK_COLOURS["piece"], 30) > 100
