"""VR-Bench's maze3d levels as maze-family specs (see :mod:`.vrbench` for the other games).

Maze3d levels are cubes and ladders drawn by matplotlib's 3D axes; :func:`project_maze3d`
recomputes VR-Bench's fixed camera (elevation 20, azimuth 45, perspective) from
``metadata.grid_size`` and the image size, and the state's own player and goal pixel
positions pick the matplotlib convention (``spec["camera"]``; 3.9 changed the box
scale) and refuse a state drawn otherwise. A node is the player ball's pixel centre
(0.35 above the top face) over every cube with nothing on it, and at every whole height
along a ladder (VR-Bench's ball rises straight up from the ladder's base cube to the
cube ``height`` above it); edges join cube tops side by side on one level, and ladder
rungs. ``step_px`` is the median walking step on screen (a rung is 1.2 to 1.3 times it,
well within the rules' snap and teleport tolerances). Places the picture cannot tell apart (closer
than 0.3 step on screen, e.g. a rung in front of a cube top one level up and two cubes
back) share one node, and a move whose line on screen passes over another node goes
through it, so an honest video is never read as a jump; the price is that a video
which leaves such a place by the other place's moves is not caught. ``nodes_3d`` lists
the 3D places of each node; ``goal_face_px`` is the goal cube's top, where the goal
colour is measured. The solution is ``metadata.path`` (walks of two cubes, ladders of
three), one node per cube.
"""

from __future__ import annotations

import math

import numpy as np

from gen_reason.errors import UserError
from gen_reason.puzzles.maze.graph import adjacency, shortest_path

# VR-Bench's maze3d camera (its games/maze3d/main.py): one matplotlib 3D axes filling an
# 8 x 8 inch figure, view_init(elev=20, azim=45), matplotlib's default perspective (focal
# length 1, camera distance 10), box aspect grid_size / max(grid_size), limits 0..grid_size,
# saved with bbox_inches="tight" and pad_inches=-0.3: with the axes switched off the tight
# box is the axes box, so the image is the figure less 0.3 inch on every side.
_M3D_ELEV_DEG, _M3D_AZIM_DEG = 20.0, 45.0
_M3D_DIST = 10.0
_M3D_BOX_NORM = 1.8294640721620434  # length matplotlib gives the box-aspect vector
_M3D_VIEW = (-0.95 / _M3D_DIST, 0.9 / _M3D_DIST)  # the 2D view limits of matplotlib's 3D axes
_M3D_FIGURE_IN, _M3D_CROP_IN = 8.0, 0.3
_M3D_BALL = (0.5, 0.5, 1.35)  # the player ball's centre from its cube's corner (the top is at +1)
#: The scene's size in matplotlib's box: 3.9 made the box 25/24 larger (to make up for
#: margins it stopped adding to the drawn axes); 3.6 to 3.8 draw it at the plain size.
#: Both checked against markers drawn as VR-Bench draws them by matplotlib 3.11.2 and
#: 3.8.4: within 0.5 px anywhere in the box.
MAZE3D_DATA_SCALES = {"matplotlib>=3.9": 25 / 24, "matplotlib<3.9": 1.0}
_M3D_SAME_PLACE = 0.3  # steps: places closer than this on screen are one node (the rules' snap radius)


def project_maze3d(points, grid_size, image_size, data_scale: float = 25 / 24) -> np.ndarray:
    """Pixel ``(x, y)`` (pixel centres at integers) in a VR-Bench maze3d image of 3D points
    ``(n, 3)`` in grid units (cube ``(x, y, z)`` spans ``[x, x + 1]`` etc.).

    ``grid_size`` is the state's ``metadata.grid_size``, ``image_size`` its ``(H, W)``;
    ``data_scale`` is one of :data:`MAZE3D_DATA_SCALES` (the matplotlib that drew it).
    """
    pts = np.asarray(points, float).reshape(-1, 3)
    grid = np.asarray(grid_size, float)
    height, width = image_size
    if height != width:
        raise UserError(f"a VR-Bench maze3d image is square; this one is {width}x{height}")
    dpi = width / (_M3D_FIGURE_IN - 2 * _M3D_CROP_IN)
    figure_px, crop_px = _M3D_FIGURE_IN * dpi, _M3D_CROP_IN * dpi
    aspect = grid / grid.max()
    aspect = aspect * _M3D_BOX_NORM / np.linalg.norm(aspect)
    # Relative to the box centre, where matplotlib's camera looks.
    rel = (pts / grid - 0.5) * aspect * data_scale
    elev, azim = np.deg2rad(_M3D_ELEV_DEG), np.deg2rad(_M3D_AZIM_DEG)
    back = np.array([math.cos(elev) * math.cos(azim), math.cos(elev) * math.sin(azim), math.sin(elev)])
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    from_eye = rel - _M3D_DIST * back
    depth = -(from_eye @ back)
    lo, hi = _M3D_VIEW
    x_view = (from_eye @ right) / depth
    y_view = (from_eye @ up) / depth
    x_px = (x_view - lo) / (hi - lo) * figure_px - crop_px - 0.5
    y_px = (figure_px - crop_px) - (y_view - lo) / (hi - lo) * figure_px - 0.5
    return np.stack([x_px, y_px], axis=1)


def maze3d_spec(state: dict) -> tuple[dict, dict]:
    """``(spec, solution)`` of a maze3d state (see the module docstring)."""
    meta = state.get("metadata") or {}
    if not all(k in meta for k in ("grid_size", "cubes", "start_pos", "goal_pos")):
        raise UserError("VR-Bench maze3d state lacks metadata.grid_size/cubes/start_pos/goal_pos")
    render = state["render"]
    image_size = (int(render["image_height"]), int(render["image_width"]))
    grid = [int(v) for v in meta["grid_size"]]
    cubes = {tuple(int(v) for v in c) for c in meta["cubes"]}
    start, goal = tuple(int(v) for v in meta["start_pos"]), tuple(int(v) for v in meta["goal_pos"])
    places, where, walks, climbs, ladders = _places(meta, cubes, start, goal)
    camera = _camera(state, grid, image_size, start, goal)
    xy = project_maze3d(np.asarray(places, float) + _M3D_BALL, grid, image_size, MAZE3D_DATA_SCALES[camera])
    goal_face = project_maze3d([np.add(goal, (0.5, 0.5, 1.0))], grid, image_size, MAZE3D_DATA_SCALES[camera])[0]
    lengths = [math.dist(xy[a], xy[b]) for a, b in walks] or [math.dist(xy[a], xy[b]) for a, b in climbs]
    step = float(np.median(lengths)) if lengths else float(render["cell_size"])
    node_of, nodes = _merge_close(xy, _M3D_SAME_PLACE * step)
    moves = {tuple(sorted((node_of[a], node_of[b]))) for a, b in walks + climbs if node_of[a] != node_of[b]}
    edges, chains = _split_at_passed_nodes(nodes, sorted(moves), _M3D_SAME_PLACE * step)
    members: list[list] = [[] for _ in nodes]
    for i, p in enumerate(places):
        members[node_of[i]].append(list(p))
    spec = {"layout": {"game": "maze3d", "grid_size": grid, "cubes": sorted(map(list, cubes)), "ladders": ladders,
                       "start": list(start), "goal": list(goal)},
            "nodes": nodes.tolist(), "edges": edges, "start": node_of[where[start]], "goal": node_of[where[goal]],
            "step_px": step, "hazards": [], "trail": False, "nodes_3d": members, "camera": camera,
            "goal_face_px": [float(v) for v in goal_face]}
    route = _maze3d_route(meta.get("path") or [], start, goal, where, {tuple(sorted(m)) for m in walks + climbs})
    return spec, {"path": _solution_path(spec, route, node_of, chains)}


def _places(meta: dict, cubes: set, start: tuple, goal: tuple) -> tuple[list, dict, list, list, list]:
    """Where the ball can be (over a cube with nothing on it, or on a ladder): the places,
    their indices, the walks and ladder climbs between them (index pairs) and the ladders
    ``[x, y, z, height]``."""
    places = sorted(c for c in cubes if (c[0], c[1], c[2] + 1) not in cubes)
    where = {p: i for i, p in enumerate(places)}
    for end in (start, goal):
        if end not in where:
            raise UserError(f"VR-Bench maze3d start/goal {list(end)} is not the top of a cube")
    walks = [(where[(x, y, z)], where[n]) for x, y, z in places for n in ((x + 1, y, z), (x, y + 1, z))
             if n in where]
    climbs = []
    ladders = []
    for ladder in meta.get("ladders", []):
        (x, y, z), h = (int(v) for v in ladder["base_pos"]), int(ladder["height"])
        rungs = [(x, y, z + k) for k in range(h + 1)]
        if rungs[0] not in where or rungs[-1] not in where:
            raise UserError(f"VR-Bench maze3d ladder at {[x, y, z]} (height {h}) does not join two cube tops")
        for p in rungs[1:-1]:
            if p not in where:
                where[p] = len(places)
                places.append(p)
        climbs += [(where[a], where[b]) for a, b in zip(rungs, rungs[1:])]
        ladders.append([x, y, z, h])
    return places, where, walks, climbs, ladders


def _camera(state: dict, grid: list[int], image_size: tuple[int, int], start: tuple, goal: tuple) -> str:
    """Which matplotlib drew the level (a key of :data:`MAZE3D_DATA_SCALES`): the one that
    puts the ball over the start and the goal where the state's pixel positions say."""
    ents = state["entities"]
    seen = np.array([[ents[k]["pixel_pos"]["x"], ents[k]["pixel_pos"]["y"]] for k in ("player", "goal")], float)
    ends = np.asarray([start, goal], float) + _M3D_BALL
    errors = {name: float(np.abs(project_maze3d(ends, grid, image_size, s) - seen).max())
              for name, s in MAZE3D_DATA_SCALES.items()}
    camera = min(errors, key=errors.get)
    if errors[camera] > max(3.0, 0.1 * float(state["render"]["cell_size"])):
        raise UserError(f"VR-Bench maze3d state: the player and goal pixel positions are {errors[camera]:.0f} px "
                        "from VR-Bench's camera (matplotlib elev 20, azim 45); not drawn by its maze3d renderer?")
    return camera


def _solution_path(spec: dict, route: list[int] | None, node_of: list[int], chains: dict) -> list[int]:
    """The solution's node path: ``route`` (one place per cube, from ``metadata.path``)
    through the nodes its moves pass, or a shortest path when the state has none."""
    if route is None:
        path = shortest_path(adjacency(len(spec["nodes"]), spec["edges"]), spec["start"], spec["goal"])
        if path is None:
            raise UserError("VR-Bench maze3d level has no path from start to goal")
        return path
    path = [node_of[route[0]]]
    for a, b in zip(route, route[1:]):
        a, b = node_of[a], node_of[b]
        if a != b:
            path += chains[(a, b)][1:]
    return path


def _merge_close(xy: np.ndarray, radius: float) -> tuple[list[int], np.ndarray]:
    """Group points closer than ``radius`` (transitively); ``(group of each point, group centres)``."""
    parent = list(range(len(xy)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    close = np.linalg.norm(xy[:, None] - xy[None], axis=2) < radius
    for i, j in zip(*np.nonzero(np.triu(close, 1))):
        parent[root(int(i))] = root(int(j))
    roots = sorted({root(i) for i in range(len(xy))})
    number = {r: k for k, r in enumerate(roots)}
    group = [number[root(i)] for i in range(len(xy))]
    centres = np.array([xy[[i for i in range(len(xy)) if group[i] == k]].mean(0) for k in range(len(roots))])
    return group, centres.reshape(-1, 2)


def _split_at_passed_nodes(nodes: np.ndarray, moves: list, radius: float) -> tuple[list, dict]:
    """Edges once every move whose screen segment passes within ``radius`` of another node is
    cut there (an honest video passes over that node); ``chains[(a, b)]``: the nodes from a to b."""
    edges, chains = set(), {}
    for a, b in moves:
        p, q = nodes[a], nodes[b]
        d = q - p
        t = (nodes - p) @ d / max(float(d @ d), 1e-9)
        off = np.linalg.norm(p + np.clip(t, 0, 1)[:, None] * d - nodes, axis=1)
        passed = [int(c) for c in np.argsort(t) if c not in (a, b) and 0 < t[c] < 1 and off[c] < radius]
        chain = [a, *passed, b]
        edges.update(tuple(sorted(e)) for e in zip(chain, chain[1:]))
        chains[(a, b)], chains[(b, a)] = chain, chain[::-1]
    return [list(e) for e in sorted(edges)], chains


def _maze3d_route(segments: list, start, goal, where: dict, moves: set) -> list[int] | None:
    """``metadata.path`` (walks of two cubes, ladders of three) as one place per cube, or
    ``None`` when there is none. A step that is not a move is a :class:`UserError`."""
    if not segments:
        return None
    route = [tuple(int(v) for v in segments[0]["start"])]
    for seg in segments:
        a, b = np.asarray(seg["start"], int), np.asarray(seg["end"], int)
        if tuple(a) != route[-1] or np.count_nonzero(b - a) != 1:
            raise UserError(f"VR-Bench maze3d path segment {seg} does not continue the path along one axis")
        n = int(np.abs(b - a).max())
        route += [tuple(int(v) for v in a + (b - a) * k // n) for k in range(1, n + 1)]
    if route[0] != start or route[-1] != goal:
        raise UserError("VR-Bench maze3d path does not run from start_pos to goal_pos")
    for p, q in zip(route, route[1:]):
        if p not in where or q not in where or tuple(sorted((where[p], where[q]))) not in moves:
            raise UserError(f"VR-Bench maze3d path steps from {list(p)} to {list(q)}: not a walk or a ladder")
    return [where[p] for p in route]
