"""Interventions at a denoising step: latent swaps between seeds and noise injection.

Fixtures (tiny generators, a 16 px maze): tests/probe/conftest.py.
"""

import pytest
import torch

from gen_reason.errors import UserError
from gen_reason.models.base import StepState
from gen_reason.probe.interventions import (
    LatentSwap,
    NoiseInjection,
    intervention_sweep,
    run_baseline,
    run_intervention,
    signal_coefficient,
)

KINDS = ["wan2.1-i2v", "cogvideox-i2v", "ltx-i2v", "embedded"]
PROMPT = "a red dot moves to the green goal"


@pytest.mark.parametrize("kind", KINDS)
def test_swapping_latents_at_the_first_step_swaps_the_outcomes(tiny_generator, frame_for, kind, monkeypatch):
    generator = tiny_generator(kind)
    if kind == "cogvideox-i2v":
        # CogVideoX samples each seed's image latent from the VAE posterior (a random tiny VAE's is
        # wide) and keeps it beside the running latents, out of a swap's reach: encode
        # deterministically so that the running latents are the whole per-seed state.
        from diffusers.pipelines.cogvideo import pipeline_cogvideox_image2video as cogvideox

        original = cogvideox.retrieve_latents
        monkeypatch.setattr(cogvideox, "retrieve_latents",
                            lambda output, generator=None, sample_mode="sample": original(output, generator, "argmax"))
    image = frame_for(kind)
    base = generator.generate(image, PROMPT, seeds=[1, 2], output="latents")
    assert not torch.allclose(base[0], base[1], atol=1e-3)
    swap = LatentSwap(step=0)
    swapped = generator.generate(image, PROMPT, seeds=[1, 2], output="latents", on_step=swap)
    assert swap.applied
    torch.testing.assert_close(swapped[0], base[1], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(swapped[1], base[0], atol=1e-4, rtol=1e-4)


def fake_state(step=0, seeds=(1, 2, 3), next_sigma=0.5, latents=None, x0=None):
    latents = torch.randn(len(seeds), 3, 2, 4, 4, generator=torch.Generator().manual_seed(0)) if latents is None else latents
    x0 = torch.zeros_like(latents) if x0 is None else x0
    return StepState(step=step, num_steps=4, timestep=500.0, sigma=0.7, next_sigma=next_sigma, latents=latents, x0=x0,
                     seeds=tuple(seeds), num_frames=5, height=4, width=4)


def test_swap_pairs_and_frames():
    state = fake_state(seeds=(1, 2, 3))
    out = LatentSwap(step=0, pairs=[(1, 3)])(state)
    assert torch.equal(out[0], state.latents[2]) and torch.equal(out[2], state.latents[0])
    assert torch.equal(out[1], state.latents[1])
    partial = LatentSwap(step=0, pairs=[(1, 2)], frames=[1])(state)
    assert torch.equal(partial[0, :, 0], state.latents[0, :, 0]) and torch.equal(partial[0, :, 1], state.latents[1, :, 1])
    assert LatentSwap(step=1)(state) is None  # not its step
    with pytest.raises(UserError, match="not in one batch"):
        LatentSwap(step=0, pairs=[(1, 9)])(state)


def test_noise_injection_keeps_x0_and_redraws_the_noise():
    x0 = torch.full((2, 3, 2, 4, 4), 0.5)
    noise = torch.randn(2, 3, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    for prediction_type in ("flow_prediction", "v_prediction"):
        alpha = signal_coefficient(0.6, prediction_type)
        state = fake_state(seeds=(1, 2), next_sigma=0.6, latents=alpha * x0 + 0.6 * noise, x0=x0)
        kept = NoiseInjection(prediction_type, step=0, strength=0.0)(state)
        torch.testing.assert_close(kept, state.latents)
        fresh = NoiseInjection(prediction_type, step=0, strength=1.0)(state)
        implied = (fresh - alpha * x0) / 0.6
        assert implied.std() == pytest.approx(1.0, abs=0.2) and (implied - noise).abs().mean() > 0.5
        # Reproducible and per seed: the same seed gets the same fresh noise in any batch.
        alone = NoiseInjection(prediction_type, step=0)(fake_state(seeds=(2,), next_sigma=0.6,
                                                                   latents=state.latents[1:], x0=x0[1:]))
        torch.testing.assert_close(alone[0], fresh[1])
    assert NoiseInjection("flow_prediction", step=0).fresh_seed(5) not in (5, 0)
    assert signal_coefficient(0.6, "flow_prediction") == pytest.approx(0.4)
    assert signal_coefficient(0.6, "epsilon") == pytest.approx(0.8)


def test_noise_injection_by_level_and_its_limits():
    hook = NoiseInjection("flow_prediction", sigma=0.5)
    assert hook(fake_state(step=0, next_sigma=0.8)) is None
    assert hook(fake_state(step=1, next_sigma=0.45)) is not None and hook.applied_step == 1
    assert hook(fake_state(step=2, next_sigma=0.3)) is None  # once only
    last = NoiseInjection("flow_prediction", step=3)
    assert last(fake_state(step=3, next_sigma=0.0)) is None and not last.applied
    with pytest.raises(UserError, match="exactly one of step= or sigma="):
        NoiseInjection("flow_prediction")
    with pytest.raises(UserError, match="strength must be in"):
        NoiseInjection("flow_prediction", step=0, strength=2)


def test_run_intervention_measures_the_outcome(tiny_generator, tiny_maze):
    generator = tiny_generator("embedded")
    instance = tiny_maze(2)
    baseline = run_baseline(generator, instance, [0, 1])
    swapped = run_intervention(generator, instance, [0, 1], LatentSwap(step=0), baseline=baseline)
    assert swapped.summary["follows_latents"] == 1.0 and swapped.summary["applied"]
    assert swapped.per_sample[0]["partner_seed"] == 1
    assert swapped.per_sample[0]["distance_to_partner"] < 0.01
    nothing = run_intervention(generator, instance, [0, 1], NoiseInjection(generator.prediction_type, step=3),
                               baseline=baseline)  # after the last step: nothing left to re-noise
    assert not nothing.summary["applied"] and nothing.summary["pixel_change"] == 0.0
    noisy = run_intervention(generator, instance, [0, 1], NoiseInjection(generator.prediction_type, step=0),
                             baseline=baseline)
    # Fresh noise at the first step is as good as another seed (and never the seed's own noise again).
    assert noisy.summary["pixel_change"] > 0.3 * swapped.summary["pixel_change"] > 0
    rows = intervention_sweep(generator, instance, [0, 1], [0, 2], baseline=baseline)
    assert [(r["kind"], r["step"]) for r in rows] == [("noise", 0), ("noise", 2), ("swap", 0), ("swap", 2)]
    assert all({"path_changed", "outcome_flipped", "pixel_change"} <= set(r) for r in rows)
