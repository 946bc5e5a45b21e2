"""Trail skins: a fast move between sampled frames is legal when the trail shows the way.

The embedded model's clips (8 frames for up to 24 moves) move the agent several rooms
between frames; the rooms it passed stay painted, and that painting is the evidence the
rule checks read (:func:`gen_reason.verifiers.scene.trail_painted`). These tests build
trail videos by hand (rooms painted as the task paints them, the agent drawn on top) so
that each cheat differs from a legal clip in one thing only.
"""

from __future__ import annotations

import numpy as np
import pytest

from gen_reason.puzzles.registry import get_task
from gen_reason.puzzles.skins import draw_icon
from gen_reason.verifiers.maze import MazeReferenceVerifier, MazeRuleVerifier
from gen_reason.verifiers.walk import SpecGraph

REF = MazeReferenceVerifier()
RULES = MazeRuleVerifier()
GEOMETRY = {3: (9, 0), 4: (6, 1), 5: (5, 0), 6: (4, 0), 7: (3, 1)}  # rooms -> (cell_px, margin) at 32 px


def trail_task(rooms: int):
    """The embedded model's puzzles: tiny skin, 1-px walls, trail."""
    cell, margin = GEOMETRY[rooms]
    return get_task("maze/grid", skin="tiny", wall_style="thin", trail=True, cell_px=cell, wall_px=1, margin=margin)


def paint_room(img: np.ndarray, spec: dict, node: int) -> None:
    """Paint one room in the trail colour, as the task does for a visited room."""
    x, y = spec["nodes"][node]
    half = spec["geometry"]["cell_px"] / 2
    img[int(round(y - half + 0.5)): int(round(y + half + 0.5)), int(round(x - half + 0.5)): int(round(x + half + 0.5))] = \
        spec["colors"]["trail"]


def trail_video(instance, route: list[int], num_frames: int, paint: bool = True) -> np.ndarray:
    """The agent spread evenly along ``route`` (node indices) over ``num_frames``, the rooms
    entered so far painted (``paint=False``: never painted)."""
    spec = instance.spec
    background = instance.solution_video(num_frames=2)[0].copy()
    start = spec["nodes"][spec["start"]]
    half = spec["geometry"]["cell_px"] / 2 + 1
    background[int(start[1] - half + 0.5): int(start[1] + half + 0.5),
               int(start[0] - half + 0.5): int(start[0] + half + 0.5)] = spec["colors"]["floor"]
    # Walls around the start room are restored from the first frame outside the room itself.
    first = instance.first_frame
    mask = np.ones(first.shape[:2], bool)
    mask[int(start[1] - half + 1.5): int(start[1] + half - 0.5), int(start[0] - half + 1.5): int(start[0] + half - 0.5)] = False
    background[mask] = first[mask]
    nodes = np.asarray(spec["nodes"], float)
    frames = []
    for k in range(num_frames):
        t = (len(route) - 1) * k / (num_frames - 1)
        i = min(int(np.floor(t)), len(route) - 2)
        xy = nodes[route[i]] + (t - i) * (nodes[route[i + 1]] - nodes[route[i]])
        img = background.copy()
        if paint:
            for node in route[: min(len(route), int(np.floor(t + 1e-9)) + 1 + (t > i))]:
                paint_room(img, spec, node)
        draw_icon(img, spec["agent"]["icon"], (float(xy[0]), float(xy[1])), float(spec["agent"]["size_px"]),
                  tuple(spec["agent"]["color"]))
        frames.append(img)
    video = np.stack(frames)
    video[0] = instance.first_frame
    return video


@pytest.mark.parametrize("rooms", [3, 4, 5, 6, 7])
@pytest.mark.parametrize("num_frames", [8, 16, 49])
def test_ground_truth_trail_clips_pass_at_any_length(rooms, num_frames):
    task = trail_task(rooms)
    for seed in range(3):
        inst = task.generate(seed, f"{rooms}x{rooms}")
        score = REF.score(inst, inst.solution_video(num_frames=num_frames))
        assert score.success, (rooms, num_frames, seed, score.reason)
        assert score.metrics["exact_match"] == 1.0, (rooms, num_frames, seed, score.metrics)
        assert score.trace["node_path"] == inst.solution["path"]


def test_hand_built_legal_clip_passes():
    """The helper itself: the solution route, spread over 8 frames with its trail, passes."""
    inst = trail_task(5).generate(3, "5x5")
    score = RULES.score(inst, trail_video(inst, inst.solution["path"], 8))
    assert score.success, score.reason


def _wall_shortcut(inst):
    """A route that walks the solution but cuts once through a wall to a later room."""
    graph = SpecGraph(inst.spec)
    path = inst.solution["path"]
    step = graph.step
    for i, a in enumerate(path):
        for j in range(i + 3, len(path)):
            b = path[j]
            if abs(np.linalg.norm(graph.nodes[a] - graph.nodes[b]) - step) < 0.1 and b not in graph.adj[a]:
                return path[: i + 1] + path[j:]
    return None


def test_fast_move_through_a_wall_is_caught_even_with_a_painted_trail():
    task = trail_task(5)
    for seed in range(40):
        inst = task.generate(seed, "5x5")
        route = _wall_shortcut(inst)
        if route is not None:
            break
    assert route is not None
    score = RULES.score(inst, trail_video(inst, route, 8))
    assert not score.success
    assert score.trace["first_violation"]["rule"] in ("wall_crossing", "teleport"), score.reason


def test_fast_move_without_a_trail_is_a_teleport():
    inst = trail_task(5).generate(3, "5x5")
    assert len(inst.solution["path"]) > 12
    video = trail_video(inst, inst.solution["path"], 8, paint=False)
    score = RULES.score(inst, video)
    assert not score.success
    assert score.metrics["violation_teleport"] == 1.0 or score.metrics["violation_end_state_only"] == 1.0, \
        score.reason


def test_end_state_only_on_a_trail_skin():
    inst = trail_task(5).generate(3, "5x5")
    gt = inst.solution_video(num_frames=8)
    video = np.concatenate([gt[:1], np.repeat(gt[-1:], 7, axis=0)])
    score = RULES.score(inst, video)
    assert not score.success
    assert score.trace["first_violation"]["rule"] == "end_state_only", score.reason


def test_a_bridge_over_most_of_the_route_in_one_frame_is_not_a_fast_move():
    """The trail may explain a few rooms per frame, not most of the route at once."""
    inst = trail_task(5).generate(3, "5x5")
    gt = inst.solution_video(num_frames=49)
    video = np.concatenate([gt[:3], gt[-1:]])  # a real start, then the solved state
    score = RULES.score(inst, video)
    assert not score.success
    assert score.trace["first_violation"]["rule"] in ("end_state_only", "teleport"), score.reason


def test_redraw_reasons_say_what_changed():
    """The verdict is maze_redrawn either way; the reason names the likely cause: trail
    paint on rooms the agent has not reached yet, or an agent faded into a smear."""
    inst = trail_task(5).generate(3, "5x5")
    spec = inst.spec
    route = inst.solution["path"]
    video = trail_video(inst, route, 8)
    ahead = video.copy()
    for node in route[-4:-1]:  # rooms near the end painted from frame 2 on
        for k in range(2, 5):
            paint_room(ahead[k], spec, node)
    score = RULES.score(inst, ahead)
    assert not score.success and score.metrics["violation_maze_redrawn"] == 1.0, score.reason
    assert "paint outside the agent's way so far" in score.reason, score.reason

    faded = video.copy()
    k = 4  # the agent drawn in a colour that is neither its own nor the trail's
    faded[k][np.all(faded[k] == spec["agent"]["color"], axis=-1)] = (230, 150, 230)
    score = RULES.score(inst, faded)
    assert not score.success and score.metrics["violation_maze_redrawn"] == 1.0, score.reason
    assert "faded or smeared agent" in score.reason, score.reason

    drawn = video.copy()
    x, y = np.asarray(spec["nodes"][route[-2]]).round().astype(int)
    drawn[3:, y - 3: y + 3, x: x + 1] = spec["colors"]["wall"]  # a new wall across a room still ahead
    drawn[3:, y - 1: y + 1, x - 3: x + 3] = spec["colors"]["wall"]
    score = RULES.score(inst, drawn)
    assert not score.success and score.trace["first_violation"]["detail"].endswith("walls drawn"), score.reason
