"""The one run folder (gen_reason.folders.RunFolder) under every long command: the resolved
config checked against a rerun, per-row logs that survive a kill, the lock, nothing left
behind by a run that stored nothing."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import yaml

from gen_reason.errors import UserError
from gen_reason.folders import JsonlLog, RunFolder


def test_config_written_then_checked(tmp_path):
    with RunFolder(tmp_path / "run", {"a": 1, "b": [1, 2]}) as run:
        assert run.wrote_config
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text()) == {"a": 1, "b": [1, 2]}
    with RunFolder(tmp_path / "run", {"b": [1, 2], "a": 1}) as again:  # same config, other order
        assert not again.wrote_config
    with pytest.raises(UserError, match=r"different config \(a: see"):
        RunFolder(tmp_path / "run", {"a": 2, "b": [1, 2]}, subfolders=("shards",))
    assert not (tmp_path / "run" / "shards").exists()  # a refused rerun makes nothing


def test_may_change_fields_are_rewritten_and_defaults_fill_new_fields(tmp_path):
    RunFolder(tmp_path, {"lr": 0.1, "max_steps": 10}).close()
    with RunFolder(tmp_path, {"lr": 0.1, "max_steps": 20, "new": 3}, may_change={"max_steps"},
                   defaults={"new": 3}):
        pass
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == {"lr": 0.1, "max_steps": 20, "new": 3}
    with pytest.raises(UserError, match="new"):
        RunFolder(tmp_path, {"lr": 0.1, "max_steps": 20, "new": 4}, may_change={"max_steps"}, defaults={"new": 3})


def test_unreadable_config_is_one_line(tmp_path):
    (tmp_path / "config.yaml").write_bytes(b"\x00\xff: [")
    with pytest.raises(UserError, match="not a readable run config"):
        RunFolder(tmp_path, {"a": 1})


def test_second_holder_refused_until_closed(tmp_path):
    first = RunFolder(tmp_path, {"a": 1})
    with pytest.raises(UserError, match="in use by another genreason process"):
        RunFolder(tmp_path, {"a": 1})
    RunFolder(tmp_path, {"a": 1}, rank=1).close()  # another rank of the same launch may share it
    first.close()
    RunFolder(tmp_path, {"a": 1}).close()


def test_discard_if_empty_takes_back_only_what_it_wrote(tmp_path):
    run = RunFolder(tmp_path / "r", {"a": 1}, subfolders=("rows",))
    log = run.log("rows/0.jsonl")
    assert run.discard_if_empty([log])
    run.close()
    assert not (tmp_path / "r" / "config.yaml").exists() and not (tmp_path / "r" / "rows").exists()
    # with a row stored, nothing is taken back
    run = RunFolder(tmp_path / "r", {"a": 1}, subfolders=("rows",))
    log = run.log("rows/0.jsonl")
    log.append({"key": "x"})
    assert not run.discard_if_empty([log])
    run.close()
    assert (tmp_path / "r" / "config.yaml").exists()


def test_log_append_records_values_and_truncate(tmp_path):
    log = JsonlLog(tmp_path / "l.jsonl")
    assert log.records() == []
    for step in range(5):
        log.append({"step": step, "key": f"k{step}"})
    assert [r["step"] for r in log.records()] == [0, 1, 2, 3, 4]
    assert log.values("key") == {"k0", "k1", "k2", "k3", "k4"}
    with pytest.raises(ValueError):
        log.append({"step": float("nan")})
    log.truncate_after(2)
    assert [r["step"] for r in log.records()] == [0, 1, 2]


def test_torn_last_line_is_cut_when_reopened(tmp_path):
    path = tmp_path / "l.jsonl"
    path.write_text('{"key": "a"}\n{"key": "b"}\n{"key": "c')
    assert [r["key"] for r in JsonlLog(path).records()] == ["a", "b"]
    log = JsonlLog(path).repair()
    log.append({"key": "d"})
    assert [r["key"] for r in log.records()] == ["a", "b", "d"]


def test_rows_survive_kill_9_and_resume_by_key(tmp_path):
    """A process appending rows is killed mid-run; reopening keeps every complete row and
    the rerun writes only the missing keys."""
    script = textwrap.dedent(f"""
        import sys, time
        from gen_reason.folders import RunFolder
        run = RunFolder({str(tmp_path)!r}, {{"n": 400}})
        log = run.log("rows.jsonl")
        done = log.values("key")
        for i in range(400):
            if i not in done:
                log.append({{"key": i, "pad": "x" * 2000}})
                if len(sys.argv) > 1 and i == 150:
                    print("ready", flush=True)
                    time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script, "slow"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with open(tmp_path / "rows.jsonl", "a") as fh:  # the line a kill cut short
        fh.write('{"key": 151, "pad": "xx')
    subprocess.run([sys.executable, "-c", script], check=True)
    keys = [json.loads(line)["key"] for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert keys == list(range(400))


def test_keep_drops_the_rows_of_unfinished_units_byte_for_byte(tmp_path):
    log = JsonlLog(tmp_path / "rows.jsonl")
    for unit in ("a", "b", "c"):
        for step in range(2):
            log.append({"unit": unit, "step": step, "x": 0.1 * step})
    before = (tmp_path / "rows.jsonl").read_text().splitlines(keepends=True)
    log.keep(lambda row: row["unit"] != "b")
    assert (tmp_path / "rows.jsonl").read_text() == "".join(before[:2] + before[4:])


def test_a_binary_log_is_an_error_not_an_empty_log(tmp_path):
    path = tmp_path / "l.jsonl"
    path.write_bytes(b'\xff\xfe\x00binary\n')
    with pytest.raises(UnicodeDecodeError):
        JsonlLog(path).records()
