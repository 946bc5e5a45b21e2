"""Read VR-Bench levels (UnifiedState v1.0 JSON) as maze-family instances our referee scores.

VR-Bench (FoundationAgents/VR-Bench) stores each level as ``states/<name>.json`` with the
first frame in ``images/<name>.png`` and its ground-truth video in ``videos/<name>.mp4``.
:func:`load_level` turns a state into an :class:`~gen_reason.puzzles.instance.Instance`
whose ``spec`` follows the maze-family contract (``gen_reason.puzzles.maze``) and whose
``solution`` is the path VR-Bench's own generator animates:

- ``maze``: grid cells (0 floor, 1 wall, 2 player, 3 goal); one node per open cell; the
  unique path (BFS).
- ``trapfield``: every cell is a node, ``1`` cells are ``hazards``; the path is the BFS
  VR-Bench's ``solve_trapfield`` finds (up, down, left, right order), which its videos
  show.
- ``sokoban``: open cells are nodes, ``spec["box"]`` holds the box; the solution is the
  one of VR-Bench's ``minPushBox`` search (fewest pushes, player walks by BFS in the
  order right, down, left, up).
- ``pathfinder``: roads are quadratic Bezier curves (``metadata.segments``); nodes are
  points every half road width along them (junctions shared), and the solution follows
  ``metadata.solution_path``.
- ``maze3d``: cubes and ladders drawn by matplotlib's 3D axes; :func:`project_maze3d`
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

How the player and the box look is measured on the first frame (the state does not hold
it), whatever the skin (:func:`_sprite`): VR-Bench skins are textured sprites, so the
tracked colour is one the sprite has and the rest of the picture (goal included) lacks;
a sprite with no such colour is followed by its picture instead (``"track": "sprite"``,
see :mod:`.track`). ``extent_px`` is the sprite's width.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from gen_reason.errors import UserError
from gen_reason.puzzles.instance import Instance
from gen_reason.puzzles.maze.graph import adjacency, search_path, shortest_path

SUPPORTED = ("maze", "trapfield", "sokoban", "pathfinder", "maze3d")
_UDLR = ((-1, 0), (1, 0), (0, -1), (0, 1))  # VR-Bench solve_trapfield's order
_RDLU = ((0, 1), (1, 0), (0, -1), (-1, 0))  # VR-Bench sokoban Solution's order


def load_level(state_path: str | Path, image_path: str | Path | None = None) -> Instance:
    """An :class:`Instance` (task ``vrbench/<game>``) for one VR-Bench level.

    ``image_path`` defaults to the level's ``images/<name>.png`` beside ``states/``.
    """
    from gen_reason.video import read_image

    state_path = Path(state_path)
    try:
        state = json.loads(state_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read VR-Bench state {state_path}: {exc}") from None
    if image_path is None:
        image_path = state_path.parent.parent / "images" / (state_path.stem + ".png")
    first = read_image(image_path)
    spec, solution = spec_from_state(state, first)
    difficulty = state_path.parent.parent.name
    return Instance(task=f"vrbench/{state['game_type']}", seed=0, difficulty=difficulty,
                    prompt="", first_frame=first, solution=solution, spec=spec,
                    config={"source": str(state_path)})


def spec_from_state(state: dict, first_frame: np.ndarray) -> tuple[dict, dict]:
    """``(spec, solution)`` for a UnifiedState dict and its first frame (RGB uint8)."""
    game = state.get("game_type")
    if game not in SUPPORTED:
        raise UserError(f"VR-Bench game {game!r} is not supported by the maze referee adapter "
                        f"(supported: {', '.join(SUPPORTED)})")
    render = state["render"]
    size = [int(render["image_height"]), int(render["image_width"])]
    if list(first_frame.shape[:2]) != size:
        raise UserError(f"first frame is {first_frame.shape[1]}x{first_frame.shape[0]} but the state says "
                        f"{size[1]}x{size[0]}")
    if game == "pathfinder":
        spec, solution = _pathfinder(state)
    elif game == "maze3d":
        spec, solution = _maze3d(state)
    else:
        spec, solution = _grid_game(state, game)
    spec["image_size"] = size
    spec["family"] = "maze"
    ents = state["entities"]
    spec["goal_box"] = _bbox(ents["goal"]["bbox"])
    spec["agent"] = _sprite(first_frame, ents["player"], goal=ents["goal"])
    gx, gy = ents["goal"]["pixel_pos"]["x"], ents["goal"]["pixel_pos"]["y"]
    if game == "maze3d":  # the ball's place over the goal is background: measure the goal cube's top
        gx, gy = spec["goal_face_px"]
    spec["colors"] = {"goal": _median_colour(first_frame, gx, gy, 0.12 * ents["goal"]["bbox"]["width"])}
    if game == "sokoban":
        box = _sprite(first_frame, ents["boxes"][0], avoid=[spec["agent"]["color"]], goal=ents["goal"])
        spec["box"].update({k: v for k, v in box.items() if k != "icon"})
    return spec, solution


# ----------------------------------------------------------------------------- grid games
def _grid_game(state: dict, game: str) -> tuple[dict, dict]:
    grid = np.asarray(state["grid"]["data"], int)
    cs = float(state["render"]["cell_size"])
    h, w = grid.shape
    ents = state["entities"]
    start = _cell(ents["player"]["grid_pos"])
    goal = _cell(ents["goal"]["grid_pos"])
    if game == "trapfield":
        open_cells = [(r, c) for r in range(h) for c in range(w)]
        hazards = {(r, c) for r in range(h) for c in range(w) if grid[r, c] == 1}
    else:
        open_cells = [(r, c) for r in range(h) for c in range(w) if grid[r, c] != 1]
        hazards = set()
    index = {cell: i for i, cell in enumerate(open_cells)}
    nodes = [[(c + 0.5) * cs, (r + 0.5) * cs] for r, c in open_cells]
    edges = [[index[(r, c)], index[(r + dr, c + dc)]] for (r, c) in open_cells
             for dr, dc in ((0, 1), (1, 0)) if (r + dr, c + dc) in index]
    spec = {"layout": {"grid": grid.tolist(), "game": game}, "nodes": nodes, "edges": edges,
            "start": index[start], "goal": index[goal], "step_px": cs,
            "hazards": sorted(index[c] for c in hazards), "trail": False}
    if game == "sokoban":
        box = _cell(ents["boxes"][0]["grid_pos"])
        walls = {(r, c) for r in range(h) for c in range(w) if grid[r, c] == 1}
        agent_cells, box_cells = _sokoban_solution(walls, (h, w), start, box, goal)
        spec["box"] = {"start": index[box], "target": index[goal]}
        solution = {"path": [index[c] for c in agent_cells], "box_path": [index[c] for c in box_cells]}
    else:
        cells = _bfs_path(set(open_cells) - hazards, start, goal, _UDLR)
        if cells is None:
            raise UserError(f"VR-Bench {game} level has no path from start to goal")
        solution = {"path": [index[c] for c in cells]}
    return spec, solution


def _cell(pos: dict) -> tuple[int, int]:
    return int(pos["row"]), int(pos["col"])


def _steps(free: set, order, blocked=frozenset()):
    """The neighbours of a cell in VR-Bench's ``order`` of moves: free cells, not ``blocked``."""
    def neighbours(cell):
        r, c = cell
        return [n for dr, dc in order if (n := (r + dr, c + dc)) in free and n not in blocked]
    return neighbours


def _bfs_path(free: set, start, goal, order, blocked=frozenset()) -> list | None:
    """A fewest-moves path from ``start`` to ``goal`` as VR-Bench's BFS finds it (neighbours
    in ``order``, a cell visited when queued), or ``None``."""
    return search_path([start], _steps(free, order, blocked), lambda cell: cell == goal)


def _sokoban_solution(walls: set, shape, player, box, target) -> tuple[list, list]:
    """VR-Bench's sokoban search: BFS over pushes (fewest pushes), the player walking to
    each push position by BFS; returns per-step agent cells and box cells."""
    h, w = shape
    free = {(r, c) for r in range(h) for c in range(w)} - walls

    def walk(place, push) -> list | None:
        """The player's walk from ``place[1]`` to where it pushes the box of ``place[0]`` by ``push``."""
        (br, bc), (dr, dc) = place[0], push
        return _bfs_path(free, place[1], (br - dr, bc - dc), _RDLU, blocked={place[0]})

    def pushes(place):
        (br, bc), player = place
        return [((br + dr, bc + dc), (br, bc)) for dr, dc in _RDLU
                if (br + dr, bc + dc) in free and (br - dr, bc - dc) in free and walk(place, (dr, dc))]

    places = search_path([(box, player)], pushes, lambda place: place[0] == target)
    if places is None:
        raise UserError("VR-Bench sokoban level has no solution")
    agent_cells, box_cells = [player], [box]
    for before, (new_box, box) in zip(places, places[1:]):
        steps = walk(before, (new_box[0] - box[0], new_box[1] - box[1]))
        agent_cells += steps[1:] + [box]
        box_cells += [box] * (len(steps) - 1) + [new_box]
    return agent_cells, box_cells


# ----------------------------------------------------------------------------- pathfinder
def _bezier(control, n: int = 400) -> np.ndarray:
    control = np.asarray(control, float)
    k = len(control) - 1
    t = np.linspace(0.0, 1.0, n + 1)[:, None]
    coef = [math.comb(k, j) * t ** j * (1 - t) ** (k - j) for j in range(k + 1)]
    return sum(c * p for c, p in zip(coef, control))


def _pathfinder(state: dict) -> tuple[dict, dict]:
    meta = state["metadata"]
    road = float(meta.get("road_width", state["render"]["cell_size"]))
    spacing = road / 2
    nodes: list[list[float]] = []

    def junction(p) -> int:
        for i, q in enumerate(nodes):
            if math.dist(p, q) < 10:  # VR-Bench matches road ends within 10 px
                return i
        nodes.append([float(p[0]), float(p[1])])
        return len(nodes) - 1

    ends = [(junction(seg[0]), junction(seg[-1])) for seg in meta["segments"]]
    edges: list[list[int]] = []
    chains: dict[tuple[int, int], list[int]] = {}
    for seg, (a, b) in zip(meta["segments"], ends):
        curve = _bezier(seg)
        s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(curve, axis=0), axis=1))])
        n = max(1, int(round(s[-1] / spacing)))
        chain = [a]
        for k in range(1, n):
            x = float(np.interp(s[-1] * k / n, s, curve[:, 0]))
            y = float(np.interp(s[-1] * k / n, s, curve[:, 1]))
            nodes.append([x, y])
            chain.append(len(nodes) - 1)
        chain.append(b)
        edges += [[u, v] for u, v in zip(chain, chain[1:])]
        chains[(a, b)] = chain
        chains[(b, a)] = chain[::-1]
    waypoints = [junction(p) for p in meta["solution_path"]]
    path = [waypoints[0]]
    for a, b in zip(waypoints, waypoints[1:]):
        if (a, b) not in chains:
            raise UserError(f"VR-Bench pathfinder solution jumps between unconnected points {a} and {b}")
        path += chains[(a, b)][1:]
    start = junction(meta["start_point"])
    goal = junction(meta["end_point"])
    spec = {"layout": {"segments": meta["segments"], "game": "pathfinder"}, "nodes": nodes, "edges": edges,
            "start": start, "goal": goal, "step_px": spacing, "road_width_px": road, "hazards": [], "trail": False}
    return spec, {"path": path}


# ----------------------------------------------------------------------------- maze3d
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


def _maze3d(state: dict) -> tuple[dict, dict]:
    """``(spec, solution)`` of a maze3d state (see the module docstring)."""
    meta = state.get("metadata") or {}
    if not all(k in meta for k in ("grid_size", "cubes", "start_pos", "goal_pos")):
        raise UserError("VR-Bench maze3d state lacks metadata.grid_size/cubes/start_pos/goal_pos")
    render = state["render"]
    image_size = (int(render["image_height"]), int(render["image_width"]))
    grid = [int(v) for v in meta["grid_size"]]
    cubes = {tuple(int(v) for v in c) for c in meta["cubes"]}
    start, goal = tuple(int(v) for v in meta["start_pos"]), tuple(int(v) for v in meta["goal_pos"])
    # A place is where the ball can be: over a cube with nothing on it, or on a ladder.
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
    # Which matplotlib drew it: the one that puts the ball over the start and the goal.
    ball = np.asarray(places, float) + _M3D_BALL
    ents = state["entities"]
    seen = np.array([[ents[k]["pixel_pos"]["x"], ents[k]["pixel_pos"]["y"]] for k in ("player", "goal")], float)
    ends = np.asarray([start, goal], float) + _M3D_BALL
    errors = {name: float(np.abs(project_maze3d(ends, grid, image_size, s) - seen).max())
              for name, s in MAZE3D_DATA_SCALES.items()}
    camera = min(errors, key=errors.get)
    if errors[camera] > max(3.0, 0.1 * float(render["cell_size"])):
        raise UserError(f"VR-Bench maze3d state: the player and goal pixel positions are {errors[camera]:.0f} px "
                        "from VR-Bench's camera (matplotlib elev 20, azim 45); not drawn by its maze3d renderer?")
    xy = project_maze3d(ball, grid, image_size, MAZE3D_DATA_SCALES[camera])
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
    if route is None:
        path = shortest_path(adjacency(len(spec["nodes"]), edges), spec["start"], spec["goal"])
        if path is None:
            raise UserError("VR-Bench maze3d level has no path from start to goal")
    else:
        path = [node_of[route[0]]]
        for a, b in zip(route, route[1:]):
            a, b = node_of[a], node_of[b]
            if a != b:
                path += chains[(a, b)][1:]
    return spec, {"path": path}


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


# ----------------------------------------------------------------------------- measuring
def _bbox(b: dict) -> list[int]:
    return [int(b["x"]), int(b["y"]), int(b["x"] + b["width"]), int(b["y"] + b["height"])]


def _median_colour(img: np.ndarray, x: float, y: float, radius: float) -> list[int]:
    r = max(1, int(round(radius)))
    patch = img[max(0, int(y) - r): int(y) + r + 1, max(0, int(x) - r): int(x) + r + 1].reshape(-1, 3)
    return [int(v) for v in np.median(patch, axis=0)]


def _sprite(img: np.ndarray, entity: dict, avoid: list | None = None, goal: dict | None = None,
            tolerance: float = 40.0) -> dict:
    """How an entity (player, box) looks in the first frame, whatever its skin: the colour
    the tracker follows, the size of that colour's blob and the sprite's extent.

    VR-Bench skins are textures: a sprite of several colours, some of which the floor or
    walls share. The colours inside the entity's box are clustered (k-means), and the
    tracked colour is the cluster with the largest share of the sprite among those (almost)
    absent from the rest of the picture, so it marks the entity and nothing else; a
    sprite without such a colour falls back to the cluster rarest outside it. ``avoid``:
    colours already taken (the player's, for the box); ``goal``: the goal entity, where the
    entity ends up, whose picture must not share the colour either. ``size_px`` is the diameter of a
    disk with that colour's area in the box (what the tracker measures), ``extent_px``
    the sprite's width (the state's box): the scene check leaves that much around it.
    """
    import cv2

    x0, y0, x1, y1 = _bbox(entity["bbox"])
    h, w = img.shape[:2]
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    # The sprite's middle: a marker drawn under it (a start tile) shows round its edges.
    mx, my = (x1 - x0) // 5, (y1 - y0) // 5
    inner = img[y0 + my:y1 - my, x0 + mx:x1 - mx].reshape(-1, 3).astype(np.float32)
    outside = np.ones((h, w), bool)
    pad = max(2, (x1 - x0) // 8)
    outside[max(0, y0 - pad):y1 + pad, max(0, x0 - pad):x1 + pad] = False
    rest = img[outside][::3].astype(np.float32)
    goal_px = np.zeros((0, 3), np.float32)
    if goal is not None:
        gx0, gy0, gx1, gy1 = _bbox(goal["bbox"])
        goal_px = img[max(0, gy0):max(0, gy1), max(0, gx0):max(0, gx1)].reshape(-1, 3).astype(np.float32)
    k = min(6, max(1, len(inner) // 20))
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    cv2.setRNGSeed(0)
    _, labels, centres = cv2.kmeans(inner, k, None, criteria, 3, cv2.KMEANS_PP_CENTERS)
    best, best_key = None, None
    for j, c in enumerate(centres):
        share = float(np.mean(labels.ravel() == j))
        near_in = np.linalg.norm(inner - c, axis=1) < tolerance
        near_out = float(np.mean(np.linalg.norm(rest - c, axis=1) < 1.5 * tolerance)) if len(rest) else 0.0
        taken = any(np.linalg.norm(c - np.asarray(a, float)) < 2 * tolerance for a in (avoid or []))
        if share < 0.04 or taken:
            continue
        # Its own colour: rare outside (under 0.2 % of the picture) and a solid share of the sprite.
        on_goal = float(np.mean(np.linalg.norm(goal_px - c, axis=1) < tolerance)) if len(goal_px) else 0.0
        if near_out < 0.002 and on_goal < 0.02 and near_in.mean() >= 0.15 and (best_key is None or near_in.mean() > best_key):
            best, best_key = c, float(near_in.mean())
    extent = float(max(entity["bbox"]["width"], entity["bbox"]["height"]))
    if best is None:  # no colour of its own: the tracker follows the sprite's picture
        px = entity["pixel_pos"]
        colour = _median_colour(img, px["x"], px["y"], 0.12 * entity["bbox"]["width"])
        return {"color": colour, "icon": "vrbench", "size_px": 0.8 * extent, "extent_px": extent, "track": "sprite"}
    colour = [int(round(float(v))) for v in best]
    return {"color": colour, "icon": "vrbench", "size_px": _blob_size(img, entity["bbox"], colour, tolerance),
            "extent_px": extent}


def _blob_size(img: np.ndarray, bbox: dict, colour: list[int], tolerance: float = 60.0) -> float:
    """Diameter of a disk with the area of the ``colour`` pixels inside ``bbox``."""
    x0, y0, x1, y1 = _bbox(bbox)
    patch = img[max(0, y0):y1, max(0, x0):x1].astype(float)
    area = float((np.linalg.norm(patch - colour, axis=-1) < tolerance).sum())
    return max(2.0, 2.0 * math.sqrt(area / math.pi))
