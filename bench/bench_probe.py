"""The step probe's overhead on the embedded model: generation with the probe on vs off, side by side.

Four settings, run interleaved (off, on, off, on, ...) so machine load hits them alike,
each on the same puzzles and seeds; the median wall time of each:

- ``off``: plain ``generate``.
- ``probe, x0 every 4th step``: the step probe keeps x0 every 4th step (and the last) and
  every kept x0 is decoded to frames at the puzzle's size (the issue's target: <= 1.3x).
- ``probe, x0 every step``: the same, every step.
- ``probe every 4th + layer hooks``: plus forward hooks on the default layers (pooled
  features kept every 4th step).

The referee's time per decoded video is reported beside it (scoring is analysis, not
probe overhead: it depends on the referee, not the model).

    python bench/bench_probe.py                 # writes the "probe" section of docs/BENCHMARKS.md

Without the trained embedded weights (gen_reason/assets/embedded) the same architecture
is built with random weights from configs/embedded_maze.yaml: the compute per step, and so
the overhead ratio, do not depend on the weights.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads distort CPU timings

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import table, write_section  # noqa: E402

import torch  # noqa: E402

from gen_reason.errors import UserError  # noqa: E402
from gen_reason.probe.layers import LayerRecorder  # noqa: E402
from gen_reason.probe.steps import StepProbe, chain_hooks, decode_steps, pins_first_frame  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def load_embedded(steps: int):
    """The shipped embedded model, or (when absent) its architecture with random weights; and a label."""
    from gen_reason.models.loading import load_generator

    try:
        return load_generator("embedded", steps=steps, num_frames=49), "trained embedded model"
    except UserError:
        import yaml

        from gen_reason.models import DiffusersVideoGenerator
        from gen_reason.models.embedded import EmbeddedVideoPipeline
        from gen_reason.models.embedded_parts import make_scheduler, make_unet

        config = yaml.safe_load((REPO / "configs" / "embedded_maze.yaml").read_text())
        torch.manual_seed(0)
        unet = make_unet(num_frames=config["num_frames"], resolution=config["resolution"],
                         block_out_channels=config["block_out_channels"], layers_per_block=config["layers_per_block"],
                         attention_levels=config["attention_levels"], attention_head_dim=config["attention_head_dim"],
                         norm_num_groups=config["norm_num_groups"])
        pipe = EmbeddedVideoPipeline(unet, make_scheduler(config["num_train_timesteps"]))
        generator = DiffusersVideoGenerator(pipe, EmbeddedVideoPipeline.genreason_family, name="embedded-random",
                                            steps=steps, num_frames=config["num_frames"])
        return generator, "embedded architecture, random weights (trained weights not yet in gen_reason/assets)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--puzzles", type=int, default=2, help="puzzles per repetition")
    parser.add_argument("--seeds", type=int, default=8, help="seeds per puzzle (one batched call)")
    parser.add_argument("--steps", type=int, default=50, help="denoising steps")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions of every setting")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    from gen_reason.train.data import maze_instance
    from gen_reason.verifiers.registry import verifier_for

    generator, label = load_embedded(args.steps)
    puzzles = [maze_instance(5, 1_000_000 + i) for i in range(args.puzzles)]
    seeds = list(range(args.seeds))

    def run(every: int | None, layers: bool = False) -> float:
        started = time.perf_counter()
        for instance in puzzles:
            if every is None:
                generator.generate(instance.first_frame, instance.prompt, seeds=seeds)
                continue
            probe = StepProbe(every=every)
            recorder = LayerRecorder(generator, every=every) if layers else None
            hooks = chain_hooks(probe, recorder)
            if recorder is not None:
                with recorder:
                    finals = generator.generate(instance.first_frame, instance.prompt, seeds=seeds, on_step=hooks)
            else:
                finals = generator.generate(instance.first_frame, instance.prompt, seeds=seeds, on_step=hooks)
            first = [video[0] for video in finals] if pins_first_frame(generator) else None
            decode_steps(generator, probe, instance.first_frame.shape[:2], first_frames=first)
        return time.perf_counter() - started

    settings = {
        "off": dict(every=None),
        "probe, x0 every 4th step": dict(every=4),
        "probe, x0 every step": dict(every=1),
        "probe every 4th + layer hooks": dict(every=4, layers=True),
    }
    run(None)  # warm-up: first-call allocations and lazy imports
    times: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(args.repeats):
        for name, options in settings.items():
            times[name].append(run(**options))
    medians = {name: statistics.median(values) for name, values in times.items()}

    # The referee on decoded x0 videos (for scale; not probe overhead).
    referee = verifier_for(puzzles[0].task, "reference")
    probe = StepProbe(every=4)
    finals = generator.generate(puzzles[0].first_frame, puzzles[0].prompt, seeds=seeds[:2], on_step=probe)
    videos = decode_steps(generator, probe, puzzles[0].first_frame.shape[:2], first_frames=[v[0] for v in finals])
    started = time.perf_counter()
    count = 0
    for by_step in videos:
        for video in by_step.values():
            referee.score(puzzles[0], video)
            count += 1
    score_seconds = (time.perf_counter() - started) / count

    load = os.getloadavg()[0]
    per_video = args.puzzles * args.seeds
    rows = [[name, f"{medians[name]:.2f}", f"{1000 * medians[name] / per_video:.0f}",
             f"{medians[name] / medians['off']:.2f}x"] for name in settings]
    ratio = medians["probe, x0 every 4th step"] / medians["off"]
    body = "\n".join([
        f"Model: {label}; {args.steps} DDIM steps, {generator.default_num_frames} frames at "
        f"{generator.pipeline.resolution}x{generator.pipeline.resolution} px; {args.puzzles} 5x5 mazes x "
        f"{args.seeds} seeds per repetition (one batched call per maze, max_batch {generator.max_batch}); "
        f"median of {args.repeats} interleaved repetitions, {args.threads} torch threads; load average "
        f"{load:.1f} on {os.cpu_count()} cores at the end (above the core count, other jobs shared the CPU and "
        f"the ratios carry about +-0.1 of noise).",
        "",
        table(["setting", "seconds", "ms per video", "vs off"], rows),
        "",
        f"Probe overhead with x0 decoded every 4th step: **{ratio:.2f}x** (target <= 1.3x). "
        f"The referee scores one decoded x0 video in {1000 * score_seconds:.0f} ms "
        f"(analysis time, not included above: a full probe scores "
        f"{len(probe.recorded_steps)} x0 videos per sample at every 4th of {args.steps} steps).",
    ])
    print(body)
    if not args.no_write:
        command = "python bench/bench_probe.py" + "".join(
            f" --{k.replace('_', '-')} {v}" for k, v in vars(args).items()
            if k != "no_write" and v != parser.get_default(k))
        print("wrote", write_section("probe", "Chain-of-steps probe overhead", body, command=command))


if __name__ == "__main__":
    main()
