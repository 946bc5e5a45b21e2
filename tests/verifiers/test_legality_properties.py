"""Property: illegal moves fail at any speed, naming the right rule and frame (hypothesis).

Random mazes, random walking speeds: an agent that crosses a wall (slowly, through the
wall's pixels, or fast, skipping a cell through it in one or two frames) fails with
``wall_crossing`` at the crossing; one that jumps far along its way in one frame fails
with ``teleport`` where it lands (``end_state_only`` when it lands on the goal); a box
pulled back instead of pushed fails with ``box_pulled`` on the first frame it moves back.
The same walks without the cheat pass, so the verdict is the cheat's alone.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gen_reason.puzzles.registry import get_task
from gen_reason.puzzles.skins import draw_icon
from gen_reason.verifiers.maze import MazeRuleVerifier
from gen_reason.verifiers.walk import PACE, TELEPORT, SpecGraph

RULES = MazeRuleVerifier()
SETTINGS = settings(max_examples=10, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@functools.lru_cache(maxsize=None)
def case(kind: str, seed: int, difficulty: str):
    """Task, instance, spec graph and agent-free background (the start patch taken from the
    solved last frame, where the agent stands elsewhere)."""
    task = get_task(kind)
    inst = task.generate(seed, difficulty)
    spec = inst.spec
    last = task.render_at(inst, float(task.num_moves(inst)))
    background = inst.first_frame.copy()
    x, y = spec["nodes"][spec["start"]]
    half = int(math.ceil(0.75 * max(spec["step_px"], spec["agent"]["size_px"])))
    y0, x0 = max(0, int(y) - half), max(0, int(x) - half)
    background[y0:int(y) + half + 1, x0:int(x) + half + 1] = last[y0:int(y) + half + 1, x0:int(x) + half + 1]
    return task, inst, SpecGraph(spec), background


def walk(inst, background: np.ndarray, points: np.ndarray, speed_px: np.ndarray, hold: int) -> tuple[np.ndarray, np.ndarray]:
    """The agent drawn along the polyline ``points`` at ``speed_px[k]`` pixels in frame k,
    then ``hold`` frames at the end. Returns the video and each frame's arc length."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    travelled = [0.0]
    k = 0
    while travelled[-1] < arc[-1]:
        travelled.append(min(arc[-1], travelled[-1] + speed_px[k % len(speed_px)]))
        k += 1
    travelled += [arc[-1]] * hold
    xs = np.interp(travelled, arc, points[:, 0])
    ys = np.interp(travelled, arc, points[:, 1])
    agent = inst.spec["agent"]
    frames = []
    for x, y in zip(xs, ys):
        img = background.copy()
        draw_icon(img, agent["icon"], (float(x), float(y)), float(agent["size_px"]), tuple(agent["color"]))
        frames.append(img)
    video = np.stack(frames)
    video[0] = inst.first_frame
    return video, np.asarray(travelled)


def speeds(draw, step: float, low: float, high: float) -> np.ndarray:
    """Per-frame speeds (pixels) between ``low`` and ``high`` steps, varying up to 1.5x."""
    base = draw(st.floats(low, high, allow_subnormal=False))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    return base * step * rng.uniform(1.0, 1.5, 64)


def wall_pairs(graph: SpecGraph, spec: dict, min_detour: float) -> list[tuple[int, int]]:
    """Node pairs close in the picture (at most 2.2 steps) but not a legal move, whose
    shortest open path is longer than ``min_detour`` pixels, neither a hazard."""
    step = graph.step
    hazards = set(spec.get("hazards", []))
    d = np.linalg.norm(graph.nodes[:, None] - graph.nodes[None], axis=2)
    out = []
    for a, b in zip(*np.nonzero((d > 0.5 * step) & (d <= 2.2 * step))):
        a, b = int(a), int(b)
        if a < b and b not in graph.adj[a] and not {a, b} & hazards and graph.path_length(a, b) > min_detour:
            out.append((a, b))
    return out


# ----------------------------------------------------------------------------- walls
@SETTINGS
@given(kind=st.sampled_from(["maze/grid", "maze/irregular"]), seed=st.integers(0, 20),
       difficulty=st.sampled_from(["easy", "medium"]), data=st.data())
def test_wall_crossed_at_any_speed_is_a_wall_crossing_at_the_crossing(kind, seed, difficulty, data):
    task, inst, graph, background = case(kind, seed, difficulty)
    spec, step = inst.spec, graph.step
    per_frame = speeds(data.draw, step, 0.1, 2.0)
    # The detour must be longer than any move the agent's pace allows.
    pairs = wall_pairs(graph, spec, max(TELEPORT * step, PACE * per_frame.max()) + 2 * step)
    assume(pairs)
    a, b = data.draw(st.sampled_from(pairs), label="crossing")
    to_a = graph.shortest(spec["start"], a, spec.get("hazards", []))
    on = graph.shortest(b, spec["goal"], spec.get("hazards", []))
    assume(to_a is not None and on is not None)
    route = to_a + on
    points = graph.nodes[route]
    video, travelled = walk(inst, background, points, per_frame, hold=4)
    arc_a = float(np.sum(np.linalg.norm(np.diff(graph.nodes[to_a], axis=0), axis=1)))
    arc_b = arc_a + float(np.linalg.norm(graph.nodes[b] - graph.nodes[a]))
    leave = int(np.flatnonzero(travelled <= arc_a + 1e-6)[-1])  # last frame at a
    arrive = int(np.flatnonzero(travelled >= arc_b - 1e-6)[0])  # first frame at b
    score = RULES.score(inst, video)
    first = score.trace["first_violation"]
    assert not score.success and first is not None, score.reason
    assert first["rule"] == "wall_crossing", (score.reason, a, b)
    assert leave < first["frame"] <= arrive, (first, leave, arrive)


@SETTINGS
@given(kind=st.sampled_from(["maze/grid", "maze/irregular"]), seed=st.integers(0, 20), data=st.data())
def test_the_same_walk_without_the_crossing_passes(kind, seed, data):
    """The walker itself is legal: the solution route at the same speeds passes."""
    task, inst, graph, background = case(kind, seed, "easy")
    per_frame = speeds(data.draw, graph.step, 0.1, 2.0)
    video, _ = walk(inst, background, graph.nodes[inst.solution["path"]], per_frame, hold=4)
    score = RULES.score(inst, video)
    assert score.success, score.reason


# ----------------------------------------------------------------------------- jumps
def solution_xy(graph: SpecGraph, path: list[int], t: float) -> np.ndarray:
    """The agent's position ``t`` moves along the node path."""
    i = min(int(t), len(path) - 2)
    return graph.nodes[path[i]] + (t - i) * (graph.nodes[path[i + 1]] - graph.nodes[path[i]])


@SETTINGS
@given(kind=st.sampled_from(["maze/grid", "maze/irregular", "maze/trapfield", "maze/3d"]), seed=st.integers(0, 20),
       difficulty=st.sampled_from(["easy", "medium"]), data=st.data())
def test_a_far_jump_is_a_teleport_where_it_lands(kind, seed, difficulty, data):
    task, inst, graph, _ = case(kind, seed, difficulty)
    path, moves, step = inst.solution["path"], task.num_moves(inst), graph.step
    pace = data.draw(st.floats(0.1, 0.5), label="moves per frame")
    allowed = max(TELEPORT * step, PACE * pace * 1.2 * step)
    # A jump from t_a to t_b whose straight line alone is twice what the pace allows.
    starts = np.arange(1.0, moves - 1.0, 0.5)
    goal_xy = graph.nodes[inst.spec["goal"]]
    jumps = [(ta, tb) for ta in starts for tb in np.arange(ta + 1, moves - 1.0, 0.5)
             if np.linalg.norm(solution_xy(graph, path, tb) - solution_xy(graph, path, ta)) > 2 * allowed
             and np.linalg.norm(solution_xy(graph, path, tb) - goal_xy) > 1.5 * step]  # not onto the goal
    assume(jumps)
    ta, tb = data.draw(st.sampled_from(jumps), label="jump")
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    before = np.cumsum(np.concatenate([[0.0], rng.uniform(pace, 1.2 * pace, 400)]))
    before = before[before < ta]
    after = tb + np.cumsum(np.concatenate([[0.0], rng.uniform(pace, 1.2 * pace, 400)]))
    after = after[after < moves]
    times = np.concatenate([before, [ta], after, [moves] * 4])
    landing = len(before) + 1
    video = np.stack([task.render_at(inst, float(t)) for t in times])
    video[0] = inst.first_frame
    score = RULES.score(inst, video)
    first = score.trace["first_violation"]
    assert not score.success and first is not None, score.reason
    assert first["rule"] == "teleport" and first["frame"] == landing, (score.reason, landing)


@SETTINGS
@given(kind=st.sampled_from(["maze/grid", "maze/irregular", "maze/trapfield", "maze/sokoban", "maze/3d"]),
       seed=st.integers(0, 20), share=st.floats(0.0, 0.4, allow_subnormal=False), total=st.integers(8, 60))
def test_a_jump_onto_the_goal_is_end_state_only(kind, seed, share, total):
    """The agent walks a little (at most 40 % of the way), then stands solved."""
    task, inst, _, _ = case(kind, seed, "easy")
    moves = task.num_moves(inst)
    walked = int(share * moves)
    times = np.concatenate([np.linspace(0, walked, max(1, 4 * walked) + 1), [moves] * total])
    video = np.stack([task.render_at(inst, float(t)) for t in times])
    video[0] = inst.first_frame
    score = RULES.score(inst, video)
    first = score.trace["first_violation"]
    assert not score.success and first is not None, score.reason
    assert first["rule"] == "end_state_only", score.reason
    assert first["frame"] == max(1, 4 * walked) + 1, score.reason


# ----------------------------------------------------------------------------- sokoban
@SETTINGS
@given(seed=st.integers(0, 20), difficulty=st.sampled_from(["easy", "medium"]), data=st.data())
def test_a_box_pulled_back_is_box_pulled_on_the_first_frame_it_moves_back(seed, difficulty, data):
    task, inst, _, _ = case("maze/sokoban", seed, difficulty)
    boxes = inst.solution["box_path"]
    pushes = [k for k in range(len(boxes) - 1) if boxes[k] != boxes[k + 1]]
    k = data.draw(st.sampled_from(pushes), label="push")
    forward = data.draw(st.floats(0.1, 1.0), label="forward moves per frame")
    back = data.draw(st.floats(0.2, 0.5), label="backward moves per frame")
    times = np.concatenate([np.arange(0.0, k + 1, forward), [k + 1.0],
                            k + 1.0 - np.arange(back, 1.0 + 1e-9, back), [float(k)] * 3])
    turn = len(np.arange(0.0, k + 1, forward)) + 1  # the first frame moving back
    video = np.stack([task.render_at(inst, float(t)) for t in times])
    video[0] = inst.first_frame
    score = RULES.score(inst, video)
    first = score.trace["first_violation"]
    assert not score.success and first is not None, score.reason
    assert first["rule"] == "box_pulled" and first["frame"] == turn, (score.reason, turn)
