"""The probe job's unit of work on disk: one puzzle instance, all its seeds.

The step probe generates an instance's seeds in one batched call, decodes and scores x0
at the kept steps, and records the layer features beside it; that is one unit. When it
is complete, its ``scores.jsonl`` rows are appended (:class:`~gen_reason.folders.JsonlLog`)
and then the unit is stored as ``units/<instance uid>.safetensors``, written atomically
(:func:`gen_reason.folders.replacing`), so the file's presence is what marks the unit done.
It holds what the end of the job (emergence, exploration, layer probes, interventions,
figures, tensors, summary) reads, and the job reads it back from here whether the unit
was made by this process or by one that was killed later: a resumed run and an
uninterrupted one finish from the same bytes.

Tensors: ``x0`` ``[seeds, steps, C, F, h, w]`` float16 (when the run keeps this
instance's x0), ``final_videos`` ``[seeds, T, H, W, 3]`` uint8 (the first instance, when
interventions need their baseline), ``layers/<name>`` (the unit's
:meth:`~gen_reason.probe.layers.LayerFeatures.tensors`). Metadata ``unit``: JSON with the
uid, seeds, kept steps, schedule length, noise levels, video length, seconds, and every
final and step score (:meth:`~gen_reason.verifiers.score.Score.to_dict`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gen_reason.errors import UserError
from gen_reason.folders import replacing
from gen_reason.probe.steps import StepProbeResult

#: The folder of stored units inside a probe run folder.
UNITS = "units"
#: The format tag in every unit file's metadata.
FORMAT = "genreason-probe-unit-1"


@dataclass
class ProbedUnit:
    """One probed instance as stored: its step probe result (with ``x0`` as stored, float16,
    and ``final_videos`` only where stored), its video length, its layer features
    (:meth:`~gen_reason.probe.layers.LayerFeatures.tensors`; empty without a layer probe)."""

    result: StepProbeResult
    num_frames: int
    layer_tensors: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)


def unit_path(root: str | os.PathLike, instance) -> Path:
    """Where ``instance``'s unit is stored in the run folder ``root``."""
    uid = str(getattr(instance, "uid", instance)).replace("/", "-")
    return Path(root) / UNITS / f"{uid}.safetensors"


def x0_tensor(result: StepProbeResult) -> torch.Tensor:
    """The x0 latents ``result`` kept, as one float16 tensor ``[seeds, steps, C, F, h, w]``
    (how a unit file and ``x0.safetensors`` store them)."""
    return torch.stack([
        torch.stack([result.x0[sample][step] for step in result.steps]) for sample in range(len(result.seeds))
    ]).to(torch.float16).contiguous()


def save_unit(path: str | os.PathLike, result: StepProbeResult, *, layer_tensors: dict | None = None,
              keep_final_videos: bool = False) -> Path:
    """Store one probed instance at ``path`` (atomically: the file appears whole or not at all)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    if result.x0:
        tensors["x0"] = x0_tensor(result)
    if keep_final_videos:
        tensors["final_videos"] = torch.from_numpy(np.ascontiguousarray(np.stack(result.final_videos)))
    for name, tensor in (layer_tensors or {}).items():
        tensors[f"layers/{name}"] = tensor.contiguous()
    record = {
        "uid": getattr(result.instance, "uid", str(result.instance)),
        "seeds": result.seeds, "steps": result.steps, "num_steps": result.num_steps,
        "sigmas": [[step, result.sigmas.get(step)] for step in result.steps],
        "num_frames": len(result.final_videos[0]),
        "seconds": result.seconds,
        "final_scores": [score.to_dict() for score in result.final_scores],
        "step_scores": [[[step, by_step[step].to_dict()] for step in result.steps if step in by_step]
                        for by_step in result.step_scores],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "unit": json.dumps(record)})
    return path


def load_unit(path: str | os.PathLike, instance) -> ProbedUnit:
    """Read back a unit :func:`save_unit` stored for ``instance`` (a one-line
    :class:`UserError` when the file is unreadable or belongs to another puzzle)."""
    from safetensors import safe_open

    from gen_reason.verifiers.score import Score

    path = Path(path)
    try:
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        record = json.loads(metadata["unit"])
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same one-line refusal
        raise UserError(f"{path} is not a readable probe unit ({type(exc).__name__}); "
                        "delete it to probe that puzzle again") from None
    uid = getattr(instance, "uid", str(instance))
    if metadata.get("format") != FORMAT or record.get("uid") != uid:
        raise UserError(f"{path} does not hold puzzle {uid}; delete it to probe that puzzle again")
    seeds, steps = [int(s) for s in record["seeds"]], [int(s) for s in record["steps"]]
    x0 = tensors.get("x0")
    finals = tensors.get("final_videos")
    result = StepProbeResult(
        instance=instance, seeds=seeds, steps=steps, num_steps=int(record["num_steps"]),
        sigmas={int(step): sigma for step, sigma in record["sigmas"]},
        final_videos=[] if finals is None else list(finals.numpy()),
        final_scores=[Score.from_dict(score) for score in record["final_scores"]],
        step_videos=[{} for _ in seeds],
        step_scores=[{int(step): Score.from_dict(score) for step, score in by_step}
                     for by_step in record["step_scores"]],
        x0=[] if x0 is None else [{step: x0[sample, index] for index, step in enumerate(steps)}
                                  for sample in range(len(seeds))],
        seconds={name: float(value) for name, value in record["seconds"].items()},
    )
    layers = {name[len("layers/"):]: tensor for name, tensor in tensors.items() if name.startswith("layers/")}
    return ProbedUnit(result, int(record["num_frames"]), layers)
