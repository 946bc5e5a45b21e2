"""``genreason score``'s output folder is a run folder (gen_reason.folders.RunFolder): the
config a rerun must match, rows that survive ``kill -9``, one process at a time, nothing
left behind by a run that stored no row."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from gen_reason.cli import main
from gen_reason.errors import UserError
from gen_reason.runs import scoring


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Four small maze/grid puzzles with their solution videos."""
    root = tmp_path_factory.mktemp("score_run") / "d"
    assert main(["make-dataset", "--task", "maze/grid", "--difficulty", "3x3", "--n", "4", "--frames", "natural",
                 "--workers", "1", "--quiet", "--out", str(root)]) == 0
    return root


@pytest.fixture
def videos(dataset, tmp_path) -> Path:
    """A folder of four videos named after the dataset's instances (one a broken file)."""
    folder = tmp_path / "videos"
    folder.mkdir()
    records = [json.loads(line) for line in (dataset / "metadata.jsonl").read_text().splitlines()]
    for record in records[:3]:
        shutil.copy(dataset / record["video"], folder / f"{record['uid']}_s0.mp4")
    (folder / f"{records[3]['uid']}_s0.mp4").write_bytes(b"\x00not a video")  # a recorded failure
    return folder


def _comparable(rows) -> list[dict]:
    """Rows (or their records) as two runs into different folders must agree on them (strips
    named, not placed)."""
    records = [row if isinstance(row, dict) else row.to_dict() for row in rows]
    return [{**r, "debug_strip": Path(r["debug_strip"]).name} if "debug_strip" in r else r for r in records]


def _counting_judge(monkeypatch) -> list[str]:
    judged: list[str] = []
    real = scoring._judge

    def counting(verifier, instance, path, decoded, out, name):
        judged.append(Path(path).name)
        return real(verifier, instance, path, decoded, out, name)

    monkeypatch.setattr(scoring, "_judge", counting)
    return judged


def test_kill_9_loses_only_the_row_in_flight(dataset, videos, tmp_path, monkeypatch, capsys):
    """A ``genreason score`` process is killed with SIGKILL while its third video is in
    flight: the two rows it stored stay, a second process is refused while it runs, and the
    rerun scores only the two missing videos and ends with an uninterrupted run's rows."""
    script = textwrap.dedent("""
        import sys, time
        from gen_reason.runs import scoring
        from gen_reason.cli import main
        real, calls = scoring._judge, []

        def judge(*args):
            calls.append(args[2])
            if len(calls) == 3:  # two rows are stored: stop here until killed
                print("ready", flush=True)
                time.sleep(120)
            return real(*args)

        scoring._judge = judge
        sys.exit(main(sys.argv[1:]))
    """)
    out = tmp_path / "scores"
    argv = ["score", str(videos), "--dataset", str(dataset), "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-c", script, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        assert len((out / "scores.jsonl").read_text().splitlines()) == 2
        assert main(argv) == 2  # the folder is held by the running process
        assert "in use by another genreason process" in capsys.readouterr().err
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    judged = _counting_judge(monkeypatch)
    resumed = scoring.score_folder(videos, dataset, out=out)
    stored = [json.loads(line)["key"][0] for line in (out / "scores.jsonl").read_text().splitlines()]
    assert len(judged) == 2 and sorted(stored) == sorted(str(p) for p in videos.glob("*.mp4"))  # each once
    judged.clear()
    fresh = scoring.score_folder(videos, dataset, out=tmp_path / "uninterrupted")
    assert len(judged) == 4
    assert _comparable(resumed) == _comparable(fresh)
    assert _comparable(json.loads((out / "scores.json").read_text())) == _comparable(fresh)
    assert sum(not row.success for row in fresh) == 1  # the broken file, recorded


def test_a_rerun_with_another_config_is_refused_before_scoring(dataset, videos, tmp_path, monkeypatch):
    out = tmp_path / "scores"
    assert main(["score", str(videos), "--dataset", str(dataset), "--out", str(out)]) == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["kind"] == "reference" and config["dataset"] == str(dataset.resolve())
    before = {name: (out / name).read_bytes() for name in ("scores.jsonl", "scores.json", "config.yaml")}
    judged = _counting_judge(monkeypatch)
    other = tmp_path / "other_dataset"
    shutil.copytree(dataset, other)
    for argv, field in ((["--dataset", str(dataset), "--kind", "rule"], "kind"), (["--dataset", str(other)], "dataset")):
        argv = ["score", str(videos), "--out", str(out), *argv]
        proc = subprocess.run([sys.executable, "-m", "gen_reason", *argv], capture_output=True, text=True)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert f"holds a run with a different config ({field}: see" in lines[0]
    assert judged == []
    assert {name: (out / name).read_bytes() for name in before} == before
    # the same config resumes: nothing is scored again
    scoring.score_folder(videos, dataset, out=out)
    assert judged == []


def test_one_video_with_out_is_a_run_folder_too(dataset, videos, tmp_path, monkeypatch):
    records = [json.loads(line) for line in (dataset / "metadata.jsonl").read_text().splitlines()]
    instance = tmp_path / "instance.json"
    instance.write_text(json.dumps(records[0]))  # a dataset record is an instance file
    video = videos / f"{records[0]['uid']}_s0.mp4"
    out = tmp_path / "one"
    first = scoring.score_one(video, instance, out=out)
    assert first.success and (out / "config.yaml").exists()
    judged = _counting_judge(monkeypatch)
    assert scoring.score_one(video, instance, out=out) == first and judged == []
    with pytest.raises(UserError, match=r"different config \(kind: see"):
        scoring.score_one(video, instance, kind="rule", out=out)


def test_a_run_that_stores_no_row_leaves_no_config(dataset, videos, tmp_path, monkeypatch):
    """A failure before the first row takes back config.yaml: the corrected command (here
    another verifier kind) is not refused."""
    def broken(*args):
        raise UserError("the referee broke")

    monkeypatch.setattr(scoring, "_judge", broken)
    out = tmp_path / "scores"
    with pytest.raises(UserError, match="the referee broke"):
        scoring.score_folder(videos, dataset, out=out)
    assert not (out / "config.yaml").exists() and not (out / "scores.jsonl").exists()
    monkeypatch.undo()
    rows = scoring.score_folder(videos, dataset, kind="rule", out=out)
    assert len(rows) == 4 and yaml.safe_load((out / "config.yaml").read_text())["kind"] == "rule"


def test_a_scores_jsonl_written_before_run_folders_resumes(dataset, videos, tmp_path, monkeypatch):
    """A folder from before config.yaml existed (rows written by json.dumps, keys unsorted)
    is adopted: its rows are reused, the config written."""
    out = tmp_path / "scores"
    rows = scoring.score_folder(videos, dataset, out=out)
    entries = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    (out / "config.yaml").unlink()
    (out / "scores.jsonl").write_text("".join(json.dumps({"key": e["key"], "row": e["row"]}) + "\n"
                                              for e in entries[:3]))
    judged = _counting_judge(monkeypatch)
    again = scoring.score_folder(videos, dataset, out=out)
    assert len(judged) == 1 and again == rows and (out / "config.yaml").exists()


def test_a_score_row_round_trips_with_the_keys_on_disk(dataset, videos, tmp_path):
    """ScoreRow.to_dict writes the keys score has always written (and only set optional
    ones); from_dict reads them back, and refuses a record with unknown keys in one line."""
    from gen_reason.runs.score_rows import ScoreRow

    rows = scoring.score_folder(videos, dataset, out=tmp_path / "scores")
    on_disk = json.loads((tmp_path / "scores" / "scores.json").read_text())
    good = next(r for r in on_disk if r["success"])
    assert set(good) == {"video", "uid", "task", "status", "success", "metrics", "trace", "reason", "debug_strip"}
    broken = next(r for r in on_disk if not r["success"])  # no strip for a video that could not be read
    assert "debug_strip" not in broken and broken["reason"].startswith("unreadable video")
    assert [ScoreRow.from_dict(r) for r in on_disk] == rows
    assert all(ScoreRow.from_dict(row.to_dict()) == row for row in rows)
    assert rows[0].score.success == rows[0].success and rows[0].score.metrics == rows[0].metrics
    skipped = ScoreRow(video="v.mp4", status="skipped", success=False, metrics={}, level="maze/1/easy/easy_0001",
                       task="vrbench/maze", reason="unknown game")
    assert skipped.to_dict() == {"level": "maze/1/easy/easy_0001", "video": "v.mp4", "task": "vrbench/maze",
                                 "status": "skipped", "success": False, "metrics": {}, "trace": {},
                                 "reason": "unknown game"}
    with pytest.raises(UserError, match=r"^score row has unknown key\(s\) grade$"):
        ScoreRow.from_dict({**good, "grade": "A"})
    with pytest.raises(UserError, match="lacks status"):
        ScoreRow.from_dict({k: v for k, v in good.items() if k != "status"})
