"""Training state on disk without pickle: safetensors for tensors, JSON for the rest.

:func:`save_state` writes any nest of dicts, lists, tuples, tensors, NumPy arrays and
JSON scalars (a model's ``state_dict()``, an optimizer's, a scheduler's, an EMA's, the
random states) as one ``.safetensors`` file: the tensors under numbered keys, the
structure (and every scalar, exactly: JSON writes floats by ``repr``) as a JSON skeleton
in the file's metadata. :func:`load_state` gives the same nest back, bit for bit. A file
that is not such a state (a pickle from an older genreason or anyone else, a truncated
or corrupt file) is a one-line :class:`~gen_reason.errors.UserError`; nothing in it is
ever executed.

A training checkpoint is a folder ``<root>/step-<step:09d>/`` holding:

- ``<name>.safetensors``: ``obj.state_dict()`` of every object handed in (model or
  trainable parameters, optimizer, learning-rate scheduler, EMA, ...), written by the
  main process;
- ``rng-<rank>.safetensors``: each process's random states (Python, NumPy, torch CPU
  and CUDA), so dropout and anything else drawn from the global generators continues
  as it would have;
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

from gen_reason.errors import UserError
from gen_reason.folders import replacing

_NAME = re.compile(r"^step-(\d+)$")
STATE_FILE = "state.json"
#: The metadata key of a state file's JSON skeleton, and its format tag.
_SKELETON, _FORMAT_KEY, _FORMAT = "genreason_state", "format", "genreason-state-1"


# -- one state, one file -------------------------------------------------------------------
def _flatten(obj: Any, tensors: dict[str, torch.Tensor], seen: set) -> Any:
    """The JSON skeleton of ``obj``; its tensors go into ``tensors`` under numbered keys."""
    if isinstance(obj, torch.Tensor):
        tensor = obj.detach().to("cpu").contiguous()
        if tensor.numel() and tensor.untyped_storage().data_ptr() in seen:
            tensor = tensor.clone()  # safetensors refuses two keys over one storage
        if tensor.numel():
            seen.add(tensor.untyped_storage().data_ptr())
        key = str(len(tensors))
        tensors[key] = tensor
        return {"$tensor": key}
    if isinstance(obj, np.ndarray):
        array = np.array(obj, copy=True, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
        key = str(len(tensors))
        tensors[key] = torch.from_numpy(array.reshape(-1).view(np.uint8).copy())
        return {"$ndarray": key, "dtype": array.dtype.str, "shape": list(array.shape)}
    if isinstance(obj, np.generic):
        return _flatten(np.asarray(obj), tensors, seen) | {"scalar": True}
    if isinstance(obj, dict):
        for key in obj:
            if not (key is None or isinstance(key, (str, int, float, bool))):
                raise TypeError(f"cannot save a dict key of type {type(key).__name__}")
        return {"$dict": [[key, _flatten(value, tensors, seen)] for key, value in obj.items()]}
    if isinstance(obj, tuple):
        return {"$tuple": [_flatten(value, tensors, seen) for value in obj]}
    if isinstance(obj, list):
        return [_flatten(value, tensors, seen) for value in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot save a {type(obj).__name__} in a state file (tensors, arrays, containers, scalars)")


def _unflatten(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Invert :func:`_flatten`."""
    if isinstance(node, list):
        return [_unflatten(value, tensors) for value in node]
    if isinstance(node, dict):
        if "$tensor" in node:
            return tensors[node["$tensor"]]
        if "$ndarray" in node:
            raw = tensors[node["$ndarray"]].numpy().tobytes()
            array = np.frombuffer(raw, dtype=np.dtype(node["dtype"])).reshape(node["shape"]).copy()
            return array[()] if node.get("scalar") else array
        if "$dict" in node:
            return {key: _unflatten(value, tensors) for key, value in node["$dict"]}
        if "$tuple" in node:
            return tuple(_unflatten(value, tensors) for value in node["$tuple"])
    return node


def save_state(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` (a nest of dicts, lists, tuples, tensors, arrays, JSON scalars) to the
    safetensors file ``path``, atomically: a kill mid-write leaves the previous file."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(obj, tensors, set())
    with replacing(path) as tmp:  # a name of this process's own: two writers never share one
        save_file(tensors, str(tmp), metadata={_FORMAT_KEY: _FORMAT, _SKELETON: json.dumps(skeleton)})
    return path


def _describe_foreign(path: Path) -> str:
    """What a file that is not a state file looks like, for the error message."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    header = int.from_bytes(head[:8], "little") if len(head) == 9 else -1
    if 0 < header and head[8:9] == b"{":  # a safetensors header: the file is cut short or damaged
        return "is a damaged or truncated state file" + (" (cut short)" if 8 + header > size else "")
    if head.startswith(b"PK\x03\x04") or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")):
        return ("is a pickle (torch.save) file, which genreason never loads (unpickling can run code); "
                "it was probably written by an older genreason: start that run over")
    return "is not a genreason state file (safetensors); it may be truncated or corrupt"


def load_state(path: str | os.PathLike) -> Any:
    """Read what :func:`save_state` wrote, exactly (tensors on the CPU). A missing, foreign (pickle), truncated
    or corrupt file is a :class:`UserError`; its contents are never executed."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"state file not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            metadata = fh.metadata() or {}
            if metadata.get(_FORMAT_KEY) != _FORMAT or _SKELETON not in metadata:
                raise ValueError("no genreason state in its metadata")
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
        state = _unflatten(json.loads(metadata[_SKELETON]), tensors)
    except Exception as exc:  # noqa: BLE001 - any failure to parse means a foreign or damaged file
        detail = _describe_foreign(path)
        if "genreason state" in str(exc):
            detail = "is a safetensors file but not a genreason training state"
        raise UserError(f"{path} {detail}") from None
    return state


# -- checkpoints of a run ------------------------------------------------------------------
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
    objects: Mapping[str, Any],
    state: dict,
    *,
    accelerator: Any = None,
    keep: int | None = 2,
) -> Path:
    """Write a checkpoint for ``state["step"]`` under ``root``; return its folder.

    ``objects``: a mapping ``name -> object with state_dict()`` (saved by the main
    process only: under data parallelism they are the same on every process).
    ``state``: JSON-serialisable, must hold ``step``. ``accelerator``: pass it when
    several processes train, so they all write their random states before the folder
    is renamed into place (every process must call this function). ``keep``: how many
    checkpoints to keep (``None``: all).
    """
    if "step" not in state:
        raise ValueError("a checkpoint state needs its 'step'")
    rank, is_main = _process_info(accelerator)
    root = Path(root)
    final = root / f"step-{int(state['step']):09d}"
    tmp = root / (final.name + ".tmp")
    if is_main:
        if tmp.exists():  # left behind by a kill during an earlier save
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    _barrier(accelerator)
    if is_main:
        for name, obj in objects.items():
            save_state(tmp / f"{name}.safetensors", obj.state_dict())
    save_state(tmp / f"rng-{rank}.safetensors", rng_state())
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


class TrainableState:
    """``state_dict`` / ``load_state_dict`` over only the trainable parameters of a model (checkpoints)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.parameters = {name: p for name, p in model.named_parameters() if p.requires_grad}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The trainable parameters by name, copied to the CPU."""
        return {name: p.detach().cpu().clone() for name, p in self.parameters.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Copy ``state``'s tensors into the trainable parameters (a missing one is a :class:`UserError`)."""
        missing = sorted(set(self.parameters) - set(state))
        if missing:
            raise UserError(f"the checkpoint lacks {len(missing)} trainable parameter(s), e.g. {missing[0]}")
        with torch.no_grad():
            for name, p in self.parameters.items():
                p.copy_(state[name].to(p.device, p.dtype))


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

    def restore(self, objects: Mapping[str, Any], *, accelerator: Any = None, rng: bool = True) -> None:
        """Load the saved states into ``objects`` (the same mapping as saved).

        ``rng``: also put back this process's random states (those of rank 0 when the run
        now has more processes than it had). A checkpoint of an older genreason (pickle
        ``.pt`` files, never loaded) or a damaged one is a :class:`UserError`.
        """
        for name, obj in objects.items():
            file = self.path / f"{name}.safetensors"
            if not file.is_file():
                older = " (written by an older genreason as a pickle, which is never loaded)" \
                    if (self.path / f"{name}.pt").is_file() else ""
                raise UserError(f"checkpoint {self.path} has no {file.name}{older}; "
                                "start the run over in a new folder (or resume: false)")
            obj.load_state_dict(load_state(file))
        if rng:
            rank, _ = _process_info(accelerator)
            file = self.path / f"rng-{rank}.safetensors"
            if not file.is_file():
                file = self.path / "rng-0.safetensors"
            set_rng_state(load_state(file))


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """The checkpoint in folder ``path`` (its ``state.json`` read; an unreadable one is a :class:`UserError`)."""
    path = Path(path)
    try:
        state = json.loads((path / STATE_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path / STATE_FILE}: {exc}") from None
    return Checkpoint(path, state)


def load_latest(root: str | os.PathLike) -> Checkpoint | None:
    """The newest complete checkpoint under ``root``, or ``None`` when there is none."""
    checkpoints = list_checkpoints(root)
    return read_checkpoint(checkpoints[-1]) if checkpoints else None
