"""``visual-tts``: more frames for the same puzzle as the inference budget.

After "Thinking in Frames" (visual test-time scaling): a longer video gives the model
more room to reason its way to the goal. For each frame count in ``frame_counts`` the
puzzle is generated (same seed) and scored, and ``meta["curve"]`` records success vs
frames (with the NFE each point cost), the curve the paper plots. The answer is the
best video by the rule verifier (ties: the shortest).

A generator whose frame count is fixed (the embedded model stacks its frames as
channels) cannot make a longer video in one call; it **chains** clips instead: each
clip starts from the previous clip's last frame, and the clips are joined (the repeated
first frame dropped). Chained clips are made once and reused by the longer counts, so
the whole curve costs what its longest point costs; each point's ``nfe`` is what that
length alone costs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gen_reason.errors import UserError
from gen_reason.solvers.base import BudgetExhausted, SolveContext, Solver, SolverConfig, check_choice, check_int

CHAIN = ("auto", "always", "never")


@dataclass(frozen=True)
class VisualTTSConfig(SolverConfig):
    """``frame_counts``: total video lengths to try, ascending; ``chain``: ``auto`` (chain
    clips when the generator's frame count is fixed), ``always`` (chain clips of
    ``num_frames``, default the generator's own count) or ``never`` (ask for the length
    in one call); ``stop_on_success``: stop at the first length the rule verifier
    accepts (saves compute; the curve then ends there)."""

    frame_counts: tuple[int, ...] = (9, 17, 33)
    chain: str = "auto"
    stop_on_success: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.frame_counts, (list, tuple)):
            object.__setattr__(self, "frame_counts", tuple(self.frame_counts))

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.frame_counts, tuple) or not self.frame_counts:
            raise UserError(f"frame_counts must be a non-empty list of frame counts; got {self.frame_counts!r}")
        for count in self.frame_counts:
            check_int("each of frame_counts", count, 2)
        if list(self.frame_counts) != sorted(set(self.frame_counts)):
            raise UserError(f"frame_counts must be strictly increasing; got {list(self.frame_counts)}")
        check_choice("chain", self.chain, CHAIN)


def fixed_frame_count(generator) -> int | None:
    """The frame count a generator always makes, or ``None`` when it makes any length.

    A generator may declare it (``fixed_num_frames``); otherwise one whose latent shape
    does not grow with the frames asked for (``latent_shape(num_frames)``) is fixed at
    its ``default_num_frames``.
    """
    declared = getattr(generator, "fixed_num_frames", None)
    if declared is not None:
        return int(declared) or None
    latent_shape = getattr(generator, "latent_shape", None)
    if callable(latent_shape):
        try:
            short, long = latent_shape(9)[1], latent_shape(65)[1]
        except (TypeError, ValueError, IndexError):
            return None
        if short == long:
            return int(generator.default_num_frames)
    return None


class VisualTestTimeScaling(Solver):
    """Try longer videos of the same puzzle; record success vs frames; keep the best."""

    name = "visual-tts"
    Config = VisualTTSConfig

    def _solve(self, context: SolveContext) -> tuple[int, dict]:
        config = self.config
        clip_frames = self._clip_frames(context)
        chain = ChainedClips(context, clip_frames) if clip_frames is not None else None
        curve: list[dict] = []
        stopped = "done"
        for requested in config.frame_counts:
            try:
                if chain is not None:
                    clips = chain.clips_for(requested)
                    video, cost = chain.video(clips), chain.cost(clips)
                else:
                    clips, cost = 1, context.cost(1, requested)
                    (video,) = context.generate(context.instance.first_frame, context.prompt, [config.seed],
                                                num_frames=requested)
            except BudgetExhausted as exc:
                stopped = f"budget: {exc}"
                break
            candidate = context.add_candidate(
                video, seed=config.seed, prompt=context.prompt, role="chain" if chain else "sample",
                frames_requested=requested, clips=clips,
            )
            curve.append(
                {
                    "frames_requested": requested,
                    "frames": int(video.shape[0]),
                    "clips": clips,
                    "nfe": cost.nfe,
                    "success": bool(candidate.score.success),
                    "reference_success": None if candidate.reference is None else bool(candidate.reference.success),
                }
            )
            if config.stop_on_success and candidate.score.success:
                stopped = "success"
                break
        if not context.candidates:
            raise UserError(f"the budget does not cover the shortest video ({config.frame_counts[0]} frames): {stopped}")
        # Ties go to the shortest video: it reached the same verdict for less.
        chosen = context.best(range(len(context.candidates)))
        return chosen, {"curve": curve, "chained": chain is not None, "clip_frames": clip_frames, "stopped": stopped}

    def _clip_frames(self, context: SolveContext) -> int | None:
        """Frames per chained clip, or ``None`` when lengths are asked for in one call."""
        if self.config.chain == "never":
            return None
        fixed = fixed_frame_count(context.generator)
        if self.config.chain == "auto" and fixed is None:
            return None
        frames = fixed if fixed is not None else context.num_frames
        if frames < 2:
            raise UserError(f"cannot chain clips of {frames} frame(s): each clip must move past its first frame")
        return frames


class ChainedClips:
    """Clips made one after another, each from the previous one's last frame; made once, reused."""

    def __init__(self, context: SolveContext, clip_frames: int) -> None:
        self.context = context
        self.clip_frames = clip_frames
        self.clips: list[np.ndarray] = []

    def clips_for(self, total_frames: int) -> int:
        """Clips needed for at least ``total_frames`` frames (each adds ``clip_frames - 1``)."""
        return max(1, math.ceil((total_frames - 1) / (self.clip_frames - 1)))

    def cost(self, clips: int):
        """What ``clips`` chained clips cost on their own."""
        return self.context.cost(clips, self.clip_frames)

    def video(self, clips: int) -> np.ndarray:
        """The first ``clips`` clips joined (made now if not yet made)."""
        context = self.context
        while len(self.clips) < clips:
            start = context.instance.first_frame if not self.clips else self.clips[-1][-1]
            seed = context.config.seed + len(self.clips)
            (clip,) = context.generate(start, context.prompt, [seed], num_frames=self.clip_frames)
            self.clips.append(clip)
        return join_clips(self.clips[:clips])


def join_clips(clips: list[np.ndarray]) -> np.ndarray:
    """Concatenate clips that each start on the previous clip's last frame (drop the repeat)."""
    parts = [clips[0]] + [clip[1:] for clip in clips[1:]]
    return np.concatenate(parts, axis=0)
