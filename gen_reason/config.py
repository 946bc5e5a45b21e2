"""One config system for every command: typed configs, YAML files, one dotted flag grammar.

A config is a plain dataclass (``EvalConfig``, ``LoraTrainConfig``, a task's ``Config``,
``Budget``, ...). Its values come from a YAML file, then from dotted overrides
(``--model.steps 30``, ``--lora.rank 16``, ``--solvers.0.params.n 8``), and are checked
by pydantic against the dataclass's type hints, strictly, as JSON data (``1`` is not
``True``, ``2.0`` is not ``2``, ``"30"`` is not ``30``; lists fill tuple fields): unknown keys are
refused with the closest known one ("did you mean"), wrong types and values are one line
naming the key.
pydantic rather than a YAML-merging library because our fields use the full typing
language (``int | Literal["auto"] | None``, tuples, nested lists of dataclasses), which
pydantic validates as written.

Every error is a :class:`~gen_reason.errors.UserError` (one line, exit code 2 in the CLI).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import typing
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from gen_reason.errors import UserError

T = TypeVar("T")


# -- YAML ---------------------------------------------------------------------------------------
_LOADER = None


def yaml_loader():
    """PyYAML's safe loader, reading ``1e-4`` as the number people mean (YAML 1.1, which
    PyYAML follows, wants a dot: ``1.0e-4``; without one the value would be text)."""
    global _LOADER
    if _LOADER is None:
        import re

        import yaml

        class Loader(yaml.SafeLoader):
            """Safe loader with exponent floats."""

        Loader.add_implicit_resolver(
            "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
            list("-+0123456789"))
        _LOADER = Loader
    return _LOADER


def parse_yaml(text: str) -> Any:
    """YAML text as data (safe loading; ``1e-4`` is a number). Raises ``yaml.YAMLError``."""
    import yaml

    return yaml.load(text, Loader=yaml_loader())  # noqa: S506 - a SafeLoader subclass


# -- the flag grammar ---------------------------------------------------------------------------
class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose mistakes raise :class:`UserError` (the command
    prints it as one line and exits 2) instead of printing a usage block; subcommand
    parsers made from it inherit that. Every command of ours parses with it."""

    def error(self, message: str) -> typing.NoReturn:
        """Raise instead of printing the usage and exiting."""
        raise UserError(f"{message} (see {self.prog} --help)")


def parse_value(text: str) -> Any:
    """A flag's value as a YAML scalar or flow collection: ``30``, ``1e-4``, ``true``, ``null``, ``[a, b]``."""
    import yaml

    try:
        return parse_yaml(text)
    except yaml.YAMLError:
        return text  # not YAML (an unbalanced bracket, say): the string as typed


def parse_flags(argv: Sequence[str], sections: Iterable[str] | None = None) -> dict[str, Any]:
    """``["--model.steps", "30", "--task.skin=dark"]`` -> ``{"model.steps": 30, "task.skin": "dark"}``.

    The one dotted flag grammar of every command: ``--KEY VALUE`` or ``--KEY=VALUE``
    where KEY is a dotted path into the command's config (dashes read as underscores).
    ``sections`` are the first parts a command takes; anything else, and any argument
    that is not a dotted flag, is a :class:`UserError`.
    """
    allowed = tuple(sections) if sections is not None else None
    out: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        key, eq, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if not key or "." not in key:
            raise UserError(f"unrecognised argument {arg!r} (see --help)")
        if not eq:
            if i + 1 >= len(argv):
                raise UserError(f"{arg} needs a value")
            i += 1
            value = argv[i]
        section, _, rest = key.partition(".")
        if not rest or (allowed is not None and section not in allowed):
            close = difflib.get_close_matches(section, allowed or (), n=1)
            hint = f"; did you mean --{close[0]}.{rest}?" if close and rest else ""
            raise UserError(f"unrecognised argument {arg!r}{hint} (dotted flags here: "
                            f"{', '.join(f'--{s}.FIELD' for s in allowed or ())})")
        out[key.replace("-", "_")] = parse_value(value)
        i += 1
    return out


def config_flags(argv: Sequence[str], sections: Sequence[str], *, model_options: Sequence[str] = ()) -> dict[str, Any]:
    """A flat config's dotted flags: ``--lora.rank 16`` (any of ``sections``, all naming the
    one config: the field is the part after the dot) and ``--model.offload model`` (one of
    ``model_options``, the same-named field) -> ``{"rank": 16, "offload": "model"}``.

    The one grammar (:func:`parse_flags`); a flag without a section (``--rank 16``, an
    older genreason's spelling) is refused with the dotted one, a ``--model.`` field that
    is not a model option with the closest one.
    """
    for arg in argv:
        key = arg[2:].partition("=")[0] if arg.startswith("--") else ""
        if key and "." not in key:
            raise UserError(f"unrecognised argument {arg!r}; did you mean --{sections[0]}.{key}? "
                            f"(dotted flags here: {', '.join(f'--{s}.FIELD' for s in sections)}"
                            f"{', --model.FIELD' if model_options else ''})")
    flat = parse_flags(argv, (*sections, "model") if model_options else sections)
    out: dict[str, Any] = {}
    for key, value in flat.items():
        section, _, field = key.partition(".")
        if section == "model" and field not in model_options:
            close = difflib.get_close_matches(field, model_options, n=1)
            hint = f"did you mean --model.{close[0]}?" if close else f"known: {', '.join(model_options)}"
            raise UserError(f"unknown model option --model.{field}; {hint}")
        if field in out:
            raise UserError(f"{field} given twice (--{key} and another section's)")
        out[field] = value
    return out


def nest(flat: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"task.skin": "dark"}`` -> ``{"task": {"skin": "dark"}}`` (one level: section, rest)."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        section, _, rest = key.partition(".")
        out.setdefault(section, {})[rest] = value
    return out


def set_dotted(data: dict, key: str, value: Any) -> None:
    """Set ``key`` (``"model.steps"``, ``"solvers.0.params.n"``: digits index lists) in ``data``."""
    node: Any = data
    parts = key.split(".")
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UserError(f"--{key}: {'.'.join(parts[:depth]) or 'it'} has {len(node)} entries; "
                                f"{part!r} is not one of their indices")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise UserError(f"--{key}: {'.'.join(parts[:depth])!r} is a value, not a section")


# -- files ------------------------------------------------------------------------------------
def read_yaml(path: str | Path, what: str = "config") -> dict:
    """A YAML file's top-level mapping (``{}`` for an empty file); one-line errors for a
    missing path, a folder, a binary file, invalid YAML or a top level that is not a mapping."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} file not found: {path}")
    if not path.is_file():
        raise UserError(f"{what} {path} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{what} {path} is not a text file") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise UserError(f"{what} {path} is not valid YAML{line}: {getattr(exc, 'problem', None) or exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{what} {path} must hold a mapping of keys at the top level, not a {type(data).__name__}")
    return data


def to_plain(config: Any) -> Any:
    """A config as plain YAML-ready data (dataclasses to dicts, tuples to lists, paths to strings)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: to_plain(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, Mapping):
        return {str(k): to_plain(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [to_plain(v) for v in config]
    if isinstance(config, Path):
        return str(config)
    return config


def dump_yaml(config: Any) -> str:
    """The resolved config as YAML text (what a run folder's ``config.yaml`` holds)."""
    import yaml

    return yaml.safe_dump(to_plain(config), sort_keys=False, allow_unicode=True)


# -- building a typed config ------------------------------------------------------------------
def _dataclasses_in(schema: Any, seen: set) -> None:
    """Every dataclass reachable from ``schema``'s type hints (nested configs, list items)."""
    if dataclasses.is_dataclass(schema) and isinstance(schema, type):
        if schema in seen:
            return
        seen.add(schema)
        for hint in typing.get_type_hints(schema).values():
            _dataclasses_in(hint, seen)
    for arg in typing.get_args(schema):
        _dataclasses_in(arg, seen)


def _json_default(value: Any) -> Any:
    """JSON for the few non-JSON values Python callers pass (numpy scalars and arrays, paths)."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def _adapter(schema: type):
    """A pydantic validator of dataclass ``schema`` that refuses unknown keys at every level."""
    from pydantic import ConfigDict, TypeAdapter

    found: set = set()
    _dataclasses_in(schema, found)
    for cls in found:
        if "__pydantic_config__" not in cls.__dict__:
            cls.__pydantic_config__ = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    return TypeAdapter(schema)


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass a type hint holds (itself, or inside ``X | None`` / ``list[X]``), if any."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return hint
    for arg in typing.get_args(hint):
        found = _dataclass_in(arg)
        if found is not None:
            return found
    return None


def _walk(schema: type, loc: tuple, unknown_last: bool) -> tuple[list, list[str]]:
    """The user's key path in pydantic error location ``loc`` (union-arm tags dropped), and
    the fields known where it ends."""
    path: list = []
    node: type | None = schema
    for depth, part in enumerate(loc):
        if isinstance(part, int):
            path.append(part)
            continue
        hints = typing.get_type_hints(node) if node is not None else {}
        if part in hints:
            path.append(part)
            node = _dataclass_in(hints[part])
        elif unknown_last and depth == len(loc) - 1:
            return [*path, part], sorted(hints)
    return path, sorted(typing.get_type_hints(node)) if node is not None else []


def _message(schema: type, error: dict, what: str) -> str:
    """One line for pydantic error ``error``: which key, what was wrong, what is known."""
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, UserError):  # a check of the dataclass's own, already one line
        return str(cause)
    unknown = error["type"] in ("unexpected_keyword_argument", "extra_forbidden")
    path, known = _walk(schema, tuple(error["loc"]), unknown)
    key = ".".join(map(str, path))
    if unknown:
        close = difflib.get_close_matches(str(path[-1]), known, n=1)
        hint = f"did you mean {'.'.join(map(str, [*path[:-1], close[0]]))}?" if close else f"known: {', '.join(known)}"
        return f"unknown {what} key {key!r}; {hint}"
    shown = repr(error.get("input"))
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return f"{what} key {key!r}: {error['msg'].rstrip('.')} (got {shown})" if key else f"bad {what}: {error['msg']}"


def rename_keys(schema: type, data: Mapping[str, Any], *, warn: bool = True, what: str = "config") -> dict:
    """``data`` with the top-level keys that ``schema.RENAMED`` (a class attribute: old name ->
    new name) lists moved to their new names, with a one-line warning on stderr for each
    (``warn``). A key given under both names is a :class:`UserError`."""
    import sys

    out = dict(data)
    for old, new in (getattr(schema, "RENAMED", None) or {}).items():
        if old not in out:
            continue
        if new in out:
            raise UserError(f"{what} sets both {old!r} and {new!r}, its new name; keep {new!r} only")
        out[new] = out.pop(old)
        if warn:
            print(f"warning: {what} key {old!r} is now called {new!r}; please rename it", file=sys.stderr)
    return out


def build(schema: type[T], data: Mapping[str, Any] | None, *, what: str = "config") -> T:
    """Dataclass ``schema`` from nested plain ``data``, checked against its type hints.

    Missing keys take the dataclass defaults; the dataclass's own ``__post_init__`` checks
    run too; keys the schema renamed (:func:`rename_keys`) are read under their new names. The first problem is one :class:`UserError` line ("unknown config key
    'model.stepz'; did you mean model.steps?").
    """
    from pydantic import ValidationError

    if data is not None and not isinstance(data, Mapping):
        raise UserError(f"{what} must be a mapping of keys, not a {type(data).__name__}")
    data = rename_keys(schema, data or {}, what=what)
    try:
        adapter = _adapter(schema)
        try:
            text = json.dumps(dict(data or {}), default=_json_default, allow_nan=True)
        except TypeError:  # an object from Python that JSON cannot hold: validate it as it is
            return adapter.validate_python(dict(data or {}))
        return adapter.validate_json(text, strict=True)
    except ValidationError as exc:
        errors = exc.errors()
        # A union reports each arm's failure: show the first, which is the declared type's.
        raise UserError(_message(schema, errors[0], what)) from None
    except (TypeError, ValueError) as exc:  # a __post_init__ check that is not a UserError
        if isinstance(exc, UserError):
            raise
        raise UserError(f"bad {what}: {exc}") from None


def merge(base: dict, update: Mapping[str, Any]) -> dict:
    """``base`` with ``update`` laid over it: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load(schema: type[T], path: str | Path | None = None, overrides: Mapping[str, Any] | None = None, *,
         prepare: Callable[[dict], dict] | None = None, what: str = "config") -> T:
    """A typed config: the schema's defaults, then the YAML file at ``path`` laid over them,
    then dotted ``overrides`` (:func:`parse_flags` makes them from flags).

    ``prepare`` may rewrite the file's data before the overrides (a shorthand the file
    format allows, say).
    """
    try:
        data = to_plain(schema())
    except TypeError:  # a schema with required fields has no defaults to start from
        data = {}
    if path is not None:
        data = merge(data, rename_keys(schema, prepare(read_yaml(path, what)) if prepare else read_yaml(path, what),
                                       what=what))
    for key, value in rename_keys(schema, overrides or {}, what=what).items():
        set_dotted(data, key, value)
    return build(schema, data, what=what)
