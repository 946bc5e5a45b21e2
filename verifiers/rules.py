"""Rule checks on a tracked maze-family video, using only ``spec`` (no answer leak).

Each check returns violations ``{"rule", "frame", "detail"}``; :func:`check_rules` sorts
them so the first one (earliest frame) explains the verdict. Rules:

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

Positions map to nodes with hysteresis: the current node changes only when the agent
comes within 0.3 step of another node, so positions between nodes while moving are fine;
the nodes a legal fast move passed between two frames are entered on the way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from gen_reason.puzzles.maze.graph import MazeGraph, search_path
from gen_reason.verifiers.track import Track

SNAP = 0.3  # steps: how close to a node counts as standing on it
OFF_GRAPH = 0.3  # steps: how far from every legal move counts as off the graph
TELEPORT = 1.5  # steps: a straight jump this long between consecutive seen frames is always plausible
SHORT_WAY = 2.0  # steps: an open path this long between consecutive seen frames is always plausible
PACE = 4.0  # a move may cover this many times the agent's pace (see :func:`judge_moves`)
MOST_OF_ROUTE = 0.5  # a move longer than this share of the shortest route is never plausible
MOVING = 0.1  # steps: a move shorter than this is tracker jitter, not motion (for the pace)
STATIC = 0.5  # steps: never farther than this from the start = static video
RUN = 2  # consecutive frames a lost/duplicated/off-graph condition must last
TRAIL_COVER = 0.3  # fraction of a room's centre patch in the trail colour that counts as painted


class SpecGraph(MazeGraph):
    """The spec's graph (:class:`~gen_reason.puzzles.maze.graph.MazeGraph`) with what the
    rules add: the move step, hazards, the board and the off-graph tolerance."""

    def __init__(self, spec: dict) -> None:
        super().__init__(spec["nodes"], spec["edges"])
        self.spec = spec
        self.step = float(spec["step_px"])
        self.hazards = sorted(set(int(h) for h in spec.get("hazards", [])))
        lo, hi = self.nodes.min(0), self.nodes.max(0)
        self.board = (lo - 0.5 * self.step, hi + 0.5 * self.step)
        # How far from a legal move's centre line the agent may be: 0.3 step, or half the
        # road where the spec draws roads wider than that (irregular mazes).
        self.off_tolerance = max(OFF_GRAPH * self.step, 0.5 * float(spec.get("road_width_px") or 0.0))

    def distance_to_graph(self, points: np.ndarray) -> np.ndarray:
        """Distance from each point to the nearest node or edge segment."""
        _, best = self.nearest_node(points)
        if len(self.edges):
            best = np.minimum(best, self.locate(points)[2])
        return best

    def project(self, points: np.ndarray, tol: float, stickiness: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Project points within ``tol`` of an edge onto it; returns (points, edge index or -1).

        With ``stickiness`` > 0 the points are taken as a sequence: a point stays on the
        previous point's edge unless another edge is nearer by more than ``stickiness``
        pixels (so tracker noise at a junction does not hop onto a third road).
        """
        out = points.copy()
        which = np.full(len(points), -1)
        if not len(self.edges) or not len(points):
            return out, which
        a, b = self.nodes[self.edges[:, 0]], self.nodes[self.edges[:, 1]]
        ab = b - a
        denom = np.maximum((ab ** 2).sum(1), 1e-9)
        k = min(4, len(self.edges))
        cand_e = np.zeros((len(points), k), int)
        cand_d = np.zeros((len(points), k))
        cand_q = np.zeros((len(points), k, 2))
        for lo in range(0, len(points), 256):
            p = points[lo:lo + 256, None, :]
            t = np.clip(((p - a) * ab).sum(2) / denom, 0.0, 1.0)
            q = a + t[..., None] * ab
            d = np.linalg.norm(p - q, axis=2)
            top = np.argsort(d, axis=1)[:, :k]
            rows = np.arange(len(top))[:, None]
            cand_e[lo:lo + 256] = top
            cand_d[lo:lo + 256] = d[rows, top]
            cand_q[lo:lo + 256] = q[rows, top]
        prev = -1
        for i in range(len(points)):
            j = 0
            if stickiness > 0 and prev >= 0:
                hit = np.flatnonzero(cand_e[i] == prev)
                if len(hit) and cand_d[i, hit[0]] <= min(tol, cand_d[i, 0] + stickiness):
                    j = int(hit[0])
            if cand_d[i, j] <= tol:
                out[i] = cand_q[i, j]
                which[i] = cand_e[i, j]
                prev = int(cand_e[i, j])
            else:
                prev = -1
        return out, which

    def on_board(self, points: np.ndarray) -> np.ndarray:
        """Whether each point lies within the board (nodes' box + half a step)."""
        lo, hi = self.board
        return np.all((points >= lo) & (points <= hi), axis=1)

    def distances_from(self, source: int, avoid_hazards: bool = True) -> dict[int, int]:
        """Fewest moves from ``source`` to every reachable node (around hazards unless told)."""
        return self.move_counts(source, self.hazards if avoid_hazards else ())


@dataclass
class ObjectPath:
    """An object's walk mapped to the graph: per-frame node (or -1), node path with the
    frame each node was entered, and the violations of its movement."""

    frame_nodes: list[int]
    node_path: list[int]
    node_frames: list[int]
    violations: list[dict] = field(default_factory=list)


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


def _runs(flags: np.ndarray, min_len: int) -> list[tuple[int, int]]:
    """(start, length) of runs of True at least ``min_len`` long."""
    out, start = [], None
    for k, f in enumerate(list(flags) + [False]):
        if f and start is None:
            start = k
        elif not f and start is not None:
            if k - start >= min_len:
                out.append((start, k - start))
            start = None
    return out


def judge_moves(graph: SpecGraph, pts: np.ndarray, frames: np.ndarray, located: tuple[np.ndarray, np.ndarray],
                route_px: float | None = None, paced: bool = True) -> list[tuple[str, str] | None]:
    """Whether each move between consecutive seen frames is plausible, whatever the speed.

    ``pts`` ``(n, 2)`` seen positions at ``frames``; ``located`` their edge and position
    along it (:meth:`MazeGraph.locate`). A move is legal when an open path of at most its
    allowance joins its two positions: ``SHORT_WAY`` steps, or ``PACE`` times the agent's
    pace over the frames it spans. The pace is the larger of the video's median speed
    while moving and the speed of the nearest moving frames before and after (the move
    itself left out), so a fast agent, paused, repeated or slowed frames and frames held
    at the end change nothing, while one jump among steady frames stands out. A move over
    more than ``MOST_OF_ROUTE`` of ``route_px`` is never plausible.

    ``paced=False`` (the sokoban box, which moves only in bursts of pushes) leaves out the
    pace: only the route cap applies (the pushes a box move needs are judged apart).

    Returns per move ``None`` (legal) or ``(rule, detail)``: ``teleport`` when the straight
    jump itself is beyond the allowance (``TELEPORT`` steps or the pace's) or covers most
    of the route, else ``wall_crossing`` (a short jump whose open path is too long).
    """
    n = len(pts)
    if n < 2:
        return []
    step = graph.step
    edge, along = located
    open_len = graph.open_distance(edge[:-1], along[:-1], edge[1:], along[1:])
    straight = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    gaps = np.diff(frames).astype(float)
    # Off the graph (and on a graph without edges) the open path is unknown: the straight line.
    unknown = (edge[:-1] < 0) | (edge[1:] < 0)
    open_len[unknown] = straight[unknown]
    speed = np.where(np.isfinite(open_len), open_len, np.inf) / gaps
    moving = np.flatnonzero((open_len > MOVING * step) & np.isfinite(open_len))
    cap = MOST_OF_ROUTE * route_px if route_px is not None and 0 < route_px < np.inf else np.inf
    out: list[tuple[str, str] | None] = [None] * (n - 1)
    # A short way (the usual move) is legal whatever the pace: only longer ones are weighed.
    for i in np.flatnonzero((open_len > SHORT_WAY * step) | (open_len > cap)):
        before = moving[moving < i]
        after = moving[moving > i]
        local = max(speed[before[-1]] if len(before) else 0.0, speed[after[0]] if len(after) else 0.0)
        length = open_len[i]
        others = moving[moving != i]
        typical = float(np.median(speed[others])) if len(others) and length > SHORT_WAY * step else 0.0
        by_pace = PACE * max(typical, local) * gaps[i] if paced else np.inf
        if length <= max(SHORT_WAY * step, by_pace) and length <= cap:
            continue
        a, b = int(frames[i]), int(frames[i + 1])
        allowed = max(TELEPORT * step, by_pace)
        way = f"{length / step:.1f} steps along open paths" if np.isfinite(length) else "no open path"
        if straight[i] > cap:
            out[i] = ("teleport", f"jumped {straight[i] / step:.1f} steps ({way}) between frames {a} and {b}: "
                                  f"most of the route ({route_px / step:.1f} steps) at once")
        elif straight[i] > allowed:
            out[i] = ("teleport", f"jumped {straight[i] / step:.1f} steps ({way}) between frames {a} and {b}, "
                                  f"more than its pace allows ({allowed / step:.1f} steps)")
        else:
            limit = min(max(SHORT_WAY * step, by_pace), cap)  # finite: an unpaced move fails only the cap
            out[i] = ("wall_crossing", f"moved {straight[i] / step:.1f} steps between frames {a} and {b}, but "
                                       f"{way} (at most {limit / step:.1f} allowed): through a wall")
    return out


def walk_graph(positions: np.ndarray, graph: SpecGraph, start: int, name: str = "agent",
               prefix: str = "", painted: np.ndarray | None = None, max_bridge: int = 3,
               route_px: float | None = None, paced: bool = True) -> ObjectPath:
    """Map positions ``(T, 2)`` (NaN where lost) to nodes and check the movement rules.

    Each move between consecutive seen frames is judged by :func:`judge_moves` (speed
    invariant; ``route_px`` is the object's shortest route, for the most-of-the-route
    cap). The node path enters every node a legal move passed (the shortest open path
    between the positions), so a fast agent's path lists every node it went through.
    ``painted`` (``(T, N)`` bool, trail skins only): which nodes' rooms show the trail in
    each frame; there a move over ``TELEPORT`` steps (straight or along the way) is legal only when a path of
    legal moves through painted rooms joins the two places in at most ``max_bridge``
    moves (the trail is the evidence of the way taken).
    """
    t = len(positions)
    seen = ~np.isnan(positions[:, 0])
    step = graph.step
    violations: list[dict] = []
    frame_nodes = [-1] * t
    node_path, node_frames = [start], [0]
    if not seen.any():
        return ObjectPath(frame_nodes, node_path, node_frames, violations)
    idx = np.flatnonzero(seen)
    pts = positions[idx]
    near, near_d = graph.nearest_node(pts)
    edge, along, edge_d = graph.locate(pts)
    off = np.minimum(near_d, edge_d) > graph.off_tolerance
    board = graph.on_board(pts)
    min_run = RUN if t >= 4 else 1
    # Off the graph (through a wall, off the board) for a run of seen frames.
    for s, n in _runs(off, min_run):
        k = int(idx[s])
        where = pts[s]
        outside = not board[s: s + n].all()
        rule = "off_board" if outside else "wall_crossing"
        what = "left the board" if outside else "left the legal moves (through a wall?)"
        violations.append({"rule": prefix + rule, "frame": k,
                           "detail": f"{name} {what} at frame {k}, at ({where[0]:.0f}, {where[1]:.0f}) px, "
                                     f"for {n} frame(s)"})
    # Moves between consecutive seen frames (speed invariant); on trail skins a long one
    # needs the trail as evidence.
    verdicts = judge_moves(graph, pts, idx, (edge, along), route_px, paced)
    if painted is not None:
        way_len = graph.open_distance(edge[:-1], along[:-1], edge[1:], along[1:])
        for s, verdict in enumerate(verdicts):
            if verdict is None and max(way_len[s], np.linalg.norm(pts[s + 1] - pts[s])) > TELEPORT * step:
                k = int(idx[s + 1])
                way = _trail_way(graph, _nodes_near(graph, pts[s]), _nodes_near(graph, pts[s + 1]), painted[k])
                if way is None or len(way) - 1 > max_bridge:
                    verdicts[s] = ("teleport", f"jumped {np.linalg.norm(pts[s + 1] - pts[s]) / step:.1f} steps "
                                               f"between frames {int(idx[s])} and {k} with no trail painted between")
    flagged = set()
    for s, verdict in enumerate(verdicts):
        if verdict is not None:
            k = int(idx[s + 1])
            flagged.add(k)
            violations.append({"rule": prefix + verdict[0], "frame": k, "detail": f"{name} {verdict[1]}"})
    # Node path: the nodes each legal move passed, and a node entered (hysteresis) once
    # the object comes within SNAP of it.
    cur = start
    snap = SNAP * step
    between = graph.path_lengths()
    # Plain Python numbers for the per-frame loop (no array indexing per frame).
    ends, hop = graph.edges.tolist(), graph.lengths.tolist()
    frame_list, edge_list, along_list = idx.tolist(), edge.tolist(), along.tolist()
    for s, k in enumerate(frame_list):
        if off[s]:
            frame_nodes[k] = cur
            continue
        e = edge_list[s]
        if k not in flagged and e >= 0:
            u, v = ends[e]
            to_u = between[cur, u] + along_list[s] * hop[e]
            to_v = between[cur, v] + (1 - along_list[s]) * hop[e]
            passed = u if to_u <= to_v else v
            if passed != cur and min(to_u, to_v) < np.inf:
                way = graph.shortest_by_length(cur, passed)
                if way is not None:
                    node_path.extend(way[1:])
                    node_frames.extend([k] * (len(way) - 1))
                    cur = passed
        n = int(near[s])
        if n != cur and near_d[s] <= snap:
            if n not in graph.adj[cur] and k not in flagged:
                way = graph.shortest_by_length(cur, n)
                if way is not None:
                    node_path.extend(way[1:-1])
                    node_frames.extend([k] * (len(way) - 2))
            node_path.append(n)
            node_frames.append(k)
            cur = n
        frame_nodes[k] = cur
    return ObjectPath(frame_nodes, node_path, node_frames, violations)


def _nodes_near(graph: SpecGraph, point: np.ndarray) -> set[int]:
    """The nodes a tracked point may stand between: the nearest one, and both ends of a
    legal move the point lies on (within 0.75 step of each end)."""
    d = np.linalg.norm(graph.nodes - point, axis=1)
    near = {int(np.argmin(d))}
    near |= {int(i) for i in np.flatnonzero(d <= 0.75 * graph.step)}
    return near


def _trail_way(graph: SpecGraph, sources: set[int], targets: set[int], painted_now: np.ndarray) -> list[int] | None:
    """A shortest path of legal moves from any of ``sources`` to any of ``targets`` whose
    inner nodes are all painted (``painted_now``, ``(N,)`` bool); ``None`` if there is none."""
    adj, painted = graph.adj, painted_now.tolist()  # plain bools: one look-up per neighbour
    return search_path(sorted(sources), lambda u: [v for v in adj[u] if v in targets or painted[v]],
                       targets.__contains__)


def trail_painted(track: Track, spec: dict) -> np.ndarray | None:
    """Which rooms show the trail colour in each frame: ``(T, N)`` bool, or ``None`` when
    the spec draws no trail.

    A room counts as painted when at least ``TRAIL_COVER`` of the patch of +-0.3 step
    around its node is nearer the trail colour than any other scene colour (floor, wall,
    goal, agent), so compression noise and a slight colour shift do not matter.
    """
    colours = spec.get("colors") or {}
    if not spec.get("trail") or "trail" not in colours:
        return None
    palette = [colours["trail"]] + [colours[k] for k in ("floor", "wall", "goal", "background") if k in colours]
    palette.append(spec["agent"]["color"])
    palette_arr = np.asarray(palette, np.float32)
    work = track.work
    frames = work.frames
    t, h, w = frames.shape[:3]
    centres = work.to_work(np.asarray(spec["nodes"], float))
    r = max(1, int(round(0.3 * float(spec["step_px"]) * work.mean_scale)))
    xs = np.clip(np.round(centres[:, 0]).astype(int)[:, None] + np.arange(-r, r + 1)[None], 0, w - 1)
    ys = np.clip(np.round(centres[:, 1]).astype(int)[:, None] + np.arange(-r, r + 1)[None], 0, h - 1)
    # (T, N, P, P, 3) patches gathered at once; small (N rooms x a few pixels).
    patches = frames[:, ys[:, :, None], xs[:, None, :]].astype(np.float32)
    d = ((patches[..., None, :] - palette_arr) ** 2).sum(-1)
    is_trail = d.argmin(-1) == 0
    return is_trail.reshape(t, len(centres), -1).mean(-1) >= TRAIL_COVER


def _visibility(track_obj, name: str, rule_lost: str, rule_dup: str | None) -> list[dict]:
    out = []
    lost = track_obj.lost
    t = len(lost)
    min_run = RUN if t >= 4 else 1
    runs = _runs(lost, min_run)
    if lost[0]:
        runs = [(0, 1)] + [r for r in runs if r[0] != 0]
    if lost[-1] and not any(s + n == t for s, n in runs):
        runs.append((t - 1, 1))
    for s, n in runs[:1]:
        what = "not visible at its start in frame 0" if s == 0 else f"lost at frame {s}"
        out.append({"rule": rule_lost, "frame": int(s), "detail": f"{name} {what} ({n} frame(s))"})
    if rule_dup:
        for s, n in _runs(track_obj.duplicated, min_run)[:1]:
            out.append({"rule": rule_dup, "frame": int(s), "detail": f"{name} duplicated at frame {s} ({n} frame(s))"})
    return out


def check_rules(track: Track, spec: dict, check_scene_changes: bool = True) -> RuleReport:
    """Run every rule on a tracked video; violations sorted by frame (first = the reason)."""
    graph = SpecGraph(spec)
    t = track.num_frames
    agent_pos = track.agent.positions
    painted = trail_painted(track, spec) if not spec.get("box") else None
    route = graph.distances_from(int(spec["start"]), avoid_hazards=False).get(int(spec["goal"]), 0)
    start, goal = int(spec["start"]), int(spec["goal"])
    if spec.get("box"):  # the agent's fewest moves (pushes and walks) cap both objects' moves
        box_start = int(spec["box"]["start"])
        moves = graph.push_moves(start, box_start, goal)
        agent_route_px = box_route_px = moves * graph.step if moves else None
    else:
        agent_route_px = graph.path_length(start, goal)
    agent = walk_graph(agent_pos, graph, start, "agent", painted=painted,
                       max_bridge=max(3, int(np.ceil(0.5 * route))), route_px=agent_route_px)
    violations = list(agent.violations)
    violations += _visibility(track.agent, "agent", "agent_vanished", "agent_duplicated")
    seen = ~np.isnan(agent_pos[:, 0])
    box = None
    goal = int(spec["goal"])
    if spec.get("box") and track.box is not None:
        box_pos = track.box.positions
        box = walk_graph(box_pos, graph, box_start, "box", prefix="box_", route_px=box_route_px, paced=False)
        violations += box.violations
        violations += _visibility(track.box, "box", "box_vanished", None)
        violations += _box_interaction(agent_pos, box_pos, graph.step)
        violations += _push_jumps(agent, box, graph, moves, goal)
        main = box
    else:
        main = agent
    # Hazards.
    if graph.hazards and seen.any():
        hz = graph.nodes[graph.hazards]
        d = np.linalg.norm(agent_pos[seen][:, None] - hz[None], axis=2)
        hit = np.flatnonzero(d.min(1) <= SNAP * graph.step)
        if len(hit):
            k = int(np.flatnonzero(seen)[hit[0]])
            node = graph.hazards[int(np.argmin(d[hit[0]]))]
            violations.append({"rule": "hazard", "frame": k, "detail": f"agent entered hazard node {node} at frame {k}"})
    # Static video.
    if seen.any():
        start_xy = graph.nodes[int(spec["start"])]
        moved = np.linalg.norm(agent_pos[seen] - start_xy, axis=1).max()
        box_moved = 0.0
        if box is not None and track.box is not None and (~track.box.lost).any():
            bseen = ~track.box.lost
            box_moved = np.linalg.norm(track.box.positions[bseen] - graph.nodes[int(spec["box"]["start"])], axis=1).max()
        if moved < STATIC * graph.step and box_moved < STATIC * graph.step:
            violations.append({"rule": "static_video", "frame": t - 1,
                               "detail": f"the agent never moved more than {moved / graph.step:.2f} step from its start"})
    # Goal.
    goal_frames = [k for k, n in enumerate(main.frame_nodes) if n == goal]
    reached = bool(goal_frames)
    last_seen = [n for n in main.frame_nodes if n >= 0]
    final = last_seen[-1] if last_seen else None
    ends = final == goal
    # End state only: the agent (box) shows up at the goal without walking the way there:
    # a jump (of the agent or the box) that lands it there, or too few route nodes visited.
    if reached:
        first_goal = goal_frames[0]
        main_pos = track.box.positions if box is not None else agent_pos
        main_start = box_start if box is not None else start
        obj = "box" if box is not None else "agent"
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
                                         f"{'being pushed' if box is not None else 'walking'} there "
                                         f"({visited} of {route + 1} route nodes visited)"})
    if check_scene_changes:
        violations += check_scene(track, spec, agent)
    violations.sort(key=lambda v: (v["frame"], RULE_NAMES.index(v["rule"]) if v["rule"] in RULE_NAMES else 99))
    return RuleReport(agent=agent, box=box, violations=violations, reached_goal=reached, ends_at_goal=ends,
                      final_node=final)


def _lands_near_goal(positions: np.ndarray, frame: int, graph: SpecGraph, goal: int) -> bool:
    p = positions[frame]
    return bool(np.linalg.norm(p - graph.nodes[goal]) <= 1.0 * graph.step)


def _push_jumps(agent: ObjectPath, box: ObjectPath, graph: SpecGraph, route_moves: int | None,
                goal: int) -> list[dict]:
    """Sokoban: between two frames where the box changed node, the agent's fewest moves
    that take the box there from the first frame's places (its pushes and the walks
    between them, :meth:`MazeGraph.push_moves`) may not exceed half of the whole
    solution's (``route_moves``; at least 2): ``box_teleport`` (``end_state_only`` once
    the box lands on the goal)."""
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


def _box_interaction(agent_pos: np.ndarray, box_pos: np.ndarray, step: float) -> list[dict]:
    """Sokoban: the box moves only when pushed, and the agent never walks through it.

    ``box_unpushed``: the box moves (more than 0.1 step between seen frames) with the
    agent farther than 1.5 steps plus the agent's own move away, before and after. ``box_pulled``: it moves towards the agent's side
    (the move points against the agent-to-box direction both before and after it, the
    agent moving at most 1.5 steps: a faster agent may walk round the box and push it
    between two frames, which :func:`_push_jumps` judges by the pushes it needs). ``agent_through_box``: the agent's centre comes within half a step of
    the box's for 2+ frames.
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
    runs = _runs(overlap, RUN)
    if runs:
        k = runs[0][0]
        out.append({"rule": "agent_through_box", "frame": k, "detail": f"the agent walked into the box at frame {k}"})
    return out


_KERNEL3 = np.ones((3, 3), np.uint8)


def _window(shape: tuple[int, int], centre: np.ndarray, half: float) -> tuple[slice, slice] | None:
    """Rows and columns of the pixels (indices as coordinates) within ``half`` of ``centre``
    along each axis, clipped to ``shape``; None when none is inside."""
    h, w = shape
    x0, x1 = max(0, int(np.ceil(centre[0] - half))), min(w - 1, int(np.floor(centre[0] + half)))
    y0, y1 = max(0, int(np.ceil(centre[1] - half))), min(h - 1, int(np.floor(centre[1] + half)))
    if x0 > x1 or y0 > y1:
        return None
    return slice(y0, y1 + 1), slice(x0, x1 + 1)


def _fill_disc(mask: np.ndarray, centre: np.ndarray, radius: float) -> None:
    """Set ``mask`` where ``(x - cx)**2 + (y - cy)**2 <= radius**2`` (pixel indices as
    coordinates), touching only the disc's bounding box: the same pixels as the
    whole-image test, at a cost that does not grow with the frame."""
    window = _window(mask.shape, centre, radius)
    if window is not None:
        rows, cols = window
        ys = np.arange(rows.start, rows.stop)[:, None]  # np.ogrid's grid without its indexing machinery
        xs = np.arange(cols.start, cols.stop)[None, :]
        mask[rows, cols] |= (xs - centre[0]) ** 2 + (ys - centre[1]) ** 2 <= radius ** 2


def _fill_square(mask: np.ndarray, centre: np.ndarray, half: float) -> None:
    """Set ``mask`` where ``|x - cx| <= half`` and ``|y - cy| <= half`` (pixel indices)."""
    window = _window(mask.shape, centre, half)
    if window is not None:
        mask[window] = True


def check_scene(track: Track, spec: dict, agent_path: ObjectPath | None = None, diff_threshold: int = 60,
                min_blob_cells: float = 0.25) -> list[dict]:
    """``maze_redrawn``: compare sampled frames with frame 0 outside the moving objects.

    A pixel changed when its (3x3-blurred) colour differs from frame 0 by more than
    ``diff_threshold`` in some channel (the working frames are already corrected for
    global brightness drift, see :func:`track.prepare_video`); changes within the agent's (and box's) current
    and start footprints, the trail's cells (trail skins: around every tracked position and
    every node of ``agent_path`` entered so far, which includes rooms crossed between
    sampled frames) and the goal (when the agent stands on it) are expected. A changed blob larger than ``min_blob_cells`` of a cell
    (``step_px`` squared) is a redraw. Compression noise makes small, thin blobs only.
    """
    work = track.work
    frames = work.frames
    t, h, w = frames.shape[:3]
    scale = work.mean_scale
    step_w = float(spec["step_px"]) * scale
    # The object's picture may reach past its tracked colour (a sprite: ``extent_px``).
    agent_r = 0.5 * max(float(spec["agent"]["size_px"]), float(spec["agent"].get("extent_px", 0))) * scale * 1.5 + 3
    sample = np.unique(np.linspace(1, t - 1, num=min(t - 1, 24)).round().astype(int)) if t > 1 else []
    if len(sample) == 0:
        return []
    nodes = np.asarray(spec["nodes"], float)
    # Every position in working pixels once (the same arithmetic as one point at a time).
    nodes_w = work.to_work(nodes)
    objects = [(track.agent.positions, nodes_w[int(spec["start"])], agent_r)]
    if spec.get("box") and track.box is not None:
        box_r = 0.5 * max(float(spec["box"].get("size_px", spec["step_px"])),
                          float(spec["box"].get("extent_px", 0))) * scale * 1.5 + 3
        objects.append((track.box.positions, nodes_w[int(spec["box"]["start"])], box_r))
    # Per object: its working positions and, per frame, the frame whose position shows it:
    # the frame itself, or where it was last seen before a frame where it is lost (-1: never yet).
    footprints = []
    for positions, start_w, radius in objects:
        seen = ~np.isnan(positions[:, 0])
        last_seen = np.maximum.accumulate(np.where(seen, np.arange(t), -1))
        shown = np.where(seen, np.arange(t), np.concatenate([[-1], last_seen[:-1]]))
        footprints.append((work.to_work(positions), shown, start_w, radius))
    agent_pos = track.agent.positions
    agent_w = footprints[0][0]
    trail = bool(spec.get("trail"))
    trail_r = 0.75 * step_w + 2
    gx0, gy0, gx1, gy1 = spec["goal_box"]
    goal_xy = np.array([(gx0 + gx1) / 2, (gy0 + gy1) / 2])
    c0 = work.to_work(np.array([gx0, gy0], float))
    c1 = work.to_work(np.array([gx1, gy1], float))
    goal_rows = slice(max(0, int(c0[1]) - 1), int(c1[1]) + 2)
    goal_cols = slice(max(0, int(c0[0]) - 1), int(c1[0]) + 2)
    min_area = min_blob_cells * step_w ** 2
    diffs = _scene_diffs(frames, sample, diff_threshold)  # (S, h + 1, w): a 0 separator row per frame
    changed_any = [cv2.countNonZero(d) > 0 for d in diffs]
    trail_mask = np.zeros((h, w), bool)
    trail_upto = 0
    if agent_path is not None:
        path_nodes = nodes_w[np.asarray(agent_path.node_path, int)] if len(agent_path.node_path) else nodes_w[:0]
        path_entered = np.asarray(agent_path.node_frames)
        path_done = np.zeros(len(path_nodes), bool)
    at_start = np.zeros((h, w), bool)  # every object's start footprint: allowed in every frame
    for _, _, start_w, radius in footprints:
        _fill_disc(at_start, start_w, radius)
    for s, k in enumerate(sample):
        if not changed_any[s]:
            continue
        allowed = at_start.copy()
        for positions_w, shown, start_w, radius in footprints:
            if shown[k] >= 0:
                _fill_disc(allowed, positions_w[shown[k]], radius)
        if trail:
            for j in range(trail_upto, k + 1):
                if not np.isnan(agent_w[j, 0]):
                    _fill_square(trail_mask, agent_w[j], trail_r)
            trail_upto = k + 1
            if agent_path is not None:
                todo = np.flatnonzero(~path_done & (path_entered <= k))
                for i in todo:
                    _fill_square(trail_mask, path_nodes[i], trail_r)
                path_done[todo] = True
            allowed |= trail_mask
        p = agent_pos[k]
        if not np.isnan(p[0]) and np.linalg.norm(p - goal_xy) <= 1.0 * float(spec["step_px"]):
            allowed[goal_rows, goal_cols] = True
        diffs[s, :h][allowed] = 0
    # The changes outside what is allowed, opened (3x3) and split into blobs: all sampled
    # frames as one tall image, each frame followed by its separator row, which is 1 while
    # eroding and 0 while dilating and labelling (the values that leave a frame's own
    # border handling as it is), so every result equals the per-frame call.
    tall = diffs.reshape(-1, w)
    diffs[:, h] = 1
    eroded = cv2.erode(tall, _KERNEL3)
    eroded.reshape(diffs.shape)[:, h] = 0
    opened = cv2.dilate(eroded, _KERNEL3)
    opened.reshape(diffs.shape)[:, h] = 0
    if not cv2.countNonZero(opened):  # nothing left to label (a clean video, usually)
        return []
    _, labels, stats, cents = cv2.connectedComponentsWithStats(opened, connectivity=8)
    frame_of = stats[1:, cv2.CC_STAT_TOP] // (h + 1)  # ascending: labels follow the raster order
    area = stats[1:, cv2.CC_STAT_AREA]
    big = np.flatnonzero(area >= min_area)
    if len(big) == 0:
        return []
    s = int(frame_of[big[0]])  # the first sampled frame with a redraw; its largest blob
    mine = np.flatnonzero(frame_of == s)
    j = 1 + int(mine[np.argmax(area[mine])])
    k = int(sample[s])
    centre = cents[j] - (0.0, s * (h + 1))
    where = work.to_spec(centre)
    blob = labels.reshape(diffs.shape)[s, :h] == j
    what = _describe_change(frames[0], frames[k], blob, where, k, track, spec)
    return [{"rule": "maze_redrawn", "frame": k,
             "detail": f"the scene changed at frame {k} around ({where[0]:.0f}, {where[1]:.0f}) px "
                       f"({stats[j, cv2.CC_STAT_AREA] / step_w ** 2:.1f} cells): {what}"}]


def _scene_diffs(frames: np.ndarray, sample: np.ndarray, threshold: int) -> np.ndarray:
    """Where each sampled frame differs from frame 0: some channel of the 3x3-blurred
    frames differs by more than ``threshold``. Returns uint8 ``(S, H + 1, W)`` masks (1 =
    changed) with a zero separator row after each frame, ready for the tall-image calls.

    All sampled frames are blurred as one tall image in which each frame is framed by its
    own reflected rows (row 1 above, row H-2 below: OpenCV's default BORDER_REFLECT_101),
    so each blurred frame equals the per-frame ``cv2.blur``; ``cv2.inRange`` then tests
    all three channels of ``|blurred - first|`` in one pass.
    """
    t, h, w = frames.shape[:3]
    count = len(sample)
    padded = np.empty((count + 1, h + 2, w, 3), np.uint8)  # frame 0 last, blurred the same way
    for i, k in enumerate([*sample, 0]):
        padded[i, 1:h + 1] = frames[k]
    padded[:, 0] = padded[:, 1 + min(1, h - 1)]
    padded[:, h + 1] = padded[:, 1 + max(h - 2, 0)]
    blurred = cv2.blur(padded.reshape(-1, w, 3), (3, 3)).reshape(padded.shape)
    for i in range(count):  # in place: |blurred - first| (the border rows too, dropped below)
        cv2.absdiff(blurred[i], blurred[count], dst=blurred[i])
    same = cv2.inRange(blurred[:count].reshape(-1, w, 3), (0, 0, 0), (threshold, threshold, threshold))
    out = np.zeros((count, h + 1, w), np.uint8)
    np.less(same.reshape(count, h + 2, w)[:, 1:h + 1], 1, out=out[:, :h].view(bool))
    return out


def _describe_change(first: np.ndarray, frame: np.ndarray, blob: np.ndarray, where: np.ndarray, k: int,
                     track: Track, spec: dict, dark: int = 96) -> str:
    """What a changed blob of the scene check most likely is, for the reason a person reads
    (the verdict does not depend on it): walls erased or drawn (pixels dark in one frame
    and not in the other), the goal changed, a faded or smeared agent (the tracker does
    not see the agent in frame ``k`` and the blob lies where it was or went next), or other
    paint (e.g. a trail where the agent has not been)."""
    was_dark = first[blob].max(axis=1) < dark
    now_dark = frame[blob].max(axis=1) < dark
    if np.mean(was_dark & ~now_dark) > 0.3:
        return "walls erased"
    if np.mean(now_dark & ~was_dark) > 0.3:
        return "walls drawn"
    gx0, gy0, gx1, gy1 = spec["goal_box"]
    pad = 0.5 * float(spec["step_px"])
    goal_colour = (spec.get("colors") or {}).get("goal")
    looks_goal = goal_colour is not None and np.mean(
        np.abs(frame[blob].astype(int) - np.asarray(goal_colour)).max(axis=1) < 60) > 0.5
    if looks_goal or (gx0 - pad <= where[0] <= gx1 + pad and gy0 - pad <= where[1] <= gy1 + pad):
        return "the goal redrawn"
    positions = track.agent.positions
    if np.isnan(positions[k, 0]):
        seen = np.flatnonzero(~np.isnan(positions[:, 0]))
        near = [positions[i] for i in (seen[seen < k][-1:].tolist() + seen[seen > k][:1].tolist())]
        if any(np.linalg.norm(where - p) <= 2.5 * float(spec["step_px"]) for p in near):
            return "the agent is not visible in this frame and the picture changed near its way (a faded or smeared agent)"
    return "paint outside the agent's way so far (e.g. a trail where the agent has not been, or a new object)"
