"""The families package: what each family module declares is what ``families/__init__.py`` registers.

Adding a family is one module in ``gen_reason/models/families/`` plus its entry in
``FAMILY_MODULES``; these checks run over every listed module, so a new one is checked by
being listed.
"""

import pytest

from gen_reason.models import families


def module_name(module):
    return module.__name__.rsplit(".", 1)[-1]


@pytest.mark.parametrize("module", families.FAMILY_MODULES, ids=module_name)
def test_every_class_name_of_a_family_module_is_registered_and_chooses_one_of_its_families(module):
    assert module.PIPELINE_CLASSES and module.FAMILIES
    for class_name in module.PIPELINE_CLASSES:
        assert class_name in families.PIPELINES.names()
        chosen = families.family_for(class_name, None, {"_class_name": class_name}, {}, "")
        assert chosen in module.FAMILIES, (class_name, chosen)
    for family in module.FAMILIES:
        assert families.FAMILIES[family.name] is family


def test_families_are_chosen_from_the_folder_as_before():
    choose = families.family_for
    assert choose("WanImageToVideoPipeline", None, {}, {}, "Wan2.1-I2V-14B-480P-Diffusers") is families.WAN21_I2V
    assert choose("WanImageToVideoPipeline", None, {}, {}, "Wan2.1-I2V-14B-720P-Diffusers") is families.WAN21_I2V_720P
    assert choose("WanPipeline", None, {"expand_timesteps": True}) is families.WAN22_TI2V
    assert choose("WanImageToVideoPipeline", None, {"boundary_ratio": 0.9}) is families.WAN22_I2V_A14B
    assert choose("WanImageToVideoPipeline", None, {"transformer_2": ["diffusers", "X"]}) is families.WAN22_I2V_A14B
    assert choose("CogVideoXImageToVideoPipeline", None, {}, {"transformer": {"patch_size_t": 2}}) \
        is families.COGVIDEOX15_I2V
    assert choose("CogVideoXImageToVideoPipeline", None, {}, {"transformer": {}}) is families.COGVIDEOX_I2V
    assert choose("LTXPipeline", None, {}) is families.LTX_I2V
    assert choose("LTXConditionPipeline", None, {}) is families.LTX_CONDITION


def test_a_pipeline_class_no_module_knows_brings_its_own_family_or_gets_the_generic_one():
    class Own:
        genreason_family = families.LTX_I2V

    assert families.family_for("OwnPipeline", Own, {}) is families.LTX_I2V
    assert families.family_for("OtherPipeline", object, {}) is families.GENERIC
