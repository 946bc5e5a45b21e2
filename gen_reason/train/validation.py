"""Validation during training: held-out puzzles generated with the current weights and
scored by the referee, a row per validation in ``validation.jsonl``, the curves in
``validation.png``. A fine-tuning run (:class:`Validator`) takes its puzzles from the
dataset's held-out split; the embedded model's (:func:`validate_model`) renders held-out
mazes of each validation size."""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch

from gen_reason.errors import UserError
from gen_reason.folders import JsonlLog, read_jsonl
from gen_reason.models.embedded import EmbeddedVideoPipeline
from gen_reason.models.embedded_parts import make_scheduler
from gen_reason.models.families import Geometry
from gen_reason.train.data import PAD_COLOR, held_out_instances

if TYPE_CHECKING:
    from gen_reason.train.embedded_config import EmbeddedTrainConfig
    from gen_reason.train.lora_config import LoraTrainConfig


def validation_instances(data_dir: Path, split: str, count: int, exclude: set[str]) -> list:
    """``count`` held-out puzzles: the dataset's ``split``, else new seeds of its task (none trained on)."""
    from gen_reason.datasets import iter_dataset

    instances = [instance for instance, _ in iter_dataset(data_dir, split)][:count]
    if len(instances) >= count:
        return instances
    manifest_path = data_dir / "dataset.json"
    if not manifest_path.is_file():
        return instances
    from gen_reason.puzzles import get_task

    manifest = json.loads(manifest_path.read_text())
    task = get_task(manifest["task"], **manifest.get("task_config", {}))
    difficulties = manifest.get("difficulties") or ["easy"]
    seed = int(manifest.get("seed", 0)) + int(manifest.get("n", 0))
    seen = set(exclude) | {i.canonical_hash for i in instances}
    for offset in range(50 * count):
        if len(instances) >= count:
            break
        instance = task.generate(seed + offset, difficulties[offset % len(difficulties)])
        if instance.canonical_hash not in seen:
            seen.add(instance.canonical_hash)
            instances.append(instance)
    return instances


class Validator:
    """Generates held-out puzzles with the current weights and scores them with the referee."""

    def __init__(self, config: LoraTrainConfig, pipe, family, geometry: Geometry, out: Path,
                 train_hashes: set[str]) -> None:
        from gen_reason.models.diffusers_backend import DiffusersVideoGenerator

        self.out, self.geometry = out, geometry
        self.instances = validation_instances(Path(config.data), config.validation_split, config.validation_count,
                                              train_hashes)
        self.seed = config.validation_seed
        options: dict[str, Any] = {}
        if not isinstance(pipe, EmbeddedVideoPipeline):
            options.update(size=(geometry.height, geometry.width), num_frames=geometry.num_frames)
        if config.validation_steps is not None:
            options["steps"] = config.validation_steps
        if config.validation_guidance is not None:
            options["guidance"] = config.validation_guidance
        self.generator = DiffusersVideoGenerator(pipe, family, name="training", **options)
        self.referees, self.problem = {}, None
        try:
            from gen_reason.verifiers.registry import verifier_for

            for instance in self.instances:
                if instance.task not in self.referees:
                    self.referees[instance.task] = verifier_for(instance.task, "reference")
        except (ImportError, AttributeError, UserError) as exc:
            self.problem = f"validation videos are generated but not scored: the referee is unavailable ({exc})"
            warnings.warn(self.problem, stacklevel=2)
        if not self.instances:
            self.problem = f"no validation puzzles found in {config.data}"
            warnings.warn(self.problem, stacklevel=2)

    def run(self, step: int, keep_videos: int = 2) -> dict:
        """Score every validation puzzle at ``step``; append a row to validation.jsonl and redraw the plot."""
        from gen_reason.video import write_mp4

        started = time.time()
        successes, metrics = [], {}
        folder = self.out / "validation" / f"step-{step:09d}"
        for index, instance in enumerate(self.instances):
            video = self.generator.generate(instance.first_frame, instance.prompt,
                                            num_frames=self.geometry.num_frames, seeds=[self.seed])[0]
            if index < keep_videos:
                folder.mkdir(parents=True, exist_ok=True)
                write_mp4(folder / f"{instance.uid}.mp4", video, fps=self.generator.fps)
            referee = self.referees.get(instance.task)
            if referee is None:
                continue
            score = referee.score(instance, video)
            successes.append(float(bool(score.success)))
            for key, value in score.metrics.items():
                if isinstance(value, (int, float)) and math.isfinite(float(value)):
                    metrics.setdefault(key, []).append(float(value))
        row = {"step": step, "count": len(self.instances), "seconds": round(time.time() - started, 2),
               "success": float(np.mean(successes)) if successes else None,
               "metrics": {key: float(np.mean(values)) for key, values in sorted(metrics.items())}}
        if self.problem:
            row["note"] = self.problem
        JsonlLog(self.out / "validation.jsonl").append(row)
        plot_curves(self.out)
        return row


def plot_curves(out: Path) -> Path | None:
    """Draw ``validation.png``: training loss and held-out success / metrics against the step."""
    losses, rows = read_jsonl(out / "losses.jsonl"), read_jsonl(out / "validation.jsonl")
    if not losses and not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, val_ax) = plt.subplots(1, 2, figsize=(10, 4))
    if losses:
        loss_ax.plot([r["step"] for r in losses], [r["loss"] for r in losses], lw=0.8)
    loss_ax.set_xlabel("optimizer step")
    loss_ax.set_ylabel("training loss")
    loss_ax.grid(alpha=0.3)
    scored = [r for r in rows if r.get("success") is not None]
    if scored:
        val_ax.plot([r["step"] for r in scored], [r["success"] for r in scored], marker="o", label="success")
        for key in ("exact_match", "precision_rate"):
            points = [(r["step"], r["metrics"][key]) for r in scored if key in r.get("metrics", {})]
            if points:
                val_ax.plot(*zip(*points), marker=".", label=key)
        val_ax.legend(fontsize=8)
    val_ax.set_ylim(-0.02, 1.02)
    val_ax.set_xlabel("optimizer step")
    val_ax.set_ylabel("held-out (reference referee)")
    val_ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "validation.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# -- the embedded model's validation: its referee ---------------------------------------------------------------------------
def load_referee() -> tuple[str, Callable]:
    """``(name, score)`` where ``score(instance, video) -> (success, metrics)``.

    The project's rule verifier when it is installed; otherwise a clearly labelled
    stand-in (:func:`fallback_maze_check`).
    """
    try:
        from gen_reason.verifiers.maze import MazeRuleVerifier
    except ImportError:
        return "fallback-agent-track (not the project referee)", fallback_maze_check
    verifier = MazeRuleVerifier()

    def score(instance, video):
        result = verifier.score(instance, video)
        return bool(result.success), dict(result.metrics)

    return "gen_reason.verifiers.maze.MazeRuleVerifier", score


def fallback_maze_check(instance, video: np.ndarray) -> tuple[bool, dict]:
    """A simple stand-in referee: track the agent colour, snap to nodes, check moves and goal.

    Success when the agent is visible in every frame, each frame-to-frame move spans at
    most as many legal moves as the ground truth's fastest frame-to-frame move plus one,
    and the last position is the goal. Used only until the project referee exists.
    """
    from gen_reason.puzzles.maze.grid import adjacency, graph_distance

    spec = instance.spec
    nodes = np.asarray(spec["nodes"], float)
    agent = np.asarray(spec["agent"]["color"], float)
    adj = adjacency(spec)
    positions = []
    for frame in np.asarray(video):
        mask = np.abs(frame.astype(float) - agent).sum(axis=2) < 120
        if not mask.any():
            return False, {"success": 0.0}
        ys, xs = np.nonzero(mask)
        centre = np.array([xs.mean() + 0.5, ys.mean() + 0.5])
        positions.append(int(np.argmin(((nodes - centre) ** 2).sum(axis=1))))
    moves = max(1, graph_distance(spec, spec["start"], spec["goal"]))
    max_jump = math.ceil(moves / max(1, len(positions) - 1)) + 1
    for a, b in zip(positions, positions[1:]):
        if a != b and b not in adj[a] and graph_distance(spec, a, b) > max_jump:
            return False, {"success": 0.0}
    return positions[-1] == spec["goal"], {"success": float(positions[-1] == spec["goal"])}


# -- generation helpers shared by validation and evaluation ---------------------------------
def generate_videos(pipe: EmbeddedVideoPipeline, instances: Sequence, seeds: Sequence[int], steps: int,
                    batch_size: int = 64, eta: float | None = None) -> list[np.ndarray]:
    """One uint8 video per (instance, seed) pair, batched; seed ``s`` -> ``torch.Generator().manual_seed(s)``
    (its initial noise and, with ``eta > 0``, every step's noise); ``eta`` None: the pipeline's default."""
    options = {} if eta is None else {"eta": float(eta)}
    videos: list[np.ndarray] = []
    pairs = list(zip(instances, seeds))
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        images = [inst.first_frame for inst, _ in chunk]
        generators = [torch.Generator().manual_seed(int(seed)) for _, seed in chunk]
        frames = pipe(image=images, generator=generators, num_inference_steps=steps, output_type="np", **options).frames
        videos.extend((np.asarray(f, np.float32) * 255).round().astype(np.uint8) for f in frames)
    return videos


def validate_model(unet, config: "EmbeddedTrainConfig", referee: Callable) -> dict[str, float]:
    """Held-out single-sample success per validation size (sample seed 0 for every puzzle)."""
    pipe = EmbeddedVideoPipeline(unet=unet, scheduler=make_scheduler(config.num_train_timesteps, config.prediction_type),
                                 pad_color=PAD_COLOR)
    pipe.set_progress_bar_config(disable=True)
    results = {}
    for rooms in config.validation_sizes:
        instances = held_out_instances(rooms, config.validation_count, config.resolution)
        videos = generate_videos(pipe, instances, [0] * len(instances), config.validation_steps,
                                 eta=config.validation_eta)
        results[f"{rooms}x{rooms}"] = float(np.mean([referee(i, v)[0] for i, v in zip(instances, videos)]))
    return results


def plot_embedded_validation(run_dir: Path) -> None:
    """Draw an embedded run's ``validation.png``: held-out success per maze size against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_jsonl(run_dir / "validation.jsonl")
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for size in sorted({k for r in rows for k in r["success"]}):
        pts = [(r["step"], r["success"][size]) for r in rows if size in r["success"]]
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", label=f"{size} held-out")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"single-sample success % ({rows[-1]['sampling_steps']} DDIM steps)")
    ax.set_title(f"embedded model validation ({rows[-1]['referee']})", fontsize=8)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(run_dir / "validation.png", dpi=100)
    plt.close(fig)
