"""Budget, compute accounting, configs and the registry."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from gen_reason.errors import UserError
from gen_reason.solvers import SOLVERS, Budget, Compute, get_solver, solver_names
from gen_reason.solvers.base import derive_seed, generation_cost, load_prompt, nfe_per_step


def test_every_strategy_is_registered_and_lazy():
    assert solver_names() == sorted(["single", "best-of-n", "latent-ensemble", "visual-tts", "videotpo", "closed-loop"])
    for name in solver_names():
        assert SOLVERS.get(name).name == name


def test_unknown_solver_and_options_are_user_errors():
    with pytest.raises(UserError, match="best-of-n"):
        get_solver("best-of-m")
    with pytest.raises(UserError, match="unknown solver best-of-n option key .m."):
        get_solver("best-of-n", m=3)
    with pytest.raises(UserError, match="n must be"):
        get_solver("best-of-n", n=0)
    with pytest.raises(UserError, match="merge"):
        get_solver("latent-ensemble", merge="median")
    with pytest.raises(UserError, match="window_end"):
        get_solver("latent-ensemble", window_start=3, window_end=1)
    with pytest.raises(UserError, match="increasing"):
        get_solver("visual-tts", frame_counts=[17, 9])
    with pytest.raises(UserError, match="needs a VLM"):
        get_solver("videotpo")
    with pytest.raises(UserError, match="needs a VLM"):
        get_solver("closed-loop", judge="vlm")
    with pytest.raises(UserError, match="needs a VLM"):
        get_solver("best-of-n", selector="vlm")


def test_visual_tts_accepts_a_yaml_list():
    assert get_solver("visual-tts", frame_counts=[9, 17]).config.frame_counts == (9, 17)


def test_budget_validation_and_round_trip():
    with pytest.raises(UserError):
        Budget(max_nfe=-1)
    with pytest.raises(UserError):
        Budget(max_seconds="soon")
    with pytest.raises(UserError, match="unknown budget"):
        Budget.from_dict({"flops": 3})
    budget = Budget(max_nfe=10, max_vlm_calls=3)
    assert Budget.from_dict(budget.to_dict()) == budget
    assert Budget.from_dict({"nfe": 10, "vlm_calls": 3}) == budget
    assert budget.allows(Compute(nfe=4), Compute(nfe=6))
    assert not budget.allows(Compute(nfe=5), Compute(nfe=6))
    assert not budget.allows(Compute(vlm_calls=1), Compute(vlm_calls=3))
    assert Budget().allows(Compute(nfe=10**9), Compute(nfe=10**9))


def test_compute_adds_and_merges():
    total = Compute.merge([Compute(nfe=2, clips=1, frames=9), Compute(nfe=3, vlm_calls=1, vlm_tokens=40, seconds=0.5)])
    assert total == Compute(nfe=5, clips=1, frames=9, vlm_calls=1, vlm_tokens=40, seconds=0.5)
    total.add(Compute(nfe=1))
    assert total.nfe == 6
    assert json.dumps(total.to_dict())


def test_nfe_counts_classifier_free_guidance_twice():
    diffusers_like = SimpleNamespace(options=SimpleNamespace(steps=50, guidance=5.0), default_num_frames=81)
    cost = generation_cost(diffusers_like, samples=4, num_frames=81, steps=None, guidance=None)
    assert cost == Compute(nfe=4 * 50 * 2, clips=4, frames=4 * 81)
    assert generation_cost(diffusers_like, samples=1, num_frames=9, steps=10, guidance=1.0).nfe == 10
    # A generator that knows better says so.
    distilled = SimpleNamespace(default_steps=4, nfe_per_step=lambda guidance: 1)
    assert nfe_per_step(distilled, 7.0) == 1
    assert generation_cost(distilled, samples=2, num_frames=9, steps=None, guidance=7.0).nfe == 8


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(3, 1, 2) == derive_seed(3, 1, 2)
    seeds = {derive_seed(0, step) for step in range(1000)}
    assert len(seeds) == 1000 and all(0 <= seed < 2**31 for seed in seeds)


@pytest.mark.parametrize(
    "name, fields",
    [
        ("selector", {"task_prompt": "t", "count": 2, "last": 1}),
        ("prompt_critic", {"task_prompt": "t", "current_prompt": "p", "count": 2}),
        ("prompt_rewrite", {"task_prompt": "t", "current_prompt": "p", "critique": "[]"}),
        ("planner", {"task_prompt": "t", "step": 1, "max_steps": 3, "history": "(none yet)"}),
        ("clip_verifier", {"task_prompt": "t", "instruction": "i", "target_state": "s"}),
    ],
)
def test_prompt_files_fill_every_placeholder(name, fields):
    text = load_prompt(name, **fields)
    assert "$" not in text and "JSON" in text
    with pytest.raises(KeyError):
        load_prompt(name)


def test_attempt_record_is_json_without_videos(maze, make_generator, make_verifier):
    generator = make_generator()
    attempt = get_solver("best-of-n", n=3).solve(maze, generator, make_verifier(generator))
    record = attempt.to_dict()
    text = json.dumps(record)
    assert "video" not in record and len(record["candidates"]) == 3
    assert len(text) < 20_000
    assert isinstance(attempt.video, np.ndarray)
