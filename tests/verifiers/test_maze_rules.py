"""Hand-built bad videos score failure with the right reason (and good ones pass).

Every bad video is made from a real instance with the task's own drawing helpers: the
agent-free scene is the first frame with the start cell taken from the solved last frame,
and the agent icon is drawn with ``draw_icon`` at the positions a cheating or confused
model would show.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gen_reason.puzzles.registry import get_task
from gen_reason.puzzles.skins import draw_icon
from gen_reason.verifiers.maze import MazeReferenceVerifier, MazeRuleVerifier, debug_strip
from gen_reason.verifiers.rules import RULE_NAMES
from gen_reason.verifiers.walk import SpecGraph

REF = MazeReferenceVerifier()
RULES = MazeRuleVerifier()


# ----------------------------------------------------------------------------- helpers
def agent_free_background(instance, video) -> np.ndarray:
    """The first frame with the agent painted out (its start cell copied from the last frame)."""
    spec = instance.spec
    img = video[0].copy()
    x, y = spec["nodes"][spec["start"]]
    half = int(math.ceil(0.5 * spec["step_px"]))
    y0, y1 = max(0, int(y) - half), int(y) + half + 1
    x0, x1 = max(0, int(x) - half), int(x) + half + 1
    img[y0:y1, x0:x1] = video[-1][y0:y1, x0:x1]
    return img


def draw_agent(img: np.ndarray, spec: dict, xy, icon: str | None = None, scale: float = 1.0, shift=(0, 0, 0)) -> None:
    """Draw the spec's agent icon at pixel ``xy`` (in place); a generator may redraw it
    with another ``icon``, size ``scale`` or colour ``shift``."""
    agent = spec["agent"]
    colour = tuple(int(np.clip(c + d, 0, 255)) for c, d in zip(agent["color"], shift))
    draw_icon(img, icon or agent["icon"], (float(xy[0]), float(xy[1])), float(agent["size_px"]) * scale, colour)


def walk_video(instance, background: np.ndarray, nodes_or_points, frames_per_step: int = 8, hold: int = 4,
               first_frame: bool = True, **redraw) -> np.ndarray:
    """A video of the agent gliding along a polyline of node indices or (x, y) points."""
    spec = instance.spec
    pts = [np.asarray(spec["nodes"][p], float) if isinstance(p, (int, np.integer)) else np.asarray(p, float)
           for p in nodes_or_points]
    positions = [pts[0]]
    for a, b in zip(pts, pts[1:]):
        n = max(1, int(round(np.linalg.norm(b - a) / spec["step_px"] * frames_per_step)))
        positions += [a + (b - a) * (k / n) for k in range(1, n + 1)]
    positions += [pts[-1]] * hold
    frames = []
    for p in positions:
        img = background.copy()
        draw_agent(img, spec, p, **redraw)
        frames.append(img)
    video = np.stack(frames)
    if first_frame:
        video[0] = instance.first_frame
    return video


def grid_case(seed: int = 0, difficulty: str = "medium", **config):
    """A maze/grid instance, its GT video, its agent-free background and its graph."""
    task = get_task("maze/grid", **config)
    inst = task.generate(seed, difficulty)
    video = inst.solution_video()
    return task, inst, video, agent_free_background(inst, video), SpecGraph(inst.spec)


def assert_violation(score, rule: str) -> None:
    assert not score.success, score.reason
    assert score.metrics[f"violation_{rule}"] == 1.0, (score.reason, score.trace.get("violations"))
    assert score.trace["first_violation"]["rule"] == rule, score.reason
    assert score.reason.startswith(rule), score.reason


# ----------------------------------------------------------------------------- good videos
def test_ground_truth_passes_rules_with_clean_trace():
    _, inst, video, _, _ = grid_case()
    score = RULES.score(inst, video)
    assert score.success and score.metrics["success_lenient"] == 1.0, score.reason
    assert score.metrics["num_violations"] == 0.0
    assert score.trace["first_violation"] is None
    assert score.trace["node_path"] == inst.solution["path"]
    assert "precision_rate" not in score.metrics  # rule verifier: no reference metrics
    json.dumps(score.to_dict())  # JSON-ready


def test_rule_verifier_never_reads_the_solution():
    _, inst, video, _, _ = grid_case()
    blind = type(inst)(task=inst.task, seed=inst.seed, difficulty=inst.difficulty, prompt=inst.prompt,
                       first_frame=inst.first_frame, solution=None, spec=inst.spec, config=inst.config)
    assert RULES.score(blind, video).success


def test_walking_another_legal_route_is_a_strict_success_with_lower_precision():
    # A detour into a dead end and back is legal: strict success, but not an exact match.
    _, inst, video, background, graph = grid_case(seed=2)
    path = inst.solution["path"]
    dead_ends = [n for n in range(len(graph.adj)) if len(graph.adj[n]) == 1 and n not in (path[0], path[-1])]
    best = None
    for n in dead_ends:
        for k, p in enumerate(path):
            detour = graph.shortest(p, n)
            if detour and 3 <= len(detour) - 1 and not set(detour[1:]) & set(path):
                best = (k, detour)
                break
        if best:
            break
    assert best is not None
    k, detour = best
    walk = path[: k + 1] + detour[1:] + detour[::-1][1:] + path[k + 1:]
    score = REF.score(inst, walk_video(inst, background, walk))
    assert score.success, score.reason
    assert score.metrics["exact_match"] == 0.0
    assert score.metrics["step_deviation"] > 0.1
    assert score.metrics["precision_rate"] < 1.0


@pytest.mark.parametrize("redraw", [{"scale": 0.75}, {"scale": 1.3}, {"shift": (-40, 35, 30)},
                                    {"icon": "square"}, {"icon": "star", "scale": 1.2, "shift": (20, 20, -20)}])
def test_agent_redrawn_slightly_differently_still_tracks(redraw):
    # Generators redraw the agent a little differently from the first frame.
    _, inst, _, background, _ = grid_case(seed=3)
    video = walk_video(inst, background, inst.solution["path"], **redraw)
    score = REF.score(inst, video)
    assert score.success and score.metrics["exact_match"] == 1.0, (redraw, score.reason)


# ----------------------------------------------------------------------------- bad videos
def _wall_crossing_case():
    for seed in range(40):
        _, inst, video, background, graph = grid_case(seed=seed)
        start = inst.spec["start"]
        sxy = graph.nodes[start]
        step = graph.step
        for d in ((2, 0), (-2, 0), (0, 2), (0, -2)):
            target = sxy + np.array(d) * step
            mid = sxy + np.array(d) * step / 2
            idx, dist = graph.nearest_node(np.array([target, mid]))
            if dist[0] < 1 and dist[1] > 0.5 * step:
                rest = graph.shortest(int(idx[0]), inst.spec["goal"])
                if rest:
                    return inst, background, [start] + rest
    raise AssertionError("no maze with a wall next to the start")


def test_through_a_wall_fails_strict_but_passes_vrbench_success():
    inst, background, walk = _wall_crossing_case()
    score = REF.score(inst, walk_video(inst, background, walk))
    assert_violation(score, "wall_crossing")
    assert score.metrics["success_lenient"] == 1.0  # VR-Bench's SR cannot see it
    assert score.metrics["exact_match_strict"] == 0.0


def test_teleport():
    task, inst, video, _, _ = grid_case()
    fps = task.config.frames_per_step
    cut = np.concatenate([video[: 2 * fps + 1], video[5 * fps + 1:]])  # skip three moves in one frame
    score = RULES.score(inst, cut)
    assert_violation(score, "teleport")
    assert score.trace["first_violation"]["frame"] == 2 * fps + 1


def test_stops_early():
    _, inst, video, _, _ = grid_case()
    score = REF.score(inst, video[: len(video) // 2])
    assert not score.success
    assert score.metrics["num_violations"] == 0.0
    assert score.metrics["success_lenient"] == 0.0
    assert "did not reach the goal" in score.reason
    assert math.isnan(score.metrics["step_deviation"])
    assert score.metrics["exact_match"] == 0.0
    assert 0.0 < score.metrics["precision_rate"] < 0.9


def test_wrong_goal():
    _, inst, _, background, graph = grid_case(seed=1)
    start, goal = inst.spec["start"], inst.spec["goal"]
    to_goal = graph.distances_from(goal)
    from_start = graph.distances_from(start)
    other = max((n for n in range(len(graph.adj)) if len(graph.adj[n]) == 1 and n != goal),
                key=lambda n: (min(to_goal[n], from_start[n]), n))
    score = REF.score(inst, walk_video(inst, background, graph.shortest(start, other)))
    assert not score.success and score.metrics["success_lenient"] == 0.0
    assert score.metrics["num_violations"] == 0.0
    assert f"ends at node {other}" in score.reason


def test_agent_vanishes():
    _, inst, video, background, _ = grid_case()
    bad = video.copy()
    bad[20:32] = background
    score = RULES.score(inst, bad)
    assert_violation(score, "agent_vanished")
    assert score.trace["first_violation"]["frame"] == 20


def test_agent_missing_from_the_first_frame():
    _, inst, video, background, _ = grid_case()
    bad = video.copy()
    bad[0] = background
    score = RULES.score(inst, bad)
    assert not score.success
    assert score.metrics["violation_agent_vanished"] == 1.0


def test_agent_duplicated():
    _, inst, video, _, graph = grid_case()
    bad = video.copy()
    far = graph.nodes[inst.spec["goal"]]
    for k in range(10, len(bad)):
        draw_agent(bad[k], inst.spec, far)
    score = RULES.score(inst, bad)
    assert_violation(score, "agent_duplicated")
    assert score.trace["first_violation"]["frame"] == 10


def test_maze_redrawn_wall_removed():
    _, inst, video, _, graph = grid_case()
    spec = inst.spec
    grid = np.array([[int(c) for c in row] for row in spec["layout"]["grid"]])
    cell = spec["geometry"]["cell_px"]
    path_xy = graph.nodes[inst.solution["path"]]
    walls = [(r, c) for r, c in np.argwhere(grid == 1)
             if 0 < r < grid.shape[0] - 1 and 0 < c < grid.shape[1] - 1
             and np.linalg.norm(path_xy - [(c + 0.5) * cell, (r + 0.5) * cell], axis=1).min() > 2 * cell]
    r, c = walls[0]
    bad = video.copy()
    bad[30:, r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = spec["colors"]["floor"]
    score = RULES.score(inst, bad)
    assert not score.success
    assert score.metrics["violation_maze_redrawn"] == 1.0, score.reason
    redraw = [v for v in score.trace["violations"] if v["rule"] == "maze_redrawn"][0]
    assert redraw["frame"] >= 30
    assert redraw["detail"].endswith("walls erased"), redraw["detail"]


def test_redraw_is_still_seen_through_brightness_drift():
    from gen_reason.verifiers.degrade import brightness_drift

    _, inst, video, _, graph = grid_case()
    spec = inst.spec
    grid = np.array([[int(c) for c in row] for row in spec["layout"]["grid"]])
    cell = spec["geometry"]["cell_px"]
    path_xy = graph.nodes[inst.solution["path"]]
    r, c = next((r, c) for r, c in np.argwhere(grid == 1) if 0 < r < grid.shape[0] - 1 and 0 < c < grid.shape[1] - 1
                and np.linalg.norm(path_xy - [(c + 0.5) * cell, (r + 0.5) * cell], axis=1).min() > 2 * cell)
    bad = video.copy()
    bad[30:, r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = spec["colors"]["floor"]
    assert RULES.score(inst, brightness_drift(video)).success  # drift alone is fine
    score = RULES.score(inst, brightness_drift(bad))
    assert not score.success and score.metrics["violation_maze_redrawn"] == 1.0, score.reason


def test_maze_redrawn_goal_moved():
    _, inst, video, background, graph = grid_case()
    spec = inst.spec
    x0, y0, x1, y1 = spec["goal_box"]
    floor = spec["colors"]["floor"]
    bad = video.copy()
    # From frame 12 on the goal marker sits on another cell (the agent is far from both).
    elsewhere = graph.nodes[inst.solution["path"][len(inst.solution["path"]) // 2 + 3]]
    dx, dy = int(elsewhere[0] - (x0 + x1) / 2), int(elsewhere[1] - (y0 + y1) / 2)
    patch = video[0, y0:y1, x0:x1].copy()
    for k in range(12, 40):
        bad[k, y0:y1, x0:x1] = floor
        bad[k, y0 + dy:y1 + dy, x0 + dx:x1 + dx] = patch
    score = RULES.score(inst, bad)
    assert not score.success
    assert score.metrics["violation_maze_redrawn"] == 1.0, score.reason
    assert score.reason.endswith("the goal redrawn"), score.reason


def test_static_video():
    _, inst, video, _, _ = grid_case()
    score = RULES.score(inst, np.repeat(video[:1], 40, axis=0))
    assert_violation(score, "static_video")
    assert "did not reach" not in score.reason


def test_end_state_only():
    _, inst, video, _, _ = grid_case()
    cheat = np.concatenate([video[:1], np.repeat(video[-1:], 40, axis=0)])
    score = REF.score(inst, cheat)
    assert_violation(score, "end_state_only")
    assert score.metrics["success_lenient"] == 1.0  # VR-Bench's SR is fooled
    assert score.metrics["exact_match"] == 0.0  # PR is not


def test_end_state_after_crossfade():
    # The agent fades out at the start while fading in at the goal: never a legal walk.
    _, inst, video, _, _ = grid_case()
    first, last = video[0].astype(float), video[-1].astype(float)
    fade = [np.rint(first * (1 - a) + last * a).astype(np.uint8) for a in np.linspace(0, 1, 20)]
    score = RULES.score(inst, np.stack(fade + [video[-1]] * 8))
    assert not score.success
    assert score.metrics["violation_end_state_only"] == 1.0 or score.metrics["violation_teleport"] == 1.0, score.reason


def test_walk_over_a_trap():
    task = get_task("maze/trapfield")
    for seed in range(20):
        inst = task.generate(seed, "medium")
        graph = SpecGraph(inst.spec)
        path = graph.shortest(inst.spec["start"], inst.spec["goal"])  # ignores traps
        if set(path) & set(inst.spec["hazards"]):
            break
    video = inst.solution_video()
    score = REF.score(inst, walk_video(inst, agent_free_background(inst, video), path))
    assert_violation(score, "hazard")
    assert score.metrics["success_lenient"] == 1.0


def test_off_board():
    _, inst, video, background, graph = grid_case()
    start = graph.nodes[inst.spec["start"]]
    h, w = inst.spec["image_size"]
    # Slide from the start straight to the image's left edge (through walls and the border).
    edge = np.array([graph.step * 0.4, start[1]])
    score = RULES.score(inst, walk_video(inst, background, [start, edge]))
    assert not score.success
    assert score.metrics["violation_off_board"] == 1.0 or score.metrics["violation_wall_crossing"] == 1.0
    assert score.metrics["violation_off_board"] == 1.0, score.trace["violations"]


def test_sokoban_box_must_reach_target():
    task = get_task("maze/sokoban")
    inst = task.generate(0, "easy")
    video = inst.solution_video()
    good = RULES.score(inst, video)
    assert good.success, good.reason
    assert good.trace["box_node_path"][-1] == inst.spec["box"]["target"]
    # Stop before the last push: the box is not on its target.
    early = RULES.score(inst, video[: len(video) - task.config.hold_frames - task.config.frames_per_step // 2 - 1])
    assert not early.success and early.metrics["success_lenient"] == 0.0, early.reason
    assert "box" in early.reason


def _sokoban_video(task, inst, agent_cells, box_cells, frames_per_step: int = 8) -> np.ndarray:
    """A sokoban video of given per-step agent and box cells, drawn by the task itself."""
    scene = task.scene(inst.spec)
    times = np.arange((len(agent_cells) - 1) * frames_per_step + 1) / frames_per_step
    video = np.stack([task._draw(inst.spec, float(t), agent_cells, box_cells, scene) for t in times]
                     + [task._draw(inst.spec, float(times[-1]), agent_cells, box_cells, scene)] * 4)
    video[0] = inst.first_frame
    return video


def _sokoban_pull_case():
    from gen_reason.puzzles.maze import blockgrid as bg

    task = get_task("maze/sokoban")
    for seed in range(30):
        inst = task.generate(seed, "easy")
        grid = np.array([[int(c) for c in row] for row in inst.spec["layout"]["grid"]])
        agent, box = tuple(inst.spec["layout"]["agent"]), tuple(inst.spec["layout"]["box"])
        for dr, dc in bg.MOVES.values():
            a, a2 = (box[0] + dr, box[1] + dc), (box[0] + 2 * dr, box[1] + 2 * dc)
            if all(0 <= p[0] < grid.shape[0] and 0 <= p[1] < grid.shape[1] and grid[p] == 0 for p in (a, a2)):
                walk = bg.shortest_path(grid, agent, a, blocked={box})
                if walk:
                    return task, inst, walk, box, a, a2
    raise AssertionError("no room for a pull")


def test_sokoban_pull_is_caught():
    task, inst, walk, box, a, a2 = _sokoban_pull_case()
    agent_cells = walk + [a2]
    box_cells = [box] * len(walk) + [a]  # the box follows the agent: a pull
    score = RULES.score(inst, _sokoban_video(task, inst, agent_cells, box_cells))
    assert not score.success
    assert score.metrics["violation_box_pulled"] == 1.0, score.reason


def test_sokoban_box_moving_alone_and_agent_through_box():
    task, inst, walk, box, a, a2 = _sokoban_pull_case()
    start = walk[0]
    # The box slides one cell on its own while the agent stands still far away...
    alone = RULES.score(inst, _sokoban_video(task, inst, [start, start], [box, a]))
    assert not alone.success
    assert alone.metrics["violation_box_unpushed"] == 1.0 or alone.metrics["violation_box_pulled"] == 1.0, alone.reason
    # ...and the agent walks onto the box's cell and stays there.
    through = RULES.score(inst, _sokoban_video(task, inst, walk + [box], [box] * (len(walk) + 1)))
    assert not through.success
    assert through.metrics["violation_agent_through_box"] == 1.0, through.reason


def test_sokoban_teleport():
    task = get_task("maze/sokoban")
    inst = task.generate(2, "medium")
    video = inst.solution_video()
    fps = task.config.frames_per_step
    cut = np.concatenate([video[: fps + 1], video[4 * fps + 1:]])
    score = RULES.score(inst, cut)
    assert not score.success
    assert score.metrics["violation_teleport"] == 1.0 or score.metrics["violation_box_teleport"] == 1.0, score.reason


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("video, words", [
    (np.zeros((0, 64, 64, 3), np.uint8), "empty"),
    (np.zeros((10, 64, 200, 3), np.uint8), "aspect"),
    (np.full((10, 64, 64, 3), np.nan, np.float32), "NaN"),
    (np.zeros((10, 4, 4, 3), np.uint8), "too small"),
    (np.zeros((10, 64, 64), np.uint8), "shape"),
    ("/nonexistent/video.mp4", "not found"),
])
def test_unjudgeable_video_is_a_recorded_failure(video, words):
    _, inst, _, _, _ = grid_case()
    score = REF.score(inst, video)
    assert not score.success
    assert words in score.reason, score.reason
    assert score.metrics["success"] == 0.0 and score.metrics["exact_match"] == 0.0
    json.dumps(score.to_dict())


def test_unreadable_file_is_a_recorded_failure(tmp_path):
    _, inst, _, _, _ = grid_case()
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"not a video at all")
    score = RULES.score(inst, str(path))
    assert not score.success and "cannot" in score.reason


def test_debug_strip_marks_the_first_violation():
    inst, background, walk = _wall_crossing_case()
    video = walk_video(inst, background, walk)
    score = RULES.score(inst, video)
    strip = debug_strip(inst, video, score)
    assert strip.dtype == np.uint8 and strip.ndim == 3 and strip.shape[0] == video.shape[1]
    assert strip.shape[1] > video.shape[2] * 4
    # The violation is circled in pure red somewhere.
    assert ((strip[..., 0] == 255) & (strip[..., 1] == 0) & (strip[..., 2] == 0)).any()


def test_every_rule_has_a_flag():
    _, inst, video, _, _ = grid_case()
    score = RULES.score(inst, video)
    for rule in RULE_NAMES:
        assert score.metrics[f"violation_{rule}"] == 0.0
