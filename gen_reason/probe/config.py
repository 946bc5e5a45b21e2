"""The probe's settings: :class:`ProbeConfig` (what ``genreason probe`` flags,
``--probe.FIELD VALUE`` and :func:`~gen_reason.probe.run.run_probe`'s keyword arguments
set), with the checks that run before anything loads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from gen_reason.errors import UserError

#: Instance seeds start here by default: puzzles the embedded model never trained on.
FIRST_INSTANCE_SEED = 1_000_000

#: The allowed range of each numeric option of :class:`ProbeConfig` (low, high, whether low itself is allowed).
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


@dataclass
class ProbeConfig:
    """Every setting of one probe run (``genreason probe`` flags, ``--probe.FIELD VALUE``, or
    :func:`~gen_reason.probe.run.run_probe`'s keyword arguments); built and checked by :func:`gen_reason.config.build`.

    Fields:
        task: a registered task name (``maze`` = ``maze/grid``).
        model: ``"embedded"`` or a local diffusers model folder (ignored when a generator
            is passed in). A model folder's ``genreason.json`` supplies the puzzle settings
            it was trained on (task config, difficulty, frame count).
        out: the output folder (created).
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
        lora: a LoRA folder for the model loader.
        size, dtype, device, offload, vae_tiling, attention, compile, max_batch: the model
            options every command shares (:mod:`gen_reason.models.options`; ``None``: the
            model's default or the memory planner's choice), checked before anything loads.
    """

    task: str = "maze"
    model: str | None = "embedded"
    out: str = "out/probe"
    difficulty: str | None = None
    instances: int = 8
    first_instance_seed: int = FIRST_INSTANCE_SEED
    seeds: int | list[int] = 4
    steps: int | None = None
    every: int = 4
    num_frames: int | None = None
    guidance: float | None = None
    verifier: str = "reference"
    decode_scale: float = 1.0
    layers: list[str | int] | str | None = None
    layer_probe: bool = True
    pool: tuple[int, ...] = (4, 8, 8)
    project_dim: int | None = 256
    probe_frames: int = 4
    agent_targets: str = "generated"
    interventions: bool = True
    intervention_steps: list[int] | None = None
    intervention_strength: float = 1.0
    early_fraction: float = 0.5
    save_x0: str = "first"
    task_config: dict[str, Any] | None = None
    lora: str | None = None
    size: Any = None
    dtype: Any = None
    device: Any = None
    offload: Any = None
    vae_tiling: Any = None
    attention: Any = None
    compile: Any = None
    max_batch: Any = None

    def __post_init__(self) -> None:
        if self.agent_targets not in ("generated", "solution"):
            raise UserError(f"agent_targets must be generated or solution; got {self.agent_targets!r}")
        if self.save_x0 not in ("first", "all", "none"):
            raise UserError(f"save_x0 must be first, all or none; got {self.save_x0!r}")
        if int(self.instances) < 1:
            raise UserError(f"instances must be at least 1, got {self.instances}")
        _check_numbers(steps=self.steps, every=self.every, num_frames=self.num_frames,
                       probe_frames=self.probe_frames, guidance=self.guidance, decode_scale=self.decode_scale,
                       early_fraction=self.early_fraction, intervention_strength=self.intervention_strength)
        _check_lists(pool=self.pool, project_dim=self.project_dim, intervention_steps=self.intervention_steps,
                     layers=self.layers)

    def model_options(self) -> dict[str, Any]:
        """The model options given (size, dtype, ...), checked and normalised."""
        from gen_reason.models.options import MODEL_OPTIONS, check_model_options

        return check_model_options(**{name: getattr(self, name) for name in MODEL_OPTIONS})

    def seed_list(self) -> list[int]:
        """The sampling seeds (an int ``n`` means ``0..n-1``)."""
        return _seed_list(self.seeds)
