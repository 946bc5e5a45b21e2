"""Run an evaluation: instances x solvers -> the run store, resumable and shardable.

Under ``accelerate launch`` each process takes every ``world_size``-th item and writes
its own shard; the last process to finish merges the shards into ``results.jsonl``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from gen_reason.errors import UserError
from gen_reason.puzzles import Instance, get_task
from gen_reason.runs.config import EvalConfig, to_dict
from gen_reason.runs.store import RunStore


@dataclass(frozen=True)
class Shard:
    """This process's place among the evaluation processes."""

    rank: int = 0
    world_size: int = 1

    @classmethod
    def detect(cls) -> "Shard":
        """From the environment that ``accelerate launch`` / ``torchrun`` set (else 0 of 1)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))
        return cls(rank, world)


def model_defaults(config: EvalConfig) -> dict:
    """The puzzle settings the model folder asks for (its ``genreason.json``), if any."""
    from gen_reason.models.loading import model_task_defaults, resolve_model_path

    try:
        return model_task_defaults(resolve_model_path(config.model.path))
    except UserError:
        return {}


def iter_instances(config: EvalConfig, defaults: dict | None = None) -> Iterator[Instance]:
    """The run's instances in canonical order; ``defaults`` are the model's puzzle settings
    (applied under ``data.task_config``)."""
    from gen_reason.models.loading import task_config_for

    data = config.data
    if data.dataset:
        from gen_reason.datasets import iter_dataset
        from gen_reason.interop.vrbench_read import is_vrbench_folder, iter_vrbench_instances

        if is_vrbench_folder(data.dataset):  # VR-Bench levels: <game>/<skin>/<difficulty>/states/*.json
            yield from iter_vrbench_instances(data.dataset, split=data.split)
            return
        for instance, _ in iter_dataset(data.dataset, split=data.split):
            yield instance
        return
    if data.n < 1:
        raise UserError(f"data.n must be >= 1; got {data.n}")
    for name in data.tasks:
        for difficulty in data.difficulties:
            task = get_task(name, **task_config_for(defaults or {}, difficulty, data.task_config))
            for i in range(data.n):
                yield task.generate(data.seed + i, difficulty)


def result_key(instance: Instance, solver_key: str) -> str:
    """The unique key of one (instance, solver) result."""
    return f"{instance.uid}|{solver_key}"


def run_eval(config: EvalConfig, *, generator=None, progress: bool = True, shard: Shard | None = None) -> Path:
    """Run (or finish) the evaluation ``config`` describes; returns the run folder.

    ``generator`` overrides ``config.model`` (tests, notebooks). Items already in the
    store are skipped, so a rerun after a kill completes the rest.
    """
    from gen_reason.solvers.base import Budget
    from gen_reason.solvers.registry import get_solver
    from gen_reason.verifiers.registry import verifier_for
    from gen_reason.video import write_mp4

    shard = shard or Shard.detect()
    store = RunStore(config.out, to_dict(config), rank=shard.rank)
    done = store.done_keys()
    vlm = None
    if config.vlm:
        from gen_reason.vlm import load_vlm

        vlm = load_vlm(config.vlm)
    solvers = [(spec.key, get_solver(spec.name, vlm=vlm, **spec.params)) for spec in config.solvers]
    if len({key for key, _ in solvers}) != len(solvers):
        raise UserError("two solvers share a label; give each a distinct `label`")
    budget = Budget.from_dict(config.budget) if config.budget else None
    instances = list(iter_instances(config, model_defaults(config) if generator is None else None))
    todo = [
        (i, j, instance, key, solver)
        for i, instance in enumerate(instances)
        for j, (key, solver) in enumerate(solvers)
        if (i * len(solvers) + j) % shard.world_size == shard.rank and result_key(instance, key) not in done
    ]
    if todo and generator is None:
        from gen_reason.models.loading import load_generator

        m = config.model
        generator = load_generator(m.path, lora=m.lora, lora_scale=m.lora_scale if m.lora else None,
                                   device=m.device, dtype=m.dtype, steps=m.steps, guidance=m.guidance,
                                   num_frames=m.num_frames)
    verifiers: dict[tuple[str, str], object] = {}

    def verifier(task: str, kind: str):
        if (task, kind) not in verifiers:
            verifiers[(task, kind)] = verifier_for(task, kind)
        return verifiers[(task, kind)]

    from tqdm.auto import tqdm

    for i, j, instance, key, solver in tqdm(todo, desc="eval", unit="item", disable=not progress):
        started = time.perf_counter()
        attempt = solver.solve(instance, generator, verifier(instance.task, config.verifier), budget,
                               reference=verifier(instance.task, "reference"))
        reference = verifier(instance.task, "reference").score(instance, attempt.video)
        record = {
            "key": result_key(instance, key),
            "order": [i, j],
            "task": instance.task,
            "difficulty": instance.difficulty,
            "seed": instance.seed,
            "uid": instance.uid,
            "solver": key,
            "model": getattr(generator, "name", "?"),
            "success": bool(reference.success),
            "metrics": reference.to_dict()["metrics"],
            "reason": reference.reason,
            "attempt": attempt.to_dict(),
            "reference_trace": reference.to_dict()["trace"],
            "seconds": round(time.perf_counter() - started, 3),
        }
        if config.save_videos:
            path = store.video_path(record["key"])
            write_mp4(path, attempt.video, fps=getattr(generator, "fps", 8))
            record["video"] = str(path.relative_to(store.root))
        store.append(record)
    total = len(instances) * len(solvers)
    if len(store.done_keys()) >= total:
        store.merge()
    return store.root
