"""The generic registry: lazy targets, versions, aliases, duplicates, did-you-mean."""

import pytest

from gen_reason.errors import UserError
from gen_reason.registry import Registry, split_version


class Base:
    pass


class Impl(Base):
    pass


def test_lazy_target_is_imported_on_first_get():
    reg = Registry("thing", base=Base)
    reg.register("impl", "tests_registry_missing_module:Impl")  # never imported unless asked
    reg.register("ok-v1", Impl)
    assert reg.get("ok-v1") is Impl
    with pytest.raises(ModuleNotFoundError):
        reg.get("impl")


def test_lazy_string_target_resolves():
    reg = Registry("thing")
    reg.register("registry", "gen_reason.registry:Registry")
    assert reg.get("registry") is Registry


def test_duplicates_rejected_including_aliases():
    reg = Registry("thing")
    reg.register("a-v1", Impl, aliases=("a",))
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a-v1", Impl)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("b", Impl, aliases=("a",))


def test_bare_name_resolves_to_highest_version():
    reg = Registry("task")
    reg.register("maze/grid-v1", "x:A")
    reg.register("maze/grid-v2", "x:B")
    assert reg.canonical("maze/grid") == "maze/grid-v2"
    assert reg.canonical("maze/grid-v1") == "maze/grid-v1"
    assert split_version("maze/grid-v12") == ("maze/grid", 12)
    assert split_version("maze/grid") == ("maze/grid", None)


def test_unknown_name_suggests_closest():
    reg = Registry("task")
    reg.register("maze/grid-v1", "x:A", aliases=("maze",))
    reg.register("maze/sokoban-v1", "x:B")
    with pytest.raises(UserError, match=r"Did you mean maze/grid\b") as err:
        reg.get("maze/gird")
    assert "unknown task 'maze/gird'" in str(err.value)
    assert "maze/gird" not in reg and "maze/grid" in reg


def test_base_class_checked():
    reg = Registry("thing", base=Base)
    reg.register("wrong", int)
    with pytest.raises(TypeError, match="not a Base"):
        reg.get("wrong")
