"""Validation of a fine-tuning run: held-out puzzles generated with the current weights and
scored by the referee (``validation.jsonl``, ``validation/step-*/``), and the curves of a
run folder (``validation.png``)."""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gen_reason.errors import UserError
from gen_reason.models.families import Geometry

if TYPE_CHECKING:
    from gen_reason.train.lora import LoraTrainConfig


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
        if type(pipe).__name__ != "EmbeddedVideoPipeline":
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
        with open(self.out / "validation.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")
        plot_curves(self.out)
        return row


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSON-lines file (none when it does not exist)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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
