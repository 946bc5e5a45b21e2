"""What the probe job writes at its end, besides ``config.yaml`` and the logs: the figures,
``x0.safetensors``, ``features.safetensors`` (each written atomically). The run and its
layout: :mod:`gen_reason.probe.run`."""

from __future__ import annotations

import json
from pathlib import Path

from gen_reason.folders import replacing
from gen_reason.probe.layers import LayerFeatures
from gen_reason.probe.steps import StepProbeResult
from gen_reason.probe.units import ProbedUnit, x0_tensor


def write_filmstrips(out: Path, first: StepProbeResult) -> None:
    """``filmstrip.png`` and ``filmstrips/<instance>_seed<k>.png`` of the first puzzle."""
    from gen_reason.probe import plots

    strips = out / "filmstrips"
    strips.mkdir(exist_ok=True)
    for sample, seed in enumerate(first.seeds):
        plots.write_filmstrip(strips / f"{first.instance.uid}_seed{seed}.png", first.step_videos[sample],
                              sigmas=first.sigmas, final=first.final_videos[sample])
    plots.write_filmstrip(out / "filmstrip.png", first.step_videos[0], sigmas=first.sigmas,
                          final=first.final_videos[0])


def write_outputs(out: Path, units: list[ProbedUnit], curve: dict, layer_result, sweep: list[dict],
                  features: LayerFeatures | None, save_x0: str) -> dict:
    """The charts (the filmstrips were drawn with the first puzzle), ``x0.safetensors`` and
    ``features.safetensors``; returns the files of the run by role."""
    from gen_reason.probe import plots

    first = units[0].result
    files: dict[str, str] = {"filmstrip": str(out / "filmstrip.png"), "filmstrips": str(out / "filmstrips")}
    files["step_metrics"] = str(plots.step_metric_heatmap(out / "step_metrics.png", curve))
    files["emergence"] = str(plots.emergence_plot(out / "emergence.png", curve, sweep))
    if layer_result is not None:
        files["layer_probe"] = str(plots.layer_probe_heatmaps(out / "layer_probe.png", layer_result))
    files["scores"] = str(out / "scores.jsonl")
    if save_x0 != "none":
        tensors = {}
        for unit in units if save_x0 == "all" else units[:1]:
            tensors[f"x0/{unit.result.instance.uid}"] = x0_tensor(unit.result)
        metadata = {"steps": json.dumps(first.steps), "seeds": json.dumps(first.seeds),
                    "layout": "[seeds, steps, C, F, h, w]"}
        save_tensors(out / "x0.safetensors", tensors, metadata)
        files["x0"] = str(out / "x0.safetensors")
    if features is not None and features.seeds:
        metadata = {"layers": json.dumps(features.layers), "layout": "[samples, steps, t, gh, gw, D]",
                    "instances": json.dumps([unit.result.instance.uid for unit in units])}
        save_tensors(out / "features.safetensors", features.tensors(), metadata)
        files["features"] = str(out / "features.safetensors")
    files["summary"] = str(out / "summary.json")
    return files


def save_tensors(path: Path, tensors: dict, metadata: dict) -> None:
    """Write ``tensors`` with ``metadata`` to ``path`` as safetensors, atomically."""
    from safetensors.torch import save_file

    with replacing(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
