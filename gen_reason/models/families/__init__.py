"""What we know about each supported diffusers image-to-video pipeline, one module a family.

A :class:`Family` (``base.py``) holds one pipeline kind's defaults and the places where
pipelines disagree (latent layout, initial noise, decoding); everything outside the
families sees latents in one layout, ``[batch, channels, frames, height, width]``.

Each family module (``wan.py``, ``cogvideox.py``, ``ltx.py``) holds its :class:`Family`
subclass and instances, and declares:

- ``PIPELINE_CLASSES``: ``{_class_name: "module:PipelineClass"}``, the ``model_index.json``
  class names it runs and the diffusers pipeline class each runs through;
- ``FAMILIES``: its :class:`Family` instances;
- ``choose(class_name, model_index, configs, folder_name) -> Family``: which of them a
  folder is, from its ``model_index.json`` and component configs (nothing loaded).

Adding a family is that one new module plus its entry in :data:`FAMILY_MODULES`.
:data:`PIPELINES` maps every ``_class_name`` to its pipeline class (lazily: nothing is
imported until a model of that class is loaded). A pipeline class registered there by
someone else (the embedded model, an entry point in group ``genreason.families``) may
carry its own family as a ``genreason_family`` class attribute; without one it gets
:data:`GENERIC`, which assumes Wan's conventions.
"""

from __future__ import annotations

from typing import Any, Callable

from gen_reason.models.families import cogvideox, ltx, wan
from gen_reason.models.families.base import EXTRA_OPTIONS, GENERIC, Family, FamilyDefaults, Geometry, Limits
from gen_reason.models.families.cogvideox import COGVIDEOX15_I2V, COGVIDEOX_I2V, CogVideoXFamily
from gen_reason.models.families.ltx import LTX_CONDITION, LTX_I2V, LTX_NEGATIVE_PROMPT, LTXConditionFamily, LTXFamily
from gen_reason.models.families.wan import (WAN21_I2V, WAN21_I2V_720P, WAN22_I2V_A14B, WAN22_TI2V, WAN_NEGATIVE_PROMPT,
                                            WanFamily)
from gen_reason.registry import Registry

#: The family modules genreason ships: each one is registered by being listed here.
FAMILY_MODULES = (wan, cogvideox, ltx)

#: ``_class_name`` in a model folder's ``model_index.json`` -> pipeline class.
PIPELINES: Registry[Any] = Registry("pipeline", entry_points="genreason.families")
#: ``_class_name`` -> the ``choose`` of the family module that runs it.
_CHOOSERS: dict[str, Callable[[str, dict, dict, str], Family]] = {}
for _module in FAMILY_MODULES:
    for _class_name, _target in _module.PIPELINE_CLASSES.items():
        PIPELINES.register(_class_name, _target)
        _CHOOSERS[_class_name] = _module.choose
# The project's own small model (a diffusers pipeline too, so it shares every feature); its
# pipeline class carries its family.
PIPELINES.register("EmbeddedVideoPipeline", "gen_reason.models.embedded:EmbeddedVideoPipeline")

#: Every family genreason knows, by name.
FAMILIES = {family.name: family for module in FAMILY_MODULES for family in module.FAMILIES}

__all__ = [
    "COGVIDEOX15_I2V", "COGVIDEOX_I2V", "EXTRA_OPTIONS", "FAMILIES", "FAMILY_MODULES", "GENERIC", "LTX_CONDITION",
    "LTX_I2V", "LTX_NEGATIVE_PROMPT", "PIPELINES", "WAN21_I2V", "WAN21_I2V_720P", "WAN22_I2V_A14B", "WAN22_TI2V",
    "WAN_NEGATIVE_PROMPT", "CogVideoXFamily", "Family", "FamilyDefaults", "Geometry", "LTXConditionFamily",
    "LTXFamily", "Limits", "Registry", "WanFamily", "family_for",
]


def family_for(class_name: str, pipeline_cls: type, model_index: dict, configs: dict[str, dict] | None = None,
               folder_name: str = "") -> Family:
    """The family of a model folder, from its pipeline class, ``model_index.json`` and
    component configs (``configs["transformer"]`` etc., when read; nothing is loaded):
    the ``choose`` of the family module that registered ``class_name``, else the pipeline
    class's own ``genreason_family``, else :data:`GENERIC`.
    """
    choose = _CHOOSERS.get(class_name)
    if choose is not None:
        return choose(class_name, model_index, configs or {}, folder_name)
    family = getattr(pipeline_cls, "genreason_family", None)
    return family if isinstance(family, Family) else GENERIC
