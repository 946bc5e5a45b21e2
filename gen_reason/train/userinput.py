"""Checks of what a user hands the trainers, made before any compute: one-line errors.

- :func:`check_types`: every field of a config dataclass holds its declared type
  (``learning_rate: "abc"`` is refused by name, not met later as a ``TypeError``);
- :func:`read_yaml_mapping`: a YAML config file that exists, parses, and holds settings;
- :func:`check_creatable`: an output folder that can be made and written, tried and
  undone, so a refusal leaves nothing behind;
- :class:`ArgumentParser`: argparse whose mistakes are a :class:`UserError` (one line,
  exit 2 from the command) instead of a usage block.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any

from gen_reason.errors import UserError


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` that raises :class:`UserError` on a bad command line."""

    def error(self, message: str) -> typing.NoReturn:
        """Raise instead of printing the usage and exiting."""
        raise UserError(f"{message} (see {self.prog} --help)")


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return f"a list of {_describe(item)}"
    names = {int: "an integer", float: "a number", str: "text", bool: "true or false", type(None): "null"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _float_text(value: Any, hint: Any) -> float | None:
    """``value`` as a float when it is text such as ``1e-4`` (PyYAML reads exponent
    notation without a dot as text) and ``hint`` takes a float; else ``None``."""
    if not isinstance(value, str) or not _matches(1.5, hint) or _matches("", hint):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def check_types(config: Any, where: str = "") -> None:
    """Raise :class:`UserError` naming the first field of dataclass ``config`` whose value
    is not of its declared type (ints pass as floats; booleans never pass as numbers).
    A number field given text in exponent notation (``learning_rate: 1e-4``, which PyYAML
    reads as text) is set to that number."""
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        number = _float_text(value, hints[field.name])
        if number is not None:
            setattr(config, field.name, number)
            continue
        if not _matches(value, hints[field.name]):
            raise UserError(f"{where}{field.name} must be {_describe(hints[field.name])}; got {value!r}")


def read_yaml_mapping(path: str | os.PathLike) -> dict:
    """The settings in YAML file ``path``: a :class:`UserError` when it is missing, not a
    file, unreadable, not YAML, empty, or not a mapping."""
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"config file not found: {path}" if not path.exists() else f"config {path} is not a file")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read config {path}: {getattr(exc, 'strerror', None) or exc}") from None
    except yaml.YAMLError as exc:
        mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise UserError(f"cannot parse {path}: {where}{problem or ' '.join(str(exc).split())}") from None
    if data is None:
        raise UserError(f"config {path} is empty; it must hold the run's settings")
    if not isinstance(data, dict):
        raise UserError(f"config {path} must hold a mapping of settings; got a {type(data).__name__}")
    return data


def check_creatable(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Check that folder ``path`` exists or can be made, and can be written; undo whatever
    the check made, so a run refused later leaves nothing behind. Returns ``path``."""
    path = Path(path).expanduser()
    made = []
    try:
        missing = [p for p in [path, *path.parents] if not p.exists()]
        for folder in reversed(missing):
            folder.mkdir()
            made.append(folder)
        if not path.is_dir():
            raise UserError(f"{what} {path} is a file, not a folder")
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write {what} {path}: {exc.strerror or exc}") from None
    finally:
        for folder in reversed(made):
            try:
                folder.rmdir()
            except OSError:
                pass
    return path
