"""Evaluation runs: the store, resume after kill -9, refusing a changed config, reports."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gen_reason.errors import UserError
from gen_reason.runs.config import EvalConfig, load_config
from gen_reason.runs.report import wilson_interval, write_report
from gen_reason.runs.runner import run_eval
from gen_reason.runs.store import load_results

HERE = Path(__file__).resolve().parent


def _oracle(delay=0.0):
    sys.path.insert(0, str(HERE))
    try:
        from oracle import OracleGenerator
    finally:
        sys.path.remove(str(HERE))
    return OracleGenerator("maze/grid", "3x3", range(100, 106), delay=delay, cell_px=8)


def _config(out, **data):
    return load_config(None, {
        "data.tasks": ["maze/grid"], "data.difficulties": ["3x3"], "data.seed": 100, "data.n": 6,
        "data.task_config": {"cell_px": 8}, "model.path": "oracle", "out": str(out),
        "solvers": [{"name": "single", "params": {"seed": 0}}, {"name": "single", "params": {"seed": 1}, "label": "odd"}],
        **data,
    })


def _strip_timing(obj):
    if isinstance(obj, dict):
        return {k: _strip_timing(v) for k, v in obj.items() if k not in ("seconds",)}
    if isinstance(obj, list):
        return [_strip_timing(v) for v in obj]
    return obj


def test_eval_stores_every_result_and_scores_honestly(tmp_path):
    run = run_eval(_config(tmp_path / "run"), generator=_oracle(), progress=False)
    results = load_results(run)
    assert len(results) == 12 and (run / "results.jsonl").exists()
    assert all(r["success"] for r in results if r["solver"] == "single")
    assert not any(r["success"] for r in results if r["solver"] == "odd")  # stops halfway
    assert all((run / r["video"]).exists() for r in results)
    assert len({r["key"] for r in results}) == 12


def test_rerun_skips_done_and_changed_config_is_refused(tmp_path):
    config = _config(tmp_path / "run")
    run_eval(config, generator=_oracle(), progress=False)
    before = (tmp_path / "run" / "results.jsonl").read_text()
    run_eval(config, generator=None, progress=False)  # nothing to do: the model is never loaded
    assert (tmp_path / "run" / "results.jsonl").read_text() == before
    with pytest.raises(UserError, match="different config"):
        run_eval(_config(tmp_path / "run", **{"data.n": 5}), generator=_oracle(), progress=False)


SCRIPT = """
import sys
sys.path.insert(0, {here!r})
from oracle import OracleGenerator
from gen_reason.runs.config import load_config
from gen_reason.runs.runner import run_eval
config = load_config(None, {overrides!r})
run_eval(config, generator=OracleGenerator("maze/grid", "3x3", range(100, 106), delay=0.4, cell_px=8), progress=False)
"""


def test_kill_9_then_rerun_loses_and_duplicates_nothing(tmp_path):
    overrides = {
        "data.tasks": ["maze/grid"], "data.difficulties": ["3x3"], "data.seed": 100, "data.n": 6,
        "data.task_config": {"cell_px": 8}, "model.path": "oracle", "out": str(tmp_path / "killed"),
        "solvers": [{"name": "single", "params": {"seed": 0}}, {"name": "single", "params": {"seed": 1}, "label": "odd"}],
    }
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT.format(here=str(HERE), overrides=overrides)])
    shard = tmp_path / "killed" / "shards" / "0.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not shard.exists() or shard.read_text().count("\n") < 3):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = shard.read_text().count("\n")
    assert 3 <= partial < 12, "the kill must land mid-run"
    assert not (tmp_path / "killed" / "results.jsonl").exists()

    config = load_config(None, overrides)
    run_eval(config, generator=_oracle(), progress=False)
    killed = load_results(tmp_path / "killed")
    clean = load_results(run_eval(_config(tmp_path / "clean"), generator=_oracle(), progress=False))
    assert [r["key"] for r in killed] == [r["key"] for r in clean]
    assert len(killed) == len({r["key"] for r in killed}) == 12
    strip = lambda rs: [_strip_timing({k: v for k, v in r.items() if k != "video"}) for r in rs]  # noqa: E731
    assert strip(killed) == strip(clean)


def test_report_tables_plots_and_gallery(tmp_path):
    run = run_eval(_config(tmp_path / "run"), generator=_oracle(), progress=False)
    md = write_report([run])
    text = md.read_text()
    assert "| maze/grid-v1 | 3x3 | single | 6 | 1.000" in text
    assert (run / "plots" / "success_by_difficulty.png").stat().st_size > 1000
    assert (run / "report.html").exists() and list((run / "gallery").glob("*.png"))
    both = write_report([run, run], tmp_path / "cmp")
    assert "| run |" in both.read_text()


def test_wilson_interval_known_values():
    low, high = wilson_interval(8, 10)
    assert abs(low - 0.4902) < 1e-3 and abs(high - 0.9433) < 1e-3
    assert wilson_interval(0, 10)[0] == 0.0


def test_bad_config_key_is_user_error(tmp_path):
    with pytest.raises(UserError, match="unknown config key 'data.tsks'; did you mean data.tasks"):
        load_config(None, {"data.tsks": ["maze"]})
    path = tmp_path / "c.yaml"
    path.write_text("model: [1, 2\n")
    with pytest.raises(UserError, match="is not valid YAML"):
        load_config(str(path))


@pytest.mark.parametrize("name", ["vrbench_maze", "thinking_in_frames", "matched_compute", "embedded_quick"])
def test_shipped_eval_configs_load(name):
    """Every eval config in configs/ parses into a valid run (a typo there is a user's first error)."""
    config = load_config(str(HERE.parents[1] / "configs" / f"{name}.yaml"))
    assert config.solvers and config.data.tasks


def test_model_max_batch_reaches_the_generator(tmp_path, monkeypatch):
    """``model.max_batch`` (the latent ensemble's seeds in one call) is passed to the loader."""
    import gen_reason.models.loading as loading

    seen = {}

    def fake_load(path, **options):
        seen.update(options)
        raise UserError("stop here")

    monkeypatch.setattr(loading, "load_generator", fake_load)
    config = load_config(None, {"data.tasks": ["maze/grid"], "data.difficulties": ["3x3"], "data.n": 1,
                                "model.path": "embedded", "model.max_batch": 16, "out": str(tmp_path / "run")})
    with pytest.raises(UserError, match="stop here"):
        run_eval(config, progress=False)
    assert seen["max_batch"] == 16


def test_result_rows_are_typed_and_keep_their_keys(tmp_path):
    """Every stored line reads back as a ResultRow whose record is the line itself."""
    from gen_reason.runs.store import ResultRow

    config = _config(tmp_path / "run")
    run_eval(config, generator=_oracle(), progress=False)
    lines = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert lines
    for line in lines:
        row = ResultRow.from_dict(line)
        assert row.to_dict() == line
        assert row.score.success == line["success"] and row.score.reason == line["reason"]
    with pytest.raises(UserError, match="unknown key"):
        ResultRow.from_dict({**lines[0], "bogus": 1})
    with pytest.raises(UserError, match="^result row lacks seconds$"):
        ResultRow.from_dict({k: v for k, v in lines[0].items() if k != "seconds"})
