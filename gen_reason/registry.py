"""A generic name -> object registry with lazy ``"module:Attr"`` targets.

Modelled on lm-evaluation-harness' ``Registry``: registering costs nothing (the target
module is imported on first lookup), duplicate names are rejected, and an unknown name
is answered with the closest known ones. A registry made with ``entry_points=GROUP``
also holds the plugins other installed packages declare under that entry-point group
(``genreason.tasks``, ``genreason.verifiers``, ``genreason.solvers``,
``genreason.families``). Names may carry a version suffix
(``maze/grid-v1``, Gymnasium style); a bare name resolves to its highest version.
"""

from __future__ import annotations

import difflib
import importlib
import re
from typing import Any, Generic, Iterator, TypeVar

from gen_reason.errors import UserError

T = TypeVar("T")

_VERSIONED = re.compile(r"^(?P<base>.+)-v(?P<version>\d+)$")


def split_version(name: str) -> tuple[str, int | None]:
    """Split ``"maze/grid-v2"`` into ``("maze/grid", 2)``; unversioned names give ``None``."""
    match = _VERSIONED.match(name)
    if match:
        return match["base"], int(match["version"])
    return name, None


class Registry(Generic[T]):
    """Maps names to objects (or lazily imported ``"module:Attr"`` targets).

    ``kind`` names what is registered, for error messages ("task", "solver", ...).
    ``base`` (optional) is a class every resolved target must subclass or be an
    instance of; it is checked on first lookup so lazy entries stay free.
    """

    def __init__(self, kind: str, base: type | None = None, *, entry_points: str | None = None) -> None:
        self.kind = kind
        self.base = base
        self.entry_points = entry_points
        self._plugins_read = entry_points is None
        self._targets: dict[str, Any] = {}
        self._loaded: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, target: Any, *, aliases: tuple[str, ...] = ()) -> None:
        """Register ``target`` (an object or a ``"module:Attr"`` string) under ``name``."""
        for key in (name, *aliases):
            if key in self._targets or key in self._aliases:
                raise ValueError(f"{self.kind} {key!r} is already registered")
        self._targets[name] = target
        for alias in aliases:
            self._aliases[alias] = name

    def _read_plugins(self) -> None:
        """Register third-party plugins from the installed packages' entry points, once.

        A package adds a plugin with one line in its ``pyproject.toml``, e.g.
        ``[project.entry-points."genreason.tasks"] "maze/spiral-v1" = "mypkg.spiral:Spiral"``;
        the entry point's value is a lazy ``"module:Attr"`` target like ours, so nothing is
        imported until the plugin is used. A plugin may not take a name we ship.
        """
        if self._plugins_read:
            return
        self._plugins_read = True
        from importlib.metadata import entry_points

        for point in sorted(entry_points(group=self.entry_points), key=lambda ep: ep.name):
            if point.name in self._targets or point.name in self._aliases:
                raise UserError(f"plugin {point.value!r} (entry point {self.entry_points}) takes the {self.kind} "
                                f"name {point.name!r}, which is already registered; rename it")
            self._targets[point.name] = point.value

    def names(self) -> list[str]:
        """All registered canonical names (plugins included), sorted."""
        self._read_plugins()
        return sorted(self._targets)

    def __contains__(self, name: object) -> bool:
        try:
            self.canonical(str(name))
        except UserError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def canonical(self, name: str) -> str:
        """Resolve aliases and bare (unversioned) names to the registered name."""
        self._read_plugins()
        if name in self._targets:
            return name
        if name in self._aliases:
            return self._aliases[name]
        base, version = split_version(name)
        if version is None:
            versions = [
                (split_version(key)[1], key)
                for key in self._targets
                if split_version(key)[0] == name and split_version(key)[1] is not None
            ]
            if versions:
                return max(versions)[1]
        raise UserError(self._unknown_message(name))

    def _unknown_message(self, name: str) -> str:
        # Suggest the names people type: bare (unversioned) names and aliases.
        bare = sorted({split_version(key)[0] for key in self._targets} | set(self._aliases))
        close = difflib.get_close_matches(split_version(name)[0], bare, n=3, cutoff=0.6)
        if not close:
            close = [key for key in bare if name in key][:3]
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(self.names())}"

    def get(self, name: str) -> T:
        """Return the object registered under ``name``, importing it on first use."""
        key = self.canonical(name)
        if key not in self._loaded:
            target = self._targets[key]
            if isinstance(target, str):
                target = import_target(target)
            if self.base is not None and not (
                (isinstance(target, type) and issubclass(target, self.base))
                or isinstance(target, self.base)
            ):
                raise TypeError(f"{self.kind} {key!r} resolves to {target!r}, not a {self.base.__name__}")
            self._loaded[key] = target
        return self._loaded[key]


def import_target(spec: str) -> Any:
    """The object ``"package.module:Attr"`` names (imported now: registrations stay lazy)."""
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"lazy target {spec!r} must look like 'package.module:Attr'")
    module = importlib.import_module(module_name)
    return getattr(module, attr)


def config_from_overrides(config_cls: type, owner: str, overrides: dict[str, Any], noun: str = "config"):
    """Build the config dataclass ``config_cls`` from keyword overrides for ``owner``
    (e.g. "task maze/grid-v1"): the one config system (:func:`gen_reason.config.build`),
    so unknown fields get a "did you mean" and values are type-checked, in one line."""
    from gen_reason.config import build

    return build(config_cls, overrides, what=f"{owner} {noun}")
