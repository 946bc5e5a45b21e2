"""The layer probe: what each denoiser block represents at each step, read by linear probes.

:class:`LayerRecorder` puts forward hooks on chosen blocks of the denoiser (Wan:
``transformer.blocks`` and, on Wan 2.2 A14B, ``transformer_2.blocks``; CogVideoX and
LTX: ``transformer.transformer_blocks``; the embedded UNet: its down, mid and up
blocks). It keeps the **conditional pass only** under classifier-free guidance: Wan
calls the denoiser twice per step (conditional first), so only the first call of a
step is kept; CogVideoX and LTX call it once on a batch of ``2B`` ordered
``[unconditional, conditional]`` (diffusers' convention), so the second half is kept.

Each block output is laid out on its token grid ``(frames, rows, cols)`` (transformer
tokens are reshaped from the patch grid; UNet feature maps are one frame of ``H x W``)
and average-pooled to at most ``pool = (frames, rows, cols)``; ``project_dim`` reduces
wide layers (Wan 14B: 5120 channels) by a fixed random projection, which keeps linear
read-outs linear. Features are kept per sample and step on the CPU in float16.

The read-outs on these features (:func:`fit_layer_probes`, the maze targets) live in
:mod:`gen_reason.probe.readout` and are importable from here.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from gen_reason.errors import UserError
from gen_reason.models.base import StepState
from gen_reason.probe.readout import (  # the read-outs, importable from here too
    LayerProbeResult,
    ProbeTargets,
    agent_nodes,
    fit_layer_probes,
    maze_targets,
    nearest_nodes,
    node_uv,
    ridge_fit,
    ridge_predict,
    sample_grid,
    split_instances,
)


# -- which blocks --------------------------------------------------------------------------
def denoiser_modules(pipeline) -> dict[str, torch.nn.Module]:
    """The denoiser network(s) of a pipeline by attribute name (``transformer``, ``transformer_2``, ``unet``)."""
    modules = {}
    for name in ("transformer", "transformer_2", "unet"):
        module = getattr(pipeline, name, None)
        if isinstance(module, torch.nn.Module):
            modules[name] = module
    if not modules:
        raise UserError(f"{type(pipeline).__name__} has no transformer or unet to hook")
    return modules


def denoiser_blocks(pipeline) -> dict[str, torch.nn.Module]:
    """Every hookable block of the pipeline's denoiser(s), in forward order, by dotted name.

    Names: ``transformer.blocks.3`` (Wan), ``transformer_2.blocks.3`` (Wan 2.2 A14B's
    low-noise expert), ``transformer.transformer_blocks.0`` (CogVideoX, LTX),
    ``unet.down_blocks.0`` / ``unet.mid_block`` / ``unet.up_blocks.1`` (UNets).
    """
    blocks: dict[str, torch.nn.Module] = {}
    for owner, module in denoiser_modules(pipeline).items():
        for attribute in ("blocks", "transformer_blocks", "down_blocks", "mid_block", "up_blocks"):
            value = getattr(module, attribute, None)
            if isinstance(value, torch.nn.ModuleList):
                for index, block in enumerate(value):
                    blocks[f"{owner}.{attribute}.{index}"] = block
            elif isinstance(value, torch.nn.Module):
                blocks[f"{owner}.{attribute}"] = value
    if not blocks:
        raise UserError(f"found no blocks to hook in {type(pipeline).__name__}")
    return blocks


def default_layers(pipeline, max_layers: int = 8) -> list[str]:
    """Up to ``max_layers`` blocks spread evenly over each denoiser (all when there are few)."""
    names = list(denoiser_blocks(pipeline))
    chosen = []
    for owner in denoiser_modules(pipeline):
        own = [name for name in names if name.split(".", 1)[0] == owner]
        if len(own) <= max_layers:
            chosen.extend(own)
        else:
            picks = np.unique(np.round(np.linspace(0, len(own) - 1, max_layers)).astype(int))
            chosen.extend(own[i] for i in picks)
    return chosen


def resolve_layers(pipeline, layers: Sequence[str] | str | None, max_layers: int = 8) -> list[str]:
    """``None``: :func:`default_layers`; ``"all"``: every block; names or integer indices otherwise."""
    available = list(denoiser_blocks(pipeline))
    if layers is None:
        return default_layers(pipeline, max_layers)
    if isinstance(layers, str):
        layers = available if layers == "all" else [item.strip() for item in layers.split(",") if item.strip()]
    chosen = []
    for item in layers:
        if isinstance(item, (int, np.integer)) or (isinstance(item, str) and item.lstrip("-").isdigit()):
            index = int(item)
            if not -len(available) <= index < len(available):
                raise UserError(f"layer index {index} is out of range: the denoiser has {len(available)} blocks")
            chosen.append(available[index])
        elif item in available:
            chosen.append(item)
        else:
            raise UserError(f"unknown layer {item!r}; this denoiser's blocks are {available[0]} .. {available[-1]}")
    return list(dict.fromkeys(chosen))


# -- token grids ---------------------------------------------------------------------------
def _patch(config, family_name: str) -> tuple[int, int, int]:
    patch = getattr(config, "patch_size", 1) or 1
    if isinstance(patch, (tuple, list)):  # Wan: (t, h, w)
        return int(patch[0]), int(patch[1]), int(patch[2])
    patch_t = getattr(config, "patch_size_t", None) or 1
    return int(patch_t), int(patch), int(patch)


def token_grid(module: torch.nn.Module, family_name: str, args: tuple, kwargs: dict) -> tuple[int, int, int] | None:
    """The ``(frames, rows, cols)`` token grid of a transformer call, from its input.

    Wan: latents ``[B, C, F, H, W]``; CogVideoX: ``[B, F, C, H, W]``; LTX: packed tokens
    with ``num_frames``, ``height``, ``width`` passed as keywords. ``None`` when unknown
    (features are then pooled to one vector).
    """
    hidden = kwargs.get("hidden_states", args[0] if args else None)
    config = getattr(module, "config", None)
    if hidden is None or config is None:
        return None
    patch_t, patch_h, patch_w = _patch(config, family_name)
    if all(key in kwargs for key in ("num_frames", "height", "width")):  # LTX: packed, geometry as keywords
        return int(kwargs["num_frames"]) // patch_t, int(kwargs["height"]) // patch_h, int(kwargs["width"]) // patch_w
    if hidden.ndim != 5:
        return None
    if family_name.startswith("cogvideox"):
        _, frames, _, height, width = hidden.shape
    else:
        _, _, frames, height, width = hidden.shape
    return math.ceil(frames / patch_t), height // patch_h, width // patch_w


def pool_features(output: torch.Tensor, grid: tuple[int, int, int] | None, pool: tuple[int, int, int]) -> torch.Tensor:
    """A block's output -> ``[N, t, gh, gw, D]`` average-pooled to at most ``pool``.

    4-D outputs are conv feature maps ``[N, C, H, W]`` (one frame); 3-D outputs are tokens
    ``[N, seq, D]`` laid out on ``grid`` (the last ``prod(grid)`` tokens: some models
    prepend others); without a matching grid they are pooled to one vector.
    """
    output = output.detach()
    if output.ndim == 4:
        volume = output[:, :, None]  # [N, C, 1, H, W]
    elif output.ndim == 3:
        tokens = output.shape[1]
        if grid is not None and 0 < math.prod(grid) <= tokens:
            frames, rows, cols = grid
            volume = output[:, tokens - math.prod(grid):].reshape(output.shape[0], frames, rows, cols, -1)
            volume = volume.permute(0, 4, 1, 2, 3)
        else:
            volume = output.mean(dim=1)[:, :, None, None, None]
    else:
        raise UserError(f"cannot pool a block output of shape {tuple(output.shape)}")
    target = tuple(min(have, want) for have, want in zip(volume.shape[2:], pool))
    pooled = torch.nn.functional.adaptive_avg_pool3d(volume.float(), target)
    return pooled.permute(0, 2, 3, 4, 1).contiguous()


# -- recorded features ---------------------------------------------------------------------
class LayerFeatures:
    """Pooled block features by layer and ``(sample, step)``: what a :class:`LayerRecorder`
    records, and what the probe job gathers back from its stored units (:meth:`extend`).

    ``features[layer][(sample, step)]`` is ``[t, gh, gw, D]``; :attr:`seeds` and
    :attr:`instance_of_sample` say which seed and puzzle each sample is.
    """

    def __init__(self, layers: Sequence[str]) -> None:
        self.layers = list(layers)
        self.features: dict[str, dict[tuple[int, int], torch.Tensor]] = {name: {} for name in self.layers}
        self.seeds: list[int] = []
        self.instance_of_sample: list[int] = []

    @property
    def recorded_steps(self) -> list[int]:
        """Steps with features, in order."""
        return sorted({step for by_key in self.features.values() for (_, step) in by_key})

    def layer_steps(self, name: str) -> list[int]:
        """The steps at which layer ``name`` ran and was kept (Wan 2.2 A14B: each expert runs only some steps)."""
        return sorted({step for (_, step) in self.features[name]})

    def stacked(self, name: str) -> torch.Tensor:
        """Layer ``name``'s features as one tensor ``[samples, steps, t, gh, gw, D]`` (steps: :meth:`layer_steps`)."""
        steps = self.layer_steps(name)
        return torch.stack([
            torch.stack([self.features[name][(sample, step)] for step in steps]) for sample in range(len(self.seeds))
        ])

    def tensors(self) -> dict[str, torch.Tensor]:
        """Everything as named tensors for safetensors.

        ``features/<layer>`` (:meth:`stacked`) with its steps in ``steps/<layer>``, plus
        ``seeds``, ``steps`` (all kept steps) and ``instance_of_sample``.
        """
        out: dict[str, torch.Tensor] = {}
        for name in self.layers:
            if self.features[name]:
                out[f"features/{name}"] = self.stacked(name).contiguous()
                out[f"steps/{name}"] = torch.tensor(self.layer_steps(name), dtype=torch.int64)
        out["seeds"] = torch.tensor(self.seeds, dtype=torch.int64)
        out["steps"] = torch.tensor(self.recorded_steps, dtype=torch.int64)
        out["instance_of_sample"] = torch.tensor(self.instance_of_sample, dtype=torch.int64)
        return out

    def extend(self, tensors: dict[str, torch.Tensor]) -> None:
        """Append the samples of another recording's :meth:`tensors` (one stored unit of the
        probe job) after the ones held: the inverse of :meth:`tensors`, bit for bit."""
        offset = len(self.seeds)
        for name in self.layers:
            if f"features/{name}" not in tensors:
                continue
            stacked, steps = tensors[f"features/{name}"], tensors[f"steps/{name}"].tolist()
            for sample in range(stacked.shape[0]):
                for index, step in enumerate(steps):
                    self.features[name][(offset + sample, int(step))] = stacked[sample, index]
        self.seeds.extend(int(seed) for seed in tensors["seeds"].tolist())
        self.instance_of_sample.extend(int(i) for i in tensors["instance_of_sample"].tolist())


# -- the recorder --------------------------------------------------------------------------
class LayerRecorder(LayerFeatures):
    """Forward hooks on chosen denoiser blocks; use as a context manager and as an ``on_step`` hook.

    ::

        with LayerRecorder(generator, layers=None, every=4) as recorder:
            generator.generate(image, prompt, seeds=seeds, on_step=recorder)
        recorder.features["transformer.blocks.0"][(sample, step)]   # [t, gh, gw, D] float16

    Samples are numbered across ``generate`` calls in the order of their seeds
    (:attr:`seeds` lists them), so one recorder can collect many instances: call
    :meth:`mark_instance` before each to note which samples belong to which puzzle.
    ``every`` / ``steps``: which steps to keep (the last is always kept). The hooks only
    read; outputs are bit-identical with and without them, and leaving the ``with``
    block removes them.
    """

    def __init__(self, generator, layers: Sequence[str] | str | None = None, *, every: int = 1,
                 steps: Sequence[int] | None = None, pool: Sequence[int] = (4, 8, 8),
                 project_dim: int | None = 256, dtype: torch.dtype = torch.float16, max_layers: int = 8) -> None:
        if int(every) < 1:
            raise UserError(f"every must be at least 1, got {every}")
        if len(tuple(pool)) != 3 or min(int(p) for p in pool) < 1:
            raise UserError(f"pool must be three positive sizes (frames, rows, cols), got {pool!r}")
        self.generator = generator
        self.pipeline = generator.pipeline
        self.family_name = getattr(getattr(generator, "family", None), "name", "")
        super().__init__(resolve_layers(self.pipeline, layers, max_layers))
        self.every = int(every)
        self.steps = None if steps is None else sorted({int(step) for step in steps})
        self.pool = tuple(int(p) for p in pool)
        self.project_dim = project_dim
        self.dtype = dtype
        self.calls_per_step: list[int] = []  # denoiser calls seen in each step (diagnostics)
        self._instance = 0
        self._offset = 0
        self._calls = 0
        self._next_step = 0  # the step the denoiser is about to run
        self._num_steps: int | None = None  # unknown until the first step ends
        self._grid: tuple[int, int, int] | None = None
        self._pending: dict[str, torch.Tensor] = {}
        self._handles: list[Any] = []
        self._projections: dict[str, torch.Tensor] = {}

    # -- hooks ----------------------------------------------------------------------------
    def __enter__(self) -> "LayerRecorder":
        blocks = denoiser_blocks(self.pipeline)
        for owner, module in denoiser_modules(self.pipeline).items():
            self._handles.append(module.register_forward_pre_hook(self._before_denoiser, with_kwargs=True))
        for name in self.layers:
            self._handles.append(blocks[name].register_forward_hook(self._after_block(name)))
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every hook (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _before_denoiser(self, module, args, kwargs) -> None:
        self._calls += 1
        if self._calls == 1:
            self._grid = token_grid(module, self.family_name, args, kwargs)

    def _keeps(self, step: int, num_steps: int | None) -> bool:
        if num_steps is not None and step == num_steps - 1:
            return True
        return step in self.steps if self.steps is not None else step % self.every == 0

    def _after_block(self, name: str):
        def hook(module, args, output) -> None:
            if self._calls != 1:  # Wan's second (unconditional) call of the step
                return
            if self._num_steps is not None and not self._keeps(self._next_step, self._num_steps):
                return  # pooling costs time: skip the steps that will not be kept
            tensor = output[0] if isinstance(output, (tuple, list)) else output
            if not isinstance(tensor, torch.Tensor):
                return
            self._pending[name] = pool_features(tensor, self._grid, self.pool)

        return hook

    def mark_instance(self, index: int) -> None:
        """Samples generated from now on belong to puzzle instance ``index`` (for train/test splits)."""
        self._instance = int(index)

    def __call__(self, state: StepState) -> None:
        """The ``on_step`` hook: files this step's pending features under (sample, step)."""
        if state.step == 0:
            self._offset = len(self.seeds)
            self.seeds.extend(state.seeds)
            self.instance_of_sample.extend(self._instance for _ in state.seeds)
        self.calls_per_step.append(self._calls)
        pending, self._pending, self._calls = self._pending, {}, 0
        self._num_steps = state.num_steps
        self._next_step = state.step + 1 if state.step + 1 < state.num_steps else 0
        if not self._keeps(state.step, state.num_steps):
            return None
        count = len(state.seeds)
        for name, pooled in pending.items():
            if pooled.shape[0] == 2 * count:  # one batch [uncond, cond] (CogVideoX, LTX): keep cond
                pooled = pooled[count:]
            elif pooled.shape[0] != count:
                raise UserError(f"layer {name} saw a batch of {pooled.shape[0]} for {count} samples")
            pooled = self._project(name, pooled).to(self.dtype).cpu()
            for index in range(count):
                self.features[name][(self._offset + index, state.step)] = pooled[index]
        return None

    def _project(self, name: str, pooled: torch.Tensor) -> torch.Tensor:
        width = pooled.shape[-1]
        if self.project_dim is None or width <= self.project_dim:
            return pooled
        if name not in self._projections:
            # A fixed Gaussian projection per layer (seeded by the layer's position): distances and
            # linear read-outs survive it approximately (Johnson-Lindenstrauss).
            generator = torch.Generator().manual_seed(1_000 + self.layers.index(name))
            matrix = torch.randn(width, self.project_dim, generator=generator) / math.sqrt(self.project_dim)
            self._projections[name] = matrix
        return pooled.float() @ self._projections[name].to(pooled.device)
