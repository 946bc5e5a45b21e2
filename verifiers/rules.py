"""Rule checks on a tracked maze-family video, using only ``spec`` (no answer leak).

Each check returns violations ``{"rule", "frame", "detail"}``; :func:`check_rules` runs
them all and sorts them so the first one (earliest frame) explains the verdict. The
checks live by job: :mod:`.walk` (the spec graph, an object's walk on it and the movement
rules), :mod:`.pushes` (sokoban), :mod:`.scene` (the picture: ``maze_redrawn``, the
trail); this module holds the rest and the verdict. Rules:

- ``wall_crossing``: the agent leaves the spec graph (farther than 0.3 step, or half
  the spec's ``road_width_px`` when larger, from every legal move's segment, for 2+
  consecutive seen frames) or makes a move that only a way through a wall explains
  (below).
- ``off_board``: the same, outside the board (the nodes' bounding box + half a step).
- ``hazard``: the agent comes within 0.3 step of a hazard node (a trap).
- Speed: a move between two consecutive seen frames is legal when an open path (along
  the graph: grid cells, roads by arc length, floors and ladders) no longer than the
  move's allowance joins its two positions: 2 steps, or 4 times the agent's pace over
  the frames it spans (:func:`judge_moves`), so a fast, paused, slowed or stuttering
  agent is judged by the way it took, not by its frame rate. A move beyond its
  allowance is a ``teleport`` when the straight jump itself is (or covers more than
  half of the shortest route), else a ``wall_crossing`` (a short jump that only a way
  through a wall explains). On trail skins (``spec["trail"]``: visited rooms stay
  painted) a move over 1.5 steps must also be explained by the trail
  (:func:`trail_painted`): a path of legal moves through rooms painted in the frame the
  agent lands, at most half of the shortest route (at least 3 moves).
- ``end_state_only``: the agent (the box) appears at the goal without walking (being
  pushed) there: a jump that lands it at the goal, or fewer than half the nodes of a
  shortest route visited.
- ``agent_vanished`` / ``agent_duplicated``: not found (or found twice) for 2+
  consecutive frames, or not found in the last frame or in frame 0.
- ``static_video``: the agent never moves half a step from its start.
- ``maze_redrawn``: a blob of at least a quarter cell differs from frame 0 outside the
  agent's (box's, trail's) area: walls added or removed, goal moved.
- Sokoban (``spec["box"]``): the same movement rules for the box (``box_*``), plus
  ``box_unpushed`` (the box moves with the agent more than 1.5 steps away),
  ``box_pulled`` (it moves towards the agent) and ``agent_through_box``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gen_reason.verifiers.pushes import box_interaction, push_jumps
from gen_reason.verifiers.scene import check_scene, trail_painted
from gen_reason.verifiers.tracked import ObjectTrack, Track
from gen_reason.verifiers.walk import RUN, SNAP, ObjectPath, SpecGraph, runs, walk_graph

STATIC = 0.5  # steps: never farther than this from the start = static video


@dataclass
class RuleReport:
    """Everything the rule checks found."""

    agent: ObjectPath
    box: ObjectPath | None
    violations: list[dict]
    reached_goal: bool  # the agent (box, for sokoban) stood on the goal node at some frame
    ends_at_goal: bool  # ... and in the last frame where it was seen
    final_node: int | None

    @property
    def first_violation(self) -> dict | None:
        """The earliest violation (``None`` when the video broke no rule)."""
        return self.violations[0] if self.violations else None

    def flags(self) -> dict[str, float]:
        """``violation_<rule>``: 1.0 when broken, for every rule name."""
        broken = {v["rule"] for v in self.violations}
        return {f"violation_{rule}": float(rule in broken) for rule in RULE_NAMES}


RULE_NAMES = ("wall_crossing", "off_board", "hazard", "teleport", "end_state_only", "agent_vanished",
              "agent_duplicated", "static_video", "maze_redrawn", "box_wall_crossing", "box_off_board",
              "box_teleport", "box_vanished", "box_unpushed", "box_pulled", "agent_through_box")


def check_rules(track: Track, spec: dict, check_scene_changes: bool = True) -> RuleReport:
    """Run every rule on a tracked video; violations sorted by frame (first = the reason)."""
    graph = SpecGraph(spec)
    start, goal = int(spec["start"]), int(spec["goal"])
    agent_pos = track.agent.positions
    moves, route_px = _route(graph, spec)
    route = graph.distances_from(start, avoid_hazards=False).get(goal, 0)
    painted = trail_painted(track, spec) if not spec.get("box") else None
    agent = walk_graph(agent_pos, graph, start, "agent", painted=painted,
                       max_bridge=max(3, int(np.ceil(0.5 * route))), route_px=route_px)
    violations = list(agent.violations)
    violations += _visibility(track.agent, "agent", "agent_vanished", "agent_duplicated")
    box = None
    if spec.get("box") and track.box is not None:
        box = walk_graph(track.box.positions, graph, int(spec["box"]["start"]), "box", prefix="box_",
                         route_px=route_px, paced=False)
        violations += box.violations
        violations += _visibility(track.box, "box", "box_vanished", None)
        violations += box_interaction(agent_pos, track.box.positions, graph.step)
        violations += push_jumps(agent, box, graph, moves)
    violations += _hazard(graph, agent_pos)
    violations += _static_video(graph, spec, track, box)
    main = box if box is not None else agent  # the object that must reach the goal
    goal_frames = [k for k, n in enumerate(main.frame_nodes) if n == goal]
    last_seen = [n for n in main.frame_nodes if n >= 0]
    final = last_seen[-1] if last_seen else None
    if goal_frames:
        violations = _end_state_only(violations, graph, spec, track, main, box is not None, goal_frames[0])
    if check_scene_changes:
        violations += check_scene(track, spec, agent)
    violations.sort(key=lambda v: (v["frame"], RULE_NAMES.index(v["rule"]) if v["rule"] in RULE_NAMES else 99))
    return RuleReport(agent=agent, box=box, violations=violations, reached_goal=bool(goal_frames),
                      ends_at_goal=final == goal, final_node=final)


def _route(graph: SpecGraph, spec: dict) -> tuple[int | None, float | None]:
    """The sokoban solution's fewest agent moves (``None`` elsewhere, or when it cannot be
    solved), and the route length in pixels that caps one move of the agent (and the
    box): that many moves of a step on sokoban, the shortest open path elsewhere."""
    start, goal = int(spec["start"]), int(spec["goal"])
    if not spec.get("box"):
        return None, graph.path_length(start, goal)
    moves = graph.push_moves(start, int(spec["box"]["start"]), goal)
    return moves, (moves * graph.step if moves else None)


def _visibility(track_obj: ObjectTrack, name: str, rule_lost: str, rule_dup: str | None) -> list[dict]:
    """``rule_lost`` (and ``rule_dup``): the object not found (found twice) for a run of
    frames, or not found in frame 0 or in the last frame; the first run only."""
    out = []
    lost = track_obj.lost
    t = len(lost)
    min_run = RUN if t >= 4 else 1
    gone = runs(lost, min_run)
    if lost[0]:
        gone = [(0, 1)] + [r for r in gone if r[0] != 0]
    if lost[-1] and not any(s + n == t for s, n in gone):
        gone.append((t - 1, 1))
    for s, n in gone[:1]:
        what = "not visible at its start in frame 0" if s == 0 else f"lost at frame {s}"
        out.append({"rule": rule_lost, "frame": int(s), "detail": f"{name} {what} ({n} frame(s))"})
    if rule_dup:
        for s, n in runs(track_obj.duplicated, min_run)[:1]:
            out.append({"rule": rule_dup, "frame": int(s), "detail": f"{name} duplicated at frame {s} ({n} frame(s))"})
    return out


def _hazard(graph: SpecGraph, agent_pos: np.ndarray) -> list[dict]:
    """``hazard``: the first seen frame where the agent comes within ``SNAP`` step of a hazard node."""
    seen = ~np.isnan(agent_pos[:, 0])
    if not graph.hazards or not seen.any():
        return []
    hz = graph.nodes[graph.hazards]
    d = np.linalg.norm(agent_pos[seen][:, None] - hz[None], axis=2)
    hit = np.flatnonzero(d.min(1) <= SNAP * graph.step)
    if not len(hit):
        return []
    k = int(np.flatnonzero(seen)[hit[0]])
    node = graph.hazards[int(np.argmin(d[hit[0]]))]
    return [{"rule": "hazard", "frame": k, "detail": f"agent entered hazard node {node} at frame {k}"}]


def _static_video(graph: SpecGraph, spec: dict, track: Track, box: ObjectPath | None) -> list[dict]:
    """``static_video``: neither the agent nor the box ever moves ``STATIC`` step from its start."""
    agent_pos = track.agent.positions
    seen = ~np.isnan(agent_pos[:, 0])
    if not seen.any():
        return []
    start_xy = graph.nodes[int(spec["start"])]
    moved = np.linalg.norm(agent_pos[seen] - start_xy, axis=1).max()
    box_moved = 0.0
    if box is not None and track.box is not None and (~track.box.lost).any():
        bseen = ~track.box.lost
        box_moved = np.linalg.norm(track.box.positions[bseen] - graph.nodes[int(spec["box"]["start"])], axis=1).max()
    if moved < STATIC * graph.step and box_moved < STATIC * graph.step:
        return [{"rule": "static_video", "frame": track.num_frames - 1,
                 "detail": f"the agent never moved more than {moved / graph.step:.2f} step from its start"}]
    return []


def _end_state_only(violations: list[dict], graph: SpecGraph, spec: dict, track: Track, main: ObjectPath,
                    sokoban: bool, first_goal: int) -> list[dict]:
    """``end_state_only``: the agent (the box, on ``sokoban``), first on the goal at
    ``first_goal``, shows up there without walking (being pushed) the way: a jump (of
    the agent or the box) that lands it there, which it replaces in ``violations``, or
    fewer than half the nodes of a shortest route visited. Returns the violations."""
    goal = int(spec["goal"])
    main_pos = track.box.positions if sokoban else track.agent.positions
    main_start = int(spec["box"]["start"]) if sokoban else int(spec["start"])
    obj = "box" if sokoban else "agent"
    route = graph.distances_from(main_start, avoid_hazards=False).get(goal, 0)
    jumped_to_goal = [v for v in violations if v["rule"] in ("teleport", "box_teleport") and
                      v["frame"] <= first_goal and
                      _lands_near_goal(main_pos, v["frame"], graph, goal)]
    visited = len(set(main.node_path[: main.node_path.index(goal) + 1]))
    if jumped_to_goal or visited < 0.5 * (route + 1):
        k = jumped_to_goal[0]["frame"] if jumped_to_goal else first_goal
        violations = [v for v in violations if not (v["rule"] in ("teleport", "box_teleport") and v["frame"] == k)]
        violations.append({"rule": "end_state_only", "frame": k,
                           "detail": f"the {obj} appears at the goal at frame {k} without "
                                     f"{'being pushed' if sokoban else 'walking'} there "
                                     f"({visited} of {route + 1} route nodes visited)"})
    return violations


def _lands_near_goal(positions: np.ndarray, frame: int, graph: SpecGraph, goal: int) -> bool:
    """Whether the object at ``frame`` stands within a step of the goal node."""
    p = positions[frame]
    return bool(np.linalg.norm(p - graph.nodes[goal]) <= 1.0 * graph.step)
