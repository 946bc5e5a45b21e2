"""Sokoban on the spec graph: the box moves only when the agent pushes it.

:func:`push_jumps` weighs each change of the box's node by the agent moves it needs
(:meth:`~gen_reason.puzzles.maze.graph.MazeGraph.push_moves`); :func:`box_interaction`
checks the agent and the box against each other frame by frame (a box moving with no
agent behind it, pulled towards the agent, or walked through).
"""

from __future__ import annotations

import numpy as np

from gen_reason.verifiers.walk import MOST_OF_ROUTE, RUN, SHORT_WAY, TELEPORT, ObjectPath, SpecGraph, runs


def push_jumps(agent: ObjectPath, box: ObjectPath, graph: SpecGraph, route_moves: int | None) -> list[dict]:
    """Sokoban: between two frames where the box changed node, the agent's fewest moves
    that take the box there from the first frame's places (its pushes and the walks
    between them, :meth:`MazeGraph.push_moves`) may not exceed half of the whole
    solution's (``route_moves``; at least 2): ``box_teleport`` (which
    :func:`~gen_reason.verifiers.rules.check_rules` turns into ``end_state_only`` where the
    box lands on the goal)."""
    if not route_moves:
        return []
    cap = max(SHORT_WAY, MOST_OF_ROUTE * route_moves)
    prev = None
    for k, (a, b) in enumerate(zip(agent.frame_nodes, box.frame_nodes)):
        if a < 0 or b < 0:
            continue
        if prev is not None and b != prev[1]:
            # Where the agent ends is left free: its node may lag the box's by a frame.
            need = graph.push_moves(prev[0], prev[1], b, max_moves=int(cap) + 1)
            if need is None or need > cap:
                what = f"at least {int(cap) + 1}" if need is None else str(need)
                return [{"rule": "box_teleport", "frame": k,
                         "detail": f"the box went from node {prev[1]} to node {b} by frame {k}: {what} agent moves "
                                   f"since the frame before, more than half of the {route_moves} the puzzle needs"}]
        prev = (a, b)
    return []


def box_interaction(agent_pos: np.ndarray, box_pos: np.ndarray, step: float) -> list[dict]:
    """Sokoban: the box moves only when pushed, and the agent never walks through it.

    ``box_unpushed``: the box moves (more than 0.1 step between seen frames) with the
    agent farther than 1.5 steps plus the agent's own move away, before and after.
    ``box_pulled``: it moves towards the agent's side (the move points against the
    agent-to-box direction both before and after it, the agent moving at most 1.5 steps:
    a faster agent may walk round the box and push it between two frames, which
    :func:`push_jumps` judges by the pushes it needs). ``agent_through_box``: the agent's
    centre comes within half a step of the box's for 2+ frames.
    """
    both = ~np.isnan(agent_pos[:, 0]) & ~np.isnan(box_pos[:, 0])
    idx = np.flatnonzero(both)
    if len(idx) < 2:
        return []
    out = []
    moves = np.diff(box_pos[idx], axis=0)
    moved = np.linalg.norm(moves, axis=1) > 0.1 * step
    behind = box_pos[idx[:-1]] - agent_pos[idx[:-1]]  # from the agent to the box, before the move
    behind_after = box_pos[idx[1:]] - agent_pos[idx[1:]]  # ... and after it
    gap = np.linalg.norm(agent_pos[idx[1:]] - box_pos[idx[1:]], axis=1)
    # Between two frames a fast agent may push and walk on: the box is unpushed when the
    # agent is farther from it, at both ends of the move, than 1.5 steps plus its own move.
    walked = np.linalg.norm(np.diff(agent_pos[idx], axis=0), axis=1)
    gap_before = np.linalg.norm(agent_pos[idx[:-1]] - box_pos[idx[:-1]], axis=1)
    unpushed = np.flatnonzero(moved & (np.minimum(gap, gap_before) > 1.5 * step + walked))
    if len(unpushed):
        k = int(idx[unpushed[0] + 1])
        out.append({"rule": "box_unpushed", "frame": k,
                    "detail": f"the box moved at frame {k} with the agent {gap[unpushed[0]] / step:.1f} steps away"})
    pulled = np.flatnonzero(moved & (gap <= 1.5 * step) & ((moves * behind).sum(1) < 0)
                            & ((moves * behind_after).sum(1) < 0) & (walked <= TELEPORT * step))
    if len(pulled):
        k = int(idx[pulled[0] + 1])
        out.append({"rule": "box_pulled", "frame": k, "detail": f"the box moved towards the agent at frame {k} "
                                                               "(pulled, not pushed)"})
    overlap = np.zeros(len(agent_pos), bool)
    overlap[idx] = np.linalg.norm(agent_pos[idx] - box_pos[idx], axis=1) < 0.5 * step
    through = runs(overlap, RUN)
    if through:
        k = through[0][0]
        out.append({"rule": "agent_through_box", "frame": k, "detail": f"the agent walked into the box at frame {k}"})
    return out
