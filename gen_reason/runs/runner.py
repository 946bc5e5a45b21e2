"""Run an evaluation: instances x solvers -> the run store, resumable and shardable.

Several processes (``accelerate launch --multi_gpu --num_processes N -m gen_reason eval
...``, or ``torchrun``, or ``mpirun``) split one run by item: item ``k`` (instance
``i``, solver ``j``, ``k = i * n_solvers + j``) belongs to the process with rank
``k % world_size``. Each process appends only to its own shard
(``shards/<rank>.jsonl``), so no two processes ever write the same file while they work,
and each process runs its model on its own GPU (``cuda:<local rank>`` unless
``model.device`` says otherwise). No process group is needed; the folder is the only
thing the processes share.

The merge into ``results.jsonl`` is done once, by rank 0: after its own share it polls
the shards until every item of the run is stored (by any rank, this launch or an earlier
one), then writes the merged file; the other ranks return when their share is stored and
never touch ``results.jsonl``. ``accelerate launch`` / ``torchrun`` stop every rank when
one fails, so rank 0 never waits for a dead process; with ranks started by hand (``RANK``
and ``WORLD_SIZE`` set yourself), stop rank 0 if another rank dies and relaunch.

Resuming: a relaunch with the same config (with any number of processes) skips every
item already in any shard, so an interrupted run (even ``kill -9`` of every process)
loses at most the items in flight and stores none twice. ``accelerate launch --cpu
--num_processes N`` starts a single process (multi-CPU needs ``mpirun``); on a machine
without GPUs, ``--multi_gpu`` still starts ``N`` processes.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from gen_reason.errors import UserError
from gen_reason.puzzles import Instance
from gen_reason.runs.config import EvalConfig, to_dict
from gen_reason.runs.store import ResultRow, RunStore


# Where launchers put a process's place: torchrun / accelerate first, then MPI implementations.
_RANK_VARS = ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK")
_WORLD_VARS = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
_LOCAL_RANK_VARS = ("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "MV2_COMM_WORLD_LOCAL_RANK")


def _env_int(names: tuple[str, ...]) -> int | None:
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                raise UserError(f"environment variable {name}={value!r} is not an integer") from None
    return None


@dataclass(frozen=True)
class Shard:
    """This process's place among the evaluation processes (``local_rank``: its index on its machine)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int | None = None  # None: the same as rank (one machine)

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise UserError(f"bad process rank {self.rank} of world size {self.world_size}")
        if self.local_rank is None:
            object.__setattr__(self, "local_rank", self.rank)

    @classmethod
    def detect(cls) -> "Shard":
        """From the environment that ``accelerate launch`` / ``torchrun`` / ``mpirun`` set (else 0 of 1)."""
        world = _env_int(_WORLD_VARS) or 1
        local = _env_int(_LOCAL_RANK_VARS)
        rank = _env_int(_RANK_VARS)
        rank = rank if rank is not None else (local or 0)
        return cls(rank, world, local)

    def default_device(self) -> str | None:
        """``cuda:<local rank>`` when several processes share a machine with GPUs, else ``None``
        (the generator's own default): without it every process would load onto GPU 0."""
        if self.world_size == 1:
            return None
        import torch

        if not torch.cuda.is_available():
            return None
        return f"cuda:{self.local_rank % torch.cuda.device_count()}"


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
    from gen_reason.models.loading import task_for_model

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
            task = task_for_model(defaults or {}, name, difficulty, data.task_config, model=config.model.path)
            for i in range(data.n):
                yield task.generate(data.seed + i, difficulty)


def result_key(instance: Instance, solver_key: str) -> str:
    """The unique key of one (instance, solver) result."""
    return f"{instance.uid}|{solver_key}"


def run_eval(config: EvalConfig, *, generator=None, progress: bool = True, shard: Shard | None = None,
             poll_seconds: float = 1.0) -> Path:
    """Run (or finish) the evaluation ``config`` describes; returns the run folder.

    ``generator`` overrides ``config.model`` (tests, notebooks). Items already in the
    store are skipped, so a rerun after a kill completes the rest. ``shard`` (default:
    from the environment) picks this process's share; rank 0 then waits for the others
    and writes ``results.jsonl`` (see the module docstring); ``poll_seconds`` is how often
    it looks at their shards.

    The run folder is held for this process's rank while it runs (a second ``eval`` on
    it is refused in one line, see :class:`~gen_reason.runs.store.RunStore`), and a run
    that fails before any result is stored (a model that does not load, say) takes its
    ``config.yaml`` back, so the corrected command is not refused as a different run.
    """
    stores: list[RunStore] = []
    try:
        return _run_eval(config, generator, progress, shard, poll_seconds, stores)
    except BaseException:
        for store in stores:
            store.discard_if_empty()
        raise
    finally:
        for store in stores:
            store.close()


def _run_eval(config: EvalConfig, generator, progress: bool, shard: Shard | None, poll_seconds: float,
              stores: list) -> Path:
    """:func:`run_eval`'s work, in steps: check the config and make the solvers and puzzles,
    open the run folder, load the model when something is left to do, solve and record each
    (puzzle, solver) pair of this shard, then merge. The store it opens goes into
    ``stores`` (closed by the caller)."""
    from gen_reason.solvers.base import Budget

    shard = shard or Shard.detect()
    solvers = _make_solvers(config)
    budget = Budget.from_dict(config.budget) if config.budget else None
    instances = _select_instances(config, generator)
    if generator is None and not (Path(config.out) / "config.yaml").exists():
        # A new run: a missing model is one line before the folder exists (a finished run
        # may be reread without its model, which it never loads).
        from gen_reason.models.loading import check_model

        check_model(config.model.path, config.model.lora)
    # The folder is made (and its config.yaml written) only once the config has proved
    # valid: a mistake above leaves nothing that would refuse the corrected command.
    store = RunStore(config.out, to_dict(config), rank=shard.rank)
    stores.append(store)
    done = store.done_keys()
    todo = [
        (i, j, instance, key, solver)
        for i, instance in enumerate(instances)
        for j, (key, solver) in enumerate(solvers)
        if (i * len(solvers) + j) % shard.world_size == shard.rank and result_key(instance, key) not in done
    ]
    if todo and generator is None:
        generator = _load_eval_generator(config, shard)
    verifier = _verifier_cache()
    from tqdm.auto import tqdm

    for i, j, instance, key, solver in tqdm(todo, desc="eval", unit="item", disable=not progress):
        store.append(_solve_one(config, store, generator, verifier, budget, i, j, instance, key, solver))
    everything = {result_key(instance, key) for instance in instances for key, _ in solvers}
    if shard.world_size > 1:
        if shard.rank != 0:
            return store.root  # rank 0 merges, once every shard is stored
        _wait_for_all_shards(store, everything, poll_seconds, progress)
    if everything <= store.done_keys():
        store.merge()
    return store.root


def _make_solvers(config: EvalConfig) -> list[tuple[str, object]]:
    """``(label, solver)`` for each solver of the config (with the config's VLM, if any)."""
    from gen_reason.solvers.registry import get_solver

    vlm = None
    if config.vlm:
        from gen_reason.vlm import load_vlm

        vlm = load_vlm(config.vlm)
    solvers = [(spec.key, get_solver(spec.name, vlm=vlm, **spec.params)) for spec in config.solvers]
    if len({key for key, _ in solvers}) != len(solvers):
        raise UserError("two solvers share a label; give each a distinct `label`")
    return solvers


def _select_instances(config: EvalConfig, generator) -> list:
    """The config's puzzles (with the model folder's puzzle settings when no generator is
    given); a selection of none is a :class:`UserError`."""
    instances = list(iter_instances(config, model_defaults(config) if generator is None else None))
    if not instances:
        where = f"split {config.data.split!r} of " if config.data.split else ""
        raise UserError(f"the config selects no puzzles ({where}data.dataset {config.data.dataset} is empty)")
    return instances


def _load_eval_generator(config: EvalConfig, shard: Shard):
    """The config's model, on this shard's device unless the config names one."""
    from gen_reason.models.loading import load_generator

    m = config.model
    return load_generator(m.path, lora=m.lora, lora_scale=m.lora_scale if m.lora else None, steps=m.steps,
                          guidance=m.guidance, num_frames=m.num_frames,
                          **{**m.model_options(), "device": m.device or shard.default_device()})


def _verifier_cache():
    """``verifier(task, kind)``: :func:`~gen_reason.verifiers.registry.verifier_for`, each made once."""
    from gen_reason.verifiers.registry import verifier_for

    return functools.cache(verifier_for)


def _solve_one(config: EvalConfig, store: RunStore, generator, verifier, budget, i: int, j: int, instance, key: str,
               solver) -> ResultRow:
    """Solve puzzle ``i`` with solver ``j`` (labelled ``key``), judge the answer with the
    reference verifier, and return its result row (its video written when the config saves videos)."""
    from gen_reason.video import write_mp4

    started = time.perf_counter()
    attempt = solver.solve(instance, generator, verifier(instance.task, config.verifier), budget,
                           reference=verifier(instance.task, "reference"))
    reference = verifier(instance.task, "reference").score(instance, attempt.video)
    row = ResultRow(
        key=result_key(instance, key),
        order=[i, j],
        task=instance.task,
        difficulty=instance.difficulty,
        seed=instance.seed,
        uid=instance.uid,
        solver=key,
        model=getattr(generator, "name", "?"),
        success=bool(reference.success),
        metrics=reference.to_dict()["metrics"],
        reason=reference.reason,
        attempt=attempt.to_dict(),
        reference_trace=reference.to_dict()["trace"],
        seconds=round(time.perf_counter() - started, 3),
    )
    if config.save_videos:
        path = store.video_path(row.key)
        write_mp4(path, attempt.video, fps=getattr(generator, "fps", 8))
        row.video = str(path.relative_to(store.root))
    return row


def _wait_for_all_shards(store: RunStore, keys: set[str], poll_seconds: float, progress: bool) -> None:
    """Block until every key in ``keys`` is stored in some shard (rank 0, before the merge)."""
    seen = None
    told = False
    while True:
        sizes = store.shard_sizes()
        if sizes != seen:  # reread the shards only when one has grown
            seen = sizes
            missing = len(keys - store.done_keys())
            if not missing:
                return
            if progress and not told:
                print(f"rank 0: waiting for the other processes ({missing} item(s) left)", file=sys.stderr)
                told = True
        time.sleep(poll_seconds)
