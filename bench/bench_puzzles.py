"""Puzzle generation throughput: instances/s per task, with and without the solution
video, and the wall time of a 1,000-instance maze/grid medium dataset with videos, with
the encoder settings that make datasets byte-identical beside the old ones.

    python bench/bench_puzzles.py            # writes the "puzzles" section of docs/BENCHMARKS.md

The dataset is written twice with each encoder setting, interleaved (pinned, old,
pinned, old) so that machine load hits both alike; the table gives both wall times and
how many files of the second run differ from the first. "Pinned" is what
``gen_reason.video.write_mp4`` does (x264 held to its AVX2 code on a CPU with AVX-512,
see its docstring); "old" lets x264 pick its own code, as before.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import table, write_section  # noqa: E402

import gen_reason.video as video  # noqa: E402
from gen_reason.datasets import DatasetSpec, make_dataset  # noqa: E402
from gen_reason.puzzles import TASKS, get_task  # noqa: E402


def rate(fn, n: int) -> float:
    """Calls per second of ``fn(i)`` over ``n`` calls."""
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=40, help="instances per task and mode")
    parser.add_argument("--dataset-n", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    rows = []
    for name in TASKS.names():
        task = get_task(name)
        for difficulty in ("easy", "medium"):
            only = rate(lambda i: task.generate(i, difficulty), args.n)
            with_video = rate(lambda i: task.generate(i, difficulty).solution_video(49), args.n)
            rows.append([name, difficulty, f"{only:.0f}", f"{with_video:.1f}"])
            print(rows[-1], flush=True)

    pinned = video.x264_params()
    settings = {"pinned": video.x264_params, "old": lambda: None}
    spec = DatasetSpec(task="maze/grid", n=args.dataset_n, difficulties=("medium",), num_frames=49)
    seconds: dict[str, list[float]] = {name: [] for name in settings}
    differ: dict[str, int] = {}
    tmp = Path(tempfile.mkdtemp())
    try:
        for run in range(2):
            for name, params in settings.items():
                video.x264_params = params  # write_mp4 looks it up at each call; workers fork after this
                start = time.perf_counter()
                make_dataset(spec, tmp / f"{name}{run}", workers=args.workers, progress=False)
                seconds[name].append(time.perf_counter() - start)
                print(f"dataset, {name} x264 settings, run {run + 1}: {seconds[name][-1]:.1f} s", flush=True)
        for name in settings:
            first, second = _digests(tmp / f"{name}0"), _digests(tmp / f"{name}1")
            differ[name] = sum(first[f] != second.get(f) for f in first)
            files = len(first)
    finally:
        video.x264_params = settings["pinned"]
        shutil.rmtree(tmp, ignore_errors=True)
    dataset_rows = [
        [label, code, f"{seconds[name][0]:.1f}", f"{seconds[name][1]:.1f}",
         f"{args.dataset_n / min(seconds[name]):.0f}", f"{differ[name]} of {files}"]
        for name, label, code in (
            ("pinned", "pinned (now)", f"`{pinned}`" if pinned else "x264's own (no AVX-512 here)"),
            ("old", "old", "x264's own choice (AVX-512 where the CPU has it)"))
    ]

    body = (
        "Instances per second on one process (`generate` only, and `generate` + a 49-frame "
        "ground-truth video in memory):\n\n"
        + table(["task", "difficulty", "instances/s", "with 49-frame video /s"], rows)
        + f"\n\n`genreason make-dataset --task maze/grid --n {args.dataset_n} --difficulty medium` "
        f"(49-frame H.264 videos + PNGs + metadata, {args.workers} worker processes), written twice with "
        "each encoder setting, interleaved; the last column counts the files of the second run whose bytes "
        "differ from the first:\n\n"
        + table(["x264 settings", "x264 code", "run 1 (s)", "run 2 (s)", "instances/s (faster run)",
                 "files differing between the runs"], dataset_rows)
    )
    write_section("puzzles", "Puzzle generation throughput", body)


def _digests(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file()}


if __name__ == "__main__":
    main()
