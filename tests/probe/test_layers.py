"""Layer hooks on tiny random pipelines, and the linear probes on synthetic features with known answers.

Fixtures (tiny generators, a 16 px maze): tests/probe/conftest.py.
"""

import numpy as np
import pytest
import torch

from gen_reason.errors import UserError
from gen_reason.probe.layers import (
    LayerRecorder,
    ProbeTargets,
    default_layers,
    denoiser_blocks,
    fit_layer_probes,
    maze_targets,
    nearest_nodes,
    node_uv,
    pool_features,
    resolve_layers,
    ridge_fit,
    ridge_predict,
    sample_grid,
    split_instances,
)

PROMPT = "a red dot moves to the green goal"

# Block outputs as the hooks see them: (frames, rows, cols, channels) after pooling to (4, 8, 8).
EXPECTED = {
    "wan2.1-i2v": {"transformer.blocks.0": (3, 1, 1, 24), "transformer.blocks.1": (3, 1, 1, 24)},
    "cogvideox-i2v": {"transformer.transformer_blocks.0": (3, 1, 1, 32)},
    "ltx-i2v": {"transformer.transformer_blocks.0": (3, 8, 8, 32)},
    "embedded": {"unet.down_blocks.0": (1, 8, 8, 8), "unet.down_blocks.1": (1, 8, 8, 16),
                 "unet.mid_block": (1, 8, 8, 16), "unet.up_blocks.0": (1, 8, 8, 16),
                 "unet.up_blocks.1": (1, 8, 8, 8)},
}
CALLS_PER_STEP = {"wan2.1-i2v": 2, "cogvideox-i2v": 1, "ltx-i2v": 1, "embedded": 1}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_hooks_see_the_right_blocks_and_shapes_once_per_step(tiny_generator, frame_for, kind):
    generator = tiny_generator(kind)
    assert list(denoiser_blocks(generator.pipeline)) == list(EXPECTED[kind])
    with LayerRecorder(generator, "all", every=1, project_dim=None) as recorder:
        generator.generate(frame_for(kind), PROMPT, seeds=[1, 2], on_step=recorder)
    steps = generator.options.steps
    assert recorder.recorded_steps == list(range(steps))
    assert recorder.calls_per_step == [CALLS_PER_STEP[kind]] * steps  # Wan: cond + uncond calls
    for name, shape in EXPECTED[kind].items():
        assert set(recorder.features[name]) == {(sample, step) for sample in range(2) for step in range(steps)}
        assert all(tuple(f.shape) == shape and f.dtype == torch.float16 for f in recorder.features[name].values())
        assert recorder.stacked(name).shape == (2, steps, *shape)


@pytest.mark.parametrize("kind", ["wan2.1-i2v", "cogvideox-i2v", "ltx-i2v"])
def test_under_guidance_the_conditional_pass_is_kept(tiny_generator, frame_for, kind):
    """At step 0 the conditional pass sees the same input with and without CFG: same features."""
    generator = tiny_generator(kind)
    image = frame_for(kind)
    features = {}
    raw = []
    block = list(denoiser_blocks(generator.pipeline).values())[0]
    spy = block.register_forward_hook(lambda module, args, out: raw.append((out[0] if isinstance(out, tuple) else out)))
    try:
        for guidance in (1.0, 5.0):
            raw.clear()
            with LayerRecorder(generator, [0], steps=[0], project_dim=None, dtype=torch.float32) as recorder:
                generator.generate(image, PROMPT, seeds=[1, 2], guidance=guidance, negative_prompt="black walls",
                                   on_step=recorder)
            features[guidance] = recorder.stacked(recorder.layers[0])[:, 0]
    finally:
        spy.remove()
    torch.testing.assert_close(features[5.0], features[1.0], atol=1e-4, rtol=1e-4)
    # The test has teeth: the unconditional pass of step 0 looks different.
    uncond = raw[1] if kind.startswith("wan") else raw[0][:2]
    cond = raw[0] if kind.startswith("wan") else raw[0][2:]
    assert (uncond - cond).abs().max() > 1e-3


def test_the_embedded_unet_is_hooked_from_the_first_step(tiny_generator, frame_for):
    generator = tiny_generator("embedded")
    raw = []
    block = denoiser_blocks(generator.pipeline)["unet.mid_block"]
    spy = block.register_forward_hook(lambda module, args, output: raw.append(output.detach().clone()))
    try:
        with LayerRecorder(generator, ["unet.mid_block"], every=1, project_dim=None, dtype=torch.float32) as recorder:
            generator.generate(frame_for("embedded"), PROMPT, seeds=[3], on_step=recorder)
    finally:
        spy.remove()
    assert len(raw) == generator.options.steps
    for step, output in enumerate(raw):
        expected = output.mean(dim=(2, 3))[0]  # 8x8 map pooled to 8x8 is itself; its mean is the map's mean
        got = recorder.features["unet.mid_block"][(0, step)]
        torch.testing.assert_close(got.mean(dim=(0, 1, 2)), expected, atol=1e-5, rtol=1e-5)


def test_hooks_are_removed_on_exit(tiny_generator):
    generator = tiny_generator("embedded")
    blocks = denoiser_blocks(generator.pipeline)
    before = {name: len(block._forward_hooks) for name, block in blocks.items()}
    with LayerRecorder(generator, "all"):
        assert all(len(block._forward_hooks) == before[name] + 1 for name, block in blocks.items())
    assert {name: len(block._forward_hooks) for name, block in blocks.items()} == before


def test_layer_selection(tiny_generator):
    pipe = tiny_generator("embedded").pipeline
    assert default_layers(pipe, max_layers=3) == ["unet.down_blocks.0", "unet.mid_block", "unet.up_blocks.1"]
    assert resolve_layers(pipe, "unet.mid_block,0") == ["unet.mid_block", "unet.down_blocks.0"]
    assert resolve_layers(pipe, [-1]) == ["unet.up_blocks.1"]
    with pytest.raises(UserError, match="unknown layer 'blocks.9'"):
        resolve_layers(pipe, ["blocks.9"])
    with pytest.raises(UserError, match="out of range"):
        resolve_layers(pipe, [12])


def test_wide_layers_are_projected(tiny_generator, frame_for):
    generator = tiny_generator("embedded")
    with LayerRecorder(generator, ["unet.mid_block"], steps=[0], project_dim=4) as recorder:
        generator.generate(frame_for("embedded"), PROMPT, seeds=[0], on_step=recorder)
    assert recorder.features["unet.mid_block"][(0, 0)].shape == (1, 8, 8, 4)


def test_pool_features_layouts():
    tokens = torch.arange(2 * 12 * 3, dtype=torch.float32).reshape(2, 12, 3)  # grid (1, 3, 4)
    pooled = pool_features(tokens, (1, 3, 4), (4, 8, 8))
    assert pooled.shape == (2, 1, 3, 4, 3)
    assert torch.equal(pooled[0, 0, 1, 2], tokens[0, 1 * 4 + 2])
    assert pool_features(tokens, None, (4, 8, 8)).shape == (2, 1, 1, 1, 3)
    conv = torch.randn(2, 5, 16, 16)
    assert pool_features(conv, None, (4, 8, 8)).shape == (2, 1, 8, 8, 5)


def test_sample_grid_is_bilinear_at_cell_centres():
    grid = np.arange(2 * 4 * 4, dtype=float).reshape(1, 4, 4, 2)
    uv = np.array([[0.125, 0.125], [0.375, 0.125], [0.25, 0.125]])  # centres of (0,0), (0,1), halfway
    samples = sample_grid(grid, uv)
    assert samples.shape == (1, 3, 2)
    np.testing.assert_allclose(samples[0, 0], grid[0, 0, 0])
    np.testing.assert_allclose(samples[0, 1], grid[0, 0, 1])
    np.testing.assert_allclose(samples[0, 2], (grid[0, 0, 0] + grid[0, 0, 1]) / 2)


def test_maze_targets_follow_the_solution(tiny_generator, tiny_maze):
    generator = tiny_generator("embedded")
    instance = tiny_maze(5)
    targets = maze_targets(generator, instance, num_frames=11, probe_frames=4)
    path = instance.solution["path"]
    assert targets.frame_fractions == pytest.approx([0.2, 0.4, 0.6, 0.8])  # frames 2, 4, 6, 8 of 0..10
    assert all(node in path for node in targets.agent)
    assert targets.agent == sorted(targets.agent, key=path.index)  # in the order the agent walks
    assert targets.on_path.sum() == len(set(path))
    uv = node_uv(generator, instance)
    assert uv.shape == (9, 2) and (uv > 0).all() and (uv < 1).all()
    # Room (0, 0) spans pixels 1..4 of the 16 px image: its centre is x = y = 3.0 (continuous).
    np.testing.assert_allclose(uv[0], [3 / 16, 3 / 16])


def test_agent_targets_from_the_generated_video(tiny_generator, tiny_maze):
    generator = tiny_generator("embedded")
    instance = tiny_maze(5)
    # Node 4 (the middle room, continuous centre (8, 8)) tracked at pixel-index (7.5, 7.6); lost; far off.
    positions = [[7.5, 7.6], None, [40.0, 40.0]]
    assert nearest_nodes(instance, positions, [0, 1, 2, 7]) == [4, None, None, None]
    track = [[7.5, 7.5]] * 11
    targets = maze_targets(generator, instance, num_frames=11, probe_frames=4, agent_positions=track)
    assert targets.agent == [4, 4, 4, 4]


def test_samples_without_a_known_agent_are_left_out():
    good, targets = synthetic_probe_data(True)
    for target in targets[::2]:
        target.agent[0] = None
    recorder = FakeRecorder({"good": good}, [s // 3 for s in range(24)])
    result = fit_layer_probes(recorder, targets, test_fraction=0.4)
    assert result.accuracy["agent_cell"][0, 0] > 0.9
    for target in targets:
        target.agent[:] = [None, None]
    assert np.isnan(fit_layer_probes(recorder, targets, test_fraction=0.4).accuracy["agent_cell"][0, 0])


def test_ridge_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = x @ np.array([1.0, -2.0, 0.0, 0.5, 3.0]) + 4.0
    model = ridge_fit(x, y, alpha=1e-6)
    np.testing.assert_allclose(ridge_predict(model, x), y, atol=1e-3)
    wide = rng.normal(size=(10, 50))  # more features than rows: the dual form
    assert ridge_predict(ridge_fit(wide, wide[:, 0], alpha=1e-3), wide).shape == (10,)


def test_split_keeps_instances_apart():
    train, test = split_instances([0, 0, 1, 1, 2, 2, 3, 3, 4, 4], test_fraction=0.4)
    assert train | test == {0, 1, 2, 3, 4} and not train & test and len(test) == 2
    with pytest.raises(UserError, match="at least two puzzle instances"):
        split_instances([0, 0, 0])


class FakeRecorder:
    """Just what fit_layer_probes reads from a LayerRecorder."""

    def __init__(self, features, instance_of_sample):
        self.features = features
        self.layers = list(features)
        self.seeds = list(range(len(instance_of_sample)))
        self.instance_of_sample = instance_of_sample
        self.recorded_steps = [0]


def synthetic_probe_data(informative: bool, samples: int = 24, seed: int = 0):
    """3x3 grids of 6-channel features; the informative layer marks the agent cell and the path cells."""
    rng = np.random.default_rng(seed)
    uv = np.array([[(c + 0.5) / 3, (r + 0.5) / 3] for r in range(3) for c in range(3)])
    features, targets = {}, []
    for sample in range(samples):
        agent = [int(a) for a in rng.integers(0, 9, size=2)]
        on_path = (rng.random(9) < 0.4).astype(float)
        grid = rng.normal(size=(2, 3, 3, 6))
        if informative:
            for k, cell in enumerate(agent):  # frame k: channel 0 lights up at the agent's cell
                grid[k, cell // 3, cell % 3, 0] += 6
            grid[:, :, :, 1] += 4 * on_path.reshape(3, 3)
        features[(sample, 0)] = torch.tensor(grid, dtype=torch.float16)
        targets.append(ProbeTargets(uv=uv, on_path=on_path, agent=agent, frame_fractions=[0.0, 1.0]))
    return features, targets


def test_linear_probes_read_informative_features_and_not_noise():
    good, targets = synthetic_probe_data(True)
    noise, _ = synthetic_probe_data(False)
    instance_of_sample = [s // 3 for s in range(24)]  # 8 instances, 3 seeds each
    recorder = FakeRecorder({"good": good, "noise": noise}, instance_of_sample)
    result = fit_layer_probes(recorder, targets, test_fraction=0.4)
    assert result.layers == ["good", "noise"] and result.steps == [0]
    assert result.accuracy["agent_cell"][0, 0] > 0.9 and result.accuracy["on_path"][0, 0] > 0.9
    assert result.accuracy["agent_cell"][1, 0] < 0.5 and result.accuracy["on_path"][1, 0] < 0.75
    assert result.chance["agent_cell"] == pytest.approx(1 / 9)
    assert result.best("agent_cell")["layer"] == "good"
    assert set(result.to_dict()) >= {"layers", "steps", "accuracy", "chance", "best", "test_instances"}
    with pytest.raises(UserError, match="targets for 3 samples"):
        fit_layer_probes(recorder, targets[:3])


def test_kept_steps_across_batches(tiny_generator, frame_for):
    generator = tiny_generator("embedded")
    old = generator.max_batch
    generator.max_batch = 2
    try:
        with LayerRecorder(generator, ["unet.mid_block"], every=2) as recorder:
            generator.generate(frame_for("embedded"), PROMPT, seeds=[4, 5, 6], on_step=recorder)
    finally:
        generator.max_batch = old
    assert recorder.seeds == [4, 5, 6] and recorder.recorded_steps == [0, 2, 3]
    assert set(recorder.features["unet.mid_block"]) == {(s, t) for s in range(3) for t in (0, 2, 3)}
