"""Training samples from a dataset folder, and the encode-once cache of their conditioning.

A LoRA run sees each sample many times; its prompt, first frame and video go through
the same frozen encoders every time. :class:`ConditioningCache` runs them once: prompt
embeddings are kept per distinct prompt (a maze dataset has few), image conditioning
and (with ``cache_latents``) the video's latent distribution per sample, all on the CPU.
Latents that the recipe samples (CogVideoX, LTX) are kept as mean and std, so every
step still draws a fresh sample, as diffusers' training scripts do with cached latents.
With caching off the encoders run on every batch: same numbers, more time (see
``bench/bench_lora.py``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from gen_reason.errors import UserError
from gen_reason.models.families import Geometry
from gen_reason.train.losses import Objective, sample_generator, stack_batch

if TYPE_CHECKING:
    from gen_reason.train.lora_config import LoraTrainConfig


@dataclass(frozen=True)
class Sample:
    """One training example: a puzzle's prompt, first frame and solution video file."""

    index: int
    uid: str
    prompt: str
    first_frame: np.ndarray = field(repr=False)
    video_path: Path
    num_frames: int | None = None


def load_samples(data_dir: str | os.PathLike, split: str | None = "train") -> list[Sample]:
    """The samples of one split of a ``genreason make-dataset`` folder (``None``: every split)."""
    from gen_reason.datasets import iter_dataset

    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise UserError(f"data folder not found: {data_dir}")
    samples = []
    for instance, record in iter_dataset(data_dir, split):
        if not record.get("video"):
            raise UserError(f"{data_dir} has no solution videos (made with --no-video?); training needs them")
        video = data_dir / record["video"]
        if not video.is_file():
            raise UserError(f"dataset video missing: {video}")
        samples.append(Sample(len(samples), instance.uid, instance.prompt, instance.first_frame, video,
                              record.get("num_frames")))
    if not samples:
        where = f"split {split!r} of " if split else ""
        raise UserError(f"no samples in {where}{data_dir}")
    return samples


class ConditioningCache:
    """Per-sample model inputs for an :class:`Objective`, encoded once where asked.

    ``cache_conditioning``: keep prompt embeddings and image conditioning.
    ``cache_latents``: keep each video's latents (else the VAE encodes every batch).
    ``seed``: seeds the per-sample draws some encoders make (CogVideoX's image noise), so
    cached and uncached runs see the same numbers.
    """

    def __init__(self, objective: Objective, samples: Sequence[Sample], *, cache_conditioning: bool = True,
                 cache_latents: bool = True, seed: int = 0) -> None:
        self.objective = objective
        self.samples = list(samples)
        self.cache_conditioning = cache_conditioning
        self.cache_latents = cache_latents
        self.seed = int(seed)
        self._prompts: dict[str, dict[str, torch.Tensor]] = {}
        self._images: dict[int, dict[str, torch.Tensor]] = {}
        self._videos: dict[int, dict[str, torch.Tensor]] = {}
        self.encoder_calls = {"text": 0, "image": 0, "video": 0}

    # -- encoding -----------------------------------------------------------------------------
    def _sample_seed(self, index: int) -> int:
        return int(sample_generator(self.seed, 7, index).initial_seed())

    @torch.no_grad()
    def _encode_prompt(self, prompt: str) -> dict[str, torch.Tensor]:
        self.encoder_calls["text"] += 1
        return self.objective.encode_prompt(prompt)

    @torch.no_grad()
    def _encode_image(self, sample: Sample) -> dict[str, torch.Tensor]:
        self.encoder_calls["image"] += 1
        pixels = self.objective.image_pixels(sample.first_frame)
        return self.objective.encode_image(sample.first_frame, pixels, self._sample_seed(sample.index))

    @torch.no_grad()
    def _encode_video(self, sample: Sample) -> dict[str, torch.Tensor]:
        from gen_reason.video import read_video

        self.encoder_calls["video"] += 1
        frames = read_video(sample.video_path)  # a UserError names an unreadable file
        return self.objective.encode_video(self.objective.video_pixels(frames))

    def fill(self, indices: Sequence[int] | None = None, progress: bool = False) -> None:
        """Encode now everything that is cached (for ``indices``, default all samples)."""
        if not (self.cache_conditioning or self.cache_latents):
            return
        from tqdm.auto import tqdm

        indices = range(len(self.samples)) if indices is None else indices
        for index in tqdm(indices, desc="encoding conditioning", disable=not progress, unit="sample"):
            self.item(index)

    def item(self, index: int) -> dict[str, torch.Tensor]:
        """Every model input of sample ``index`` (CPU tensors, no batch dimension)."""
        sample = self.samples[index]
        if self.cache_conditioning:
            if sample.prompt not in self._prompts:
                self._prompts[sample.prompt] = self._encode_prompt(sample.prompt)
            if index not in self._images:
                self._images[index] = self._encode_image(sample)
            text, image = self._prompts[sample.prompt], self._images[index]
        else:
            text, image = self._encode_prompt(sample.prompt), self._encode_image(sample)
        if self.cache_latents:
            if index not in self._videos:
                self._videos[index] = self._encode_video(sample)
            video = self._videos[index]
        else:
            video = self._encode_video(sample)
        return {**text, **image, **video}

    def batch(self, indices: Sequence[int], device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """The stacked inputs of ``indices``, on ``device``."""
        batch = stack_batch([self.item(int(i)) for i in indices])
        if device is not None:
            batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
        return batch

    # -- memory -------------------------------------------------------------------------------
    def idle_components(self) -> list[str]:
        """Pipeline components no longer needed for training once everything is cached."""
        needed: set[str] = set()
        if not self.cache_conditioning:
            needed |= set(self.objective.text_components) | set(self.objective.image_components)
        if not self.cache_latents:
            needed |= set(self.objective.video_components)
        used = set(self.objective.text_components) | set(self.objective.image_components)
        used |= set(self.objective.video_components)
        return sorted(used - needed)

    def move_idle(self, device: torch.device | str) -> None:
        """Move the idle encoders to ``device`` (the CPU while training, back for validation)."""
        pipe = self.objective.pipe
        for name in self.idle_components():
            component: Any = getattr(pipe, name, None)
            if isinstance(component, torch.nn.Module):
                component.to(device)


def resolve_geometry(pipe, family, samples: Sequence[Sample], config: LoraTrainConfig) -> Geometry:
    """Frames and size to train at: the config's, else the dataset's rounded to what the model takes."""
    from gen_reason.models.embedded import EmbeddedVideoPipeline

    if isinstance(pipe, EmbeddedVideoPipeline):
        fixed = Geometry(pipe.num_frames, pipe.resolution, pipe.resolution)
        for name in ("num_frames", "height", "width"):
            given = getattr(config, name)
            if given is not None and given != getattr(fixed, name):
                raise UserError(f"the embedded model trains at {name} {getattr(fixed, name)} (fixed by its UNet); "
                                f"got {given}")
        return fixed
    multiple = family.size_multiple(pipe)
    step = family.frame_step(pipe)
    sizes = []
    for name, data_value in (("height", samples[0].first_frame.shape[0]), ("width", samples[0].first_frame.shape[1])):
        given = getattr(config, name)
        if given is not None and given % multiple:
            raise UserError(f"{name} must be a multiple of {multiple} for this model; got {given}")
        sizes.append(given if given is not None else max(multiple, round(data_value / multiple) * multiple))
    frames = config.num_frames
    if frames is not None and (frames - 1) % step:
        raise UserError(f"num_frames must be {step}k + 1 for this model (e.g. {(frames - 1) // step * step + 1}); "
                        f"got {frames}")
    if frames is None:
        from gen_reason.video import read_video

        have = samples[0].num_frames or len(read_video(samples[0].video_path))
        frames = math.ceil((have - 1) / step) * step + 1
    geometry = Geometry(int(frames), int(sizes[0]), int(sizes[1]))
    family.check_geometry(pipe, geometry)  # e.g. CogVideoX-5b-I2V trains at 480x720 only
    return geometry
