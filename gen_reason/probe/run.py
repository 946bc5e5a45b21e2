"""The ``probe`` job: step probe, interventions and layer probe on one task and model, written to a folder.

``genreason probe --task maze --model embedded --out DIR`` runs :func:`run_probe` on a
:class:`ProbeConfig`, in steps: check (folder, model, puzzles), open the run folder, load the
model, step probe, layer probe, interventions, then the figures, tensors and summary.

``DIR`` is a run folder (:class:`~gen_reason.folders.RunFolder`, held by one process at a
time). The unit of work is one puzzle (all its seeds generated in one batch): its score rows
are appended to ``scores.jsonl`` as it completes and the unit is then stored in ``units/``
(:mod:`gen_reason.probe.units`); intervention rows go to ``interventions.jsonl`` one by one.
A rerun of the same config (after ``kill -9``, say) probes only what is not stored and
finishes every file from the stored units, so it writes what an uninterrupted run writes;
a rerun with another config is refused in one line, before the model loads. The folder:

- ``config.yaml``: the resolved :class:`ProbeConfig` (difficulty and frame count filled in
  from the model where not given).
- ``units/<instance>.safetensors``: one per probed puzzle (x0, layer features, scores);
  ``interventions.jsonl``: one line per (kind, step) of the sweep.
- ``summary.json``: settings, the emergence curve (referee metrics of x0 by step, the
  share of samples already on their final path, commit steps), exploration (distinct
  candidate paths in early steps and across seeds), the layer x step probe accuracies,
  the intervention sweep, timings, and the list of files.
- ``filmstrip.png``: the decoded x0 of the first instance's first seed at each kept step
  (rows) and frame (columns), the generated video as the last row;
  ``filmstrips/<instance>_seed<k>.png`` the same for every seed of the first instance.
- ``step_metrics.png`` (step x metric heatmap), ``emergence.png`` (the curve, and the
  outcome change by intervention step), ``layer_probe.png`` (layer x step accuracy).
- ``scores.jsonl``: one line per (instance, seed, step): metrics, node path, reason.
- ``features.safetensors``: the pooled layer features ``features/<layer>``
  ``[samples, steps, t, gh, gw, D]`` (float16) with ``seeds``, ``steps`` and
  ``instance_of_sample``; ``x0.safetensors``: x0 latents ``x0/<instance>``
  ``[seeds, steps, C, F, h, w]`` (float16; the first instance unless ``save_x0="all"``).
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from gen_reason.errors import UserError, check_writable
from gen_reason.folders import JsonlLog, RunFolder, remove_stale_temps, write_atomic
from gen_reason.probe.config import ProbeConfig
from gen_reason.probe.emergence import emergence, exploration, finite_mean
from gen_reason.probe.interventions import intervention_sweep
from gen_reason.probe.layers import LayerFeatures, LayerRecorder, resolve_layers
from gen_reason.probe.outputs import write_filmstrips, write_outputs
from gen_reason.probe.readout import fit_layer_probes, maze_targets
from gen_reason.probe.steps import resolve_verifier, run_step_probe
from gen_reason.probe.units import ProbedUnit, load_unit, save_unit, unit_path
from gen_reason.solvers.attempt import plain_record

#: The run folder's logs: one row per (instance, seed, step); one row per intervention.
SCORES = "scores.jsonl"
INTERVENTIONS = "interventions.jsonl"


def model_task_defaults(generator, model) -> dict:
    """The puzzle settings of the model folder (none when a generator is passed in)."""
    from gen_reason.models.loading import model_task_defaults as read_defaults, resolve_model_path

    if generator is not None:  # a generator in hand: its folder is unknown, so nothing to read
        return {}
    try:
        return read_defaults(resolve_model_path(model))
    except UserError:
        return {}


def _is_maze(instance) -> bool:
    spec = getattr(instance, "spec", {}) or {}
    return spec.get("family") == "maze" and "nodes" in spec and isinstance(instance.solution, dict) \
        and "path" in instance.solution


@dataclass
class _Prepared:
    """What the checks before the model loads settle: the puzzles, the referee, the settings
    resolved from the model folder, and the frame count where it is known without loading
    (``frames_known``: a model folder that does not name it leaves it to the loaded pipeline)."""

    puzzles: list
    referee: Any
    seeds: list[int]
    difficulty: str
    defaults: dict
    num_frames: int | None
    frames_known: bool
    out: Path


@dataclass
class _Loaded:
    """What the load step hands on: the model, the puzzles, the settings resolved from the
    model, the layers to hook (``[]`` without a layer probe) and the run folder."""

    generator: Any
    puzzles: list
    referee: Any
    seeds: list[int]
    difficulty: str
    num_frames: int | None
    layers: list[str]
    run: RunFolder

    @property
    def out(self) -> Path:
        """The run folder's path."""
        return self.run.root


def run_probe(task: str = "maze", model: str | None = "embedded", out: str | Path = "out/probe", *,
              generator=None, progress: bool = True, **options: Any) -> dict:
    """Probe ``model`` on puzzles of ``task`` and write figures, tensors, ``config.yaml`` and
    ``summary.json`` to ``out``.

    ``options`` are the other :class:`ProbeConfig` fields (``instances``, ``seeds``, ``every``,
    ``layer_probe``, ...); an unknown or bad one is a one-line :class:`UserError`.
    ``generator``: an already loaded :class:`~gen_reason.models.DiffusersVideoGenerator`
    (``model`` is then only a name); ``progress``: show a progress bar.

    ``out`` is a run folder (:class:`~gen_reason.folders.RunFolder`): each puzzle is stored
    as it completes, so a rerun of the same config after a kill probes only the puzzles not
    stored yet; a rerun with another config is refused in one line.

    Returns the summary dict (also written to ``out/summary.json``).
    """
    from gen_reason.config import build

    config = build(ProbeConfig, {"task": task, "model": model, "out": out, **options}, what="probe")
    return run_probe_config(config, generator=generator, progress=progress)


def run_probe_config(config: ProbeConfig, *, generator=None, progress: bool = True) -> dict:
    """:func:`run_probe` on a built :class:`ProbeConfig`: check everything, open the run folder
    (before the model loads when the frame count is known without it), load, then probe."""
    started = time.perf_counter()
    model_options = config.model_options()
    prepared = _prepare(config, generator)
    run = _open_run(config, prepared, prepared.num_frames) if prepared.frames_known else None
    try:
        generator, num_frames = _load(config, prepared, generator, model_options)
        if run is None:
            run = _open_run(config, prepared, num_frames)
        # Layer names can only be checked on the loaded model: before any puzzle is probed.
        layers = resolve_layers(generator.pipeline, config.layers) if config.layer_probe else []
        loaded = _Loaded(generator, prepared.puzzles, prepared.referee, prepared.seeds, prepared.difficulty,
                         num_frames, layers, run)
        return _probe(config, loaded, progress, started)
    except BaseException:
        if run is not None:  # a mistake found after the folder opened leaves nothing that refuses the fix
            run.discard_if_empty([JsonlLog(run.root / SCORES), JsonlLog(run.root / INTERVENTIONS)])
        raise
    finally:
        if run is not None:
            run.close()


def _probe(config: ProbeConfig, loaded: _Loaded, progress: bool, started: float) -> dict:
    """Step probe (puzzle by puzzle, each stored as it completes), layer probe, interventions,
    then the figures, tensors and summary, all from what the run folder stores."""
    units = _step_probe(config, loaded, progress)
    after_steps = time.perf_counter()
    features = _gather_features(loaded, units)
    layer_result, layer_summary = _layer_probe(config, loaded, units, features)
    after_layers = time.perf_counter()
    sweep = _intervene(config, loaded, units[0])
    after_interventions = time.perf_counter()
    curve = emergence([unit.result for unit in units])
    files = write_outputs(loaded.out, units, curve, layer_result, sweep, features, config.save_x0)
    seconds = {"layer_probes": round(after_layers - after_steps, 3),
               "interventions": round(after_interventions - after_layers, 3)}
    return _summarise(config, loaded, units, features, curve, layer_summary, sweep, files, started, seconds)


def _prepare(config: ProbeConfig, generator) -> _Prepared:
    """The checks that need no model: output folder, model folder, task, puzzles, referee,
    and the settings the model folder supplies (nothing is written yet)."""
    from gen_reason.models.loading import check_model, task_for_model

    out = check_writable(config.out)
    if generator is None:
        check_model(config.model, config.lora)
    else:
        _check_generator(generator)
    defaults = model_task_defaults(generator, config.model)
    difficulty = config.difficulty or defaults.get("difficulty", "easy")
    # The model's general puzzle settings, then its per-difficulty geometry, then the caller's
    # (the convention of genreason.json, as genreason solve and eval read it); checked
    # before the model loads.
    task_obj = task_for_model(defaults, config.task, difficulty, config.task_config, model=config.model)
    puzzles = [task_obj.generate(int(config.first_instance_seed) + i, difficulty) for i in range(int(config.instances))]
    referee = resolve_verifier(config.verifier, puzzles[0].task)
    # The model's own frame count: its genreason.json, else a pipeline with a fixed one (embedded).
    num_frames = config.num_frames or defaults.get("num_frames")
    if num_frames is None and generator is not None:
        num_frames = _fixed_frames(generator)
    return _Prepared(puzzles, referee, config.seed_list(), difficulty, defaults, num_frames,
                     num_frames is not None or generator is not None, out)


def _check_generator(generator) -> None:
    if not hasattr(generator, "decode_latents") or not hasattr(generator, "pipeline"):
        raise UserError(f"the probe needs a diffusers generator (with decode_latents); got {type(generator).__name__}")


def _fixed_frames(generator) -> int | None:
    fixed = getattr(generator.pipeline, "num_frames", None)
    return fixed if isinstance(fixed, int) else None


def _load(config: ProbeConfig, prepared: _Prepared, generator, model_options: dict) -> tuple[Any, int | None]:
    """The generator (loaded unless one is passed in) and the frame count, read from the
    loaded pipeline where nothing named it before."""
    from gen_reason.models.loading import load_generator

    num_frames = prepared.num_frames
    if generator is None:
        generator = load_generator(config.model, lora=config.lora, num_frames=prepared.defaults.get("num_frames"),
                                   **model_options)
        _check_generator(generator)
        if num_frames is None:
            num_frames = _fixed_frames(generator)
    return generator, num_frames


def _open_run(config: ProbeConfig, prepared: _Prepared, num_frames: int | None) -> RunFolder:
    """Open (and hold) the run folder with ``config.yaml``: the config with the settings the
    model supplied filled in; a rerun with another config is refused in one line."""
    from gen_reason.config import to_plain
    from gen_reason.models.options import MODEL_OPTIONS

    plain = (str, int, float, bool, list, tuple, type(None))
    objects = {name: str(getattr(config, name)) for name in MODEL_OPTIONS  # a torch dtype or device from Python
               if not isinstance(getattr(config, name), plain)}
    resolved = replace(config, difficulty=prepared.difficulty, num_frames=num_frames, **objects,
                       out=str(prepared.out))
    # ``out`` may be spelled another way on a rerun (relative, absolute): it is the same folder.
    # ``units/`` is made with the first unit, so a refused rerun leaves no empty folder behind.
    run = RunFolder(prepared.out, to_plain(resolved), may_change={"out"})
    remove_stale_temps(run.root)  # a unit file a kill cut short; we hold the folder, no one writes it
    return run


def _step_probe(config: ProbeConfig, loaded: _Loaded, progress: bool) -> list[ProbedUnit]:
    """Probe every puzzle not stored yet (one unit each: all seeds in one batch), then read
    every unit back from the run folder."""
    scores = loaded.run.log(SCORES)
    paths = [unit_path(loaded.out, puzzle) for puzzle in loaded.puzzles]
    done = {puzzle.uid for puzzle, path in zip(loaded.puzzles, paths) if path.is_file()}
    scores.keep(lambda row: row.get("instance") in done)  # rows of a puzzle a kill cut short are made again
    pending = [index for index, path in enumerate(paths) if not path.is_file()]
    for index in _progress(pending, progress, "probe"):
        _probe_unit(config, loaded, index, paths[index], scores)
    return [load_unit(path, puzzle) for path, puzzle in zip(paths, loaded.puzzles)]


def _probe_unit(config: ProbeConfig, loaded: _Loaded, index: int, path: Path, scores: JsonlLog) -> None:
    """One puzzle: generate its seeds, decode and score x0 every ``config.every`` steps, pool
    the hooked blocks' features; append its score rows, then store the unit (the first
    puzzle also draws its filmstrips, from decoded videos that are not stored)."""
    recorder = (LayerRecorder(loaded.generator, loaded.layers, every=config.every, pool=config.pool,
                              project_dim=config.project_dim) if config.layer_probe else None)
    first = index == 0
    with recorder if recorder is not None else nullcontext():
        if recorder is not None:
            recorder.mark_instance(index)
        result = run_step_probe(
            loaded.generator, loaded.puzzles[index], loaded.seeds, every=config.every, num_steps=config.steps,
            num_frames=loaded.num_frames, guidance=config.guidance, verifier=loaded.referee,
            decode_scale=config.decode_scale, hooks=[recorder] if recorder is not None else [],
            keep_videos=first, keep_x0=config.save_x0 == "all" or (config.save_x0 == "first" and first),
        )
    for row in result.rows():
        scores.append(row)
    if first:
        write_filmstrips(loaded.out, result)
    save_unit(path, result, layer_tensors=recorder.tensors() if recorder is not None else None,
              keep_final_videos=first and config.interventions)


def _gather_features(loaded: _Loaded, units: list[ProbedUnit]) -> LayerFeatures | None:
    """Every unit's layer features, samples in puzzle order (``None`` without a layer probe)."""
    if not loaded.layers:
        return None
    features = LayerFeatures(loaded.layers)
    for unit in units:
        features.extend(unit.layer_tensors)
    return features


def _layer_probe(config: ProbeConfig, loaded: _Loaded, units: list[ProbedUnit],
                 features: LayerFeatures | None) -> tuple[Any, dict[str, Any]]:
    """Fit the per-layer linear probes on the recorded features (maze tasks with at least two
    puzzles); returns the result (``None`` when skipped) and its summary."""
    if features is None:
        return None, {"skipped": "layer_probe=False"}
    if not (_is_maze(loaded.puzzles[0]) and len(loaded.puzzles) >= 2):
        return None, {"skipped": "linear probes need a maze task and at least two instances"}
    # Samples run instance by instance, seeds in order: sample s is seed s % n of its instance.
    targets = []
    for s in range(len(features.seeds)):
        instance_index, seed_index = features.instance_of_sample[s], s % len(loaded.seeds)
        positions = None
        if config.agent_targets == "generated":
            positions = units[instance_index].result.final_scores[seed_index].trace.get("agent_positions") or []
        targets.append(maze_targets(loaded.generator, loaded.puzzles[instance_index], units[0].num_frames,
                                    config.probe_frames, positions))
    layer_result = fit_layer_probes(features, targets)
    return layer_result, layer_result.to_dict()


def _intervene(config: ProbeConfig, loaded: _Loaded, first: ProbedUnit) -> list[dict]:
    """The noise (and, with two seeds or more, swap) interventions on the first puzzle, each
    row stored in ``interventions.jsonl`` as it is made (a rerun makes only the missing ones)."""
    if not config.interventions:
        return []
    num_steps = first.result.num_steps
    chosen = (sorted({int(s) for s in config.intervention_steps}) if config.intervention_steps is not None
              else sorted({int(round(s)) for s in np.linspace(0, max(0, num_steps - 2), min(6, num_steps))}))
    kinds = ("noise", "swap") if len(loaded.seeds) >= 2 else ("noise",)
    log = loaded.run.log(INTERVENTIONS)
    intervention_sweep(
        loaded.generator, first.result.instance, loaded.seeds, chosen, kinds=kinds,
        strength=config.intervention_strength, verifier=loaded.referee,
        baseline=(first.result.final_videos, first.result.final_scores),
        skip={(row["kind"], row["step"]) for row in log.records()}, on_row=lambda row: log.append(plain_record(row)),
        steps=config.steps, num_frames=loaded.num_frames, guidance=config.guidance,
    )
    stored = {(row["kind"], row["step"]): row for row in log.records()}
    return [stored[(kind, step)] for kind in kinds for step in chosen]


def _summarise(config: ProbeConfig, loaded: _Loaded, units: list[ProbedUnit], features: LayerFeatures | None,
               curve: dict, layer_summary: dict, sweep: list[dict], files: dict, started: float,
               seconds: dict) -> dict:
    """The summary dict (``curve``: the emergence curve), written to ``summary.json``."""
    results, generator, puzzles = [unit.result for unit in units], loaded.generator, loaded.puzzles
    finals = [score for r in results for score in r.final_scores]
    summary = {
        "task": puzzles[0].task,
        "model": getattr(generator, "name", str(config.model)),
        "family": getattr(getattr(generator, "family", None), "name", None),
        "prediction_type": getattr(generator, "prediction_type", None),
        "difficulty": loaded.difficulty,
        "instances": [p.uid for p in puzzles],
        "image_size": list(puzzles[0].first_frame.shape[:2]),
        "seeds": loaded.seeds,
        "num_steps": results[0].num_steps,
        "num_frames": units[0].num_frames,
        "settings": {"every": config.every, "decode_scale": config.decode_scale,
                     "verifier": getattr(loaded.referee, "name", config.verifier),
                     "guidance": config.guidance, "pool": list(config.pool), "project_dim": config.project_dim,
                     "layers": features.layers if features is not None else [],
                     "agent_targets": config.agent_targets, "probe_frames": config.probe_frames,
                     "intervention_strength": config.intervention_strength,
                     "early_fraction": config.early_fraction},
        "final": {
            "success": finite_mean([s.success for s in finals]),
            "metrics": {name: finite_mean([s.metrics.get(name, math.nan) for s in finals])
                        for name in curve["metrics"]},
        },
        "emergence": curve,
        "exploration": exploration(results, early_fraction=config.early_fraction),
        "layer_probe": layer_summary,
        "interventions": sweep,
        "seconds": {
            "total": round(time.perf_counter() - started, 3),  # this process's (a resumed run's: since the resume)
            "generate": round(sum(r.seconds["generate"] for r in results), 3),
            "decode": round(sum(r.seconds["decode"] for r in results), 3),
            "score": round(sum(r.seconds["score"] for r in results), 3),
            **seconds,
        },
        "files": files,
    }
    write_atomic(loaded.out / "summary.json", json.dumps(plain_record(summary), indent=1, sort_keys=False) + "\n")
    return plain_record(summary)


def _progress(items, enabled: bool, label: str):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=label, unit="puzzle")
