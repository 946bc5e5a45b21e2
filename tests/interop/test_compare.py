"""``compare-referees``: our strict referee beside lenient success and beside VR-Bench's evaluator.

VR-Bench's evaluator is never downloaded: a stand-in checkout built here (the layout and
the ``evaluate_single_video`` entry point of the real one, with canned answers, and an
``evaluation/__init__.py`` that fails to import as the real one does without ``openai``)
checks the subprocess plumbing, the file naming and the disagreement reasons.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gen_reason.cli import main
from gen_reason.errors import UserError
from gen_reason.runs.compare import compare_referees, explain
from gen_reason.interop.vrbench_read import find_levels, level_instance
from gen_reason.video import read_video, write_mp4

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "vrbench"
pytestmark = pytest.mark.skipif(not any(FIXTURES.glob("*/*/*/states/*.json")) if FIXTURES.is_dir() else True,
                                reason=f"VR-Bench fixtures not found at {FIXTURES}")

FAKE_EVALUATOR = '''
import json
from pathlib import Path


def evaluate_single_video(args):
    gen, dataset_dir = Path(args[0]), Path(args[1])
    state = Path(dataset_dir) / "states" / (gen.stem + ".json")
    if not state.exists():
        return {"video": gen.name, "status": "error", "error": "State file not found"}
    sr = 0.0 if json.loads(state.read_text())["game_type"] == "maze" else 1.0
    return {"video": gen.name, "status": "success", "pr": 1.0, "sd": 0.0 if sr else None, "em": sr, "sr": sr,
            "mf": 1.0, "is_perfect": bool(sr), "gt_length": 1.0, "gen_length": 1.0, "tracker": args[7]}
'''


@pytest.fixture
def fake_checkout(tmp_path) -> Path:
    repo = tmp_path / "VR-Bench"
    (repo / "evaluation" / "videomodel_eval").mkdir(parents=True)
    (repo / "core" / "schema").mkdir(parents=True)
    (repo / "evaluation" / "__init__.py").write_text("raise ImportError('No module named openai')\n")
    (repo / "evaluation" / "videomodel_eval" / "__init__.py").write_text("")
    (repo / "evaluation" / "videomodel_eval" / "batch_evaluate.py").write_text(FAKE_EVALUATOR)
    (repo / "core" / "__init__.py").write_text("")
    (repo / "core" / "schema" / "__init__.py").write_text("")
    return repo


def _through_wall_cheat(level, cheats):
    instance = level_instance(level)
    video = read_video(level.gt_videos()[0])
    return cheats.make("through_wall", video, json.loads(level.state.read_text()), instance, None)


def test_without_a_checkout_ground_truth_agrees_everywhere():
    report = compare_referees(FIXTURES / "trapfield", FIXTURES / "trapfield")
    assert report["vrbench"] is None and len(report["rows"]) == 4
    assert all(r["agree"] and r["why"] == "strict and lenient agree" for r in report["rows"])
    assert report["summary"]["ours_success"] == report["summary"]["ours_success_lenient"] == 1.0
    assert report["summary"]["disagreements"] == 0


def test_a_cheat_shows_where_strict_and_lenient_differ_and_which_rule(tmp_path, cheats):
    level = next(lv for lv in find_levels(FIXTURES / "maze") if lv.stem == "easy_0001")
    write_mp4(tmp_path / "easy_0001_cheat.mp4", _through_wall_cheat(level, cheats), fps=24)
    report = compare_referees(tmp_path, FIXTURES / "maze", out=tmp_path / "report")
    (row,) = report["rows"]
    assert row["agree"] is False and row["ours"]["success_lenient"] and not row["ours"]["success"]
    assert "wall_crossing" in row["why"] and "lenient success" in row["why"]
    assert json.loads((tmp_path / "report" / "compare.json").read_text())["summary"]["disagreements"] == 1


def test_with_a_vrbench_checkout_disagreements_are_explained(tmp_path, fake_checkout, cheats):
    levels = find_levels(FIXTURES)
    maze = next(lv for lv in levels if lv.game == "maze" and lv.stem == "easy_0001")
    trap = next(lv for lv in levels if lv.game == "trapfield" and lv.stem == "easy_0001")
    out = tmp_path / "outputs"
    (out / "maze" / "1").mkdir(parents=True)
    os.symlink(maze.gt_videos()[0], out / "maze" / "1" / "easy_0001_0.mp4")
    write_mp4(out / "trapfield" / "1" / "easy_0001_cheat.mp4", _through_wall_cheat(trap, cheats), fps=24)
    (out / "maze3d" / "1").mkdir(parents=True)
    m3d = next(lv for lv in levels if lv.game == "maze3d" and lv.stem == "easy_0001")
    os.symlink(m3d.gt_videos()[0], out / "maze3d" / "1" / "easy_0001.mp4")

    report = compare_referees(out, FIXTURES, vrbench_repo=fake_checkout, tracker="csrt")
    rows = {r["level"].split("/")[0]: r for r in report["rows"]}
    # The ground truth: we succeed, their (stand-in) tracker never reaches the goal.
    assert rows["maze"]["ours"]["success"] and rows["maze"]["vrbench"]["sr"] == 0.0
    assert rows["maze"]["agree"] is False and "never entered the goal box" in rows["maze"]["why"]
    # The cheat: they count it solved, we name the rule.
    assert rows["trapfield"]["vrbench"]["sr"] == 1.0 and not rows["trapfield"]["ours"]["success"]
    assert rows["trapfield"]["agree"] is False and "VR-Bench counts success" in rows["trapfield"]["why"]
    assert "wall_crossing" in rows["trapfield"]["why"]
    # maze3d: both judge it (our camera is recomputed from the state) and both succeed.
    assert rows["maze3d"]["ours"]["success"] and rows["maze3d"]["vrbench"]["sr"] == 1.0
    assert rows["maze3d"]["agree"] is True and rows["maze3d"]["why"] == "both succeed"
    assert report["summary"]["judged_by_vrbench"] == 3 and report["vrbench"]["tracker"] == "csrt"


def test_explain_covers_every_case():
    ok = {"success": True, "success_lenient": True, "first_violation": None, "reason": "", "track_coverage": 1.0}
    bad = {"success": False, "success_lenient": False, "first_violation": None, "reason": "never arrived",
           "track_coverage": 1.0}
    theirs_yes = {"status": "success", "sr": 1.0, "em": 1.0, "pr": 1.0}
    assert explain(ok, theirs_yes) == (True, "both succeed")
    assert explain(bad, {**theirs_yes, "sr": 0.0}) == (True, "both fail")
    assert explain(bad, theirs_yes)[0] is False and "never arrived" in explain(bad, theirs_yes)[1]
    assert explain(ok, {"status": "error", "error": "boom"}) == (None, "VR-Bench's evaluator failed: boom")
    assert explain(None, theirs_yes, "unknown game") == (None, "our referee skips this level: unknown game")


def test_bad_paths_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not a VR-Bench checkout"):
        compare_referees(FIXTURES / "trapfield", FIXTURES / "trapfield", vrbench_repo=tmp_path)
    with pytest.raises(UserError, match="not a VR-Bench folder"):
        compare_referees(FIXTURES / "trapfield", tmp_path)
    proc = subprocess.run([sys.executable, "-m", "gen_reason", "compare-referees", "--videos", str(tmp_path / "none"),
                           "--levels", str(FIXTURES)], capture_output=True, text=True)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "not found" in lines[0], proc.stderr


def test_cli_prints_the_table_and_summary(capsys):
    assert main(["compare-referees", "--videos", str(FIXTURES / "sokoban"), "--levels", str(FIXTURES / "sokoban")]) == 0
    out = capsys.readouterr().out
    assert "sokoban/1/easy/easy_0001" in out and "0 disagreement(s)" in out
