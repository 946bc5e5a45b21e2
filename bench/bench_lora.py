"""LoRA training throughput (samples/s) with and without the encode-once conditioning cache.

Trains the same run three ways side by side on a tiny random-weight Wan 2.1 I2V (built
in-process, as the tests do) and a maze/grid dataset: everything cached (prompt
embeddings, image conditioning, video latents), only conditioning cached (the VAE
encodes each batch's videos), nothing cached (text encoder, CLIP and VAE on every
batch). The losses of the three runs are identical; only the time differs.

    python bench/bench_lora.py               # writes the "lora" section of docs/BENCHMARKS.md
    python bench/bench_lora.py --steps 40 --size 32 --no-write
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP threads spin on a busy CPU

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import table, write_section  # noqa: E402

MODES = {
    "everything cached": dict(cache_conditioning=True, cache_latents=True),
    "conditioning cached, latents not": dict(cache_conditioning=True, cache_latents=False),
    "nothing cached": dict(cache_conditioning=False, cache_latents=False),
}


def run(mode: dict, model: Path, data: Path, out: Path, steps: int, batch: int, size: int, frames: int) -> dict:
    """One training run; the loop's samples/s (from losses.jsonl) and the one-off encode time."""
    from gen_reason.train.lora import train_lora
    from gen_reason.train.lora_config import load_lora_config

    config = load_lora_config(None, dict(model=str(model), data=str(data), output_dir=str(out), rank=8,
                                         max_steps=steps, batch_size=batch, height=size, width=size,
                                         num_frames=frames, checkpoint_every=0, **mode))
    started = time.perf_counter()
    train_lora(config, progress=False)
    total = time.perf_counter() - started
    rows = [json.loads(line) for line in (out / "losses.jsonl").read_text().splitlines()]
    loop = rows[-1]["seconds"]
    return {"samples_per_s": steps * batch / loop, "loop_s": loop, "total_s": total,
            "final_loss": rows[-1]["loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per run")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--n", type=int, default=16, help="dataset size")
    parser.add_argument("--size", type=int, default=32, help="training height and width (px)")
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = parser.parse_args()

    import torch

    from gen_reason.datasets import DatasetSpec, make_dataset
    from gen_reason.models import testing

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = make_dataset(DatasetSpec(task="maze/grid", n=args.n, num_frames=args.frames,
                                        task_config={"cell_px": 4}), root / "data", workers=1, progress=False)
        model = testing.save_tiny_pipeline("wan2.1-i2v", root / "wan")
        results = {}
        for name, mode in MODES.items():
            results[name] = run(mode, model, data, root / name.replace(" ", "-").replace(",", ""), args.steps,
                                args.batch, args.size, args.frames)
            print(name, results[name], flush=True)

    reference = results["nothing cached"]["samples_per_s"]
    rows = [[name, f"{r['samples_per_s']:.1f}", f"{r['samples_per_s'] / reference:.2f}x", f"{r['loop_s']:.2f}",
             f"{r['total_s']:.2f}", f"{r['final_loss']:.4f}"] for name, r in results.items()]
    body = (
        f"Tiny random-weight Wan 2.1 I2V (gen_reason.models.testing; UMT5 text encoder at 512 tokens, CLIP image "
        f"encoder, Wan VAE), LoRA rank 8, {args.steps} optimizer steps of batch {args.batch}, {args.frames} frames of "
        f"{args.size}x{args.size}, a {args.n}-puzzle maze/grid dataset. Throughput is over the training loop; "
        "\"total\" adds loading the model and, when cached, encoding the dataset once. Equal final losses show the "
        "cache changes the time only.\n\n"
        + table(["conditioning", "samples/s", "vs nothing cached", "loop s", "total s", "final loss"], rows)
        + "\n\nThe transformer here is tiny, so the encoders dominate and the ratio overstates what a real model "
        "gains, where the transformer step dominates; what carries over is the time saved per sample and epoch "
        "(one text, image and video encode each)."
    )
    print(body)
    if not args.no_write:
        command = "python bench/bench_lora.py" + "".join(f" {a}" for a in sys.argv[1:])
        print("wrote", write_section("lora", "LoRA training throughput: encode-once conditioning cache", body,
                                     command))


if __name__ == "__main__":
    main()
