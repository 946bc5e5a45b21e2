"""A mistake on a bench script's command line ends it in one line, before any work, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("command,words,code", [
    (["bench_referee.py", "--against", "HEAD", "--tasks", "maze/nope", "--no-write"], "--tasks: unknown task 'maze/nope'",
     1),
    (["bench_referee.py", "--reps", "0", "--no-write"], "--reps must be >= 1", 1),
    (["bench_trainer.py", "--ref", "no-such-revision", "--no-write"], "no commit 'no-such-revision'", 1),
    (["calibrate_planner.py", "no-such-folder"], "no model folder no-such-folder", 1),
    (["matched_compute.py", "--model.stepz", "3", "--no-write"], "did you mean model.steps?", 2),
])
def test_a_bench_mistake_is_one_line(command, words, code, tmp_path):
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run([sys.executable, str(BENCH / command[0]), *command[1:]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == code, done.stderr
    assert words in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
