"""A tracked object's walk on the spec graph, and the movement rules it must keep.

The referee's picture of a maze-family puzzle is its spec graph (:class:`SpecGraph`:
nodes, legal moves, the move step, hazards and the board). :func:`walk_graph` maps one
object's tracked positions onto it and checks how it moved (the movement rules listed in
:mod:`.rules`: off the graph or the board, a move its pace cannot explain, a long move
with no trail painted between); :func:`judge_moves` weighs each move between two seen
frames, whatever the frame rate.

Positions map to nodes with hysteresis: the current node changes only when the object
comes within ``SNAP`` step of another node, so positions between nodes while moving are
fine; the nodes a legal fast move passed between two frames are entered on the way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gen_reason.puzzles.maze.graph import MazeGraph, search_path

SNAP = 0.3  # steps: how close to a node counts as standing on it
OFF_GRAPH = 0.3  # steps: how far from every legal move counts as off the graph
TELEPORT = 1.5  # steps: a straight jump this long between consecutive seen frames is always plausible
SHORT_WAY = 2.0  # steps: an open path this long between consecutive seen frames is always plausible
PACE = 4.0  # a move may cover this many times the agent's pace (see :func:`judge_moves`)
MOST_OF_ROUTE = 0.5  # a move longer than this share of the shortest route is never plausible
MOVING = 0.1  # steps: a move shorter than this is tracker jitter, not motion (for the pace)
RUN = 2  # consecutive frames a lost/duplicated/off-graph condition must last


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


def runs(flags: np.ndarray, min_len: int) -> list[tuple[int, int]]:
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
    if not seen.any():
        return ObjectPath([-1] * t, [start], [0], [])
    idx = np.flatnonzero(seen)
    pts = positions[idx]
    near, near_d = graph.nearest_node(pts)
    edge, along, edge_d = graph.locate(pts)
    off = np.minimum(near_d, edge_d) > graph.off_tolerance
    violations = _off_graph(graph, pts, idx, off, RUN if t >= 4 else 1, name, prefix)
    # Moves between consecutive seen frames (speed invariant); on trail skins a long one
    # needs the trail as evidence.
    verdicts = judge_moves(graph, pts, idx, (edge, along), route_px, paced)
    if painted is not None:
        _need_trail(graph, pts, idx, (edge, along), painted, max_bridge, verdicts)
    flagged = set()
    for s, verdict in enumerate(verdicts):
        if verdict is not None:
            k = int(idx[s + 1])
            flagged.add(k)
            violations.append({"rule": prefix + verdict[0], "frame": k, "detail": f"{name} {verdict[1]}"})
    frame_nodes, node_path, node_frames = _node_path(graph, start, t, idx, off, (edge, along), (near, near_d),
                                                     flagged)
    return ObjectPath(frame_nodes, node_path, node_frames, violations)


def _off_graph(graph: SpecGraph, pts: np.ndarray, idx: np.ndarray, off: np.ndarray, min_run: int, name: str,
               prefix: str) -> list[dict]:
    """``wall_crossing`` / ``off_board``: the seen positions ``pts`` (at frames ``idx``) off
    the graph (``off``) for runs of at least ``min_run`` seen frames, off the board when
    some of the run lies outside it."""
    board = graph.on_board(pts)
    violations = []
    for s, n in runs(off, min_run):
        k = int(idx[s])
        where = pts[s]
        outside = not board[s: s + n].all()
        rule = "off_board" if outside else "wall_crossing"
        what = "left the board" if outside else "left the legal moves (through a wall?)"
        violations.append({"rule": prefix + rule, "frame": k,
                           "detail": f"{name} {what} at frame {k}, at ({where[0]:.0f}, {where[1]:.0f}) px, "
                                     f"for {n} frame(s)"})
    return violations


def _need_trail(graph: SpecGraph, pts: np.ndarray, idx: np.ndarray, located: tuple[np.ndarray, np.ndarray],
                painted: np.ndarray, max_bridge: int, verdicts: list) -> None:
    """Trail skins: a legal move over ``TELEPORT`` steps (straight or along the way) becomes
    a ``teleport`` in ``verdicts`` unless a path of at most ``max_bridge`` legal moves through
    rooms painted in the frame it lands (``painted``, ``(T, N)``) joins its two places."""
    step = graph.step
    edge, along = located
    way_len = graph.open_distance(edge[:-1], along[:-1], edge[1:], along[1:])
    for s, verdict in enumerate(verdicts):
        if verdict is None and max(way_len[s], np.linalg.norm(pts[s + 1] - pts[s])) > TELEPORT * step:
            k = int(idx[s + 1])
            way = _trail_way(graph, _nodes_near(graph, pts[s]), _nodes_near(graph, pts[s + 1]), painted[k])
            if way is None or len(way) - 1 > max_bridge:
                verdicts[s] = ("teleport", f"jumped {np.linalg.norm(pts[s + 1] - pts[s]) / step:.1f} steps "
                                           f"between frames {int(idx[s])} and {k} with no trail painted between")


def _node_path(graph: SpecGraph, start: int, t: int, idx: np.ndarray, off: np.ndarray,
               located: tuple[np.ndarray, np.ndarray], nearest: tuple[np.ndarray, np.ndarray],
               flagged: set[int]) -> tuple[list[int], list[int], list[int]]:
    """The node of each of ``t`` frames (-1 before the first seen one), and the node path
    with the frame each node was entered: the nodes each legal move passed (not the
    ``flagged`` frames' moves), and a node entered (hysteresis) once the object comes
    within ``SNAP`` of it. One pass over the seen frames (``idx``), on plain numbers."""
    frame_nodes = [-1] * t
    node_path, node_frames = [start], [0]
    edge, along = located
    near, near_d = nearest
    cur = start
    snap = SNAP * graph.step
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
    return frame_nodes, node_path, node_frames


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
