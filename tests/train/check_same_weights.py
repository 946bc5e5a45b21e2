"""Check that the embedded trainer's numbers did not move: train a few steps from
``configs/embedded_maze.yaml`` with the trainer of an older commit and with the current
one, and compare every tensor of the two checkpoints (weights, EMA, optimizer, torch's
random state; an older trainer's single checkpoint file and today's checkpoints/step-*/
alike) and the loss rows exactly.

    OMP_WAIT_POLICY=PASSIVE python tests/train/check_same_weights.py --ref 33cb1d8 --steps 3

The older genreason (default 33cb1d8, the trainer before the one training loop) is taken
whole from git (``bench/revisions.py``'s ``tree_at``), installed into a temporary folder
and run in a fresh interpreter, so it needs nothing of today's code. Exit status 0: bit-identical.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


#: Run in a fresh interpreter that imports the older genreason: train, and print its config's field names.
OLD_RUN = """
import dataclasses, json, sys
import yaml
from gen_reason.train.embedded import EmbeddedTrainConfig, train_embedded
settings, renamed, out, steps = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
fields = {f.name for f in dataclasses.fields(EmbeddedTrainConfig)}
older = {new: old for old, new in renamed.items() if new not in fields}  # the names that version used
# A setting that version did not have yet is left out: at its default it does what that version did.
with open(out + '.yaml', 'w') as fh:
    fh.write(yaml.safe_dump({older.get(k, k): v for k, v in settings.items() if older.get(k, k) in fields}))
train_embedded(EmbeddedTrainConfig.from_yaml(out + '.yaml'), out, progress=False, validate=False, stop_after_steps=steps)
print(json.dumps(sorted(fields)))
"""


def old_run(ref: str, folder: Path, settings: dict, renamed: dict, steps: int) -> tuple[Path, set[str]]:
    """Train with genreason as it was at git revision ``ref`` (its whole package, installed
    into ``folder`` from ``git archive``, run in a fresh interpreter); the run folder and
    that version's config fields."""
    sys.path.insert(0, str(ROOT / "bench"))
    from revisions import PACKAGES, tree_at  # the benches' reader of older revisions

    site, run = folder / "site", folder / "old"
    source = tree_at(ref, folder / "source", (*PACKAGES, "pyproject.toml", "README.md"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(source)], check=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", OLD_RUN, json.dumps(settings), json.dumps(renamed), str(run),
                           str(steps)], cwd=folder, env=env, check=True, capture_output=True, text=True)
    return run, set(json.loads(done.stdout.strip().splitlines()[-1]))


def flatten(prefix: str, obj, out: dict) -> dict:
    """Every tensor, array and scalar of a nested state under a dotted key."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            flatten(f"{prefix}.{key}", value, out)
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            flatten(f"{prefix}.{index}", value, out)
    else:
        out[prefix] = obj
    return out


def same(a, b) -> bool:
    """Exact equality of two leaves (tensors bit for bit, NaN equal to NaN)."""
    import numpy as np
    import torch

    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.reshape(-1).view(torch.uint8),
                                                                          b.reshape(-1).view(torch.uint8))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return a == b


def comparable(state: dict) -> dict:
    """What a checkpoint computed, the same keys whichever layout held it: the weights, EMA,
    optimizer, torch's random state, step and open loss window. Not the seconds, which no
    two runs share, nor Python's and NumPy's global random states: the trainer never seeds
    or draws from them (a checkpoint keeps them for code that might), so they are whatever
    the interpreter started with."""
    if "rng-0" in state:  # checkpoints/step-*/: each process's random states in one file
        state = {**state, "torch_rng": state["rng-0"]["torch"]}
    keys = ("config", "step", "unet", "ema", "optimizer", "torch_rng", "loss_window")
    return {key: state[key] for key in keys}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", default="33cb1d8", help="git revision of the older trainer")
    parser.add_argument("--config", default=str(ROOT / "configs" / "embedded_maze.yaml"))
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()

    import yaml

    from gen_reason.config import read_yaml, rename_keys
    from gen_reason.train import embedded as new

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # How often rows are written is a resumable change: one row per step here.
        settings = {**rename_keys(new.EmbeddedTrainConfig, read_yaml(args.config), warn=False), "log_every": 1}
        old_folder, old_fields = old_run(args.ref, tmp, settings, new.EmbeddedTrainConfig.RENAMED, args.steps)
        new_folder = tmp / "new"
        (tmp / "new.yaml").write_text(yaml.safe_dump(settings))
        new.train_embedded(new.EmbeddedTrainConfig.from_yaml(tmp / "new.yaml"), new_folder, progress=False,
                           validate=False, stop_after_steps=args.steps)
        # The config is the input, not a result: compared by today's names, over the fields both versions have.
        shared = set(rename_keys(new.EmbeddedTrainConfig, dict.fromkeys(old_fields), warn=False))
        states, logs = [], []
        for run in (old_folder, new_folder):
            state = comparable(new.checkpoint_state(run))  # either layout: one checkpoint.safetensors or checkpoints/
            state["config"] = {k: v for k, v in rename_keys(new.EmbeddedTrainConfig, state["config"], warn=False).items()
                               if k in shared}
            states.append(flatten("", state, {}))
            logs.append([{k: v for k, v in json.loads(line).items() if k != "train_minutes"}
                         for line in (run / "losses.jsonl").read_text().splitlines()])
    keys = sorted(set(states[0]) | set(states[1]))
    differ = [k for k in keys if k not in states[0] or k not in states[1] or not same(states[0][k], states[1][k])]
    print(f"{len(keys)} checkpoint entries compared after {args.steps} steps; {len(differ)} differ")
    for key in differ[:20]:
        print("  differs:", key)
    print("loss rows equal:", logs[0] == logs[1], logs[1])
    return 0 if not differ and logs[0] == logs[1] else 1


if __name__ == "__main__":
    sys.exit(main())
