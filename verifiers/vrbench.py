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
- ``maze3d``: cubes and ladders drawn by matplotlib's 3D axes, seen through VR-Bench's
  fixed camera (:mod:`.vrbench_maze3d`).

How the player and the box look is measured on the first frame (the state does not hold
it), whatever the skin (:func:`_sprite`): VR-Bench skins are textured sprites, so the
tracked colour is one the sprite has and the rest of the picture (goal included) lacks;
a sprite with no such colour is followed by its picture instead (``"track": "sprite"``,
see :mod:`.sprite`). ``extent_px`` is the sprite's width.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from gen_reason.errors import UserError
from gen_reason.puzzles.instance import Instance
from gen_reason.puzzles.maze.graph import search_path
from gen_reason.verifiers.vrbench_maze3d import maze3d_spec

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
    try:
        spec, solution = spec_from_state(state, first)
    except KeyError as exc:  # a field the UnifiedState format has is missing
        raise UserError(f"VR-Bench state {state_path} lacks the field {exc}") from None
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
        spec, solution = maze3d_spec(state)
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
        """The (box, player) places one push leads to, in VR-Bench's order: the box one cell
        on, the player where it stood, when the player can walk behind it."""
        br, bc = place[0]
        return [((br + dr, bc + dc), (br, bc)) for dr, dc in _RDLU
                if (br + dr, bc + dc) in free and (br - dr, bc - dc) in free and walk(place, (dr, dc))]

    places = search_path([(box, player)], pushes, lambda place: place[0] == target)
    if places is None:
        raise UserError("VR-Bench sokoban level has no solution")
    agent_cells, box_cells = [player], [box]
    for before, (new_box, old_box) in zip(places, places[1:]):
        steps = walk(before, (new_box[0] - old_box[0], new_box[1] - old_box[1]))
        agent_cells += steps[1:] + [old_box]
        box_cells += [old_box] * (len(steps) - 1) + [new_box]
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
    sprite without such a colour is followed by its picture (``"track": "sprite"``, its
    colour the median round its centre, for the record). ``avoid``:
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
        taken = any(np.linalg.norm(c - np.asarray(a, float)) < 2 * tolerance for a in (avoid or []))
        if share < 0.04 or taken:
            continue
        near_in = np.linalg.norm(inner - c, axis=1) < tolerance
        near_out = float(np.mean(np.linalg.norm(rest - c, axis=1) < 1.5 * tolerance)) if len(rest) else 0.0
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
