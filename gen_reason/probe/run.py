"""The ``probe`` job: step probe, interventions and layer probe on one task and model, written to a folder.

``genreason probe --task maze --model embedded --out DIR`` runs :func:`run_probe`. The
folder it writes:

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
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from gen_reason.errors import UserError, check_writable, writable_dir
from gen_reason.probe.interventions import intervention_sweep
from gen_reason.probe.layers import LayerRecorder, fit_layer_probes, maze_targets
from gen_reason.probe.steps import emergence, exploration, resolve_verifier, run_step_probe

#: Instance seeds start here by default: puzzles the embedded model never trained on.
FIRST_INSTANCE_SEED = 1_000_000


def model_task_defaults(generator, model) -> dict:
    """The puzzle settings of the model folder (none when a generator is passed in)."""
    from gen_reason.models.loading import model_task_defaults as read_defaults, resolve_model_path

    if generator is not None:  # a generator in hand: its folder is unknown, so nothing to read
        return {}
    try:
        return read_defaults(resolve_model_path(model))
    except UserError:
        return {}


#: The allowed range of each numeric option of :func:`run_probe` (low, high, whether low itself is allowed).
_RANGES = {"steps": (1, None, True), "every": (1, None, True), "num_frames": (1, None, True),
           "probe_frames": (1, None, True), "guidance": (0, None, True), "decode_scale": (0, 1, False),
           "early_fraction": (0, 1, False), "intervention_strength": (0, 1, True)}


def _check_numbers(**values) -> None:
    """A one-line :class:`UserError` for a numeric option out of its range (``None``: the default)."""
    for name, value in values.items():
        if value is None:
            continue
        low, high, low_ok = _RANGES[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{name} must be a number; got {value!r}")
        if high is None and low_ok and value < low:
            raise UserError(f"{name} must be at least {low}, got {value}")
        if value < low or (value == low and not low_ok) or (high is not None and value > high):
            bounds = f"{'[' if low_ok else '('}{low}, {high if high is not None else 'inf'}{']' if high is not None else ')'}"
            raise UserError(f"{name} must be in {bounds}; got {value}")


def _ints(value, low: int) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) and v >= low
                                                    for v in value)


def _check_lists(*, pool, project_dim, intervention_steps, layers) -> None:
    """One-line :class:`UserError` for a list option of the wrong shape, before the model loads
    (layer names themselves can only be checked against the loaded model)."""
    if not (_ints(pool, 1) and len(pool) == 3):
        raise UserError(f"pool must be three integers >= 1 (frames, rows, columns); got {pool!r}")
    if project_dim is not None and not _ints([project_dim], 1):
        raise UserError(f"project_dim must be an integer >= 1 or null; got {project_dim!r}")
    if intervention_steps is not None and not _ints(intervention_steps, 0):
        raise UserError(f"intervention_steps must be a list of step indices >= 0; got {intervention_steps!r}")
    if not (layers is None or isinstance(layers, str) or _ints([layers], 0)
            or (isinstance(layers, (list, tuple)) and all(isinstance(v, str) or _ints([v], 0) for v in layers))):
        raise UserError(f"layers must be 'all', a block name or index, or a list of them; got {layers!r}")


def _seed_list(seeds: int | Sequence[int]) -> list[int]:
    if isinstance(seeds, (int, np.integer)):
        if seeds < 1:
            raise UserError(f"seeds must be at least 1, got {seeds}")
        return list(range(int(seeds)))
    seeds = [int(seed) for seed in seeds]
    if not seeds:
        raise UserError("give at least one seed")
    return seeds


def _is_maze(instance) -> bool:
    spec = getattr(instance, "spec", {}) or {}
    return spec.get("family") == "maze" and "nodes" in spec and isinstance(instance.solution, dict) \
        and "path" in instance.solution


def run_probe(
    task: str = "maze",
    model: str | None = "embedded",
    out: str | Path = "out/probe",
    *,
    generator=None,
    difficulty: str | None = None,
    instances: int = 8,
    first_instance_seed: int = FIRST_INSTANCE_SEED,
    seeds: int | Sequence[int] = 4,
    steps: int | None = None,
    every: int = 4,
    num_frames: int | None = None,
    guidance: float | None = None,
    verifier: str = "reference",
    decode_scale: float = 1.0,
    layers: Sequence[str] | str | None = None,
    layer_probe: bool = True,
    pool: Sequence[int] = (4, 8, 8),
    project_dim: int | None = 256,
    probe_frames: int = 4,
    agent_targets: str = "generated",
    interventions: bool = True,
    intervention_steps: Sequence[int] | None = None,
    intervention_strength: float = 1.0,
    early_fraction: float = 0.5,
    save_x0: str = "first",
    task_config: dict | None = None,
    lora: str | None = None,
    device: str | None = None,
    progress: bool = True,
    size=None,
    dtype: str | None = None,
    offload: str | None = None,
    vae_tiling=None,
    attention: str | None = None,
    compile: bool | None = None,
    max_batch=None,
) -> dict:
    """Probe ``model`` on ``instances`` puzzles of ``task`` and write figures, tensors and ``summary.json`` to ``out``.

    Args:
        task: a registered task name (``maze`` = ``maze/grid``).
        model: ``"embedded"`` or a local diffusers model folder (ignored when ``generator``
            is given). A model folder's ``genreason.json`` supplies the puzzle settings
            it was trained on (task config, difficulty, frame count).
        out: the output folder (created).
        generator: an already loaded :class:`~gen_reason.models.DiffusersVideoGenerator`.
        difficulty: puzzle difficulty (default: the model's, else ``easy``).
        instances: how many puzzles (seeds ``first_instance_seed + i``: held-out ones).
        seeds: sampling seeds per puzzle (an int ``n`` means ``0..n-1``), generated in batches.
        steps: denoising steps (generator default when ``None``); ``every``: decode and
            score x0 every k-th step (the last step always).
        num_frames, guidance: generation settings (model defaults when ``None``).
        verifier: ``"reference"`` (VR-Bench metrics against the solution) or ``"rule"``.
        decode_scale: shrink latents before decoding x0 (< 1 bounds the VAE cost).
        layers: blocks to hook (``None``: up to 8 spread over the denoiser; ``"all"``; names
            or indices); ``layer_probe=False`` skips hooks and linear probes.
        pool: pooled feature grid (frames, rows, cols); ``project_dim``: random projection
            of wider layers (``None``: keep all channels).
        probe_frames: frames along the video at which the agent-cell probe is asked.
        agent_targets: ``"generated"`` (where the referee tracks the agent in the model's
            final video: what the model will draw) or ``"solution"`` (the ground truth).
        interventions: run the noise and swap sweep on the first instance;
            ``intervention_steps``: where (default: six steps spread over the schedule);
            ``intervention_strength``: share of fresh noise (1 = all).
        early_fraction: steps before this share of the schedule count as "early" for exploration.
        save_x0: ``"first"`` (x0 latents of the first instance), ``"all"`` or ``"none"``.
        task_config: task options over the model's own (skin, sizes, ...).
        lora, device: passed to the model loader.
        size, dtype, offload, vae_tiling, attention, compile, max_batch: the model options
            every command shares (:mod:`gen_reason.models.options`; ``None``: the model's
            default or the memory planner's choice), checked before anything loads.
        progress: show a progress bar.

    Returns the summary dict (also written to ``out/summary.json``).
    """
    if agent_targets not in ("generated", "solution"):
        raise UserError(f"agent_targets must be generated or solution; got {agent_targets!r}")
    if save_x0 not in ("first", "all", "none"):
        raise UserError(f"save_x0 must be first, all or none; got {save_x0!r}")
    if int(instances) < 1:
        raise UserError(f"instances must be at least 1, got {instances}")
    _check_numbers(steps=steps, every=every, num_frames=num_frames, probe_frames=probe_frames, guidance=guidance,
                   decode_scale=decode_scale, early_fraction=early_fraction,
                   intervention_strength=intervention_strength)
    _check_lists(pool=pool, project_dim=project_dim, intervention_steps=intervention_steps, layers=layers)
    from gen_reason.models.options import check_model_options

    model_options = check_model_options(size=size, dtype=dtype, device=device, offload=offload, vae_tiling=vae_tiling,
                                        attention=attention, compile=compile, max_batch=max_batch)
    seed_list = _seed_list(seeds)
    started = time.perf_counter()
    out = check_writable(out)  # made below, once the model and the task have proved valid

    if generator is None:
        from gen_reason.models.loading import check_model

        check_model(model, lora)
    defaults = model_task_defaults(generator, model)
    difficulty = difficulty or defaults.get("difficulty", "easy")
    # The model's general puzzle settings, then its per-difficulty geometry, then the caller's
    # (the convention of genreason.json, as genreason solve and eval read it); checked
    # before the model loads.
    from gen_reason.models.loading import task_for_model

    task_obj = task_for_model(defaults, task, difficulty, task_config, model=model)
    puzzles = [task_obj.generate(int(first_instance_seed) + i, difficulty) for i in range(int(instances))]
    referee = resolve_verifier(verifier, puzzles[0].task)
    if generator is None:
        from gen_reason.models.loading import load_generator

        generator = load_generator(model, lora=lora, num_frames=defaults.get("num_frames"), **model_options)
    if not hasattr(generator, "decode_latents") or not hasattr(generator, "pipeline"):
        raise UserError(f"the probe needs a diffusers generator (with decode_latents); got {type(generator).__name__}")
    if num_frames is None:
        # The model's own frame count: its genreason.json, else a pipeline with a fixed one (embedded).
        fixed = getattr(generator.pipeline, "num_frames", None)
        num_frames = defaults.get("num_frames") or (fixed if isinstance(fixed, int) else None)
    writable_dir(out)
    generate_options = {"steps": steps, "num_frames": num_frames, "guidance": guidance}

    do_layers = layer_probe and _is_maze(puzzles[0]) and len(puzzles) >= 2
    recorder = LayerRecorder(generator, layers, every=every, pool=pool, project_dim=project_dim) if layer_probe else None
    results = []
    bar = _progress(puzzles, progress, "probe")
    try:
        if recorder is not None:
            recorder.__enter__()
        for index, instance in enumerate(bar):
            if recorder is not None:
                recorder.mark_instance(index)
            # Videos and latents of the first instance feed the figures; later ones only their scores.
            result = run_step_probe(
                generator, instance, seed_list, every=every, num_steps=steps, num_frames=num_frames,
                guidance=guidance, verifier=referee, decode_scale=decode_scale,
                hooks=[recorder] if recorder is not None else [],
                keep_videos=index == 0, keep_x0=save_x0 == "all" or (save_x0 == "first" and index == 0),
            )
            if index > 0:
                result.final_videos = []
            results.append(result)
    finally:
        if recorder is not None:
            recorder.remove()
    probed = time.perf_counter()

    curve = emergence(results)
    explored = exploration(results, early_fraction=early_fraction)
    video_frames = len(results[0].final_videos[0])  # the first instance keeps its videos

    layer_result = None
    layer_summary: dict[str, Any] = {"skipped": "layer_probe=False"} if not layer_probe else {}
    if recorder is not None and do_layers:
        # Recorder samples run instance by instance, seeds in order: sample s is seed s % n of its instance.
        targets = []
        for s in range(len(recorder.seeds)):
            instance_index, seed_index = recorder.instance_of_sample[s], s % len(seed_list)
            positions = None
            if agent_targets == "generated":
                positions = results[instance_index].final_scores[seed_index].trace.get("agent_positions") or []
            targets.append(maze_targets(generator, puzzles[instance_index], video_frames, probe_frames, positions))
        layer_result = fit_layer_probes(recorder, targets)
        layer_summary = layer_result.to_dict()
    elif recorder is not None:
        layer_summary = {"skipped": "linear probes need a maze task and at least two instances"}
    layered = time.perf_counter()

    sweep: list[dict] = []
    if interventions:
        num_steps = results[0].num_steps
        chosen = (sorted({int(s) for s in intervention_steps}) if intervention_steps is not None
                  else sorted({int(round(s)) for s in np.linspace(0, max(0, num_steps - 2), min(6, num_steps))}))
        kinds = ("noise", "swap") if len(seed_list) >= 2 else ("noise",)
        first = results[0]
        sweep = intervention_sweep(
            generator, first.instance, seed_list, chosen, kinds=kinds, strength=intervention_strength,
            verifier=referee, baseline=(first.final_videos, first.final_scores), **generate_options,
        )
    intervened = time.perf_counter()

    files = _write_outputs(out, results, curve, layer_result, sweep, recorder, save_x0)
    finals = [score for r in results for score in r.final_scores]
    summary = {
        "task": puzzles[0].task,
        "model": getattr(generator, "name", str(model)),
        "family": getattr(getattr(generator, "family", None), "name", None),
        "prediction_type": getattr(generator, "prediction_type", None),
        "difficulty": difficulty,
        "instances": [p.uid for p in puzzles],
        "image_size": list(puzzles[0].first_frame.shape[:2]),
        "seeds": seed_list,
        "num_steps": results[0].num_steps,
        "num_frames": video_frames,
        "settings": {"every": every, "decode_scale": decode_scale, "verifier": getattr(referee, "name", verifier),
                     "guidance": guidance, "pool": list(pool), "project_dim": project_dim,
                     "layers": recorder.layers if recorder is not None else [],
                     "agent_targets": agent_targets, "probe_frames": probe_frames,
                     "intervention_strength": intervention_strength, "early_fraction": early_fraction},
        "final": {
            "success": _mean([s.success for s in finals]),
            "metrics": {name: _mean([s.metrics.get(name, math.nan) for s in finals])
                        for name in curve["metrics"]},
        },
        "emergence": curve,
        "exploration": explored,
        "layer_probe": layer_summary,
        "interventions": sweep,
        "seconds": {
            "total": round(time.perf_counter() - started, 3),
            "generate": round(sum(r.seconds["generate"] for r in results), 3),
            "decode": round(sum(r.seconds["decode"] for r in results), 3),
            "score": round(sum(r.seconds["score"] for r in results), 3),
            "layer_probes": round(layered - probed, 3),
            "interventions": round(intervened - layered, 3),
        },
        "files": files,
    }
    (out / "summary.json").write_text(json.dumps(_clean(summary), indent=1, sort_keys=False) + "\n")
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
