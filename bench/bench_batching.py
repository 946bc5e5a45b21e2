"""Batched generation of N seeds in one call vs N sequential single-seed calls, side by side,
on the embedded model (issue: batched at least 1.8x faster for N = 8).

    python bench/bench_batching.py            # writes the "batching" section of docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import table, write_section  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=8, help="seeds")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="embedded")
    args = parser.parse_args()

    import numpy as np
    import torch

    from gen_reason.models.loading import load_generator, model_task_defaults, resolve_model_path, task_config_for
    from gen_reason.puzzles import get_task

    torch.set_num_threads(os.cpu_count() or 1)
    generator = load_generator(args.model, max_batch=args.n)
    defaults = model_task_defaults(resolve_model_path(args.model))
    difficulty = defaults.get("difficulty", "5x5")
    instance = get_task("maze/grid", **task_config_for(defaults, difficulty)).generate(1_000_000, difficulty)
    seeds = list(range(args.n))
    generator.generate(instance.first_frame, instance.prompt, seeds=seeds[:2])  # warm up

    batched, sequential = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        together = generator.generate(instance.first_frame, instance.prompt, seeds=seeds)
        batched.append(time.perf_counter() - start)
        start = time.perf_counter()
        alone = [generator.generate(instance.first_frame, instance.prompt, seeds=[s])[0] for s in seeds]
        sequential.append(time.perf_counter() - start)
    same = all(np.abs(a.astype(int) - b.astype(int)).max() <= 1 for a, b in zip(together, alone))
    b, s = min(batched), min(sequential)
    rows = [[f"{args.n} seeds, one batched call", f"{b:.2f}", f"{b / args.n:.3f}"],
            [f"{args.n} sequential single-seed calls", f"{s:.2f}", f"{s / args.n:.3f}"]]
    body = (table(["mode", "seconds (best of %d)" % args.repeats, "s / video"], rows)
            + f"\n\nBatched is **{s / b:.2f}x** faster. Every video is the same either way "
            f"(max difference {'<= 1 grey level' if same else '> 1 grey level: CHECK'}), because each sample "
            "has its own generator. Model: `" + str(resolve_model_path(args.model).name) + "`, "
            f"{len(together[0])} frames, default sampling steps.")
    print(body)
    write_section("batching", "Batched vs sequential generation (embedded model)", body)


if __name__ == "__main__":
    main()
