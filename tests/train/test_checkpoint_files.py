"""Training state on disk is safetensors plus JSON: restored bit for bit, and a pickle
(an older genreason's checkpoint, or a payload planted to run code) is refused in one
line without being unpickled."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch

import pickle
import random

import numpy as np
import pytest
import torch

from gen_reason.errors import UserError
from gen_reason.train import checkpoint as ckpt


class Payload:
    """Unpickling this creates ``marker``: the stand-in for code an attacker would run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_payload(path, marker, kind="torch"):
    """A file whose unpickling would create ``marker`` (torch.save's zip or a bare pickle)."""
    if kind == "torch":
        torch.save({"unet": Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"unet": Payload(marker)}, protocol=2))
    return path


def test_payload_is_real(tmp_path):
    """The payload does run code when unpickled, so the refusals below mean something."""
    marker = tmp_path / "ran"
    pickle.loads(write_payload(tmp_path / "p.pkl", marker, "pickle").read_bytes())
    assert marker.exists()


def test_state_round_trip_is_exact(tmp_path):
    layer = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(layer.parameters())
    layer(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    state = {"model": layer.state_dict(), "optimizer": optimizer.state_dict(), "rng": ckpt.rng_state(),
             "numbers": [0.1, float("inf"), 2**40, None, True, "text", (1, 2.5)], "scalar": np.float32(1.25),
             "empty": torch.zeros(0, 4), "zero_dim": torch.tensor(7, dtype=torch.int64)}
    path = ckpt.save_state(tmp_path / "state.safetensors", state)
    assert not path.read_bytes().startswith((b"PK", b"\x80"))  # not torch.save, not a pickle
    back = ckpt.load_state(path)
    assert back["numbers"] == state["numbers"] and isinstance(back["numbers"][-1], tuple)
    assert back["scalar"] == np.float32(1.25) and back["scalar"].dtype == np.float32
    assert back["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
    assert set(back["optimizer"]["state"]) == {0, 1}  # integer keys stay integers
    for key, moments in state["optimizer"]["state"].items():
        for name, tensor in moments.items():
            assert torch.equal(back["optimizer"]["state"][key][name], tensor)
    assert back["empty"].shape == (0, 4) and back["zero_dim"].item() == 7
    # The random streams continue exactly where they were saved.
    ckpt.set_rng_state(back["rng"])
    resumed = (random.random(), np.random.rand(), torch.rand(2))
    ckpt.set_rng_state(state["rng"])
    expected = (random.random(), np.random.rand(), torch.rand(2))
    assert resumed[:2] == expected[:2] and torch.equal(resumed[2], expected[2])


@pytest.mark.parametrize("kind", ["torch", "pickle"])
def test_a_pickle_payload_is_refused_unexecuted(tmp_path, kind):
    marker = tmp_path / "ran"
    path = write_payload(tmp_path / "state.safetensors", marker, kind)  # a pickle under our file name
    with pytest.raises(UserError, match="pickle"):
        ckpt.load_state(path)
    assert not marker.exists()


def test_damaged_and_foreign_files_are_one_line_errors(tmp_path):
    path = ckpt.save_state(tmp_path / "good.safetensors", {"x": torch.ones(100)})
    (tmp_path / "cut.safetensors").write_bytes(path.read_bytes()[:120])
    (tmp_path / "text.safetensors").write_text("hello\n")
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2)}, str(tmp_path / "weights.safetensors"))  # safetensors, but not a state
    for name, match in (("cut", "truncated"), ("text", "not a genreason state"), ("weights", "not a genreason"),
                        ("missing", "not found")):
        with pytest.raises(UserError, match=match) as info:
            ckpt.load_state(tmp_path / f"{name}.safetensors")
        assert "\n" not in str(info.value)


def test_a_lora_checkpoint_of_pickles_is_refused_unexecuted(tmp_path):
    layer = torch.nn.Linear(2, 2)
    objects = {"trainable": layer}
    folder = ckpt.save_checkpoint(tmp_path, objects, {"step": 1})
    marker = tmp_path / "ran"
    write_payload(folder / "trainable.safetensors", marker)
    with pytest.raises(UserError, match="pickle"):
        ckpt.load_latest(tmp_path).restore(objects)
    # An older genreason's folder: .pt files only.
    (folder / "trainable.safetensors").unlink()
    write_payload(folder / "trainable.pt", marker)
    with pytest.raises(UserError, match="older genreason"):
        ckpt.load_latest(tmp_path).restore(objects)
    assert not marker.exists()


def test_embedded_trainer_refuses_pickles_unexecuted(tmp_path, tiny_config):
    """Resuming a folder that holds a (pickle) checkpoint.pt, init_from naming a pickle,
    and exporting from one: each a one-line error, nothing unpickled."""
    from gen_reason.train.embedded import train_embedded
    from gen_reason.train.embedded_weights import ema_unet

    marker = tmp_path / "ran"
    old = tmp_path / "old"
    old.mkdir()
    write_payload(old / "checkpoint.pt", marker)
    with pytest.raises(UserError, match="older genreason"):
        train_embedded(tiny_config(max_steps=1), old, progress=False, validate=False)
    with pytest.raises(UserError, match="older genreason"):
        ema_unet(old)
    for source in (old / "checkpoint.pt", old):
        with pytest.raises(UserError, match="pickle|older genreason"):
            train_embedded(tiny_config(max_steps=1, init_from=str(source)), tmp_path / "new", progress=False,
                           validate=False)
    assert not marker.exists() and not (tmp_path / "new").exists()
