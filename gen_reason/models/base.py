"""The video-generator contract (docs/ARCHITECTURE.md) and the per-step state its hook sees.

This module imports no torch, so solvers and their tests can subclass
:class:`VideoGenerator` (a fake that returns ground-truth videos, say) cheaply.
"""

from __future__ import annotations

import abc
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from gen_reason.errors import UserError

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass
class StepState:
    """What a denoising step leaves behind, as the ``on_step`` hook sees it.

    Latents are always laid out ``[batch, channels, frames, height, width]`` in the
    model's latent space, whatever the pipeline keeps internally, and sample ``i``
    belongs to ``seeds[i]``.

    Attributes:
        step: 0-based index of the step just taken.
        num_steps: how many steps this call takes.
        timestep: the timestep the model was evaluated at in this step.
        sigma: noise level of the sample the model saw: the coefficient of the noise in
            ``x_t = alpha * x0 + sigma * noise`` (flow matching: ``alpha = 1 - sigma``;
            DDPM-style schedulers: ``alpha = sqrt(1 - sigma**2)``); 1 is pure noise.
            ``None`` when the scheduler does not say.
        next_sigma: noise level of ``latents`` (the sample after this step); 0 at the end.
        latents: the running latents after this step (the next step's input). Frame 0
            holds the conditioning image's latent for pipelines that pin it (Wan 2.2
            TI2V-5B, LTX); changing it there has no effect.
        x0: the model's estimate of the clean latents at this step, exactly as the
            scheduler computed it (guidance included); ``None`` if the scheduler gives
            no way to get it. Decode it with the generator's ``decode_latents``.
        seeds: the seed of each sample in this batch.
        num_frames: frames the caller asked for (decode with ``num_frames=`` to match).
        height, width: the working pixel size of this call.
    """

    step: int
    num_steps: int
    timestep: float
    sigma: float | None
    next_sigma: float | None
    latents: "torch.Tensor"
    x0: "torch.Tensor | None"
    seeds: tuple[int, ...]
    num_frames: int
    height: int
    width: int


#: A per-step hook: gets the state after each step; may return new latents (same shape
#: and layout as ``state.latents``) to continue from, or ``None`` to leave them be. It
#: runs under ``torch.no_grad()``; a hook that needs gradients enables them itself.
OnStep = Callable[[StepState], "torch.Tensor | None"]


class VideoGenerator(abc.ABC):
    """An image-to-video model: first frame + prompt -> videos, one per seed.

    Attributes:
        name: a short identifier for run records (model folder name, LoRA included).
        default_size: ``(H, W)`` the model generates at unless asked otherwise.
        default_num_frames: frames per video unless asked otherwise.
        fps: the frame rate the model was trained for (for writing videos).
        prediction_type: what the denoiser predicts, the scheduler fact the probe needs
            to read a step: ``"flow_prediction"`` (velocity ``noise - x0``),
            ``"v_prediction"``, ``"epsilon"`` or ``"sample"``; ``None`` for a generator
            that is no diffusion model.
    """

    name: str
    default_size: tuple[int, int]
    default_num_frames: int
    fps: int
    prediction_type: str | None = None

    @abc.abstractmethod
    def generate(
        self,
        image: "np.ndarray | Any",
        prompt: str,
        *,
        num_frames: int | None = None,
        seeds: Sequence[int] | int = (0,),
        steps: int | None = None,
        guidance: float | None = None,
        latents: "torch.Tensor | None" = None,
        on_step: OnStep | None = None,
        output: str = "frames",
    ) -> list:
        """Generate one video per seed from ``image`` (``(H, W, 3)`` uint8 RGB) and ``prompt``.

        Returns a list (one entry per seed, in order) of :data:`~gen_reason.video.Video`
        arrays (``(num_frames, H, W, 3)`` uint8, the image's size) when
        ``output="frames"``, or of latent tensors ``[C, F, h, w]`` when
        ``output="latents"``. The same seed gives the same video whatever other seeds
        share its batch. ``latents`` sets the initial noisy latents; ``on_step`` sees
        (and may replace) the latents after every denoising step. ``None`` arguments
        take the generator's defaults.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}({getattr(self, 'name', '?')!r})"


def normalise_seeds(seeds: "Sequence[int] | int") -> list[int]:
    """Seeds as a non-empty list of Python ints (one int means one seed)."""
    if isinstance(seeds, numbers.Integral):  # numpy integers included
        seeds = [seeds]  # type: ignore[list-item]
    seeds = [int(seed) for seed in seeds]  # type: ignore[union-attr]
    if not seeds:
        raise UserError("no seeds given: ask for at least one video")
    return seeds
