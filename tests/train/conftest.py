"""Shared pieces of the trainer tests: a tiny embedded-model config, a tiny maze dataset,
tiny diffusers pipelines, and the loss log without its timing fields."""

from __future__ import annotations

import pytest


def make_tiny_config(**changes):
    """A run small enough for a test: 3x3 mazes at 16 px, 4 frames, a two-level UNet."""
    from gen_reason.train.embedded_config import EmbeddedTrainConfig

    values = dict(sizes=[3], size_weights=[1.0], num_frames=4, resolution=16, block_out_channels=[16, 32],
                  attention_levels=[False, True], attention_head_dim=16, norm_num_groups=8, batch_size=4,
                  max_steps=6, warmup_steps=2, decay_steps=2, data_workers=0, fresh_per_step=2, pool_size=8,
                  learning_rate=2e-3, validate_every=1000, validation_count=2, validation_steps=2,
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


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    """Four 3x3 block mazes, 9-frame solution videos, 28x28 px."""
    from gen_reason.datasets import DatasetSpec, make_dataset

    path = tmp_path_factory.mktemp("data") / "mazes"
    spec = DatasetSpec(task="maze/grid", n=4, num_frames=9, task_config={"cell_px": 4})
    return make_dataset(spec, path, workers=1, progress=False)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """``tiny_model(kind)`` -> a saved tiny pipeline folder (built once per session)."""
    folders = {}

    def get(kind):
        if kind not in folders:
            from gen_reason.models import testing

            folders[kind] = testing.save_tiny_pipeline(kind, tmp_path_factory.mktemp(kind.replace(".", "_")) / kind)
        return folders[kind]

    return get
