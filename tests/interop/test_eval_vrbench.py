"""``genreason eval`` on a VR-Bench folder: ``data.dataset`` may point at VR-Bench levels.

A stand-in model answers each level with its ground-truth video (looked up by first
frame), so every result must be a success; a level no referee reads is left out with a note.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gen_reason.interop.vrbench_read import find_levels
from gen_reason.models.base import VideoGenerator, normalise_seeds
from gen_reason.runs.config import load_config
from gen_reason.runs.runner import iter_instances, run_eval
from gen_reason.runs.store import load_results
from gen_reason.video import read_image, read_video

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "vrbench"
pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"VR-Bench fixtures not found at {FIXTURES}")


class GroundTruthModel(VideoGenerator):
    """Answers a VR-Bench level's first frame with the level's ground-truth video."""

    name = "ground-truth"
    fps = 24
    default_num_frames = 0
    default_size = (0, 0)

    def __init__(self, folder: Path) -> None:
        self.videos = {read_image(lv.image).tobytes(): lv.gt_videos()[0] for lv in find_levels(folder)}

    def generate(self, image, prompt, *, num_frames=None, seeds=(0,), steps=None, guidance=None, latents=None,
                 on_step=None, output="frames"):
        video = read_video(self.videos[np.asarray(image).tobytes()])
        return [video for _ in normalise_seeds(seeds)]


def _config(tmp_path, folder: Path, **extra):
    return load_config(None, {"data.dataset": str(folder), "model.path": "ground-truth", "out": str(tmp_path / "run"),
                              "solvers": [{"name": "single", "params": {"seed": 0}}], **extra})


def test_eval_scores_every_vrbench_level_it_supports(tmp_path, capsys):
    folder = FIXTURES / "trapfield"
    run = run_eval(_config(tmp_path, folder), generator=GroundTruthModel(folder), progress=False)
    results = load_results(run)
    assert len(results) == 4 and all(r["success"] for r in results), [r["reason"] for r in results]
    assert {r["task"] for r in results} == {"vrbench/trapfield"}
    assert all(r["metrics"]["exact_match"] == 1.0 for r in results)


def test_every_fixture_game_is_read(tmp_path, capsys):
    instances = list(iter_instances(_config(tmp_path, FIXTURES)))
    assert len(instances) == 20 and "vrbench/maze3d" in {i.task for i in instances}
    assert "skipping" not in capsys.readouterr().err


def test_unsupported_levels_are_left_out_with_a_note(tmp_path, capsys):
    import json
    import shutil

    for level in find_levels(FIXTURES / "maze" / "1" / "easy"):
        for game in ("maze", "tetris"):
            root = tmp_path / "levels" / game / "1" / "easy"
            (root / "states").mkdir(parents=True, exist_ok=True)
            shutil.copytree(level.folder / "images", root / "images", dirs_exist_ok=True)
            state = json.loads(level.state.read_text())
            (root / "states" / level.state.name).write_text(json.dumps({**state, "game_type": game}))
    instances = list(iter_instances(_config(tmp_path, tmp_path / "levels")))
    assert len(instances) == 2 and {i.task for i in instances} == {"vrbench/maze"}
    assert "skipping 2 VR-Bench level(s) of tetris" in capsys.readouterr().err
