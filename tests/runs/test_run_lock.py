"""Run folders are safe to share: a second evaluation of a folder that a running one holds is
refused in one line (the first finishes alone, nothing is stored twice), and a run that
fails before it stores anything leaves nothing that refuses the corrected command."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from gen_reason.errors import UserError
from gen_reason.runs.config import load_config
from gen_reason.runs.runner import run_eval
from gen_reason.runs.store import RunStore, load_results, read_jsonl

HERE = Path(__file__).resolve().parent

OVERRIDES = {
    "data.tasks": ["maze/grid"], "data.difficulties": ["3x3"], "data.seed": 100, "data.n": 6,
    "data.task_config": {"cell_px": 8}, "model.path": "oracle",
    "solvers": [{"name": "single", "params": {"seed": 0}}, {"name": "single", "params": {"seed": 1}, "label": "odd"}],
}

# One evaluation process: the oracle model, slowly (0.3 s an item); a refusal is one line
# on stderr and exit code 2, as the command line reports a UserError.
SCRIPT = """
import sys
sys.path.insert(0, {here!r})
from oracle import OracleGenerator
from gen_reason.errors import UserError
from gen_reason.runs.config import load_config
from gen_reason.runs.runner import run_eval
config = load_config(None, {overrides!r})
try:
    run_eval(config, generator=OracleGenerator("maze/grid", "3x3", range(100, 106), delay={delay}, cell_px=8),
             progress=False)
except UserError as exc:
    print(exc, file=sys.stderr)
    sys.exit(2)
"""


def _process(out, delay):
    code = SCRIPT.format(here=str(HERE), overrides={**OVERRIDES, "out": str(out)}, delay=delay)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _oracle(fail_after=None):
    """The oracle model; with ``fail_after``, one whose generate raises after that many calls."""
    sys.path.insert(0, str(HERE))
    try:
        from oracle import OracleGenerator
    finally:
        sys.path.remove(str(HERE))

    class Failing(OracleGenerator):
        calls = 0

        def generate(self, *args, **kwargs):
            self.calls += 1
            if self.calls > fail_after:
                raise UserError("the model failed")
            return super().generate(*args, **kwargs)

    cls = OracleGenerator if fail_after is None else Failing
    return cls("maze/grid", "3x3", range(100, 106), cell_px=8)


def test_a_second_eval_on_a_folder_in_use_is_refused_and_the_first_finishes_alone(tmp_path):
    out = tmp_path / "run"
    first = _process(out, delay=0.3)
    try:
        shard = out / "shards" / "0.jsonl"
        deadline = time.monotonic() + 120
        while not shard.exists() or not shard.read_text().count("\n"):
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline, "the first evaluation stored nothing in 120 s"
            time.sleep(0.05)
        second = _process(out, delay=0.0)  # the same config: only the lock can stop it
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2, err
        assert err.count("\n") == 1 and "in use by another genreason process" in err and str(out) in err
        assert first.poll() is None, "the refusal must come while the first still runs"
        _, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
    finally:
        for proc in (first,):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    lines = list(read_jsonl(out / "shards" / "0.jsonl"))
    assert len(lines) == len({r["key"] for r in lines}) == 12  # every item once: no work done twice
    assert len(load_results(out)) == 12


def test_the_lock_is_per_rank_and_let_go_when_the_store_closes(tmp_path):
    config = {"any": "config"}
    with RunStore(tmp_path / "run", config, rank=0):
        with pytest.raises(UserError, match="in use by another genreason process"):
            RunStore(tmp_path / "run", config, rank=0)
        RunStore(tmp_path / "run", config, rank=1).close()  # the other rank of a launch shares the folder
    RunStore(tmp_path / "run", config, rank=0).close()


def test_a_run_that_stored_nothing_does_not_block_the_corrected_command(tmp_path):
    out = tmp_path / "run"
    wrong = load_config(None, {**OVERRIDES, "out": str(out), "data.n": 7})
    with pytest.raises(UserError, match="the model failed"):  # before its first video, as one that cannot load
        run_eval(wrong, generator=_oracle(fail_after=0), progress=False)
    assert not (out / "config.yaml").exists()
    run_eval(load_config(None, {**OVERRIDES, "out": str(out)}), generator=_oracle(), progress=False)
    assert len(load_results(out)) == 12


@pytest.mark.parametrize("mistake", [{"data.n": 0}, {"model.path": "/nonexistent/model"}])
def test_a_mistake_in_the_command_leaves_the_folder_open_to_the_corrected_one(tmp_path, mistake):
    out = tmp_path / "run"
    with pytest.raises(UserError):
        run_eval(load_config(None, {**OVERRIDES, "out": str(out), **mistake}), progress=False)
    assert not (out / "config.yaml").exists()
    run_eval(load_config(None, {**OVERRIDES, "out": str(out)}), generator=_oracle(), progress=False)
    assert len(load_results(out)) == 12


def test_a_run_that_stored_results_keeps_its_config_when_it_fails_later(tmp_path):
    out = tmp_path / "run"
    config = load_config(None, {**OVERRIDES, "out": str(out)})
    with pytest.raises(UserError, match="the model failed"):
        run_eval(config, generator=_oracle(fail_after=3), progress=False)
    assert (out / "config.yaml").exists() and len(list(read_jsonl(out / "shards" / "0.jsonl"))) == 3
    run_eval(config, generator=_oracle(), progress=False)  # resumes
    assert len(load_results(out)) == 12
