"""The ``probe`` job: step probe, interventions and layer probe on one task and model, written to a folder.

``genreason probe --task maze --model embedded --out DIR`` runs :func:`run_probe` on a
:class:`ProbeConfig`, in steps: load (model and puzzles), step probe, layer probe,
interventions, then the figures, tensors and summary. The folder it writes:

- ``config.yaml``: the resolved :class:`ProbeConfig` (difficulty and frame count filled in
  from the model where not given).
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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gen_reason.errors import UserError, check_writable, writable_dir
from gen_reason.probe.config import ProbeConfig
from gen_reason.probe.interventions import intervention_sweep
from gen_reason.probe.layers import LayerRecorder
from gen_reason.probe.readout import fit_layer_probes, maze_targets
from gen_reason.probe.emergence import emergence, exploration
from gen_reason.probe.steps import resolve_verifier, run_step_probe


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
class _Loaded:
    """What the load step hands on: the model, the puzzles and the settings resolved from the model."""

    generator: Any
    puzzles: list
    referee: Any
    seeds: list[int]
    difficulty: str
    num_frames: int | None
    out: Path


@dataclass
class _Probed:
    """The step probe's results (one per puzzle) and the layer recorder that ran beside it."""

    results: list
    recorder: LayerRecorder | None


def run_probe(task: str = "maze", model: str | None = "embedded", out: str | Path = "out/probe", *,
              generator=None, progress: bool = True, **options: Any) -> dict:
    """Probe ``model`` on puzzles of ``task`` and write figures, tensors, ``config.yaml`` and
    ``summary.json`` to ``out``.

    ``options`` are the other :class:`ProbeConfig` fields (``instances``, ``seeds``, ``every``,
    ``layer_probe``, ...); an unknown or bad one is a one-line :class:`UserError`.
    ``generator``: an already loaded :class:`~gen_reason.models.DiffusersVideoGenerator`
    (``model`` is then only a name); ``progress``: show a progress bar.

    Returns the summary dict (also written to ``out/summary.json``).
    """
    from gen_reason.config import build

    config = build(ProbeConfig, {"task": task, "model": model, "out": out, **options}, what="probe")
    return run_probe_config(config, generator=generator, progress=progress)


def run_probe_config(config: ProbeConfig, *, generator=None, progress: bool = True) -> dict:
    """:func:`run_probe` on a built :class:`ProbeConfig`: load, step probe, layer probe,
    interventions, then the figures, tensors and summary."""
    model_options = config.model_options()
    seeds = config.seed_list()
    started = time.perf_counter()
    loaded = _load(config, generator, seeds, model_options)
    probed = _step_probe(config, loaded, progress)
    after_steps = time.perf_counter()
    layer_result, layer_summary = _layer_probe(config, loaded, probed)
    after_layers = time.perf_counter()
    sweep = _intervene(config, loaded, probed.results)
    after_interventions = time.perf_counter()
    curve = emergence(probed.results)
    files = _write_outputs(loaded.out, probed.results, curve, layer_result, sweep, probed.recorder, config.save_x0)
    seconds = {"layer_probes": round(after_layers - after_steps, 3),
               "interventions": round(after_interventions - after_layers, 3)}
    return _summarise(config, loaded, probed, curve, layer_summary, sweep, files, started, seconds)


def _load(config: ProbeConfig, generator, seeds: list[int], model_options: dict) -> _Loaded:
    """Check the output folder and the model, make the puzzles, load the generator; the
    folder is made (with ``config.yaml``) only once all of them proved valid."""
    from gen_reason.models.loading import check_model, load_generator, task_for_model

    out = check_writable(config.out)
    if generator is None:
        check_model(config.model, config.lora)
    defaults = model_task_defaults(generator, config.model)
    difficulty = config.difficulty or defaults.get("difficulty", "easy")
    # The model's general puzzle settings, then its per-difficulty geometry, then the caller's
    # (the convention of genreason.json, as genreason solve and eval read it); checked
    # before the model loads.
    task_obj = task_for_model(defaults, config.task, difficulty, config.task_config, model=config.model)
    puzzles = [task_obj.generate(int(config.first_instance_seed) + i, difficulty) for i in range(int(config.instances))]
    referee = resolve_verifier(config.verifier, puzzles[0].task)
    if generator is None:
        generator = load_generator(config.model, lora=config.lora, num_frames=defaults.get("num_frames"),
                                   **model_options)
    if not hasattr(generator, "decode_latents") or not hasattr(generator, "pipeline"):
        raise UserError(f"the probe needs a diffusers generator (with decode_latents); got {type(generator).__name__}")
    num_frames = config.num_frames
    if num_frames is None:
        # The model's own frame count: its genreason.json, else a pipeline with a fixed one (embedded).
        fixed = getattr(generator.pipeline, "num_frames", None)
        num_frames = defaults.get("num_frames") or (fixed if isinstance(fixed, int) else None)
    writable_dir(out)
    _write_config(out, config, difficulty=difficulty, num_frames=num_frames)
    return _Loaded(generator, puzzles, referee, seeds, difficulty, num_frames, out)


def _write_config(out: Path, config: ProbeConfig, **resolved: Any) -> None:
    """``out/config.yaml``: the config with the settings the model supplied filled in."""
    from gen_reason.config import dump_yaml
    from gen_reason.models.options import MODEL_OPTIONS

    plain = (str, int, float, bool, list, tuple, type(None))
    objects = {name: str(getattr(config, name)) for name in MODEL_OPTIONS  # a torch dtype or device from Python
               if not isinstance(getattr(config, name), plain)}
    (out / "config.yaml").write_text(dump_yaml(replace(config, **resolved, **objects, out=str(out))))


def _step_probe(config: ProbeConfig, loaded: _Loaded, progress: bool) -> _Probed:
    """Generate every puzzle's seeds, decoding and scoring x0 every ``config.every`` steps;
    the layer recorder (when asked for) pools the hooked blocks' features meanwhile."""
    recorder = (LayerRecorder(loaded.generator, config.layers, every=config.every, pool=config.pool,
                              project_dim=config.project_dim) if config.layer_probe else None)
    results = []
    try:
        if recorder is not None:
            recorder.__enter__()
        for index, instance in enumerate(_progress(loaded.puzzles, progress, "probe")):
            if recorder is not None:
                recorder.mark_instance(index)
            # Videos and latents of the first instance feed the figures; later ones only their scores.
            result = run_step_probe(
                loaded.generator, instance, loaded.seeds, every=config.every, num_steps=config.steps,
                num_frames=loaded.num_frames, guidance=config.guidance, verifier=loaded.referee,
                decode_scale=config.decode_scale, hooks=[recorder] if recorder is not None else [],
                keep_videos=index == 0,
                keep_x0=config.save_x0 == "all" or (config.save_x0 == "first" and index == 0),
            )
            if index > 0:
                result.final_videos = []
            results.append(result)
    finally:
        if recorder is not None:
            recorder.remove()
    return _Probed(results, recorder)


def _layer_probe(config: ProbeConfig, loaded: _Loaded, probed: _Probed) -> tuple[Any, dict[str, Any]]:
    """Fit the per-layer linear probes on the recorded features (maze tasks with at least two
    puzzles); returns the result (``None`` when skipped) and its summary."""
    recorder, results = probed.recorder, probed.results
    if recorder is None:
        return None, {"skipped": "layer_probe=False"}
    if not (_is_maze(loaded.puzzles[0]) and len(loaded.puzzles) >= 2):
        return None, {"skipped": "linear probes need a maze task and at least two instances"}
    video_frames = len(results[0].final_videos[0])  # the first instance keeps its videos
    # Recorder samples run instance by instance, seeds in order: sample s is seed s % n of its instance.
    targets = []
    for s in range(len(recorder.seeds)):
        instance_index, seed_index = recorder.instance_of_sample[s], s % len(loaded.seeds)
        positions = None
        if config.agent_targets == "generated":
            positions = results[instance_index].final_scores[seed_index].trace.get("agent_positions") or []
        targets.append(maze_targets(loaded.generator, loaded.puzzles[instance_index], video_frames,
                                    config.probe_frames, positions))
    layer_result = fit_layer_probes(recorder, targets)
    return layer_result, layer_result.to_dict()


def _intervene(config: ProbeConfig, loaded: _Loaded, results: list) -> list[dict]:
    """The noise (and, with two seeds or more, swap) interventions on the first puzzle."""
    if not config.interventions:
        return []
    num_steps = results[0].num_steps
    chosen = (sorted({int(s) for s in config.intervention_steps}) if config.intervention_steps is not None
              else sorted({int(round(s)) for s in np.linspace(0, max(0, num_steps - 2), min(6, num_steps))}))
    kinds = ("noise", "swap") if len(loaded.seeds) >= 2 else ("noise",)
    first = results[0]
    return intervention_sweep(
        loaded.generator, first.instance, loaded.seeds, chosen, kinds=kinds, strength=config.intervention_strength,
        verifier=loaded.referee, baseline=(first.final_videos, first.final_scores),
        steps=config.steps, num_frames=loaded.num_frames, guidance=config.guidance,
    )


def _summarise(config: ProbeConfig, loaded: _Loaded, probed: _Probed, curve: dict, layer_summary: dict,
               sweep: list[dict], files: dict, started: float, seconds: dict) -> dict:
    """The summary dict (``curve``: the emergence curve), written to ``summary.json``."""
    results, recorder, generator, puzzles = probed.results, probed.recorder, loaded.generator, loaded.puzzles
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
        "num_frames": len(results[0].final_videos[0]),  # the first instance keeps its videos
        "settings": {"every": config.every, "decode_scale": config.decode_scale,
                     "verifier": getattr(loaded.referee, "name", config.verifier),
                     "guidance": config.guidance, "pool": list(config.pool), "project_dim": config.project_dim,
                     "layers": recorder.layers if recorder is not None else [],
                     "agent_targets": config.agent_targets, "probe_frames": config.probe_frames,
                     "intervention_strength": config.intervention_strength,
                     "early_fraction": config.early_fraction},
        "final": {
            "success": _mean([s.success for s in finals]),
            "metrics": {name: _mean([s.metrics.get(name, math.nan) for s in finals])
                        for name in curve["metrics"]},
        },
        "emergence": curve,
        "exploration": exploration(results, early_fraction=config.early_fraction),
        "layer_probe": layer_summary,
        "interventions": sweep,
        "seconds": {
            "total": round(time.perf_counter() - started, 3),
            "generate": round(sum(r.seconds["generate"] for r in results), 3),
            "decode": round(sum(r.seconds["decode"] for r in results), 3),
            "score": round(sum(r.seconds["score"] for r in results), 3),
            **seconds,
        },
        "files": files,
    }
    (loaded.out / "summary.json").write_text(json.dumps(_clean(summary), indent=1, sort_keys=False) + "\n")
    return _clean(summary)


def _write_outputs(out: Path, results, curve, layer_result, sweep, recorder, save_x0) -> dict:
    from safetensors.torch import save_file

    from gen_reason.probe import plots

    files: dict[str, str] = {}
    first = results[0]
    strips = out / "filmstrips"
    strips.mkdir(exist_ok=True)
    for sample, seed in enumerate(first.seeds):
        path = plots.write_filmstrip(strips / f"{first.instance.uid}_seed{seed}.png", first.step_videos[sample],
                                     sigmas=first.sigmas, final=first.final_videos[sample])
        if sample == 0:
            files["filmstrip"] = str(plots.write_filmstrip(out / "filmstrip.png", first.step_videos[0],
                                                           sigmas=first.sigmas, final=first.final_videos[0]))
    files["filmstrips"] = str(strips)
    files["step_metrics"] = str(plots.step_metric_heatmap(out / "step_metrics.png", curve))
    files["emergence"] = str(plots.emergence_plot(out / "emergence.png", curve, sweep))
    if layer_result is not None:
        files["layer_probe"] = str(plots.layer_probe_heatmaps(out / "layer_probe.png", layer_result))

    with open(out / "scores.jsonl", "w") as handle:
        for result in results:
            for row in result.rows():
                handle.write(json.dumps(row) + "\n")
    files["scores"] = str(out / "scores.jsonl")

    if save_x0 != "none":
        tensors = {}
        for result in results if save_x0 == "all" else results[:1]:
            tensors[f"x0/{result.instance.uid}"] = torch.stack([
                torch.stack([result.x0[sample][step] for step in result.steps]) for sample in range(len(result.seeds))
            ]).to(torch.float16).contiguous()
        metadata = {"steps": json.dumps(first.steps), "seeds": json.dumps(first.seeds),
                    "layout": "[seeds, steps, C, F, h, w]"}
        save_file(tensors, str(out / "x0.safetensors"), metadata=metadata)
        files["x0"] = str(out / "x0.safetensors")
    if recorder is not None and recorder.seeds:
        metadata = {"layers": json.dumps(recorder.layers), "layout": "[samples, steps, t, gh, gw, D]",
                    "instances": json.dumps([r.instance.uid for r in results])}
        save_file(recorder.tensors(), str(out / "features.safetensors"), metadata=metadata)
        files["features"] = str(out / "features.safetensors")
    files["summary"] = str(out / "summary.json")
    return files


def _progress(items, enabled: bool, label: str):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=label, unit="puzzle")


def _mean(values) -> float | None:
    array = np.asarray([float(v) for v in values], dtype=float)
    array = array[np.isfinite(array)]
    return float(array.mean()) if array.size else None


def _clean(obj):
    """JSON-ready: NaN/inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
