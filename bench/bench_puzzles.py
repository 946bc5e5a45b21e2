"""Puzzle generation throughput: instances/s per task, with and without the solution
video, and the wall time of a 1,000-instance maze/grid medium dataset with videos.

    python bench/bench_puzzles.py            # writes the "puzzles" section of docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import table, write_section  # noqa: E402

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

    tmp = Path(tempfile.mkdtemp())
    try:
        spec = DatasetSpec(task="maze/grid", n=args.dataset_n, difficulties=("medium",), num_frames=49)
        start = time.perf_counter()
        make_dataset(spec, tmp / "ds", workers=args.workers, progress=False)
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"dataset: {seconds:.1f} s", flush=True)

    body = (
        "Instances per second on one process (`generate` only, and `generate` + a 49-frame "
        "ground-truth video in memory):\n\n"
        + table(["task", "difficulty", "instances/s", "with 49-frame video /s"], rows)
        + f"\n\n`genreason make-dataset --task maze/grid --n {args.dataset_n} --difficulty medium` "
        f"(49-frame H.264 videos + PNGs + metadata, {args.workers} worker processes): "
        f"**{seconds:.1f} s** ({args.dataset_n / seconds:.0f} instances/s)."
    )
    write_section("puzzles", "Puzzle generation throughput", body)


if __name__ == "__main__":
    main()
