"""The maze family's graph helpers: one module for every search over a spec graph.

A maze-family spec (see :mod:`gen_reason.puzzles.maze`) is a graph: ``nodes`` are pixel
centres of the places the agent may stand and ``edges`` the legal single moves. The
generators use it to place goals and store solutions (fewest moves, breadth-first with
neighbours in index order, so every stored solution is reproducible), and the referee
uses it to judge a tracked video: how far apart two tracked positions are along open
paths (grid cells, roads by arc length, floors and ladders), whatever the frame rate.

- :func:`search`, :func:`path_to`, :func:`search_path`: breadth-first search over any
  graph (cells, node indices, sokoban states) with the neighbour order given, and the
  path it found.
- :func:`adjacency`, :func:`bfs`, :func:`walk_back`, :func:`shortest_path`: move counts
  and shortest node paths over a spec graph (neighbours in index order).
- :class:`MazeGraph`: the same graph with pixel geometry: the nearest node or road to a
  point, the projection of points onto the roads, and :meth:`MazeGraph.open_distance`,
  the length in pixels of the shortest open path between two points on the graph.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable, Iterable, Sequence
from itertools import repeat
from typing import Any

import numpy as np


def search(sources: Iterable[Hashable], neighbours: Callable[[Any], Iterable[Hashable]], *,
           goal: Callable[[Any], bool] | None = None, max_depth: int | None = None,
           limit: int | None = None) -> tuple[dict, dict]:
    """Breadth-first search over any graph: ``(previous, distance)`` for every reached node.

    ``sources`` start at distance 0 (several make a multi-source search); ``neighbours(u)``
    lists ``u``'s successors in the order they are to be tried (this fixes which of equal
    shortest paths is found, so stored solutions stay byte-identical); a node is visited
    when first queued. ``goal(v)``, when given, ends the search as soon as a node for which
    it is true is queued. Nodes ``max_depth`` from a source are not expanded, and the
    search stops before it would visit more than ``limit`` nodes. Both dicts are in
    visiting order. Cells, node indices and sokoban states all go through this one search.
    """
    previous: dict = {}
    distance: dict = {}
    for source in sources:
        if source not in previous:
            previous[source], distance[source] = None, 0
    if goal is not None:
        for source in previous:
            if goal(source):
                return previous, distance
    deepest = sys.maxsize if max_depth is None else max_depth
    most = sys.maxsize if limit is None else limit
    # Level by level (the order a first-in, first-out queue visits them in): each level's
    # distance is one number, not a look-up per node.
    frontier, depth = list(previous), 0
    while frontier and depth < deepest:
        depth += 1
        level = []
        for u in frontier:
            for v in neighbours(u):
                if v not in previous:
                    if len(previous) >= most:
                        return previous, distance
                    previous[v] = u
                    distance[v] = depth
                    if goal is not None and goal(v):
                        return previous, distance
                    level.append(v)
        frontier = level
    return previous, distance


def search_path(sources: Iterable[Hashable], neighbours: Callable[[Any], Iterable[Hashable]],
                goal: Callable[[Any], bool], *, max_depth: int | None = None,
                limit: int | None = None) -> list | None:
    """A fewest-moves path (:func:`search`, the same arguments) from a source to the first
    node reached for which ``goal`` is true: the first such source itself, in the order
    of ``sources``, when there is one. ``None`` when no such node is reached."""
    previous, _ = search(sources, neighbours, goal=goal, max_depth=max_depth, limit=limit)
    end = next(reversed(previous), None)  # the search stops on the goal it queues
    if end is None or previous[end] is None:  # it never left the sources
        end = next((source for source in previous if goal(source)), None)
    elif not goal(end):
        return None
    return None if end is None else path_to(previous, end)


def path_to(previous: dict, node: Hashable) -> list | None:
    """The node path from a search source to ``node`` in ``previous`` from :func:`search`
    (``None`` when the search did not reach it)."""
    if node not in previous:
        return None
    path = [node]
    while previous[path[-1]] is not None:
        path.append(previous[path[-1]])
    return path[::-1]


def adjacency(count: int, edges: Iterable[Sequence[int]]) -> list[list[int]]:
    """Sorted neighbour lists of an undirected graph of ``count`` nodes."""
    adj: list[set[int]] = [set() for _ in range(count)]
    for i, j in edges:
        adj[int(i)].add(int(j))
        adj[int(j)].add(int(i))
    return [sorted(a) for a in adj]


def bfs(adj: Sequence[Sequence[int]], source: int, blocked: Iterable[int] = ()) -> tuple[list[int], list[int]]:
    """Move counts (-1: unreachable) and breadth-first parents (-1: none) from ``source``.

    Neighbours are visited in the order ``adj`` lists them (index order from
    :func:`adjacency`); nodes in ``blocked`` are never entered (``source`` itself may be).
    """
    stop = set(int(b) for b in blocked)
    if stop:  # the neighbour lists without the blocked nodes (most lists stay as they are)
        adj = [a if stop.isdisjoint(a) else [v for v in a if v not in stop] for a in adj]
    previous, distance = search([source], adj.__getitem__)
    nodes = range(len(adj))
    dist, parent = list(map(distance.get, nodes, repeat(-1))), list(map(previous.get, nodes, repeat(-1)))
    parent[source] = -1  # the search's None
    return dist, parent


def walk_back(parent: Sequence[int], source: int, target: int) -> list[int] | None:
    """The node path from ``source`` to ``target`` in a parent tree from :func:`bfs`
    (``None`` when ``target`` was not reached)."""
    if target != source and parent[target] < 0:
        return None
    path = [target]
    while path[-1] != source:
        path.append(parent[path[-1]])
    return path[::-1]


def shortest_path(adj: Sequence[Sequence[int]], a: int, b: int, blocked: Iterable[int] = ()) -> list[int] | None:
    """A fewest-moves node path from ``a`` to ``b`` avoiding ``blocked``, or ``None``."""
    return walk_back(bfs(adj, a, blocked)[1], a, b)


class MazeGraph:
    """A spec graph with pixel geometry.

    ``nodes`` ``(N, 2)`` pixel centres, ``edges`` ``(E, 2)`` node pairs, ``lengths`` ``(E,)``
    their pixel lengths (a road's arc length is the sum of its hops), ``adj`` sorted
    neighbour lists. Path lengths between all nodes are computed once, on first use
    (Dijkstra over the edge lengths, from SciPy).
    """

    def __init__(self, nodes, edges) -> None:
        self.nodes = np.asarray(nodes, float).reshape(-1, 2)
        self.edges = np.asarray(edges, int).reshape(-1, 2)
        self.adj = adjacency(len(self.nodes), self.edges.tolist())
        a, b = self.nodes[self.edges[:, 0]], self.nodes[self.edges[:, 1]]
        self.lengths = np.linalg.norm(b - a, axis=1)
        self._seg_a, self._seg_ab = a, b - a
        self._seg_denom = np.maximum((self._seg_ab ** 2).sum(1), 1e-9)
        self._lengths_all: np.ndarray | None = None
        self._predecessors: np.ndarray | None = None
        self._ahead: dict[tuple[int, int], int] | None = None

    @classmethod
    def from_spec(cls, spec: dict) -> MazeGraph:
        """The graph of a maze-family spec (``nodes`` and ``edges``)."""
        return cls(spec["nodes"], spec["edges"])

    # ------------------------------------------------------------------ moves
    def move_counts(self, source: int, blocked: Iterable[int] = ()) -> dict[int, int]:
        """Fewest moves from ``source`` to every node it reaches (avoiding ``blocked``)."""
        dist, _ = bfs(self.adj, source, blocked)
        return {i: d for i, d in enumerate(dist) if d >= 0}

    def shortest(self, a: int, b: int, blocked: Iterable[int] = ()) -> list[int] | None:
        """A fewest-moves node path from ``a`` to ``b`` (avoiding ``blocked``), or ``None``."""
        return shortest_path(self.adj, a, b, blocked)

    # ------------------------------------------------------------------ lengths
    def _all_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        if self._lengths_all is None:
            from scipy.sparse import coo_matrix
            from scipy.sparse.csgraph import dijkstra

            n = len(self.nodes)
            # A zero-length edge would vanish from a sparse matrix: give it a hair of length.
            w = np.maximum(self.lengths, 1e-6)
            matrix = coo_matrix((w, (self.edges[:, 0], self.edges[:, 1])), shape=(n, n)).tocsr()
            self._lengths_all, self._predecessors = dijkstra(matrix, directed=False, return_predecessors=True)
        return self._lengths_all, self._predecessors

    def path_lengths(self) -> np.ndarray:
        """``(N, N)`` pixel lengths of the shortest open paths between all nodes (inf: none)."""
        return self._all_pairs()[0]

    def path_length(self, a: int, b: int) -> float:
        """Pixel length of the shortest open path between nodes ``a`` and ``b`` (inf if none)."""
        return float(self._all_pairs()[0][a, b])

    def shortest_by_length(self, a: int, b: int) -> list[int] | None:
        """The node path of :meth:`path_length` (``None`` when ``b`` cannot be reached)."""
        lengths, pred = self._all_pairs()
        if not np.isfinite(lengths[a, b]):
            return None
        path = [b]
        while path[-1] != a:
            path.append(int(pred[a, path[-1]]))
        return path[::-1]

    def push_moves(self, agent: int, box: int, target: int, goal_agent: int | None = None,
                   max_moves: int | None = None, limit: int = 200_000) -> int | None:
        """Fewest agent moves that push a box from ``box`` onto ``target`` (sokoban), with
        the agent ending on ``goal_agent`` when given: the agent walks the edges and pushes
        the box one node on in the direction it walks (the box's next node is the
        neighbour straight ahead). Breadth-first over (agent, box) places; ``None`` when it
        cannot be done (in ``max_moves``, or within ``limit`` places)."""
        adj, ahead = self.adj, self._straight_ahead()

        def moves(place: tuple[int, int]) -> Iterable[tuple[int, int]]:
            """The places one agent move leads to: a walk, or a push when the agent walks
            onto the box (the box goes on to the node straight ahead, where there is one)."""
            a, b = place
            walks = adj[a]
            if b not in walks:
                return zip(walks, repeat(b))  # built in C: this runs for every place searched
            pushed = ahead.get(place, -1)
            return [(v, b) if v != b else (v, pushed) for v in walks if v != b or pushed >= 0]

        if goal_agent is None:
            def done(place: tuple[int, int]) -> bool:
                return place[1] == target
        else:
            done = (goal_agent, target).__eq__  # the agent on goal_agent, the box on target
        path = search_path([(agent, box)], moves, done, max_depth=max_moves, limit=limit)
        return None if path is None else len(path) - 1

    def _straight_ahead(self) -> dict[tuple[int, int], int]:
        """For each move ``u -> v``, the neighbour of ``v`` straight on (within 0.2 of a hop
        of ``2 v - u``), where one exists (computed once)."""
        if self._ahead is not None:
            return self._ahead
        out = {}
        xy = self.nodes.tolist()  # plain floats: thousands of tiny distances, no array overhead
        for u, (ux, uy) in enumerate(xy):
            for v in self.adj[u]:
                vx, vy = xy[v]
                wx, wy = 2 * vx - ux, 2 * vy - uy
                tol2 = 0.04 * ((vx - ux) ** 2 + (vy - uy) ** 2)  # (0.2 hop) squared
                for w in self.adj[v]:
                    if w != u and (xy[w][0] - wx) ** 2 + (xy[w][1] - wy) ** 2 <= tol2:
                        out[(u, v)] = w
                        break
        self._ahead = out
        return out

    # ------------------------------------------------------------------ geometry
    def nearest_node(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index and distance of the nearest node to each point ``(n, 2)``."""
        d = np.linalg.norm(points[:, None, :] - self.nodes[None], axis=2)
        idx = np.argmin(d, axis=1)
        return idx, d[np.arange(len(points)), idx]

    def locate(self, points: np.ndarray, chunk: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The nearest point of the graph to each point ``(n, 2)``: edge index (-1 on a graph
        without edges), position along it (0 at its first node, 1 at its second) and the
        pixel distance to it."""
        n = len(points)
        which, along, dist = np.full(n, -1), np.zeros(n), np.full(n, np.inf)
        if not len(self.edges):
            idx, d = self.nearest_node(points)
            return which, along, d
        for lo in range(0, n, chunk):
            p = points[lo:lo + chunk, None, :]
            t = np.clip(((p - self._seg_a) * self._seg_ab).sum(2) / self._seg_denom, 0.0, 1.0)
            d = np.linalg.norm(p - (self._seg_a + t[..., None] * self._seg_ab), axis=2)
            best = np.argmin(d, axis=1)
            rows = np.arange(len(best))
            which[lo:lo + chunk], along[lo:lo + chunk], dist[lo:lo + chunk] = best, t[rows, best], d[rows, best]
        return which, along, dist

    def open_distance(self, edge_a: np.ndarray, along_a: np.ndarray, edge_b: np.ndarray,
                      along_b: np.ndarray) -> np.ndarray:
        """Pixel length of the shortest open path between located points (from :meth:`locate`):
        along each point's edge to one of its ends, then between the ends; a straight
        stretch when both lie on the same edge. Pairwise over equal-length arrays."""
        edge_a, edge_b = np.asarray(edge_a, int), np.asarray(edge_b, int)
        along_a, along_b = np.asarray(along_a, float), np.asarray(along_b, float)
        out = np.zeros(len(edge_a))
        ok = (edge_a >= 0) & (edge_b >= 0)
        if not ok.any():
            return out
        lengths, _ = self._all_pairs()
        ea, eb = edge_a[ok], edge_b[ok]
        la, lb = self.lengths[ea], self.lengths[eb]
        # Distance from each point to its edge's two ends, then the four ways between ends.
        to_a = np.stack([along_a[ok] * la, (1 - along_a[ok]) * la], 1)
        to_b = np.stack([along_b[ok] * lb, (1 - along_b[ok]) * lb], 1)
        ends_a, ends_b = self.edges[ea], self.edges[eb]
        best = np.full(len(ea), np.inf)
        for i in range(2):
            for j in range(2):
                best = np.minimum(best, to_a[:, i] + lengths[ends_a[:, i], ends_b[:, j]] + to_b[:, j])
        same = ea == eb
        best[same] = np.minimum(best[same], np.abs(along_a[ok][same] - along_b[ok][same]) * la[same])
        out[ok] = best
        return out


__all__ = ["MazeGraph", "adjacency", "bfs", "shortest_path", "walk_back"]
