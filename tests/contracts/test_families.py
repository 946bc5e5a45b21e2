"""Contract sweep over every registered model family (pipeline class), plugins included.

Each registered pipeline class is loaded from a tiny model folder through the one
loader, generates, and gives the exact clean estimate at the last step (the probe's
x0 equals the final latents). Where the folder comes from: the embedded pipeline (and
any subclass of it) reuses the shipped weights under its own class name; diffusers'
pipelines use the tiny random builders of ``gen_reason.models.testing``; a plugin's
pipeline class may offer ``genreason_example(path) -> path`` to write its own.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP threads spin on a busy CPU

import json
import shutil

import numpy as np
import pytest

from gen_reason.models.families import PIPELINES
from gen_reason.models.loading import EMBEDDED_DIR, load_generator


def tiny_kinds_by_class() -> dict[str, str]:
    """The tiny builders' kinds, by the pipeline class name each saves under."""
    from gen_reason.models import testing

    kinds = {}
    for kind in testing.TINY_GEOMETRY:
        kinds.setdefault(type(testing.build_tiny_pipeline(kind)).__name__, kind)
    return kinds


def example_folder(name: str, tmp_path):
    """A tiny model folder saved under class ``name`` and the options to load it, or None."""
    from gen_reason.models import testing
    from gen_reason.models.embedded import EmbeddedVideoPipeline

    cls = PIPELINES.get(name)
    if hasattr(cls, "genreason_example"):
        return cls.genreason_example(tmp_path / "model"), {}
    if isinstance(cls, type) and issubclass(cls, EmbeddedVideoPipeline):
        folder = shutil.copytree(EMBEDDED_DIR, tmp_path / "model")
        index = json.loads((folder / "model_index.json").read_text())
        (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": name}))
        return folder, {}
    kind = tiny_kinds_by_class().get(name)
    if kind is None:
        return None, {}
    return testing.save_tiny_pipeline(kind, tmp_path / "model"), dict(testing.TINY_GEOMETRY[kind])


@pytest.mark.parametrize("name", PIPELINES.names())
def test_family_generates_and_gives_exact_x0_at_the_last_step(name, tmp_path):
    import torch

    from gen_reason.models.embedded import EmbeddedVideoPipeline

    folder, options = example_folder(name, tmp_path)
    cls = PIPELINES.get(name)
    pins_first_frame = isinstance(cls, type) and issubclass(cls, EmbeddedVideoPipeline)
    if folder is None:
        pytest.skip(f"no tiny example of {name} (a plugin gives its class genreason_example(path))")
    generator = load_generator(folder, steps=2, **options)
    height, width = generator.default_size
    image = np.random.RandomState(0).randint(0, 256, (height, width, 3), dtype=np.uint8)
    states = []
    final = generator.generate(image, "a red dot moves to the green goal", seeds=[1], on_step=states.append,
                               output="latents")[0]
    assert len(states) == 2 and states[-1].x0 is not None
    x0 = states[-1].x0[0].float()
    if pins_first_frame:  # the embedded pipeline writes the conditioning image into frame 0 after sampling
        x0, final = x0[:, 1:], final[:, 1:]
    torch.testing.assert_close(x0, final.float(), atol=1e-5, rtol=1e-5)
    video = generator.generate(image, "a red dot moves to the green goal", seeds=[1])[0]
    assert video.dtype == np.uint8 and video.ndim == 4 and video.shape[1:3] == (height, width)
