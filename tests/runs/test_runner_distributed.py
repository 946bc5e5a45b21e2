"""Evaluation runs split over processes: sharding, the one merge by rank 0, resume after a kill.

The slow tests launch the real command line (``python -m gen_reason eval``) once as one
process and under ``accelerate launch --multi_gpu --num_processes 2`` (on a machine
without GPUs accelerate still starts two ranks through torchrun; ``--cpu
--num_processes 2`` would start just one process, with no RANK/WORLD_SIZE), with the
shipped embedded model at 4 steps: cheap, deterministic, and some of its answers fail,
so equal scores mean something. The fast tests drive the rank logic in-process with the
oracle stand-in model.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from gen_reason.errors import UserError
from gen_reason.runs.config import load_config
from gen_reason.runs.runner import Shard, run_eval
from gen_reason.runs.store import load_results, read_jsonl

HERE = Path(__file__).resolve().parent

RUN_CONFIG = {
    "data": {"tasks": ["maze/grid"], "difficulties": ["5x5"], "seed": 100, "n": 6},
    "model": {"path": "embedded", "steps": 4},  # 10 of the 12 answers succeed with the v1.1 weights
    "solvers": [{"name": "single", "params": {"seed": 0}}, {"name": "single", "params": {"seed": 1}, "label": "seed1"}],
}
TOTAL = 12  # 6 puzzles x 2 solvers
LAUNCH_TIMEOUT = 300  # seconds; a healthy run takes about 20 on a busy 2-core machine

# Variables a launcher may have set around pytest itself: the subprocesses must not inherit them.
_LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                  "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "PMI_RANK",
                  "PMI_SIZE", "MPI_LOCALRANKID", "MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE",
                  "MV2_COMM_WORLD_LOCAL_RANK")


def _strip_timing(obj):
    """A result record without its wall-clock fields (the only ones allowed to differ)."""
    if isinstance(obj, dict):
        return {k: _strip_timing(v) for k, v in obj.items() if k != "seconds"}
    if isinstance(obj, list):
        return [_strip_timing(v) for v in obj]
    return obj


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCHER_VARS}
    # One thread per process: the 1- and 2-process runs then compute bit-identical floats,
    # and two ranks do not fight over a small machine's cores.
    env.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               HF_HOME=str(tmp / "hf_home"),  # no accelerate default_config.yaml of the user's can change the launch
               CUDA_VISIBLE_DEVICES="")  # CPU on any machine: this is about processes, not GPU numerics
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _one_process_cmd(config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "gen_reason", "eval", "--config", str(config), "--out", str(out), "--quiet"]


def _two_process_cmd(config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(_free_port()),
            "-m", "gen_reason", "eval", "--config", str(config), "--out", str(out), "--quiet"]


def _run(cmd: list[str], tmp: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=_env(tmp), capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _shard_lines(run: Path) -> dict[int, list[dict]]:
    return {int(p.stem): list(read_jsonl(p)) for p in sorted((run / "shards").glob("*.jsonl"))}


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc); torchrun puts each rank in a session of its own,
    so killing the launcher's process group would miss them."""
    found, queue = [], [pid]
    while queue:
        parent = queue.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found.append(child)
            queue.append(child)
    return found


def _wait_until_dead(pids: list[int], timeout: float = 60.0) -> None:
    """Until every process in ``pids`` is gone or a zombie (a zombie writes nothing)."""
    deadline = time.time() + timeout
    for pid in pids:
        while time.time() < deadline:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                break
            if state in ("Z", "X"):
                break
            time.sleep(0.02)


def _stored(run: Path) -> int:
    return sum(len(records) for records in _shard_lines(run).values())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    pytest.importorskip("accelerate", reason="accelerate is not installed (pip install -e '.[models]')")
    pytest.importorskip("diffusers", reason="the embedded model needs diffusers (pip install -e '.[models]')")
    root = tmp_path_factory.mktemp("distributed")
    (root / "eval.yaml").write_text(yaml.safe_dump(RUN_CONFIG))
    return root


@pytest.fixture(scope="module")
def one_process_results(workdir) -> list[dict]:
    """The reference: the same run, one process, through the real command line."""
    proc = _run(_one_process_cmd(workdir / "eval.yaml", workdir / "one"), workdir)
    assert proc.stdout.count("run folder:") == 1
    results = load_results(workdir / "one")
    assert len(results) == TOTAL and (workdir / "one" / "results.jsonl").exists()
    assert 0 < sum(r["success"] for r in results) < TOTAL, "the reference should mix solved and failed puzzles"
    return results


@pytest.mark.slow
def test_two_processes_split_the_work_and_merge_to_the_one_process_result(workdir, one_process_results):
    run = workdir / "two"
    proc = _run(_two_process_cmd(workdir / "eval.yaml", run), workdir)
    assert proc.stdout.count("run folder:") == 1, "only rank 0 prints the summary, once every shard is in"
    assert "| maze/grid-v1 | 5x5 | seed1 | 6 |" in proc.stdout and "| maze/grid-v1 | 5x5 | single | 6 |" in proc.stdout

    shards = _shard_lines(run)
    assert sorted(shards) == [0, 1] and all(shards.values()), "both ranks must have done work"
    for rank, records in shards.items():  # item k = 2 * instance + solver belongs to rank k % 2
        assert all((2 * r["order"][0] + r["order"][1]) % 2 == rank for r in records)
    assert sum(len(records) for records in shards.values()) == TOTAL  # nothing done twice
    assert not list(run.glob("*.part")), "no half-written merge left behind"

    merged = list(read_jsonl(run / "results.jsonl"))
    assert [r["key"] for r in merged] == [r["key"] for r in one_process_results]
    assert len({r["key"] for r in merged}) == TOTAL
    assert [_strip_timing(r) for r in merged] == [_strip_timing(r) for r in one_process_results]
    assert all((run / r["video"]).stat().st_size > 0 for r in merged)


@pytest.mark.slow
def test_two_process_run_killed_mid_way_resumes_losing_and_duplicating_nothing(workdir, one_process_results):
    run = workdir / "killed"
    launcher = subprocess.Popen(_two_process_cmd(workdir / "eval.yaml", run), env=_env(workdir),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + LAUNCH_TIMEOUT
        while time.time() < deadline and launcher.poll() is None and _stored(run) < 2:
            time.sleep(0.02)
    finally:  # also when the wait itself fails: no rank may outlive the test
        # kill -9 of the launcher and both ranks at once, as when a node is lost.
        victims = [launcher.pid, *_descendants(launcher.pid)]
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        launcher.wait(timeout=60)
    _wait_until_dead(victims)  # no rank may still be writing when the shards are read
    partial = _stored(run)
    assert 2 <= partial < TOTAL, f"the kill must land mid-run (stored {partial} of {TOTAL})"
    assert not (run / "results.jsonl").exists()

    proc = _run(_two_process_cmd(workdir / "eval.yaml", run), workdir)
    assert proc.stdout.count("run folder:") == 1
    shards = _shard_lines(run)
    assert sum(len(records) for records in shards.values()) == TOTAL, "a stored item was redone"
    merged = list(read_jsonl(run / "results.jsonl"))
    assert len(merged) == len({r["key"] for r in merged}) == TOTAL
    assert [_strip_timing(r) for r in merged] == [_strip_timing(r) for r in one_process_results]


# In-process checks of the rank logic (fast): the oracle answers with the ground truth.


def _oracle():
    sys.path.insert(0, str(HERE))
    try:
        from oracle import OracleGenerator
    finally:
        sys.path.remove(str(HERE))
    return OracleGenerator("maze/grid", "3x3", range(100, 104), cell_px=8)


def _oracle_config(out):
    return load_config(None, {
        "data.tasks": ["maze/grid"], "data.difficulties": ["3x3"], "data.seed": 100, "data.n": 4,
        "data.task_config": {"cell_px": 8}, "model.path": "oracle", "out": str(out), "save_videos": False,
        "solvers": [{"name": "single", "params": {"seed": 0}}, {"name": "single", "params": {"seed": 1}, "label": "odd"}],
    })


def test_rank_0_waits_for_the_other_shard_and_merges_alone(tmp_path):
    config = _oracle_config(tmp_path / "run")
    rank0 = threading.Thread(target=run_eval, args=(config,), daemon=True,  # a failed test must not hang pytest
                             kwargs=dict(generator=_oracle(), progress=False, shard=Shard(0, 2), poll_seconds=0.02))
    rank0.start()
    shard0 = tmp_path / "run" / "shards" / "0.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(read_jsonl(shard0))) < 4:
        time.sleep(0.02)
    assert len(list(read_jsonl(shard0))) == 4  # rank 0's share (items 0, 2, 4, 6) is stored ...
    rank0.join(timeout=0.3)
    assert rank0.is_alive() and not (tmp_path / "run" / "results.jsonl").exists()  # ... and it waits for rank 1

    run_eval(config, generator=_oracle(), progress=False, shard=Shard(1, 2))
    rank0.join(timeout=60)
    assert not rank0.is_alive()
    merged = list(read_jsonl(tmp_path / "run" / "results.jsonl"))
    assert len(merged) == len({r["key"] for r in merged}) == 8
    assert [r["order"] for r in merged] == [[i, j] for i in range(4) for j in range(2)]


def test_rank_1_does_not_merge_and_one_process_finishes_what_two_began(tmp_path):
    config = _oracle_config(tmp_path / "run")
    run_eval(config, generator=_oracle(), progress=False, shard=Shard(1, 2))
    assert not (tmp_path / "run" / "results.jsonl").exists()
    assert len(load_results(tmp_path / "run")) == 4  # lazily merged from the shards until the run completes
    run_eval(config, generator=_oracle(), progress=False, shard=Shard(0, 1))  # relaunched as one process
    merged = list(read_jsonl(tmp_path / "run" / "results.jsonl"))
    assert len(merged) == len({r["key"] for r in merged}) == 8
    assert [len(list(read_jsonl(p))) for p in sorted((tmp_path / "run" / "shards").glob("*.jsonl"))] == [4, 4]


def test_shard_from_launcher_environments(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                 "OMPI_COMM_WORLD_LOCAL_RANK", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID",
                 "MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert Shard.detect() == Shard(0, 1, 0)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")  # second process of the second machine
    assert Shard.detect() == Shard(3, 4, 1)
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")  # mpirun (accelerate's multi-CPU launch)
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "1")
    assert Shard.detect() == Shard(1, 2, 1)
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "2")
    with pytest.raises(UserError, match="rank 2 of world size 2"):
        Shard.detect()


def test_each_process_gets_its_own_gpu(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert Shard(0, 1).default_device() is None  # one process: the generator's own default
    assert Shard(1, 2).default_device() == "cuda:1"
    assert Shard(3, 4, local_rank=1).default_device() == "cuda:1"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert Shard(1, 2).default_device() is None

