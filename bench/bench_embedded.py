"""Time the embedded model solving one 5x5 maze, and a batch of 8 samples, on this machine's CPU.

Goes through the same backend as Wan (``DiffusersVideoGenerator.from_pretrained``), at
the model's default steps, with ``torch.set_num_threads(--threads)``. Targets on a
2-core laptop: one maze < 2 s, a batch of 8 < 5 s. Prints the medians and writes them
to ``--out`` (JSON), which ``bench/eval_embedded.py`` folds into docs/BENCHMARKS.md.

    python bench/bench_embedded.py --threads 2
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP threads spin on a busy CPU

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "gen_reason" / "assets" / "embedded"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the model's default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="runs/embedded-eval/speed.json")
    args = parser.parse_args(argv)

    import torch

    from gen_reason.models.diffusers_backend import DiffusersVideoGenerator
    from gen_reason.train.data import held_out_instances
    from gen_reason.verifiers.maze import MazeRuleVerifier

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    overrides = {} if args.steps is None else {"steps": args.steps}
    began = time.perf_counter()
    generator = DiffusersVideoGenerator.from_pretrained(args.model, max_batch=8, **overrides)
    load_seconds = time.perf_counter() - began
    generator.pipeline.set_progress_bar_config(disable=True)
    instances = held_out_instances(5, args.repeats + 1)
    verifier = MazeRuleVerifier()
    generator.generate(instances[-1].first_frame, instances[-1].prompt, seeds=[0])  # warm-up

    def timed(seeds) -> tuple[list[float], int]:
        times, solved = [], 0
        for instance in instances[: args.repeats]:
            start = time.perf_counter()
            videos = generator.generate(instance.first_frame, instance.prompt, seeds=seeds)
            times.append(time.perf_counter() - start)
            solved += any(verifier.score(instance, video).success for video in videos)
        return times, solved

    one, solved_one = timed([0])
    eight, solved_eight = timed(list(range(8)))
    result = {
        "model": args.model, "threads": args.threads, "steps": generator.options.steps,
        "num_frames": generator.default_num_frames, "load_seconds": round(load_seconds, 3),
        "one_maze_seconds": round(statistics.median(one), 3), "batch_of_8_seconds": round(statistics.median(eight), 3),
        "repeats": args.repeats, "solved_single": solved_one, "solved_best_of_8": solved_eight,
        "command": "python bench/bench_embedded.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    print(json.dumps(result, indent=2))
    print(f"one 5x5 maze: {result['one_maze_seconds']:.2f} s (target < 2 s); "
          f"batch of 8: {result['batch_of_8_seconds']:.2f} s (target < 5 s)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
