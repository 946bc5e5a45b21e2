"""bench/gpu_check.py's CPU smoke mode: the same code path as the GPU check, on a tiny real-layout model."""

import importlib.util
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

BENCH = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"


def _load_bench():
    import sys

    sys.path.insert(0, str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("gpu_check", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_case_generates_plans_and_times_the_wrapper_against_bare_diffusers():
    bench = _load_bench()
    row = bench.run_case("tiny wan2.2-i2v-a14b", "wan2.2-i2v-a14b", videos=3, steps=1, device=torch.device("cpu"),
                         smoke=True)
    assert row["videos"] == 3 and row["max_batch"] >= 1 and row["offload"] == "none"
    assert row["measured_peak_gib"] > 0 and row["estimated_peak_gib"] > 0
    assert row["seconds_per_video"] > 0 and row["bare_seconds"] > 0 and row["ours_seconds"] > 0
    assert set(bench.CASES) == {"Wan2.1-I2V-14B-480P", "Wan2.2-I2V-A14B-720P"}
