"""Training checkpoints written atomically, found again after a kill, and restored exactly.

A checkpoint is a folder ``<root>/step-<step:09d>/`` holding:

- ``<name>.pt``: ``obj.state_dict()`` of every object handed in (model or trainable
  parameters, optimizer, learning-rate scheduler, EMA, ...), written by the main
  process; or, when an :class:`accelerate.Accelerator` is handed in instead, whatever
  ``accelerator.save_state`` writes;
- ``rng-<rank>.pt``: each process's random states (Python, NumPy, torch CPU and CUDA), so
  dropout and anything else drawn from the global generators continues as it would have;
- ``state.json``: the caller's small JSON state (step, data position, ...), written last.

Everything goes into a ``.tmp`` folder first, which is renamed into place once complete:
a kill mid-write leaves the previous checkpoint as the latest, never a half-written one.
Only the newest ``keep`` checkpoints are kept.

    save_checkpoint(run / "checkpoints", {"model": trainable, "optimizer": opt}, {"step": 100})
    latest = load_latest(run / "checkpoints")
    if latest is not None:
        latest.restore({"model": trainable, "optimizer": opt})
        step = latest.state["step"]
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

_NAME = re.compile(r"^step-(\d+)$")
STATE_FILE = "state.json"


def _process_info(accelerator: Any) -> tuple[int, bool]:
    if accelerator is None:
        return 0, True
    return int(accelerator.process_index), bool(accelerator.is_main_process)


def _barrier(accelerator: Any) -> None:
    if accelerator is not None:
        accelerator.wait_for_everyone()


def rng_state() -> dict:
    """This process's random states: Python, NumPy, torch CPU and (when present) CUDA."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Put back what :func:`rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    root: str | os.PathLike,
    objects: Mapping[str, Any] | Any,
    state: dict,
    *,
    accelerator: Any = None,
    keep: int | None = 2,
) -> Path:
    """Write a checkpoint for ``state["step"]`` under ``root``; return its folder.

    ``objects``: a mapping ``name -> object with state_dict()`` (saved by the main
    process only: under data parallelism they are the same on every process), or an
    ``accelerate.Accelerator`` (its ``save_state`` saves what it prepared). ``state``:
    JSON-serialisable, must hold ``step``. ``accelerator``: pass it when several
    processes train, so they all write their random states before the folder is
    renamed into place (every process must call this function). ``keep``: how many
    checkpoints to keep (``None``: all).
    """
    if "step" not in state:
        raise ValueError("a checkpoint state needs its 'step'")
    is_accelerator = hasattr(objects, "save_state") and hasattr(objects, "wait_for_everyone")
    if is_accelerator:
        accelerator = objects
    rank, is_main = _process_info(accelerator)
    root = Path(root)
    final = root / f"step-{int(state['step']):09d}"
    tmp = root / (final.name + ".tmp")
    if is_main:
        if tmp.exists():  # left behind by a kill during an earlier save
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    _barrier(accelerator)
    if is_accelerator:
        accelerator.save_state(str(tmp))  # every process takes part; it writes per-rank files itself
    elif is_main:
        for name, obj in objects.items():
            torch.save(obj.state_dict(), tmp / f"{name}.pt")
    torch.save(rng_state(), tmp / f"rng-{rank}.pt")
    _barrier(accelerator)
    if is_main:
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1, sort_keys=True))
        if final.exists():  # the same step saved again (a rerun): replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        if keep is not None:
            for old in list_checkpoints(root)[: -max(1, int(keep))]:
                shutil.rmtree(old, ignore_errors=True)
    _barrier(accelerator)
    return final


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Complete checkpoint folders under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_dir() and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


@dataclass
class Checkpoint:
    """One saved checkpoint: its folder and the JSON ``state`` saved with it."""

    path: Path
    state: dict

    @property
    def step(self) -> int:
        """The step the checkpoint was taken after."""
        return int(self.state["step"])

    def restore(self, objects: Mapping[str, Any] | Any, *, accelerator: Any = None, rng: bool = True,
                map_location: str | torch.device = "cpu") -> None:
        """Load the saved states into ``objects`` (the same mapping or Accelerator as saved).

        ``rng``: also put back this process's random states (those of rank 0 when the run
        now has more processes than it had).
        """
        if hasattr(objects, "load_state") and hasattr(objects, "wait_for_everyone"):
            accelerator = objects
            objects.load_state(str(self.path))
        else:
            for name, obj in objects.items():
                file = self.path / f"{name}.pt"
                if not file.is_file():
                    raise FileNotFoundError(f"checkpoint {self.path} has no {name}.pt")
                obj.load_state_dict(torch.load(file, map_location=map_location, weights_only=False))
        if rng:
            rank, _ = _process_info(accelerator)
            file = self.path / f"rng-{rank}.pt"
            if not file.is_file():
                file = self.path / "rng-0.pt"
            set_rng_state(torch.load(file, map_location="cpu", weights_only=False))


def load_latest(root: str | os.PathLike) -> Checkpoint | None:
    """The newest complete checkpoint under ``root``, or ``None`` when there is none."""
    checkpoints = list_checkpoints(root)
    if not checkpoints:
        return None
    path = checkpoints[-1]
    return Checkpoint(path, json.loads((path / STATE_FILE).read_text()))
