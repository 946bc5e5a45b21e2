"""The layer probe's read-outs: maze targets and linear probes on recorded block features.

:func:`fit_layer_probes` trains closed-form ridge read-outs per (layer, step), with a
train/test split across puzzle instances, for two questions about a maze:

- ``agent_cell``: which node (cell) is the agent in at frame t (a few frames inside the
  video), in the video the model ends up generating (or in the solution)? Each node's feature (sampled from the pooled grid at the node's position and
  the frame's time) gets a score from a linear head; the prediction is the best-scoring
  node. Accuracy is top-1; chance is one over the number of nodes.
- ``on_path``: is node c on the solution path? Node features averaged over time, a
  linear classifier; balanced accuracy (chance 0.5).

Features come from a :class:`~gen_reason.probe.layers.LayerRecorder`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

from gen_reason.errors import UserError

if TYPE_CHECKING:
    from gen_reason.probe.layers import LayerRecorder


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
