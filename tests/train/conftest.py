"""Shared pieces of the trainer tests: a tiny embedded-model config."""

from __future__ import annotations

import pytest


def make_tiny_config(**changes):
    """A run small enough for a test: 3x3 mazes at 16 px, 4 frames, a two-level UNet."""
    from gen_reason.train.embedded import EmbeddedTrainConfig

    values = dict(sizes=[3], size_weights=[1.0], num_frames=4, resolution=16, block_out_channels=[16, 32],
                  attention_levels=[False, True], attention_head_dim=16, norm_num_groups=8, batch_size=4,
                  max_steps=6, warmup_steps=2, decay_steps=2, data_workers=0, fresh_per_step=2, pool_size=8,
                  learning_rate=2e-3, validate_every_steps=1000, validation_count=2, validation_steps=2,
                  validation_sizes=[3], threads=1)
    values.update(changes)
    config = EmbeddedTrainConfig(**values)
    config.validate()
    return config


@pytest.fixture
def tiny_config():
    """``tiny_config(**changes)`` -> a tiny :class:`EmbeddedTrainConfig` (see :func:`make_tiny_config`)."""
    return make_tiny_config


def read_log(run, timing=("train_minutes", "seconds")) -> list[dict]:
    """The rows of ``run/losses.jsonl`` without their timing fields (which no two runs share)."""
    import json

    rows = [json.loads(line) for line in (run / "losses.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in timing} for row in rows]


@pytest.fixture
def logged():
    """``logged(run)`` -> the run's loss rows without timing fields (see :func:`read_log`)."""
    return read_log
