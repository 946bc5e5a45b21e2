"""The puzzle :class:`Instance`: what crosses from puzzles to every other package."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Instance:
    """One puzzle, fully determined by ``(task, seed, difficulty, config)``.

    ``first_frame`` is the RGB uint8 puzzle image ``(H, W, 3)``. ``solution`` is the exact
    answer (task-specific, JSON-serialisable). ``spec`` holds everything a verifier needs
    to judge a video without the answer (geometry, colours, walls, goal). ``config`` is
    the task config the instance was made with (skin, sizes, video timing).
    """

    task: str
    seed: int
    difficulty: str
    prompt: str
    first_frame: np.ndarray = field(repr=False, compare=False)
    solution: Any
    spec: dict
    config: dict = field(default_factory=dict)

    def solution_video(self, num_frames: int | None = None) -> np.ndarray:
        """The ground-truth solution video ``(T, H, W, 3)`` uint8.

        Its first frame equals ``first_frame`` and its last frame shows the solved state.
        ``num_frames`` fixes the total length (motion is resampled to fit, e.g. 49 or 81
        frames); ``None`` uses the task config's frames-per-step timing.
        """
        from gen_reason.puzzles.registry import get_task

        return get_task(self.task, **self.config).solution_video(self, num_frames)

    @property
    def canonical_hash(self) -> str:
        """A hash of the puzzle itself (spec + solution, not seed or skin), to dedupe splits."""
        payload = json.dumps({"task": self.task.split("-v")[0], "spec": self.spec.get("layout", self.spec)},
                             sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @property
    def uid(self) -> str:
        """A short stable identifier: ``<task>_<difficulty>_<seed>`` with ``/`` replaced."""
        return f"{self.task.replace('/', '-')}_{self.difficulty}_{self.seed}"

    def to_dict(self) -> dict:
        """JSON-serialisable form (without the image, which is re-rendered or stored as PNG)."""
        return {
            "task": self.task,
            "seed": self.seed,
            "difficulty": self.difficulty,
            "prompt": self.prompt,
            "solution": self.solution,
            "spec": self.spec,
            "config": self.config,
        }

    @classmethod
    def from_dict(cls, data: dict, first_frame: np.ndarray | None = None) -> "Instance":
        """Rebuild an instance from :meth:`to_dict` output.

        When ``first_frame`` is not given, the instance is regenerated from its task, seed,
        difficulty and config, and checked to match the stored spec.
        """
        from gen_reason.puzzles.registry import get_task

        if first_frame is None:
            regenerated = get_task(data["task"], **data.get("config", {})).generate(data["seed"], data["difficulty"])
            if _jsonable(regenerated.spec) != _jsonable(data["spec"]):
                raise ValueError(
                    f"instance {data['task']} seed {data['seed']} does not regenerate to the stored spec "
                    "(made by another version of the task?); pass first_frame explicitly"
                )
            first_frame = regenerated.first_frame
        return cls(
            task=data["task"],
            seed=int(data["seed"]),
            difficulty=str(data["difficulty"]),
            prompt=data["prompt"],
            first_frame=first_frame,
            solution=data["solution"],
            spec=data["spec"],
            config=data.get("config", {}),
        )


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True))
