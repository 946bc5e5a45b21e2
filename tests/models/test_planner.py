"""The memory planner: its formula on hand-made cases, its choices, and its estimates against
measured peaks (live tensor bytes counted op by op: full-size models on the meta device,
and a tiny real-layout model generating on the CPU)."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path

import pytest
import torch

from gen_reason.models import planner
from gen_reason.models.families import Geometry
from gen_reason.models.peak_memory import count_peak, decode_call, module_tensors, one_block_model, transformer_call

REAL_CONFIGS = Path(__file__).parent / "real_configs"
FOLDERS = sorted(p.name for p in REAL_CONFIGS.iterdir() if (p / "model_index.json").is_file()) \
    if REAL_CONFIGS.is_dir() else []
GIB = 2**30


def _components():
    return [planner.ComponentMemory("text_encoder", "T5", 10 * GIB, "bfloat16", 1, blocks=24),
            planner.ComponentMemory("transformer", "Wan", 20 * GIB, "bfloat16", 1, blocks=40),
            planner.ComponentMemory("transformer_2", "Wan", 20 * GIB, "bfloat16", 1, blocks=40),
            planner.ComponentMemory("vae", "VAE", 1 * GIB, "float32", 1)]


def _workload(**changes):
    fields = dict(height=480, width=832, num_frames=81, tokens=32760, hidden=5120, compute_bytes=2,
                  token_workset=11.2, cfg=1, text_tokens=512, text_hidden=4096, vae_pixels=480 * 832,
                  vae_tile_pixels=256 * 256, vae_workset=4879.0, vae_bytes=4)
    fields.update(changes)
    return planner.Workload(**fields)


def test_weights_follow_the_offload_mode():
    """none: every component; model: the running one (one expert); group: the rest plus two
    transformer blocks; sequential: one block of the running component."""
    components, zero = _components(), _workload(tokens=0, text_tokens=0, vae_workset=0.0, num_frames=0)
    none = planner.estimate(components, zero, offload="none")
    assert none.phases["denoise"] == 51 * GIB
    model = planner.estimate(components, zero, offload="model")
    assert model.phases["denoise"] == 20 * GIB and model.phases["text"] == 10 * GIB and model.phases["decode"] == GIB
    group = planner.estimate(components, zero, offload="group")
    assert group.phases["denoise"] == 11 * GIB + 2 * (20 * GIB // 40)
    sequential = planner.estimate(components, zero, offload="sequential")
    assert sequential.phases["denoise"] == 20 * GIB // 40


def test_activations_scale_with_batch_tokens_and_tiling():
    components, workload = _components(), _workload()
    one = planner.estimate(components, workload, batch=1)
    two = planner.estimate(components, workload, batch=2)
    denoise = workload.tokens * workload.token_workset * workload.hidden * workload.compute_bytes
    assert two.phases["denoise"] - one.phases["denoise"] == pytest.approx(denoise, rel=1e-6)
    # the generator decodes one video at a time: the decode phase does not grow with the batch
    assert two.phases["decode"] == one.phases["decode"]
    tiled = planner.estimate(components, workload, vae_tiling=True)
    assert tiled.phases["decode"] < one.phases["decode"]
    cfg2 = planner.estimate(components, _workload(cfg=2))
    assert cfg2.phases["denoise"] - one.phases["denoise"] == pytest.approx(denoise, rel=1e-6)


def test_plan_keeps_everything_resident_when_it_fits_and_takes_the_largest_batch():
    components, workload = _components(), _workload()
    budget = 200 * GIB
    chosen = planner.plan(components, workload, budget)
    assert (chosen.offload, chosen.vae_tiling) == ("none", False)
    assert planner.estimate(components, workload, batch=chosen.max_batch).peak <= budget
    if chosen.max_batch < planner.BATCH_CAP:
        assert planner.estimate(components, workload, batch=chosen.max_batch + 1).peak > budget
    assert "max_batch" in chosen.describe() and "GiB" in chosen.describe()


def test_plan_offloads_and_tiles_only_what_does_not_fit():
    components, workload = _components(), _workload()
    resident = planner.estimate(components, workload).peak
    chosen = planner.plan(components, workload, resident - GIB)  # one GiB short of resident
    assert chosen.offload != "none" or chosen.vae_tiling
    assert chosen.fits and chosen.estimate.peak <= resident - GIB
    tiny = planner.plan(components, workload, 1 * GIB)
    assert not tiny.fits and "does NOT fit" in tiny.describe()


def test_forced_choices_are_kept():
    components, workload = _components(), _workload()
    chosen = planner.plan(components, workload, 1000 * GIB, offload="sequential", vae_tiling=True, max_batch=3)
    assert (chosen.offload, chosen.vae_tiling, chosen.max_batch) == ("sequential", True, 3)
    assert set(chosen.forced) == {"offload", "vae_tiling", "max_batch"}
    cpu = planner.plan(components, workload, None)
    assert (cpu.max_batch, cpu.offload, cpu.vae_tiling) == (planner.DEFAULT_MAX_BATCH, "none", False)


def _measure(module, call, inputs):
    weights = sum(t.numel() * t.element_size() for t in module_tensors(module))
    with count_peak(module, inputs=inputs) as counter:
        call()
    return counter.peak, weights


@pytest.mark.skipif(not FOLDERS, reason="tests/models/real_configs is absent")
@pytest.mark.parametrize("folder", FOLDERS)
def test_estimates_match_meta_device_accounting_of_the_real_models(folder):
    """Each real model at full width on the meta device (one transformer block: at inference the
    activations of one block are freed before the next): the denoising step's and the VAE
    decode's measured peaks lie within 15 % of the planner's estimates, weights and
    activations alike, at the model's own size and frame count."""
    meta, geometry, workload = one_block_model(REAL_CONFIGS / folder)
    family, pipe = meta.family, meta.pipeline
    assert workload.calibrated

    call, inputs = transformer_call(pipe, family, geometry, batch=1)
    peak, weights = _measure(pipe.transformer, call, inputs)
    estimate = workload.cfg * workload.tokens * workload.token_workset * workload.hidden * workload.compute_bytes
    assert estimate == pytest.approx(peak - weights, rel=0.15)
    total = weights + estimate
    assert total == pytest.approx(peak, rel=0.15)

    call, inputs = decode_call(pipe, family, geometry)
    peak, weights = _measure(pipe.vae, call, inputs)
    decode = planner.estimate([], workload).phases["decode"]
    assert decode == pytest.approx(peak - weights, rel=0.15)


@pytest.mark.skipif(not FOLDERS, reason="tests/models/real_configs is absent")
def test_tiled_decode_estimate_matches_meta_accounting():
    """Wan 2.1's VAE with tiling on, at a size that needs several tiles."""
    from gen_reason.models.inspect import build_meta

    meta = build_meta(REAL_CONFIGS / "Wan2.1-I2V-14B-480P-Diffusers")
    geometry = Geometry(5, 320, 448)
    workload = planner.workload_for(meta.pipeline, meta.family, geometry, meta.dtypes["transformer"],
                                    meta.dtypes["vae"])
    call, inputs = decode_call(meta.pipeline, meta.family, geometry, tiling=True)
    peak, weights = _measure(meta.pipeline.vae, call, inputs)
    tiled = planner.estimate([], workload, vae_tiling=True).phases["decode"]
    untiled = planner.estimate([], workload).phases["decode"]
    assert tiled == pytest.approx(peak - weights, rel=0.15)
    assert tiled < untiled


def test_phase_sum_matches_the_measured_peak_of_a_whole_tiny_generation(tiny_model_dir):
    """A whole generate() call of a tiny Wan 2.1 I2V (the real layout, random weights, two
    videos in one call) on the CPU, measured op by op. The planner's constants are for the
    real widths, so here they are measured on this model's own parts (one transformer pass,
    one decode, one encode); what is checked is the rest of the formula: which phases there
    are, what is resident in each, and how the batch enters. Within 15 %."""
    import dataclasses

    from gen_reason.models import DiffusersVideoGenerator

    size, frames = (256, 256), 9
    generator = DiffusersVideoGenerator.from_pretrained(tiny_model_dir("wan2.1-i2v"), steps=1, size=size,
                                                        num_frames=frames, max_batch=2)
    pipe, family = generator.pipeline, generator.family
    geometry = generator._geometry(None, None)
    workload = planner.workload_for(pipe, family, geometry, torch.float32, torch.float32)

    call, inputs = transformer_call(pipe, family, geometry, batch=1)
    peak, weights = _measure(pipe.transformer, call, inputs)
    token_workset = (peak - weights) / (workload.tokens * workload.hidden * workload.compute_bytes)
    call, inputs = decode_call(pipe, family, geometry)
    peak, weights = _measure(pipe.vae, call, inputs)
    vae_workset = (peak - weights - workload.output_bytes) / (workload.vae_pixels * workload.vae_bytes)
    condition = torch.zeros(1, 3, geometry.num_frames, *size)
    peak, weights = _measure(pipe.vae, lambda: pipe.vae.encode(condition), [condition])
    encode_workset = (peak - weights) / (size[0] * size[1] * workload.vae_bytes)
    workload = dataclasses.replace(workload, token_workset=token_workset, vae_workset=vae_workset,
                                   encode_workset=encode_workset)
    components = planner.pipeline_components(pipe)
    estimate = planner.estimate(components, workload, batch=2)

    image = torch.zeros(*size, 3, dtype=torch.uint8).numpy()
    modules = [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
    with count_peak(*modules) as counter:
        generator.generate(image, "a red dot", seeds=[0, 1])
    assert estimate.peak == pytest.approx(counter.peak, rel=0.15)


def test_from_pretrained_plans_for_the_free_memory_and_prints_its_choice(tiny_model_dir, monkeypatch, capsys):
    """With a budget (a GPU's free memory; here given), loading picks the largest batch that fits and says so."""
    from gen_reason.models import DiffusersVideoGenerator, testing

    path = tiny_model_dir("wan2.1-i2v")
    probe = DiffusersVideoGenerator.from_pretrained(path, steps=1, **testing.TINY_GEOMETRY["wan2.1-i2v"])
    components = planner.pipeline_components(probe.pipeline)
    workload = planner.workload_for(probe.pipeline, probe.family, probe._geometry(None, None), torch.float32,
                                    torch.float32)
    budget = planner.estimate(components, workload, batch=3).peak + 1
    monkeypatch.setattr(planner, "device_budget", lambda device=None, gpu_memory_gib=None: budget)
    generator = DiffusersVideoGenerator.from_pretrained(path, steps=1, **testing.TINY_GEOMETRY["wan2.1-i2v"])
    assert (generator.max_batch, generator.plan.offload, generator.plan.vae_tiling) == (3, "none", False)
    assert "memory plan: max_batch 3, offload none, VAE tiling off" in capsys.readouterr().err
    forced = DiffusersVideoGenerator.from_pretrained(path, steps=1, max_batch=5, **testing.TINY_GEOMETRY["wan2.1-i2v"])
    assert forced.max_batch == 5 and "does NOT fit" in forced.plan.describe()
