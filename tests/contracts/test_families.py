"""Contract sweep over every registered model family (pipeline class), plugins included.

Each registered pipeline class is loaded from a tiny model folder through the one
loader, generates, gives the exact clean estimate at the last step (the probe's x0
equals the final latents), and takes a LoRA: the one trainer trains one on it, and the
one loader loads it back. Where the folder comes from: the embedded pipeline (and
any subclass of it) reuses the shipped weights under its own class name; diffusers'
pipelines use the tiny random builders of ``gen_reason.models.testing`` (saved under the
class name the Hub uses where that differs, e.g. ``WanPipeline``); a plugin's
pipeline class may offer ``genreason_example(path) -> path`` to write its own.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP threads spin on a busy CPU

import json
import shutil

import numpy as np
import pytest

from gen_reason.errors import UserError
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
    if kind is not None:
        return testing.save_tiny_pipeline(kind, tmp_path / "model"), dict(testing.TINY_GEOMETRY[kind])
    # A class name the Hub saves a folder under that runs as another pipeline class (WanPipeline,
    # LTXPipeline): a tiny folder of that class, saved under this name, that the loader accepts.
    for kind in testing.TINY_GEOMETRY:
        if type(testing.build_tiny_pipeline(kind)) is not cls:
            continue
        folder = testing.save_tiny_pipeline(kind, tmp_path / f"model-{kind}")
        index = json.loads((folder / "model_index.json").read_text())
        (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": name}))
        try:
            load_generator(folder, steps=1, **testing.TINY_GEOMETRY[kind])
        except UserError:
            continue  # this model's configuration does not run under that class name
        return folder, dict(testing.TINY_GEOMETRY[kind])
    return None, {}


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


@pytest.fixture(scope="module")
def lora_data(tmp_path_factory):
    """Two 3x3 block mazes with 9-frame solution videos: enough for two LoRA steps."""
    from gen_reason.datasets import DatasetSpec, make_dataset

    spec = DatasetSpec(task="maze/grid", n=2, num_frames=9, task_config={"cell_px": 4})
    return make_dataset(spec, tmp_path_factory.mktemp("data") / "mazes", workers=1, progress=False)


@pytest.mark.parametrize("name", PIPELINES.names())
def test_family_takes_a_lora(name, tmp_path, lora_data):
    """The one trainer puts a LoRA on the family's denoiser, trains it two steps, saves it, and
    the one loader loads it back: the same seed then gives other latents than the base model."""
    import torch

    from gen_reason.train.lora import load_lora_config, train_lora

    folder, options = example_folder(name, tmp_path)
    if folder is None:
        pytest.skip(f"no tiny example of {name} (a plugin gives its class genreason_example(path))")
    base = load_generator(folder, steps=2, **options)
    height, width = base.default_size
    settings = dict(model=str(folder), data=str(lora_data), output_dir=str(tmp_path / "run"), rank=4,
                    learning_rate=5e-2, batch_size=1, max_steps=2, checkpoint_every=0, height=height, width=width)
    if "num_frames" in options:
        settings["num_frames"] = options["num_frames"]
    out = train_lora(load_lora_config(None, settings), progress=False)
    adapted = load_generator(folder, steps=2, lora=out, **options)
    image = np.random.RandomState(0).randint(0, 256, (height, width, 3), dtype=np.uint8)
    prompt = "a red dot moves to the green goal"
    before = base.generate(image, prompt, seeds=[1], output="latents")[0]
    after = adapted.generate(image, prompt, seeds=[1], output="latents")[0]
    assert before.shape == after.shape
    assert not torch.equal(before, after), "the loaded LoRA changed nothing"
