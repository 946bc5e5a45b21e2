"""The chain-of-steps probe: what a video model "thinks" at every denoising step and layer.

Three instruments over one :class:`~gen_reason.models.DiffusersVideoGenerator` (any
family: Wan, CogVideoX, LTX, the embedded model), all built on the generator's
``on_step`` hook and on forward hooks, so the generation they watch is the one a solver
would get, bit for bit:

- :mod:`.steps`: the step probe. Keeps the scheduler's own clean estimate ``x0`` at
  every (or every k-th) step, decodes it, has the referee score it: the emergence curve
  (when is the answer committed?) and exploration (which candidate paths appear early,
  across seeds?).
- :mod:`.interventions`: re-noise or swap latents between seeds at a chosen step and
  measure how the outcome moves.
- :mod:`.layers`: forward hooks on the denoiser's blocks (conditional pass only under
  CFG), pooled features, and per-layer linear probes (which cell is the agent in at
  frame t; is cell c on the solution path): accuracy by layer and by step.

:func:`run_probe` (:mod:`.run`) runs all three on a task and writes the figures, raw
tensors and ``summary.json``; it is what ``genreason probe`` runs::

    from gen_reason.probe import run_probe
    summary = run_probe("maze", "embedded", "out/probe", instances=8, seeds=4, every=4)

Imports are lazy: ``import gen_reason.probe`` loads no torch until a name is used.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "LatentSwap",
    "LayerRecorder",
    "NoiseInjection",
    "StepProbe",
    "chain_hooks",
    "denoiser_blocks",
    "emergence",
    "exploration",
    "fit_layer_probes",
    "run_intervention",
    "run_probe",
    "run_step_probe",
]

_LAZY = {
    "StepProbe": "gen_reason.probe.steps",
    "chain_hooks": "gen_reason.probe.steps",
    "run_step_probe": "gen_reason.probe.steps",
    "emergence": "gen_reason.probe.emergence",
    "exploration": "gen_reason.probe.emergence",
    "NoiseInjection": "gen_reason.probe.interventions",
    "LatentSwap": "gen_reason.probe.interventions",
    "run_intervention": "gen_reason.probe.interventions",
    "LayerRecorder": "gen_reason.probe.layers",
    "denoiser_blocks": "gen_reason.probe.layers",
    "fit_layer_probes": "gen_reason.probe.readout",
    "run_probe": "gen_reason.probe.run",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gen_reason.probe' has no attribute {name!r}")
