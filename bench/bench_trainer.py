"""The trainers before and after a change, side by side: embedded-model training steps/s
and LoRA training samples/s, the older commit's trainer and the current one alternating
(old, new, old, new, ...) in one process so a drift in the machine's speed hits both.

The older trainer is ``gen_reason/train/<module>.py`` at REF imported as a temporary module
(``revisions.module_at``: it runs on the current helpers it imports). Embedded: a run from
``configs/embedded_maze.yaml`` (batch 32, 8 frames of 32x32), ``--embedded-steps`` steps,
steps/s over the trainer's own step time. LoRA: ``bench/bench_lora.py``'s everything-cached
run (tiny random-weight Wan 2.1 I2V), samples/s over the training loop.

    python bench/bench_trainer.py --ref 33cb1d8          # writes the "trainer" section of docs/BENCHMARKS.md
    python bench/bench_trainer.py --rounds 1 --no-write
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP threads spin on a busy CPU

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import table, write_section  # noqa: E402
from revisions import module_at  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def embedded_steps_per_s(trainer, out: Path, steps: int) -> tuple[float, float]:
    """Steps/s of ``steps`` training steps from configs/embedded_maze.yaml (the trainer's own step time),
    and this process's CPU seconds for the whole call (set-up included; the data worker's not)."""
    config = trainer.EmbeddedTrainConfig.from_yaml(ROOT / "configs" / "embedded_maze.yaml")
    cpu = time.process_time()
    result = trainer.train_embedded(config, out, progress=False, validate=False, stop_after_steps=steps)
    return steps / result["train_seconds"], time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", default="33cb1d8", help="git revision of the older trainers")
    parser.add_argument("--rounds", type=int, default=3, help="old/new pairs of each measurement")
    parser.add_argument("--embedded-steps", type=int, default=4)
    parser.add_argument("--lora-steps", type=int, default=30)
    parser.add_argument("--version", choices=("both", "old", "new"), default="both",
                        help="run one version only (to time whole processes from outside; implies --no-write)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = parser.parse_args()
    versions = ("old", "new") if args.version == "both" else (args.version,)

    import torch

    from bench_lora import MODES, run
    from gen_reason.datasets import DatasetSpec, make_dataset
    from gen_reason.models import testing
    from gen_reason.train import embedded, lora

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    figures: dict[str, dict[str, list[float]]] = {
        what: {"old": [], "new": []}
        for what in ("embedded steps/s", "embedded run, CPU s", "LoRA samples/s", "LoRA run, CPU s")}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        trainers = {"new": (embedded, lora)}
        if "old" in versions:
            trainers["old"] = (module_at(args.ref, "gen_reason/train/embedded.py", root),
                               module_at(args.ref, "gen_reason/train/lora.py", root))
        data = make_dataset(DatasetSpec(task="maze/grid", n=16, num_frames=9, task_config={"cell_px": 4}),
                            root / "data", workers=1, progress=False)
        model = testing.save_tiny_pipeline("wan2.1-i2v", root / "wan")
        for round_ in range(-1, args.rounds):  # round -1 warms up (imports, first allocations): not counted
            for name in versions if round_ % 2 == 0 else versions[::-1]:
                embedded_trainer, lora_trainer = trainers[name]
                rate, embedded_cpu = embedded_steps_per_s(embedded_trainer, root / f"e-{name}-{round_}",
                                                          args.embedded_steps)
                cpu = time.process_time()
                result = run(MODES["everything cached"], model, data, root / f"l-{name}-{round_}", args.lora_steps,
                             4, 32, 9, trainer=lora_trainer)
                lora_cpu = time.process_time() - cpu
                if round_ < 0:
                    continue
                for what, value in (("embedded steps/s", rate), ("embedded run, CPU s", embedded_cpu),
                                    ("LoRA samples/s", result["samples_per_s"]), ("LoRA run, CPU s", lora_cpu)):
                    figures[what][name].append(value)
                print(round_, name, f"embedded {rate:.3f} steps/s, LoRA {result['samples_per_s']:.2f} samples/s",
                      flush=True)

    if args.version != "both":
        return
    rows = []
    for what, by_version in figures.items():
        old, new = (statistics.median(by_version[v]) for v in ("old", "new"))
        ratios = [n / o for o, n in zip(by_version["old"], by_version["new"])]
        rows.append([what, f"{old:.3f}", f"{new:.3f}", f"{statistics.median(ratios):.2f}x",
                     ", ".join(f"{r:.2f}" for r in ratios)])
    body = (
        f"The trainers of commit `{args.ref}` (two trainers, each with its own loop) against the current ones (one "
        f"loop, gen_reason/train/loop.py), alternating in one process, {args.rounds} rounds after one uncounted "
        "warm-up round. Embedded: "
        f"{args.embedded_steps} steps from configs/embedded_maze.yaml (batch 32, 8 frames of 32x32), over the "
        f"trainer's step time. LoRA: bench/bench_lora.py's everything-cached run, {args.lora_steps} steps of batch 4, "
        "over the training loop. CPU s: this process's CPU time for the whole run (set-up included), less "
        "sensitive than wall time to other work on the machine; lower is better. Medians; the ratio is new / old, "
        "pair by pair.\n\n"
        + table(["figure", "old (median)", "new (median)", "new / old (median)", "per round"], rows)
        + "\n\nThe per-round ratios show the machine's noise: a difference smaller than their spread is not a "
        "difference. The loop adds no work per step (the embedded run's weights are bit-identical: "
        "tests/train/check_same_weights.py)."
    )
    print(body)
    if not args.no_write:
        command = "python bench/bench_trainer.py" + "".join(f" {a}" for a in sys.argv[1:])
        print("wrote", write_section("trainer", "One training loop: the trainers before and after", body, command))


if __name__ == "__main__":
    main()
