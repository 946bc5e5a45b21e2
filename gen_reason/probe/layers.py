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

:func:`fit_layer_probes` trains closed-form ridge read-outs per (layer, step), with a
train/test split across puzzle instances, for two questions about a maze:

- ``agent_cell``: which node (cell) is the agent in at frame t (a few frames inside the
  video), in the video the model ends up generating (or in the solution)? Each node's feature (sampled from the pooled grid at the node's position and
  the frame's time) gets a score from a linear head; the prediction is the best-scoring
  node. Accuracy is top-1; chance is one over the number of nodes.
- ``on_path``: is node c on the solution path? Node features averaged over time, a
  linear classifier; balanced accuracy (chance 0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from gen_reason.errors import UserError
from gen_reason.models.base import StepState


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


# -- the recorder --------------------------------------------------------------------------
class LayerRecorder:
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
        self.layers = resolve_layers(self.pipeline, layers, max_layers)
        self.every = int(every)
        self.steps = None if steps is None else sorted({int(step) for step in steps})
        self.pool = tuple(int(p) for p in pool)
        self.project_dim = project_dim
        self.dtype = dtype
        self.features: dict[str, dict[tuple[int, int], torch.Tensor]] = {name: {} for name in self.layers}
        self.seeds: list[int] = []
        self.instance_of_sample: list[int] = []
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

    # -- results --------------------------------------------------------------------------
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


# -- probe targets on a maze ---------------------------------------------------------------
def node_uv(generator, instance, size: tuple[int, int] | None = None) -> np.ndarray:
    """Where each maze node sits in the model's working frame, as ``(u, v)`` in [0, 1] (x, y).

    The generator resizes the puzzle image to its working size, except the embedded
    model, which pads it at the bottom and right to its square resolution (and shrinks
    larger images to fit).
    """
    # Node centres are continuous pixel coordinates (pixel i spans [i, i + 1]).
    nodes = np.asarray(instance.spec["nodes"], dtype=float)
    height, width = instance.first_frame.shape[:2]
    pipeline = generator.pipeline
    resolution = getattr(pipeline, "resolution", None)
    if getattr(getattr(pipeline, "config", None), "pad_color", None) is not None and resolution:
        scale = min(1.0, resolution / max(height, width))
        return nodes * scale / resolution
    return nodes / np.array([width, height], dtype=float)


def agent_nodes(instance, num_frames: int, frames: Sequence[int]) -> list[int]:
    """The solution's agent node at each of ``frames`` of a ``num_frames``-frame solution video."""
    from gen_reason.puzzles.registry import get_task

    task = get_task(instance.task, **instance.config)
    times = task.video_times(instance, num_frames)
    path = instance.solution["path"]
    return [int(path[min(len(path) - 1, int(round(float(times[frame]))))]) for frame in frames]


def sample_grid(grid: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear samples of a ``[t, gh, gw, D]`` grid at ``uv`` -> ``[t, len(uv), D]`` (cell centres at (i + 0.5) / n)."""
    t, rows, cols, _ = grid.shape
    x = np.clip(uv[:, 0] * cols - 0.5, 0, cols - 1)
    y = np.clip(uv[:, 1] * rows - 0.5, 0, rows - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, cols - 1), np.minimum(y0 + 1, rows - 1)
    fx, fy = (x - x0)[None, :, None], (y - y0)[None, :, None]
    top = grid[:, y0, x0] * (1 - fx) + grid[:, y0, x1] * fx
    bottom = grid[:, y1, x0] * (1 - fx) + grid[:, y1, x1] * fx
    return top * (1 - fy) + bottom * fy


@dataclass
class ProbeTargets:
    """What the linear probes predict for one sample of one instance.

    ``uv``: node positions ``[nodes, 2]``; ``on_path``: ``[nodes]`` 0/1; ``agent``: the
    agent's node at each of the probed frames (``None`` where unknown: the referee lost
    the agent there); ``frame_fractions``: where those frames sit in the video (0 =
    first, 1 = last), to pick the matching feature frame.
    """

    uv: np.ndarray
    on_path: np.ndarray
    agent: list[int | None]
    frame_fractions: list[float]


def nearest_nodes(instance, positions: Sequence, frames: Sequence[int]) -> list[int | None]:
    """The node nearest the tracked agent at each of ``frames`` (``None`` when lost or over a step from any node).

    ``positions`` is a referee trace's ``agent_positions``: per frame ``[x, y]`` in the
    spec's pixel-index coordinates (pixel i's centre at i) or ``None``.
    """
    nodes = np.asarray(instance.spec["nodes"], dtype=float)
    step = float(instance.spec.get("step_px", 1.0))
    out: list[int | None] = []
    for frame in frames:
        point = positions[frame] if frame < len(positions) else None
        if point is None:
            out.append(None)
            continue
        # Nodes are continuous coordinates (pixel i spans [i, i + 1]): shift the track by half a pixel.
        distances = np.linalg.norm(nodes - (np.asarray(point, dtype=float) + 0.5), axis=1)
        nearest = int(np.argmin(distances))
        out.append(nearest if distances[nearest] <= step else None)
    return out


def maze_targets(generator, instance, num_frames: int, probe_frames: int = 4,
                 agent_positions: Sequence | None = None) -> ProbeTargets:
    """Probe targets from a maze instance's spec and solution.

    ``on_path`` comes from the solution. The agent-cell question is asked at
    ``probe_frames`` frames spread strictly inside the video (the first frame shows the
    start and the last the goal, both readable from the puzzle image itself, which would
    flatter the probe). Its answer is where the agent is in the *generated* video, when
    ``agent_positions`` (the referee's trace of it) is given: what the model will draw,
    whatever its timing or its mistakes; otherwise where the ground-truth solution video
    of ``num_frames`` frames has it.
    """
    frames = sorted({int(round(f)) for f in np.linspace(0, num_frames - 1, probe_frames + 2)[1:-1]})
    nodes = len(instance.spec["nodes"])
    on_path = np.zeros(nodes)
    on_path[[int(n) for n in instance.solution["path"]]] = 1
    if agent_positions is not None:
        agent = nearest_nodes(instance, agent_positions, frames)
    else:
        agent = agent_nodes(instance, num_frames, frames)
    return ProbeTargets(
        uv=node_uv(generator, instance), on_path=on_path, agent=agent,
        frame_fractions=[frame / max(1, num_frames - 1) for frame in frames],
    )


# -- ridge read-outs -----------------------------------------------------------------------
def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed-form ridge regression on standardised features.

    Returns ``(mean, scale, weights)``; predict with :func:`ridge_predict`. ``alpha`` is
    relative to the number of training rows, so it means the same for any data size.
    Uses the dual form when there are more features than rows.
    """
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    z = np.concatenate([(x - mean) / scale, np.ones((len(x), 1))], axis=1)
    penalty = alpha * len(x)
    if z.shape[1] <= z.shape[0]:
        weights = np.linalg.solve(z.T @ z + penalty * np.eye(z.shape[1]), z.T @ y)
    else:
        weights = z.T @ np.linalg.solve(z @ z.T + penalty * np.eye(z.shape[0]), y)
    return mean, scale, weights


def ridge_predict(model: tuple[np.ndarray, np.ndarray, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Scores of a :func:`ridge_fit` model on rows ``x``."""
    mean, scale, weights = model
    z = np.concatenate([(x - mean) / scale, np.ones((len(x), 1))], axis=1)
    return z @ weights


def split_instances(instance_ids: Sequence[int], test_fraction: float = 0.3) -> tuple[set, set]:
    """Train and test instance ids: every instance's samples on one side only (at least one each)."""
    ids = sorted(set(int(i) for i in instance_ids))
    if len(ids) < 2:
        raise UserError("linear probes need at least two puzzle instances (one to train on, one to test on)")
    count = min(len(ids) - 1, max(1, int(round(test_fraction * len(ids)))))
    # Spread the test instances over the list rather than taking the tail.
    test = {ids[int(i)] for i in np.linspace(0, len(ids) - 1, count).round()}
    return set(ids) - test, test


@dataclass
class LayerProbeResult:
    """Probe accuracy by layer (rows) and step (columns), one matrix per question.

    ``accuracy[question]`` is ``[len(layers), len(steps)]``; ``chance[question]`` what a
    guess scores (mean over test samples).
    """

    layers: list[str]
    steps: list[int]
    accuracy: dict[str, np.ndarray]
    chance: dict[str, float]
    train_instances: list[int] = field(default_factory=list)
    test_instances: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "layers": self.layers,
            "steps": self.steps,
            "accuracy": {k: [[_finite(v) for v in row] for row in m.tolist()] for k, m in self.accuracy.items()},
            "chance": self.chance,
            "train_instances": self.train_instances,
            "test_instances": self.test_instances,
            "best": {k: self.best(k) for k in self.accuracy},
        }

    def best(self, question: str) -> dict:
        """The (layer, step) with the highest accuracy for ``question``."""
        matrix = self.accuracy[question]
        if not np.isfinite(matrix).any():
            return {}
        row, col = np.unravel_index(np.nanargmax(matrix), matrix.shape)
        return {"layer": self.layers[row], "step": self.steps[col], "accuracy": float(matrix[row, col])}


def fit_layer_probes(recorder: LayerRecorder, targets: Sequence[ProbeTargets], *, test_fraction: float = 0.3,
                     alpha: float = 1.0) -> LayerProbeResult:
    """Train and test the ``agent_cell`` and ``on_path`` read-outs for every recorded (layer, step).

    ``targets[i]`` describes sample ``i`` of the recorder (its instance's nodes and
    answers). Samples of the same instance stay on one side of the split.
    """
    samples = len(recorder.seeds)
    if len(targets) != samples:
        raise UserError(f"got targets for {len(targets)} samples; the recorder holds {samples}")
    train_ids, test_ids = split_instances(recorder.instance_of_sample, test_fraction)
    train = [s for s in range(samples) if recorder.instance_of_sample[s] in train_ids]
    test = [s for s in range(samples) if recorder.instance_of_sample[s] in test_ids]
    layers = [name for name in recorder.layers if recorder.features[name]]
    steps = recorder.recorded_steps
    agent = np.full((len(layers), len(steps)), np.nan)
    on_path = np.full((len(layers), len(steps)), np.nan)
    for li, name in enumerate(layers):
        for si, step in enumerate(steps):
            if (0, step) not in recorder.features[name]:
                continue  # this block did not run at this step (the other Wan 2.2 A14B expert did): NaN
            node_features = {s: sample_grid(recorder.features[name][(s, step)].float().numpy(), targets[s].uv)
                             for s in range(samples)}
            agent[li, si] = _agent_accuracy(node_features, targets, train, test, alpha)
            on_path[li, si] = _on_path_accuracy(node_features, targets, train, test, alpha)
    chance = {
        "agent_cell": float(np.mean([1.0 / len(targets[s].uv) for s in test])),
        "on_path": 0.5,
    }
    return LayerProbeResult(layers=layers, steps=steps, accuracy={"agent_cell": agent, "on_path": on_path},
                            chance=chance, train_instances=sorted(train_ids), test_instances=sorted(test_ids))


def _frame_index(fraction: float, frames: int) -> int:
    return int(round(fraction * (frames - 1)))


def _agent_accuracy(features: dict, targets, train, test, alpha) -> float:
    """Top-1 accuracy of per-frame linear heads scoring every node; the best-scoring node is the guess."""
    hits = []
    for k in range(len(targets[train[0]].agent)):
        def rows(sample):
            grid = features[sample]
            return grid[_frame_index(targets[sample].frame_fractions[k], grid.shape[0])]  # [nodes, D]

        known_train = [s for s in train if targets[s].agent[k] is not None]
        known_test = [s for s in test if targets[s].agent[k] is not None]
        if not known_train or not known_test:
            continue
        x = np.concatenate([rows(s) for s in known_train])
        y = np.concatenate([(np.arange(len(targets[s].uv)) == targets[s].agent[k]).astype(float)
                            for s in known_train])
        model = ridge_fit(x, y, alpha)
        hits.extend(int(np.argmax(ridge_predict(model, rows(s)))) == targets[s].agent[k] for s in known_test)
    return float(np.mean(hits)) if hits else math.nan


def _on_path_accuracy(features: dict, targets, train, test, alpha) -> float:
    """Balanced accuracy of one linear classifier of time-averaged node features (on the path or not)."""
    x = np.concatenate([features[s].mean(axis=0) for s in train])
    y = np.concatenate([targets[s].on_path * 2 - 1 for s in train])
    model = ridge_fit(x, y, alpha)
    truth = np.concatenate([targets[s].on_path for s in test]).astype(bool)
    guess = np.concatenate([ridge_predict(model, features[s].mean(axis=0)) > 0 for s in test])
    rates = [np.mean(guess[truth] == truth[truth]) if truth.any() else np.nan,
             np.mean(guess[~truth] == truth[~truth]) if (~truth).any() else np.nan]
    return float(np.nanmean(rates))


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
