"""Test doubles for the solver tests: a fake video generator and a fake rule verifier.

``FakeGenerator`` walks along the puzzle's ground-truth video: from whichever GT frame
it is given, a clip shows the next GT frames. Whether a sample is good is decided by
its (fake) latents, so the latent hooks matter: each seed's initial latents come from
``torch.Generator().manual_seed(seed)``, every step shrinks them by 0.8, ``on_step``
may replace them, and a sample is good when its final latents' mean is positive. A bad
sample leaves the GT path at frame ``bad_at`` (its frames there are inverted colours).

``FakeRuleVerifier`` accepts a video whose frames are GT frames in non-decreasing GT
order; the first other frame is its ``trace["first_violation"]["frame"]``, the maze
referee's format. Success: no violation and the last frame is the solved state.
"""

from __future__ import annotations

import numpy as np
import pytest

from gen_reason.models.base import StepState, VideoGenerator, normalise_seeds
from gen_reason.puzzles.registry import get_task
from gen_reason.verifiers.score import Score


class FakeGenerator(VideoGenerator):
    """A deterministic stand-in for a video model (see the module docstring)."""

    name = "fake"
    fps = 8
    prediction_type = "flow_prediction"

    def __init__(self, instance, *, gt_frames: int = 9, num_frames: int = 9, steps: int = 4, guidance: float = 1.0,
                 fixed_num_frames: int | None = None, max_batch: int | None = None, bad_at: int | None = None):
        self.instance = instance
        self.gt = instance.solution_video(gt_frames)
        self.default_size = self.gt.shape[1:3]
        self.default_num_frames = num_frames
        self.default_steps = steps
        self.default_guidance = guidance
        self.fixed_num_frames = fixed_num_frames
        if max_batch is not None:
            self.max_batch = max_batch
        self.bad_at = bad_at
        self.calls: list[dict] = []

    def initial_latents(self, seed: int):
        import torch

        return torch.randn((2, 3, 2, 2), generator=torch.Generator().manual_seed(int(seed)))

    def is_good(self, seed: int) -> bool:
        """The outcome of ``seed`` alone (no hook)."""
        return bool(self.initial_latents(seed).mean() > 0)

    def good_seeds(self, count: int, start: int = 0) -> list[int]:
        return [seed for seed in range(start, start + count) if self.is_good(seed)]

    def generate(self, image, prompt, *, num_frames=None, seeds=(0,), steps=None, guidance=None, latents=None,
                 on_step=None, output="frames"):
        import torch

        seeds = normalise_seeds(seeds)
        num_frames = self.default_num_frames if num_frames is None else int(num_frames)
        if self.fixed_num_frames is not None:
            num_frames = self.fixed_num_frames
        steps = self.default_steps if steps is None else int(steps)
        self.calls.append({"seeds": seeds, "num_frames": num_frames, "prompt": prompt, "image": np.array(image),
                           "steps": steps, "guidance": guidance})
        x = torch.stack([self.initial_latents(seed) for seed in seeds])
        sigmas = np.linspace(1.0, 0.0, steps + 1)
        for step in range(steps):
            x = x * 0.8
            if on_step is not None:
                state = StepState(step=step, num_steps=steps, timestep=float(1000 * sigmas[step]),
                                  sigma=float(sigmas[step]), next_sigma=float(sigmas[step + 1]), latents=x.clone(),
                                  x0=None, seeds=tuple(seeds), num_frames=num_frames, height=4, width=4)
                replacement = on_step(state)
                if replacement is not None:
                    assert replacement.shape == x.shape
                    x = replacement
        if output == "latents":
            return list(x)
        start = self.gt_index(image)
        return [self.clip(start, num_frames, bool(sample.mean() > 0)) for sample in x]

    def gt_index(self, image) -> int:
        for index, frame in enumerate(self.gt):
            if np.array_equal(frame, image):
                return index
        return 0

    def clip(self, start: int, num_frames: int, good: bool) -> np.ndarray:
        indices = np.minimum(np.arange(start, start + num_frames), len(self.gt) - 1)
        video = self.gt[indices].copy()
        if not good:
            bad_at = self.bad_at if self.bad_at is not None else max(1, num_frames // 2)
            video[bad_at:] = 255 - video[bad_at:]
        return video


class FakeRuleVerifier:
    """Follows the GT video frame by frame (see the module docstring)."""

    name = "fake-rules"

    def __init__(self, gt: np.ndarray):
        self.last = gt[-1]
        self.index: dict[bytes, int] = {}
        for index, frame in enumerate(gt):
            self.index.setdefault(frame.tobytes(), index)
        self.calls = 0

    def score(self, instance, video) -> Score:
        self.calls += 1
        position = 0
        for t, frame in enumerate(video):
            index = self.index.get(frame.tobytes())
            if index is None or index < position:
                return Score(
                    success=False,
                    metrics={"success": 0.0, "progress": float(position)},
                    trace={"first_violation": {"rule": "off_path", "frame": t, "detail": f"left the path at frame {t}"}},
                    reason=f"off_path at frame {t}",
                )
            position = index
        success = bool(np.array_equal(video[-1], self.last))
        return Score(success=success, metrics={"success": float(success), "progress": float(position)},
                     trace={"first_violation": None}, reason="" if success else "did not reach the goal")


@pytest.fixture(scope="session")
def maze():
    """A small grid maze (30 x 30 px) with a 10-move solution."""
    return get_task("maze/grid", cell_px=6, wall_px=2, margin=2).generate(0, "easy")


@pytest.fixture
def make_generator(maze):
    """``make_generator(**options) -> FakeGenerator`` over the ``maze`` fixture."""
    return lambda **options: FakeGenerator(maze, **options)


@pytest.fixture
def make_verifier():
    """``make_verifier(generator) -> FakeRuleVerifier`` following that generator's GT video."""
    return lambda generator: FakeRuleVerifier(generator.gt)


def comparable(attempt) -> dict:
    """An Attempt's record without its wall-clock seconds (for same-seed comparisons)."""
    record = attempt.to_dict()
    record["compute"].pop("seconds")
    record["diagnostic_compute"].pop("seconds")
    return record


@pytest.fixture
def same_record():
    """``same_record(a, b)``: two Attempts match in every field but time, videos included."""

    def check(first, second) -> None:
        assert comparable(first) == comparable(second)
        assert len(first.candidates) == len(second.candidates)
        for one, other in zip(first.candidates, second.candidates):
            assert np.array_equal(one.video, other.video)
        assert np.array_equal(first.video, second.video)

    return check
