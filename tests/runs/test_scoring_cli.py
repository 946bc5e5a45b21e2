"""``genreason score`` end to end: one video against an instance, a folder against a dataset,
a folder against VR-Bench levels; broken videos are recorded failures, bad paths one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gen_reason.cli import main
from gen_reason.errors import UserError
from gen_reason.video import read_image

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "vrbench"


def _empty_mp4(path: Path) -> Path:
    """A valid MP4 container with a video stream and no frames."""
    import av

    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=16)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        container.start_encoding()  # write the header though no frame follows
    return path


def test_one_video_against_an_instance_json(tmp_path, capsys):
    assert main(["puzzle", "--task", "maze/grid", "--seed", "2", "--difficulty", "4x4", "--out",
                 str(tmp_path / "p")]) == 0
    capsys.readouterr()
    assert main(["score", str(tmp_path / "p" / "solution.mp4"), "--instance", str(tmp_path / "p" / "instance.json"),
                 "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("PASS") and "EM=1.0" in out
    (row,) = json.loads((tmp_path / "s" / "scores.json").read_text())
    assert row["success"] and row["metrics"]["exact_match"] == 1.0 and row["status"] == "scored"
    strip = read_image(row["debug_strip"])
    assert strip.shape[1] > 4 * strip.shape[0]  # a strip of frames (maze debug strip)


def test_a_folder_against_a_dataset_records_broken_videos_as_failures(tmp_path, capsys):
    assert main(["make-dataset", "--task", "maze/trapfield", "--n", "2", "--frames", "natural", "--workers", "1",
                 "--quiet", "--out", str(tmp_path / "d")]) == 0
    records = [json.loads(line) for line in (tmp_path / "d" / "metadata.jsonl").read_text().splitlines()]
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    shutil.copy(tmp_path / "d" / records[0]["video"], outputs / f"{records[0]['uid']}_sample0.mp4")
    (outputs / f"{records[1]['uid']}_sample0.mp4").write_bytes(b"\x00not a video")
    _empty_mp4(outputs / f"{records[1]['uid']}_sample1.mp4")
    (outputs / "unrelated.mp4").write_bytes(b"")
    capsys.readouterr()
    assert main(["score", str(outputs), "--dataset", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    rows = {Path(r["video"]).name: r for r in json.loads((outputs / "scores" / "scores.json").read_text())}
    assert set(rows) == {f"{records[0]['uid']}_sample0.mp4", f"{records[1]['uid']}_sample0.mp4",
                         f"{records[1]['uid']}_sample1.mp4"}
    assert rows[f"{records[0]['uid']}_sample0.mp4"]["success"]
    for name in (f"{records[1]['uid']}_sample0.mp4", f"{records[1]['uid']}_sample1.mp4"):
        assert not rows[name]["success"] and rows[name]["reason"].startswith("unreadable video"), rows[name]
    empty = rows[f"{records[1]['uid']}_sample1.mp4"]["reason"]
    assert "has no frames" in empty or "no video stream" in empty, empty
    assert "success 1/3" in out and "Traceback" not in out


def test_an_interrupted_folder_run_scores_only_what_is_left(tmp_path, monkeypatch):
    """Rows are appended to scores.jsonl as they are made; a rerun reuses the rows of
    unchanged files (a line cut short by the interruption is ignored) and scores the rest;
    a changed file is scored again; another verifier kind into the same folder is refused."""
    from gen_reason.runs import scoring

    assert main(["make-dataset", "--task", "maze/trapfield", "--n", "3", "--frames", "natural", "--workers", "1",
                 "--quiet", "--out", str(tmp_path / "d")]) == 0
    records = [json.loads(line) for line in (tmp_path / "d" / "metadata.jsonl").read_text().splitlines()]
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    for record in records:
        shutil.copy(tmp_path / "d" / record["video"], outputs / f"{record['uid']}_sample0.mp4")
    first = scoring.score_folder(outputs, tmp_path / "d")
    log = outputs / "scores" / "scores.jsonl"
    lines = log.read_text().splitlines()
    assert len(lines) == 3 and all(r.success for r in first)
    log.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # killed while writing the second row

    judged = []
    real_judge = scoring._judge

    def counting(verifier, instance, path, decoded, out, name):
        judged.append(Path(path).name)
        return real_judge(verifier, instance, path, decoded, out, name)

    monkeypatch.setattr(scoring, "_judge", counting)
    again = scoring.score_folder(outputs, tmp_path / "d")
    assert sorted(judged) == sorted(f"{r['uid']}_sample0.mp4" for r in records[1:])
    assert [(r.video, r.success, r.metrics) for r in again] == [(r.video, r.success, r.metrics) for r in first]
    judged.clear()
    scoring.score_folder(outputs, tmp_path / "d")
    assert judged == []  # everything was done
    with pytest.raises(UserError, match=r"different config \(kind: see"):  # another verifier: another run
        scoring.score_folder(outputs, tmp_path / "d", kind="rule")
    assert judged == []
    changed = outputs / f"{records[0]['uid']}_sample0.mp4"
    changed.write_bytes(changed.read_bytes() + b"\0")
    scoring.score_folder(outputs, tmp_path / "d")
    assert judged == [changed.name]


@pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"VR-Bench fixtures not found at {FIXTURES}")
def test_a_folder_against_vrbench_levels(tmp_path, capsys):
    outputs = tmp_path / "outputs"
    for game in ("maze", "sokoban"):
        (outputs / game / "1").mkdir(parents=True)
        os.symlink(FIXTURES / game / "1" / "easy" / "videos" / "easy_0001.mp4",
                   outputs / game / "1" / "easy_0001_0.mp4")
    (outputs / "maze3d" / "1").mkdir(parents=True)
    os.symlink(FIXTURES / "maze3d" / "1" / "easy" / "videos" / "easy_0001.mp4", outputs / "maze3d" / "1" / "easy_0001.mp4")
    assert main(["score", str(outputs), "--vrbench", str(FIXTURES), "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "success 3/3" in out and "skipped" not in out
    rows = {r["level"]: r for r in json.loads((tmp_path / "s" / "scores.json").read_text())}
    assert rows["maze/1/easy/easy_0001"]["success"] and rows["sokoban/1/easy/easy_0001"]["success"]
    assert rows["maze3d/1/easy/easy_0001"]["success"]
    assert (tmp_path / "s" / "maze__1__easy_0001_0_debug.png").exists()


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gen_reason", "score", *argv], capture_output=True, text=True)


def test_bad_paths_are_one_line_and_exit_2(tmp_path):
    (tmp_path / "v.mp4").write_bytes(b"")
    (tmp_path / "i.json").write_text("[1, 2]")
    (tmp_path / "empty").mkdir()
    cases = [
        ([str(tmp_path / "v.mp4"), "--instance", str(tmp_path / "missing.json")], "instance file not found"),
        ([str(tmp_path / "missing.mp4"), "--instance", str(tmp_path / "i.json")], "not an instance"),
        ([str(tmp_path / "missing"), "--dataset", str(tmp_path)], "not a folder of videos"),
        ([str(tmp_path), "--dataset", str(tmp_path)], "not a genreason dataset"),
        ([str(tmp_path / "empty"), "--dataset", str(tmp_path)], "no videos in"),
        ([str(tmp_path), "--vrbench", str(tmp_path)], "is not a VR-Bench folder"),
        ([str(tmp_path), "--vrbench", str(tmp_path), "--dataset", str(tmp_path)], "only one of"),
        ([str(tmp_path)], "give --instance"),
    ]
    for argv, message in cases:
        proc = _run(*argv)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], (argv, proc.stderr)


def test_a_missing_video_with_a_good_instance_is_a_user_error(tmp_path):
    assert main(["puzzle", "--task", "maze/grid", "--difficulty", "3x3", "--out", str(tmp_path / "p")]) == 0
    proc = _run(str(tmp_path / "missing.mp4"), "--instance", str(tmp_path / "p" / "instance.json"))
    assert proc.returncode == 2 and "video not found" in proc.stderr and "Traceback" not in proc.stderr


def test_the_table_shows_each_tasks_own_numbers_and_no_lenient_rate_where_there_is_none(capsys):
    """A lenient success rate is VR-Bench's, for the maze family: draw and tangram rows have
    none, so the summary must not print 0/n for them; tangram lines show IoU and pieces placed."""
    from gen_reason.runs.score_rows import print_table

    tangram = {"video": "t.mp4", "status": "scored", "success": True, "reason": "",
               "metrics": {"success": 1.0, "silhouette_iou": 0.9961, "pieces_placed": 7.0, "pieces_placed_frac": 1.0}}
    draw = {"video": "d.mp4", "status": "scored", "success": False, "reason": "the red path is broken",
            "metrics": {"success": 0.0, "connected": 0.0}}
    print_table([tangram, draw])
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["PASS", "t.mp4", "IoU=0.996", "placed=100%"]
    assert out[1].split()[:2] == ["FAIL", "d.mp4"] and "PR=" not in out[1] and out[1].endswith("broken")
    assert out[2] == "success 1/2"
    maze = {"video": "m.mp4", "status": "scored", "success": False, "reason": "teleport",
            "metrics": {"success": 0.0, "success_lenient": 1.0, "precision_rate": 0.5, "exact_match": 0.0}}
    print_table([maze, tangram])
    out = capsys.readouterr().out.splitlines()
    assert "PR=0.5 EM=0.0" in out[0]
    assert out[2] == "success 1/2 (lenient, as VR-Bench's SR: 1/1)"


def test_an_unreadable_row_log_is_one_line_and_exit_2(tmp_path):
    assert main(["make-dataset", "--task", "maze/grid", "--n", "1", "--frames", "natural", "--workers", "1",
                 "--quiet", "--out", str(tmp_path / "d")]) == 0
    record = json.loads((tmp_path / "d" / "metadata.jsonl").read_text().splitlines()[0])
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    shutil.copy(tmp_path / "d" / record["video"], outputs / f"{record['uid']}_s.mp4")
    (outputs / "scores" / "scores.jsonl").mkdir(parents=True)  # not a file
    result = _run(str(outputs), "--dataset", str(tmp_path / "d"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "scores.jsonl" in result.stderr
    assert not (outputs / "scores" / "config.yaml").exists()  # nothing that would refuse the corrected command
