"""LoRA fine-tuning of the embedded model on a maze size it was not trained on: before/after.

The shipped embedded model was trained on 3x3-5x5 mazes. This script makes a dataset of
larger mazes in the model's own style (``genreason make-dataset`` with the model's
``genreason.json`` settings; puzzle seeds below 10**6), trains a LoRA on the UNet with
``genreason train lora`` (the same trainer as for Wan), and scores held-out puzzles (seeds
from 10**6 up) before and after with the project referee: strict success (the rule
verifier's verdict), best-of-k chosen by the rule verifier, and EM. The held-out in-
distribution size (5x5 by default) is scored too, to show what the adapter costs there.
Every step resumes: the dataset and the LoRA run are resumable, and per-video results are
appended to ``--out/results.jsonl``. The section "lora-embedded" of docs/BENCHMARKS.md
is written with the command.

    python bench/lora_embedded.py --size 6 --train-n 1024 --lora-steps 600 --count 100 --samples 4
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP threads spin on a busy CPU

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_embedded import load_done, resolve_sampler, run_jobs, summarise  # noqa: E402
from report import table, write_section  # noqa: E402

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "gen_reason" / "assets" / "embedded"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="embedded pipeline folder")
    parser.add_argument("--size", type=int, default=6, help="rooms per side of the new maze size")
    parser.add_argument("--keep-size", type=int, default=5, help="a trained size also scored (0: none)")
    parser.add_argument("--train-n", type=int, default=1024, help="training puzzles (seeds 0..n-1)")
    parser.add_argument("--lora-steps", type=int, default=600)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--count", type=int, default=100, help="held-out puzzles per size")
    parser.add_argument("--samples", type=int, default=4, help="videos per puzzle (sample seeds 0..k-1)")
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the model's default_steps)")
    parser.add_argument("--eta", type=float, default=None, help="DDIM eta (default: the model's default_eta)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/lora-embedded")
    parser.add_argument("--no-write", dest="benchmarks", action="store_false",
                        help="do not write the section into docs/BENCHMARKS.md")
    args = parser.parse_args(argv)

    import torch

    from gen_reason.datasets import DatasetSpec, make_dataset
    from gen_reason.models.embedded import EmbeddedVideoPipeline
    from gen_reason.models.loading import model_task_defaults, task_config_for
    from gen_reason.train.data import held_out_instances
    from gen_reason.train.lora import load_lora_config, train_lora
    from gen_reason.verifiers.maze import MazeReferenceVerifier

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    defaults = model_task_defaults(args.model)
    frames = int(defaults["num_frames"])
    difficulty = f"{args.size}x{args.size}"

    began = time.time()
    data = make_dataset(DatasetSpec(task="maze/grid", n=args.train_n, difficulties=(difficulty,), seed=0,
                                    num_frames=frames, task_config=task_config_for(defaults, difficulty), lossless=True),
                        out / "data", progress=True)
    data_seconds = time.time() - began
    began = time.time()
    config = load_lora_config(None, dict(model=str(args.model), data=str(data), output_dir=str(out / "lora"),
                                         rank=args.rank, max_steps=args.lora_steps, batch_size=args.batch,
                                         learning_rate=args.lr, lr_scheduler="cosine", warmup_steps=20,
                                         checkpoint_every=100, validate_every=0, seed=0))
    lora = train_lora(config, progress=True)
    train_seconds = time.time() - began

    verifier = MazeReferenceVerifier()
    results: dict[str, dict] = {}
    sizes = [args.size] + ([args.keep_size] if args.keep_size else [])
    for label in ("before", "after"):
        pipe = EmbeddedVideoPipeline.from_pretrained(args.model)
        pipe.set_progress_bar_config(disable=True)
        resolve_sampler(pipe, args)  # the base model's sampler, for both runs
        if label == "after":
            pipe.load_lora_weights(lora)
        path = out / f"results_{label}.jsonl"
        done = load_done(path)
        for rooms in sizes:
            instances = held_out_instances(rooms, args.count, pipe.resolution)
            jobs = [(inst, seed) for inst in instances for seed in range(args.samples)]
            print(f"{label}: {rooms}x{rooms}, {len(jobs)} videos", flush=True)
            run_jobs(pipe, jobs, args.steps, path, done, 64, verifier, args.eta)
            seeds = {i.seed for i in instances}
            rows = [r for r in done.values() if r["rooms"] == rooms and r["steps"] == args.steps
                    and r.get("eta", 0.0) == args.eta and r["puzzle_seed"] in seeds]
            results.setdefault(str(rooms), {})[label] = summarise(rows, args.samples)
    (out / "summary.json").write_text(json.dumps({"results": results, "args": vars(args),
                                                  "data_seconds": data_seconds, "train_seconds": train_seconds},
                                                 indent=2))

    rows = []
    for rooms in sizes:
        for label in ("before", "after"):
            s = results[str(rooms)][label]
            rows.append([f"{rooms}x{rooms}" + (" (new size)" if rooms == args.size else " (trained size)"), label,
                         s["puzzles"], f"{100 * s['single']:.1f} %", f"{100 * s['best_of']:.1f} %",
                         f"{s['pr']:.3f}", f"{s['em']:.3f}"])
    command = ("python bench/lora_embedded.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
        if k not in ("model", "benchmarks", "threads")))
    body = (
        f"LoRA (rank {args.rank}, on the UNet's attention and resnet convolutions, {args.lora_steps} steps of "
        f"batch {args.batch}, lr {args.lr:g} cosine) trained by `genreason train lora`'s trainer on "
        f"{args.train_n} {difficulty} mazes in the model's style (seeds 0..{args.train_n - 1}, {frames}-frame "
        f"ground-truth videos, lossless RGB H.264) in {train_seconds / 60:.1f} min (dataset {data_seconds:.0f} s). "
        f"Held-out puzzles (seeds from 10**6 up), {args.samples} videos each at {args.steps} DDIM steps (eta {args.eta:g}), "
        "judged by the project referee: single = strict success over all videos; best-of-k = the rule verifier "
        "picks among a puzzle's videos; PR/EM as VR-Bench defines them.\n\n"
        + table(["mazes", "model", "puzzles", "single", f"best-of-{args.samples}", "PR", "EM"], rows)
    )
    print(body)
    if args.benchmarks:
        write_section("lora-embedded", "LoRA fine-tuning of the embedded model on a new maze size (before / after)",
                      body, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
