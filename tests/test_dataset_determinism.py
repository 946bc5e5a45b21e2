"""Datasets byte for byte: the same arguments give the same files, videos included, in any
process, with any number of workers, and after a ``kill -9`` and a rerun; one process at a
time writes a dataset folder.

What broke this before (see ``gen_reason.video.write_mp4``): x264's AVX-512 code read
uninitialised memory, so the first frame of some videos came out differently from write to
write (50 to 90 of 300 videos between two identical 2-worker runs). Without the fix, the
in-process test below found it in most runs and the 300-video tests in every run.
"""

import hashlib
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

import pytest

from gen_reason.datasets import DatasetSpec, make_dataset
from gen_reason.errors import UserError
from gen_reason.puzzles import get_task
from gen_reason.video import write_mp4, x264_params

# Small enough to write a few hundred quickly, big enough to be a real encode (several
# macroblock rows, B-frames, the look-ahead): 3x3 and 4x4 mazes of 16-pixel cells.
BIG = DatasetSpec(task="maze/grid", n=300, difficulties=("3x3", "4x4"), seed=7, num_frames=25,
                  task_config={"cell_px": 16})


def _files(folder):
    """{relative path: sha256} of every file under ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _videos(n):
    task = get_task("maze/grid", cell_px=16)
    return [task.solution_video(task.generate(seed, "4x4"), 25) for seed in range(n)]


def _write_each(args):
    """sha256 of every video of ``videos`` written into ``folder``, written in ``order``."""
    folder, videos, order = args
    digests = {i: hashlib.sha256(write_mp4(folder / f"{i}.mp4", videos[i]).read_bytes()).hexdigest() for i in order}
    return [digests[i] for i in range(len(videos))]


WRITE_IN_A_PROCESS = """
import hashlib, sys
from pathlib import Path
from gen_reason.puzzles import get_task
from gen_reason.video import write_mp4
task = get_task("maze/grid", cell_px=16)
for seed in range({n}):
    path = write_mp4(Path(sys.argv[1]) / f"{{seed}}.mp4", task.solution_video(task.generate(seed, "4x4"), 25))
    print(hashlib.sha256(path.read_bytes()).hexdigest())
"""


def test_write_mp4_gives_the_same_bytes_every_time_in_one_and_in_several_processes(tmp_path):
    n = 8
    videos = _videos(n)
    # One process, each video written 3 times, in a new order each round.
    orders = [list(range(n)), list(range(n - 1, -1, -1)), [5, 0, 7, 2, 1, 4, 6, 3]]
    rounds = [_write_each((tmp_path / f"round{r}", videos, order)) for r, order in enumerate(orders)]
    # Two forked worker processes, as make-dataset's.
    with mp.get_context("fork").Pool(2) as pool:
        rounds += pool.map(_write_each, [(tmp_path / f"worker{w}", videos, orders[w]) for w in range(2)])
    # Fresh processes, one whose new heap memory is filled with 0xFE (glibc's MALLOC_PERTURB_;
    # other C libraries ignore it): without the fix, x264's AVX-512 code read such bytes
    # and every one of these videos came out different.
    for perturb in (None, "1"):
        env = {k: v for k, v in os.environ.items() if k != "MALLOC_PERTURB_"}
        if perturb:
            env["MALLOC_PERTURB_"] = perturb
        proc = subprocess.run([sys.executable, "-c", WRITE_IN_A_PROCESS.format(n=n), str(tmp_path / f"fresh{perturb}")],
                              capture_output=True, text=True, env=env, check=True)
        rounds.append(proc.stdout.split())
    for i in range(n):
        assert len({r[i] for r in rounds}) == 1, f"video {i}: {len({r[i] for r in rounds})} different files"
    assert not list(tmp_path.rglob("*.part"))


def test_x264_is_kept_off_its_avx512_code_where_the_cpu_has_it():
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        from numpy.core._multiarray_umath import __cpu_features__ as features
    assert x264_params() == ("asm=AVX2" if features.get("AVX512F") else None)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The 300-video dataset written by one process, uninterrupted: the reference."""
    return make_dataset(BIG, tmp_path_factory.mktemp("clean") / "ds", workers=1, progress=False)


@pytest.mark.slow
def test_hundreds_of_videos_are_byte_identical_with_one_or_two_workers(clean, tmp_path):
    two = make_dataset(BIG, tmp_path / "two", workers=2, progress=False)
    reference, files = _files(clean), _files(two)
    assert len(reference) == 3 * BIG.n + 4  # PNG, MP4, record per item; manifest, two indexes, lock
    differ = sorted(name for name in reference if files.get(name) != reference[name])
    assert not differ, f"{len(differ)} files differ, e.g. {differ[:3]}"
    assert files.keys() == reference.keys()


def _cli(out, workers=2):
    return [sys.executable, "-m", "gen_reason", "make-dataset", "--task", BIG.task, "--n", str(BIG.n),
            "--difficulty", ",".join(BIG.difficulties), "--seed", str(BIG.seed), "--frames", str(BIG.num_frames),
            "--task.cell_px", "16", "--workers", str(workers), "--quiet", "--out", str(out)]


@pytest.mark.slow
def test_kill_9_mid_run_then_rerun_gives_identical_bytes_and_a_second_process_is_refused_meanwhile(clean, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(_cli(out), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(list((out / "records").glob("*.json"))) < 60:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the first run wrote too few items in 120 s"
            time.sleep(0.05)
        # A second process on the same folder, while the first writes: refused in one line.
        second = subprocess.run(_cli(out, workers=1), capture_output=True, text=True)
        assert second.returncode == 2, second.stderr
        assert second.stderr.count("\n") == 1 and "in use by another genreason process" in second.stderr
        assert str(out) in second.stderr and "Traceback" not in second.stderr
        os.killpg(proc.pid, signal.SIGKILL)  # the command and its workers, mid-run
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    done = len(list((out / "records").glob("*.json")))
    assert done < BIG.n and not (out / "metadata.jsonl").exists(), "the kill must land mid-run"
    make_dataset(BIG, out, workers=2, progress=False)  # the kernel dropped the dead run's lock
    reference, files = _files(clean), _files(out)
    differ = sorted(name for name in reference if files.get(name) != reference[name])
    assert not differ, f"{len(differ)} files differ after kill -9 and rerun, e.g. {differ[:3]}"
    assert files.keys() == reference.keys()  # no temporary file left behind


def test_a_second_make_dataset_on_a_held_folder_is_refused_and_nothing_is_written(tmp_path):
    from gen_reason.folders import hold_folder

    spec = DatasetSpec(task="maze/grid", n=3, difficulties=("3x3",), num_frames=5, task_config={"cell_px": 8})
    out = tmp_path / "d"
    out.mkdir()
    with hold_folder(out):  # as another process writing it would
        with pytest.raises(UserError, match="in use by another genreason process"):
            make_dataset(spec, out, workers=1, progress=False)
    assert [p.name for p in out.iterdir()] == [".genreason.lock"]
    make_dataset(spec, out, workers=1, progress=False)  # free again: goes ahead
    assert (out / "metadata.jsonl").exists()


@pytest.mark.parametrize("field, value", [("crf", 99), ("crf", -1), ("crf", "18")])
def test_impossible_crf_is_refused(field, value):
    with pytest.raises(UserError, match="--crf"):
        DatasetSpec(task="maze/grid", n=1, **{field: value}).validate()


@pytest.mark.parametrize("workers", [0, -2, 1.5])
def test_impossible_workers_is_refused_before_any_file(tmp_path, workers):
    spec = DatasetSpec(task="maze/grid", n=2, difficulties=("3x3",), num_frames=5, task_config={"cell_px": 8})
    with pytest.raises(UserError, match="--workers"):
        make_dataset(spec, tmp_path / "d", workers=workers, progress=False)
    assert not (tmp_path / "d").exists()
