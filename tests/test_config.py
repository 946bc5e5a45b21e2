"""The one config system (gen_reason.config): typed dataclass configs from YAML and dotted flags."""

from __future__ import annotations

from dataclasses import dataclass, field
import re
from typing import Literal

import pytest

from gen_reason.config import build, dump_yaml, load, parse_flags, read_yaml
from gen_reason.errors import UserError


@dataclass
class Inner:
    steps: int | None = None
    rate: float = 1e-4
    flag: bool = False
    batch: int | Literal["auto"] | None = None
    size: tuple[int, int] | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Item:
    name: str = "single"
    params: dict = field(default_factory=dict)


@dataclass
class Outer:
    model: Inner = field(default_factory=Inner)
    items: list[Item] = field(default_factory=lambda: [Item()])
    out: str = "runs/x"


def test_yaml_then_dotted_overrides_give_a_typed_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  steps: 3\n  size: [480, 832]\nitems:\n  - name: a\n  - name: b\n")
    config = load(Outer, path, {"model.steps": 30, "items.1.params.n": 8, "model.batch": "auto", "model.rate": 1})
    assert config == Outer(model=Inner(steps=30, rate=1.0, batch="auto", size=(480, 832)),
                           items=[Item("a"), Item("b", {"n": 8})])
    assert isinstance(config.model.size, tuple)


@pytest.mark.parametrize("data, message", [
    ({"model": {"stepz": 3}}, "unknown config key 'model.stepz'; did you mean model.steps?"),
    ({"modle": {}}, "unknown config key 'modle'; did you mean model?"),
    ({"items": [{"nam": "x"}]}, "unknown config key 'items.0.nam'; did you mean items.0.name?"),
    ({"model": {"zzz": 1}}, "unknown config key 'model.zzz'; known: batch, extra, flag, rate, size, steps"),
    ({"model": {"steps": "abc"}}, "config key 'model.steps': Input should be a valid integer"),
    ({"model": {"steps": 2.5}}, "config key 'model.steps'"),
    ({"model": {"steps": 2.0}}, "config key 'model.steps'"),  # strict: a float is not an integer
    ({"model": {"flag": 1}}, "config key 'model.flag': Input should be a valid boolean"),  # 1 is not True
    ({"model": {"batch": "many"}}, "config key 'model.batch'"),
    ({"items": "single"}, "config key 'items': Input should be a valid array"),
    ({"out": 3}, "config key 'out': Input should be a valid string"),
])
def test_every_mistake_is_one_line_naming_the_key(data, message):
    with pytest.raises(UserError) as caught:
        build(Outer, data)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_flag_grammar():
    assert parse_flags(["--model.steps", "30", "--items.0.params.n=8", "--model.size", "[4, 5]", "--out.x", "null"],
                       ("model", "items", "out")) == {"model.steps": 30, "items.0.params.n": 8,
                                                      "model.size": [4, 5], "out.x": None}
    assert parse_flags(["--task.wall-style", "thin"], ("task",)) == {"task.wall_style": "thin"}
    with pytest.raises(UserError, match="did you mean --model.steps"):
        parse_flags(["--modle.steps", "3"], ("model",))
    with pytest.raises(UserError, match="unrecognised argument '--bogus'"):
        parse_flags(["--bogus"], ("model",))
    with pytest.raises(UserError, match="needs a value"):
        parse_flags(["--model.steps"], ("model",))


def test_list_index_out_of_range_is_one_line():
    with pytest.raises(UserError, match="has 1 entries"):
        load(Outer, None, {"items.3.name": "x"})


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    ("folder", "is not a file"),
    (b"\xff\xfe\x00binary", "is not a text file"),
    ("model: [1, 2\n", "is not valid YAML (line 2)"),
    ("- a\n- b\n", "must hold a mapping"),
])
def test_bad_files_are_one_line(tmp_path, content, message):
    path = tmp_path / "c.yaml"
    if content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=re.escape(message)):
        read_yaml(path)


def test_resolved_config_round_trips_through_yaml(tmp_path):
    config = load(Outer, None, {"model.size": [2, 3], "items.0.params": {"n": 4}})
    path = tmp_path / "config.yaml"
    path.write_text(dump_yaml(config))
    assert load(Outer, path) == config


def test_exponent_numbers_are_numbers(tmp_path):
    """PyYAML reads 1e-4 as text; people mean a number."""
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  rate: 1e-4\n")
    assert load(Outer, path).model.rate == 1e-4
    assert parse_flags(["--model.rate", "2E+3"], ("model",)) == {"model.rate": 2000.0}
