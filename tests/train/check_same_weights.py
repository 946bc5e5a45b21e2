"""Check that the embedded trainer's numbers did not move: train a few steps from
``configs/embedded_maze.yaml`` with the trainer of an older commit and with the current
one, and compare every tensor of the two checkpoints (weights, EMA, optimizer) and the
loss rows exactly.

    OMP_WAIT_POLICY=PASSIVE python tests/train/check_same_weights.py --ref 6a753db --steps 3

The older trainer is read with ``git show REF:gen_reason/train/embedded.py`` into a
temporary module (it uses the current helpers it imports, so REF must be recent enough
to import them: 33cb1d8, the trainer before the one training loop, imports a module
since removed; 6a753db is the last before the shared TrainingConfig). Exit status 0:
bit-identical.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def old_trainer(ref: str, folder: Path):
    """The module gen_reason/train/embedded.py as it was at git revision ``ref``."""
    source = subprocess.run(["git", "show", f"{ref}:gen_reason/train/embedded.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = folder / "old_embedded_trainer.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_embedded_trainer", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", default="6a753db", help="git revision of the older trainer")
    parser.add_argument("--config", default=str(ROOT / "configs" / "embedded_maze.yaml"))
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()

    import yaml

    from gen_reason.config import read_yaml, rename_keys
    from gen_reason.train import embedded as new
    from gen_reason.train.checkpoint import load_state

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old = old_trainer(args.ref, tmp)
        old_fields = {f.name for f in dataclasses.fields(old.EmbeddedTrainConfig)}
        # The config is the input, not a result: compared by today's names, over the fields both versions have.
        shared = set(rename_keys(new.EmbeddedTrainConfig, dict.fromkeys(old_fields), warn=False))
        # How often rows are written is a resumable change: one row per step here.
        settings = {**rename_keys(new.EmbeddedTrainConfig, read_yaml(args.config), warn=False), "log_every": 1}
        states, logs = [], []
        for name, module in (("old", old), ("new", new)):
            fields = {f.name for f in dataclasses.fields(module.EmbeddedTrainConfig)}
            # Each version reads the settings under its own names (an older one's, where it used another).
            older_names = {new_name: old_name for old_name, new_name in new.EmbeddedTrainConfig.RENAMED.items()
                           if new_name not in fields}
            path = tmp / f"{name}.yaml"
            path.write_text(yaml.safe_dump({older_names.get(k, k): v for k, v in settings.items()}))
            config = module.EmbeddedTrainConfig.from_yaml(path)
            run = tmp / name
            module.train_embedded(config, run, progress=False, validate=False, stop_after_steps=args.steps)
            state = load_state(run / "checkpoint.safetensors")
            state.pop("train_seconds")
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
