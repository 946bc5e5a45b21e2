"""Fixtures for the probe tests: tiny random-weight generators built in-process, once per session.

Wan 2.1, CogVideoX and LTX come from ``gen_reason.models.testing``; the embedded model is a
tiny :class:`~gen_reason.models.embedded.EmbeddedVideoPipeline` (8 frames of 16x16 px) with
a 3x3 maze that fits it. Nothing touches the disk or the network.
"""

import os

# Idle OpenMP threads spin on a busy 2-core machine and slow torch ~25x;
# this must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

TRANSFORMER_KINDS = ["wan2.1-i2v", "cogvideox-i2v", "ltx-i2v"]
ALL_KINDS = TRANSFORMER_KINDS + ["embedded"]


def build_tiny_embedded(seed: int = 0, steps: int = 4):
    """A tiny embedded-model generator: 8 frames, 16x16 px, a two-level UNet (~50k parameters)."""
    import torch

    from gen_reason.models import DiffusersVideoGenerator
    from gen_reason.models.embedded import EmbeddedVideoPipeline
    from gen_reason.models.embedded_parts import make_scheduler, make_unet

    torch.manual_seed(seed)
    unet = make_unet(num_frames=8, resolution=16, block_out_channels=(8, 16), attention_levels=(False, True),
                     attention_head_dim=8, norm_num_groups=4)
    pipe = EmbeddedVideoPipeline(unet, make_scheduler())
    return DiffusersVideoGenerator(pipe, EmbeddedVideoPipeline.genreason_family, name="tiny-embedded", steps=steps,
                                   num_frames=8, size=(16, 16))


@pytest.fixture(scope="session")
def tiny_generator():
    """``tiny_generator(kind)`` -> a shared 2-step generator (4 steps for the embedded model)."""
    import torch

    from gen_reason.models import DiffusersVideoGenerator, families, testing

    torch.set_num_threads(1)
    family_of = {"wan2.1-i2v": families.WAN21_I2V, "cogvideox-i2v": families.COGVIDEOX_I2V,
                 "ltx-i2v": families.LTX_I2V}
    generators = {}

    def get(kind: str):
        if kind not in generators:
            if kind == "embedded":
                generators[kind] = build_tiny_embedded()
            else:
                pipe = testing.build_tiny_pipeline(kind)
                generators[kind] = DiffusersVideoGenerator(pipe, family_of[kind], name=f"tiny-{kind}", steps=2,
                                                           **testing.TINY_GEOMETRY[kind])
        return generators[kind]

    return get


def _tiny_maze(seed: int = 0):
    """A 3x3 maze, 16x16 px (the tiny embedded model's size), thin walls, trail."""
    from gen_reason.puzzles.registry import get_task

    task = get_task("maze/grid", skin="tiny", wall_style="thin", trail=True, cell_px=4, wall_px=1, margin=0)
    return task.generate(seed, "3x3")


def _first_frame_for(kind: str, seed: int = 0):
    """An image at the kind's working size (a maze for the embedded model, random pixels otherwise)."""
    import numpy as np

    from gen_reason.models import testing

    if kind == "embedded":
        return _tiny_maze(seed).first_frame
    height, width = testing.TINY_GEOMETRY[kind]["size"]
    return np.random.RandomState(seed).randint(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def tiny_maze():
    """``tiny_maze(seed)`` -> a 3x3 maze instance of 16x16 px."""
    return _tiny_maze


@pytest.fixture(scope="session")
def frame_for():
    """``frame_for(kind, seed=0)`` -> a first frame at that kind's working size."""
    return _first_frame_for
