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
- ``maze3d`` (isometric cubes and ladders) is not supported: its pixel projection is
  not in the state file; :func:`load_level` raises :class:`UserError` saying so.

Colours and the agent's size are measured on the first frame (the state does not hold
them): VR-Bench skins are textures, so the agent colour is the median colour at its
centre.
"""

from __future__ import annotations

import json
import math
from collections import deque
from pathlib import Path

import numpy as np

from gen_reason.errors import UserError
from gen_reason.puzzles.instance import Instance

SUPPORTED = ("maze", "trapfield", "sokoban", "pathfinder")
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
                        f"(supported: {', '.join(SUPPORTED)}); maze3d needs its isometric projection")
    render = state["render"]
    size = [int(render["image_height"]), int(render["image_width"])]
    if list(first_frame.shape[:2]) != size:
        raise UserError(f"first frame is {first_frame.shape[1]}x{first_frame.shape[0]} but the state says "
                        f"{size[1]}x{size[0]}")
    if game == "pathfinder":
        spec, solution = _pathfinder(state)
    else:
        spec, solution = _grid_game(state, game)
    spec["image_size"] = size
    spec["family"] = "maze"
    ents = state["entities"]
    spec["goal_box"] = _bbox(ents["goal"]["bbox"])
    px = ents["player"]["pixel_pos"]
    agent_colour = _median_colour(first_frame, px["x"], px["y"], 0.12 * ents["player"]["bbox"]["width"])
    spec["agent"] = {"color": agent_colour, "icon": "vrbench",
                     "size_px": _blob_size(first_frame, ents["player"]["bbox"], agent_colour)}
    gx, gy = ents["goal"]["pixel_pos"]["x"], ents["goal"]["pixel_pos"]["y"]
    spec["colors"] = {"goal": _median_colour(first_frame, gx, gy, 0.12 * ents["goal"]["bbox"]["width"])}
    if game == "sokoban":
        b = ents["boxes"][0]
        box_colour = _median_colour(first_frame, b["pixel_pos"]["x"], b["pixel_pos"]["y"], 0.12 * b["bbox"]["width"])
        spec["box"]["color"] = box_colour
        spec["box"]["size_px"] = _blob_size(first_frame, b["bbox"], box_colour)
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


def _bfs_path(free: set, start, goal, order, blocked=frozenset()) -> list | None:
    """BFS with VR-Bench's conventions: neighbours in ``order``, visited when enqueued."""
    if start == goal:
        return [start]
    prev = {start: None}
    queue = deque([start])
    while queue:
        r, c = queue.popleft()
        for dr, dc in order:
            n = (r + dr, c + dc)
            if n in free and n not in prev and n not in blocked:
                prev[n] = (r, c)
                if n == goal:
                    path = [n]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return path[::-1]
                queue.append(n)
    return None


def _sokoban_solution(walls: set, shape, player, box, target) -> tuple[list, list]:
    """VR-Bench's sokoban search: BFS over pushes (fewest pushes), the player walking to
    each push position by BFS; returns per-step agent cells and box cells."""
    h, w = shape
    free = {(r, c) for r in range(h) for c in range(w)} - walls
    queue = deque([(box, player, [player], [box])])
    seen = {(box, player)}
    while queue:
        box, player, agent_cells, box_cells = queue.popleft()
        if box == target:
            return agent_cells, box_cells
        for dr, dc in _RDLU:
            new_box = (box[0] + dr, box[1] + dc)
            push_from = (box[0] - dr, box[1] - dc)
            if new_box not in free or push_from not in free:
                continue
            walk = _bfs_path(free, player, push_from, _RDLU, blocked={box})
            if not walk or (new_box, box) in seen:
                continue
            seen.add((new_box, box))
            queue.append((new_box, box, agent_cells + walk[1:] + [box],
                          box_cells + [box] * (len(walk) - 1) + [new_box]))
    raise UserError("VR-Bench sokoban level has no solution")


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


def _blob_size(img: np.ndarray, bbox: dict, colour: list[int], tolerance: float = 60.0) -> float:
    """Diameter of a disk with the area of the ``colour`` pixels inside ``bbox``."""
    x0, y0, x1, y1 = _bbox(bbox)
    patch = img[max(0, y0):y1, max(0, x0):x1].astype(float)
    area = float((np.linalg.norm(patch - colour, axis=-1) < tolerance).sum())
    return max(2.0, 2.0 * math.sqrt(area / math.pi))
