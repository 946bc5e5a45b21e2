"""The trainers before and after a change, side by side: embedded-model training steps/s
and LoRA training samples/s of an older commit's genreason and of this checkout's.

Each side is its own process (``trainer_driver.py`` on the revision's source packages,
unpacked whole by ``revisions.tree_at``, or on this checkout's), so the two never share a
module and the older trainer runs on its own helpers; the bench alternates between them
measurement by measurement (old, new, then new, old, ...) so a drift in the machine's
speed hits both, for one uncounted warm-up round and ``--rounds`` counted ones.

Both sides do the same work. Embedded: ``--embedded-steps`` steps of a run from
``configs/embedded_maze.yaml`` (batch 32, 8 frames of 32x32; one loss row per step), each
side given the config in the names its version knows; steps/s seen from outside (first to
last loss row) and by the trainer's own timer, which counts differently in the two versions. LoRA: ``bench/bench_lora.py``'s everything-cached run (tiny random-weight Wan 2.1
I2V, built once and read by both), samples/s over the training loop. The loss rows of the
two sides are compared: a difference is reported in the section.

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
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_lora import MODES  # noqa: E402
from referee_before_after import Side  # noqa: E402
from report import table, write_section  # noqa: E402
from revisions import ROOT, PACKAGES, commit_of, describe_head, tree_at  # noqa: E402

DRIVER = Path(__file__).resolve().parent / "trainer_driver.py"
SIDES = ("old", "new")
#: The figures of the table: name -> (kind of run, how it is read from the driver's answer).
FIGURES = {
    "embedded steps/s, seen from outside": ("embedded", lambda a, steps, batch: (steps - 1) / a["rows_seconds"]),
    "embedded steps/s, the trainer's own timer": ("embedded", lambda a, steps, batch: steps / a["train_seconds"]),
    "embedded run, wall s": ("embedded", lambda a, steps, batch: a["wall"]),
    "embedded run, CPU s": ("embedded", lambda a, steps, batch: a["cpu"]),
    "LoRA samples/s": ("lora", lambda a, steps, batch: steps * batch / a["loop_seconds"]),
    "LoRA run, wall s": ("lora", lambda a, steps, batch: a["wall"]),
    "LoRA run, CPU s": ("lora", lambda a, steps, batch: a["cpu"]),
}
LORA_BATCH, LORA_SIZE, LORA_FRAMES = 4, 32, 9


def embedded_settings(config: Path, overrides: dict | None = None) -> tuple[dict, dict]:
    """The embedded run's settings in today's names (``config`` with one loss row per step,
    then ``overrides``) and today's map of older names to these (``TrainingConfig.RENAMED``)."""
    from gen_reason.config import read_yaml, rename_keys
    from gen_reason.train.embedded import EmbeddedTrainConfig

    settings = {**rename_keys(EmbeddedTrainConfig, read_yaml(config), warn=False), "log_every": 1, **(overrides or {})}
    return settings, dict(EmbeddedTrainConfig.RENAMED)


def measure(ref: str, rounds: int, embedded_steps: int, lora_steps: int, folder: Path,
            overrides: dict | None = None) -> dict:
    """Run both sides: ``{"figures": {figure: {side: [per counted round]}}, "same": {kind:
    [bool per round, warm-up included]}, "differences": [text], "missing": {side: [settings]},
    "ready": {side: driver's first line}}``. ``lora_steps`` 0 leaves LoRA out."""
    from gen_reason.datasets import DatasetSpec, make_dataset
    from gen_reason.models import testing

    old_commit = commit_of(ref)  # an unknown revision ends the bench before anything is built
    settings, renamed = embedded_settings(ROOT / "configs" / "embedded_maze.yaml", overrides)
    kinds = ("embedded", "lora") if lora_steps else ("embedded",)
    requests = {"embedded": dict(kind="embedded", steps=embedded_steps, settings=settings, renamed=renamed)}
    if lora_steps:
        data = make_dataset(DatasetSpec(task="maze/grid", n=16, num_frames=LORA_FRAMES, task_config={"cell_px": 4}),
                            folder / "data", workers=1, progress=False)
        model = testing.save_tiny_pipeline("wan2.1-i2v", folder / "wan")
        requests["lora"] = dict(kind="lora", model=str(model), data=str(data), steps=lora_steps, batch=LORA_BATCH,
                                size=LORA_SIZE, frames=LORA_FRAMES, options=MODES["everything cached"])
    roots = {"old": tree_at(old_commit, folder / "old-source", PACKAGES), "new": ROOT}
    sides = {name: Side(name, roots[name], DRIVER) for name in SIDES}
    result = {"figures": {f: {s: [] for s in SIDES} for f, (kind, _) in FIGURES.items() if kind in kinds},
              "same": {kind: [] for kind in kinds}, "differences": [], "missing": {},
              "ready": {name: side.ready for name, side in sides.items()}}
    try:
        for round_ in range(-1, rounds):  # round -1 warms up (imports, first allocations): not counted
            for kind in kinds:
                answers = {}
                for name in SIDES if round_ % 2 == 0 else SIDES[::-1]:
                    answer = sides[name].ask({**requests[kind], "id": f"{kind}-{name}-{round_}",
                                              "out": str(folder / f"{kind}-{name}-{round_}")})
                    if "error" in answer:
                        raise SystemExit(f"the {name} side failed on the {kind} run: {answer['error']}")
                    if kind == "embedded" and answer["rows_seen"] != embedded_steps:
                        raise SystemExit(f"the {name} side's embedded run wrote {answer['rows_seen']} loss rows, "
                                         f"not one per step ({embedded_steps})")
                    answers[name] = answer
                    result["missing"].setdefault(name, answer.get("not_in_this_version", []))
                same = answers["old"]["losses"] == answers["new"]["losses"]
                result["same"][kind].append(same)
                if not same:
                    result["differences"].append(f"{kind}, round {round_}: old {answers['old']['losses']}, "
                                                 f"new {answers['new']['losses']}")
                steps = requests[kind]["steps"]
                print(round_, kind, {name: {f: round(read(a, steps, LORA_BATCH), 3) for f, (k, read) in FIGURES.items()
                                            if k == kind} for name, a in answers.items()}, "losses equal:", same,
                      flush=True)
                if round_ < 0:
                    continue
                for figure, (k, read) in FIGURES.items():
                    if k == kind:
                        for name, answer in answers.items():
                            result["figures"][figure][name].append(read(answer, steps, LORA_BATCH))
    finally:
        for side in sides.values():
            side.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", default="33cb1d8", help="git revision of the older trainers")
    parser.add_argument("--rounds", type=int, default=3, help="old/new pairs of each measurement")
    parser.add_argument("--embedded-steps", type=int, default=4)
    parser.add_argument("--lora-steps", type=int, default=30)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = parser.parse_args()
    if args.rounds < 1 or args.embedded_steps < 2 or args.lora_steps < 1:
        raise SystemExit("--rounds and --lora-steps must be >= 1, --embedded-steps >= 2")

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args.ref, args.rounds, args.embedded_steps, args.lora_steps, Path(tmp))
    load = f"{load} at the start, " + ", ".join(f"{x:.1f}" for x in os.getloadavg()) + " at the end"

    rows = []
    for figure, by_side in result["figures"].items():
        old, new = (statistics.median(by_side[s]) for s in SIDES)
        ratios = [n / o for o, n in zip(by_side["old"], by_side["new"])]
        rows.append([figure, f"{old:.3f}", f"{new:.3f}", f"{statistics.median(ratios):.2f}x",
                     ", ".join(f"{r:.2f}" for r in ratios)])
    checks = []
    for kind, what in (("embedded", "embedded run's loss rows (one per step)"), ("lora", "LoRA run's loss rows")):
        same = result["same"][kind]
        checks.append(f"the {what}: {'equal' if all(same) else '**differ**'} in {sum(same)} of {len(same)} "
                      "rounds (warm-up included)")
    missing = {s: result["missing"].get(s) or [] for s in SIDES}
    body = (
        f"Commit `{args.ref}`'s genreason (old: the two trainers before the one training loop) against "
        f"{describe_head()} (new), each side in its own process (`bench/trainer_driver.py` on that revision's "
        f"source packages), alternating run by run (old, new / new, old), {args.rounds} rounds after one uncounted "
        f"warm-up round. Embedded: {args.embedded_steps} steps from configs/embedded_maze.yaml (batch 32, 8 frames "
        "of 32x32) with one loss row per step, each side given the config in the names its version knows"
        + (f" (settings the old version does not have, left at its default: {', '.join(missing['old'])})"
           if missing["old"] else "")
        + f". Embedded steps/s seen from outside: steps 2 to {args.embedded_steps} over the seconds from the first "
        "loss row to the last, as the side's driver sees them appear in losses.jsonl (the same measure for both "
        "versions: each step, its batch, its row). The trainer's own timer counts differently in the two versions: "
        "old, the step alone (its batch was taken from the data worker before the timer started); new, the step "
        "and taking its batch (the one loop times `_step`, which asks for the batch), so that row compares "
        "different things. LoRA: bench/bench_lora.py's everything-cached run, "
        f"{args.lora_steps} steps of batch {LORA_BATCH}, samples/s over the training loop. Wall s and CPU s: the "
        "whole trainer call (set-up included); CPU s is the side's process plus its children that ended (the "
        "embedded data worker), less sensitive than wall time to other work on the machine; lower is better. "
        f"Medians; the ratio is new / old, pair by pair. Load average (1, 5, 15 min): {load}.\n\n"
        + table(["figure", "old (median)", "new (median)", "new / old (median)", "per round"], rows)
        + "\n\nSame computation: " + "; ".join(checks) + ". The per-round ratios show the machine's noise: a "
        "difference smaller than their spread is not a difference."
        + ("\n\nDifferences:\n\n" + "\n".join(f"- {d[:400]}" for d in result["differences"])
           if result["differences"] else "")
    )
    print(body)
    if not args.no_write:
        command = "python bench/bench_trainer.py" + "".join(f" {a}" for a in sys.argv[1:])
        print("wrote", write_section("trainer", "One training loop: the trainers before and after", body, command))


if __name__ == "__main__":
    main()
