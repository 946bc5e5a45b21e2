"""The base class every puzzle task derives from, and its common config.

A task is one module: a config dataclass (validated, with clear errors), a pure
``generate(seed, difficulty) -> Instance``, its exact solver, its prompt template and
its ground-truth solution video. The solution video is drawn by ``render_at(instance,
t)``: the puzzle's state at continuous time ``t`` in ``[0, num_moves]``, so every task
gets smooth motion, fixed frame budgets and frames-per-step timing from one place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from gen_reason.errors import UserError
from gen_reason.puzzles.instance import Instance
from gen_reason.registry import config_from_overrides


@dataclass(frozen=True)
class TaskConfig:
    """Fields every task shares: look and ground-truth video timing."""

    skin: str = "classic"
    agent_icon: str | None = None  # override the skin's icon (held-out icons for generalisation tests)
    frames_per_step: int = 8  # ground-truth video: frames per move (VR-Bench uses 12)
    hold_frames: int = 4  # frames the solved state is held at the end
    fps: int = 16

    def validate(self) -> None:
        """Raise :class:`UserError` naming the first bad field. Subclasses extend this."""
        from gen_reason.puzzles.skins import ICONS, SKINS

        if self.skin not in SKINS:
            raise UserError(f"unknown skin {self.skin!r}; known: {', '.join(SKINS)}")
        if self.agent_icon is not None and self.agent_icon not in ICONS:
            raise UserError(f"unknown agent_icon {self.agent_icon!r}; known: {', '.join(ICONS)}")
        _check_range("frames_per_step", self.frames_per_step, 1, 240)
        _check_range("hold_frames", self.hold_frames, 0, 240)
        _check_range("fps", self.fps, 1, 240)


def _check_range(name: str, value: Any, low: float, high: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise UserError(f"{name} must be a number in [{low}, {high}]; got {value!r}")


def check_range(name: str, value: Any, low: float, high: float) -> None:
    """Raise :class:`UserError` unless ``low <= value <= high`` (shared by task configs)."""
    _check_range(name, value, low, high)


def make_rng(task: str, seed: int, difficulty: str) -> random.Random:
    """The instance's random stream: a pure function of (task, seed, difficulty).

    Seeded through SHA-256 so it is identical across processes, platforms and Python
    hash randomisation, and independent for every (task, difficulty) pair.
    """
    digest = hashlib.sha256(f"{task}|{difficulty}|{int(seed)}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class Task:
    """Base class of a puzzle task. Subclasses set ``name``, ``Config``, ``difficulties``
    and implement ``_generate``, ``num_moves``, ``render_at`` and ``check_solution``."""

    name: ClassVar[str]
    Config: ClassVar[type[TaskConfig]] = TaskConfig
    difficulties: ClassVar[tuple[str, ...]] = ("easy", "medium", "hard")
    prompt_template: ClassVar[str] = ""
    #: The verifiers that judge it: ``"<verifier_family>:rule"`` and ``":reference"`` in
    #: the verifier registry (``maze`` for the maze kinds, ``maze/draw``, ``tangram``).
    verifier_family: ClassVar[str | None] = None

    def __init__(self, config: TaskConfig | None = None, **overrides: Any) -> None:
        if config is None:
            config = config_from_overrides(self.Config, f"task {self.name}", overrides)
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        config.validate()
        self.config = config

    # -- what subclasses implement -------------------------------------------------
    def _generate(self, rng: random.Random, difficulty: str, seed: int) -> Instance:
        raise NotImplementedError

    def num_moves(self, instance: Instance) -> int:
        """Number of moves in the stored solution (the video's motion length)."""
        raise NotImplementedError

    def render_at(self, instance: Instance, t: float) -> np.ndarray:
        """The puzzle image at continuous time ``t`` in ``[0, num_moves]`` of the solution."""
        raise NotImplementedError

    def check_solution(self, instance: Instance, solution: Any) -> tuple[bool, str]:
        """Whether ``solution`` is a legal, complete answer; ``(ok, reason)``."""
        raise NotImplementedError

    def optimal_length(self, instance: Instance) -> int | None:
        """The optimal solution length when the task promises optimality, else ``None``."""
        return None

    # -- shared machinery ----------------------------------------------------------
    def parse_difficulty(self, difficulty: str) -> str:
        """Normalise and validate a difficulty name; subclasses may accept more forms."""
        difficulty = str(difficulty).strip().lower()
        if difficulty not in self.difficulties:
            raise UserError(
                f"unknown difficulty {difficulty!r} for task {self.name}; "
                f"choose from {', '.join(self.difficulties)}"
            )
        return difficulty

    def generate(self, seed: int, difficulty: str = "easy") -> Instance:
        """Make the instance for ``(seed, difficulty)``: a pure function, same bytes every call."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise UserError(f"seed must be a non-negative integer; got {seed!r}")
        difficulty = self.parse_difficulty(difficulty)
        return self._generate(make_rng(self.name, int(seed), difficulty), difficulty, int(seed))

    def config_dict(self) -> dict:
        """The config fields that differ from the defaults (stored in ``Instance.config``)."""
        default = self.Config()
        return {
            f.name: getattr(self.config, f.name)
            for f in dataclasses.fields(self.config)
            if getattr(self.config, f.name) != getattr(default, f.name)
        }

    def video_times(self, instance: Instance, num_frames: int | None = None) -> np.ndarray:
        """The solution time ``t`` of every ground-truth frame.

        Without ``num_frames``: ``frames_per_step`` frames per move, then ``hold_frames``
        of the solved state. With it: the motion is resampled to fill exactly that many
        frames (the hold shrinks proportionally), so 49- or 81-frame budgets work.
        """
        moves = self.num_moves(instance)
        fps, hold = self.config.frames_per_step, self.config.hold_frames
        if num_frames is None:
            motion = np.arange(moves * fps + 1) / fps
            return np.concatenate([motion, np.full(hold, float(moves))])
        if num_frames < 1:
            raise UserError(f"num_frames must be >= 1; got {num_frames}")
        if num_frames == 1:
            return np.zeros(1)
        natural = moves * fps + 1 + hold
        motion_frames = max(2, int(round(num_frames * (moves * fps + 1) / natural))) if moves else 1
        motion_frames = min(motion_frames, num_frames)
        motion = np.linspace(0.0, float(moves), motion_frames) if moves else np.zeros(1)
        return np.concatenate([motion, np.full(num_frames - len(motion), float(moves))])

    def solution_video(self, instance: Instance, num_frames: int | None = None) -> np.ndarray:
        """The ground-truth solution video: first frame = the puzzle, last = solved."""
        frames = [self.render_at(instance, float(t)) for t in self.video_times(instance, num_frames)]
        video = np.stack(frames)
        video[0] = instance.first_frame
        return video

    def make_instance(self, *, seed: int, difficulty: str, prompt: str, first_frame: np.ndarray,
                      solution: Any, spec: dict) -> Instance:
        """Build the :class:`Instance` with this task's name and config attached."""
        return Instance(
            task=self.name,
            seed=seed,
            difficulty=difficulty,
            prompt=prompt,
            first_frame=first_frame,
            solution=solution,
            spec=spec,
            config=self.config_dict(),
        )
