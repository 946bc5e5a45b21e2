"""The embedded trainer's config (:class:`EmbeddedTrainConfig`): the settings every trainer
shares (:class:`~gen_reason.train.settings.TrainingConfig`) plus the embedded model's own
(maze sizes, frames, the UNet's shape, validation and sampling), from YAML through the one
config builder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from gen_reason.config import build, read_yaml, rename_keys
from gen_reason.errors import UserError
from gen_reason.models.embedded_parts import make_unet
from gen_reason.train.data import MazeVideoData
from gen_reason.train.settings import TrainingConfig


@dataclass
class EmbeddedTrainConfig(TrainingConfig):
    """Every hyperparameter of an embedded-model run (``configs/embedded_maze.yaml``): the
    settings every trainer shares (:class:`~gen_reason.train.settings.TrainingConfig`, with this
    trainer's defaults) and the embedded model's own."""

    RESUMABLE: ClassVar[frozenset[str]] = TrainingConfig.RESUMABLE | {
        "validation_sizes", "validation_steps", "validation_eta", "data_workers", "sample_steps", "sample_eta"}

    # the shared settings, with this trainer's defaults
    max_steps: int | None = 8000  # must be set: rendered data never runs out
    batch_size: int = 32
    learning_rate: float = 8e-4
    lr_scheduler: str = "warmup_hold_decay"
    warmup_steps: int = 200  # linear warm-up from 0
    decay_steps: int = 1000  # then constant, then linear decay to 0 over the last decay_steps
    adam_beta2: float = 0.99
    weight_decay: float = 0.0
    ema_decay: float | None = 0.999  # must be set: validation and the exported pipeline use the EMA weights
    log_every: int = 50
    checkpoint_every: int = 0
    checkpoint_minutes: float | None = 3.0
    validate_every: int = 1000
    validation_count: int = 64
    # data: maze sizes (rooms per side) and their weights; frames and working size
    sizes: list[int] = field(default_factory=lambda: [3, 4, 5])
    size_weights: list[float] = field(default_factory=lambda: [0.15, 0.3, 0.55])
    num_frames: int = 16
    resolution: int = 32
    data_seed: int = 0
    frames_per_move: int | None = None  # None: whole solution over num_frames; k: one room per k frames, then hold
    data_workers: int = 1
    fresh_per_step: int = 32  # new videos per step; fewer than batch_size reuses videos from a pool
    pool_size: int = 1024  # videos kept for reuse when fresh_per_step < batch_size
    # model
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    layers_per_block: int = 1
    attention_levels: list[bool] = field(default_factory=lambda: [False, False, True])
    attention_head_dim: int = 32
    norm_num_groups: int = 16
    num_train_timesteps: int = 1000
    prediction_type: str = "sample"  # "sample" (clean video), "v_prediction" or "epsilon"
    # a second stage starts from these weights: a run folder or its checkpoint, or an exported pipeline folder
    init_from: str | None = None
    threads: int = 2
    # validation and the exported pipeline's sampler
    validation_sizes: list[int] = field(default_factory=lambda: [5])
    validation_steps: int = 50
    validation_eta: float = 0.0  # DDIM eta of validation samples (0 keeps the curves of earlier stages comparable)
    sample_steps: int = 50       # the exported pipeline's default DDIM steps (model_index.json: default_steps)
    sample_eta: float = 0.0      # and its default DDIM eta (default_eta)

    def validate(self) -> None:
        """Raise :class:`UserError` naming the first field of the wrong type or inconsistent value."""
        build(type(self), self.to_dict())  # every field's type, checked as a config file's are
        self.check_training()
        if self.max_steps is None:
            raise UserError("max_steps must be set: the embedded trainer renders data without end")
        if self.ema_decay is None:
            raise UserError("ema_decay must be set: validation and the exported pipeline use the EMA weights")
        if len(self.sizes) != len(self.size_weights) or not self.sizes:
            raise UserError("sizes and size_weights must be non-empty lists of the same length")
        if len(self.attention_levels) != len(self.block_out_channels):
            raise UserError("attention_levels needs one entry per block_out_channels entry")
        if self.resolution % (2 ** (len(self.block_out_channels) - 1)):
            raise UserError("resolution must be divisible by 2 ** (number of UNet levels - 1)")
        if self.prediction_type not in ("sample", "v_prediction", "epsilon"):
            raise UserError(f"prediction_type must be sample, v_prediction or epsilon; got {self.prediction_type!r}")
        if self.sample_eta < 0 or self.validation_eta < 0:
            raise UserError("sample_eta and validation_eta must be >= 0")
        for name in ("num_frames", "threads", "validation_steps", "sample_steps", "resolution", "layers_per_block",
                     "attention_head_dim", "norm_num_groups", "num_train_timesteps", "fresh_per_step", "pool_size"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"{name} must be >= 1; got {getattr(self, name)}")
        if not self.data_workers >= 0:
            raise UserError(f"data_workers must be >= 0; got {self.data_workers}")
        if any(s < 2 for s in self.sizes) or any(w < 0 for w in self.size_weights) or not sum(self.size_weights) > 0:
            raise UserError("sizes must be >= 2 rooms and size_weights >= 0 with a positive sum")

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict | None = None) -> "EmbeddedTrainConfig":
        """Load a YAML config; unknown keys, wrong types, an empty file or invalid YAML are a
        :class:`UserError` (a typo must not pass silently)."""
        data = read_yaml(path)
        if not data:
            raise UserError(f"config {path} is empty; it must hold the run's settings")
        data = rename_keys(cls, data)
        data.update(rename_keys(cls, overrides or {}))
        config = build(cls, data)
        config.validate()
        return config

    def to_dict(self) -> dict:
        """Plain dict (for ``config.yaml`` in the run folder)."""
        return dataclasses.asdict(self)

    @property
    def data(self) -> MazeVideoData:
        """The data description this config trains on."""
        return MazeVideoData(tuple(self.sizes), tuple(self.size_weights), self.num_frames, self.resolution,
                             self.data_seed, self.frames_per_move)

    def build_unet(self):
        """A freshly initialised UNet of this config's shape (seeded by ``seed``)."""
        torch.manual_seed(self.seed)
        return make_unet(self.num_frames, self.resolution, self.block_out_channels, self.layers_per_block,
                         self.attention_levels, self.attention_head_dim, self.norm_num_groups)
