"""``maze/trapfield``: an open grid strewn with traps; walk to the goal without stepping on one.

VR-Bench's "trapfield": no internal walls (only a one-block border), trap cells drawn as
X-marked squares in a hazard colour, an agent and a goal. The spec lists the trap cells as
``hazards`` (maze-family contract), so the shared referee fails any video that enters one.

Difficulties: ``easy`` / ``medium`` / ``hard`` are 6x6, 8x8 and 10x10 cells with rising
trap density; ``"NxM"`` asks for N x M cells directly (3 to 40). Traps always matter: at
least one trap lies on a trap-free shortest path, and for ``medium`` / ``hard`` every
trap-free shortest path is cut, so the optimal route needs a detour of at least 2 / 4
moves beyond the Manhattan distance. The stored solution is *an* optimal trap-avoiding
path (BFS); ``solution["num_shortest_paths"]`` says how many optimal paths exist, and
``check_solution`` accepts any legal path.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

import cv2
import numpy as np

from gen_reason.errors import UserError
from gen_reason.puzzles.instance import Instance
from gen_reason.puzzles.maze import blockgrid as bg
from gen_reason.puzzles.maze.graph import search
from gen_reason.puzzles.maze.grid import GridMaze, parse_size, size_of
from gen_reason.puzzles.skins import RGB, Skin, color_name, get_skin
from gen_reason.puzzles.task import TaskConfig, check_range

NAMED_SIZES = {"easy": (6, 6), "medium": (8, 8), "hard": (10, 10)}
# (trap density over free cells, minimum detour in moves beyond the Manhattan distance)
NAMED_TRAPS = {"easy": (0.12, 0), "medium": (0.18, 2), "hard": (0.24, 4)}
DEFAULT_TRAPS = NAMED_TRAPS["medium"]  # for "NxM" sizes
MAX_ATTEMPTS = 200

PROMPT = (
    "A top-down grid. The {agent} {icon} is the agent and the {goal} {goal_icon} is the goal. "
    "The {trap} squares marked with an X are traps. Move the agent one square at a time (up, down, "
    "left or right) until it reaches the goal, never stepping onto a trap. The grid and the camera "
    "stay fixed; only the agent moves."
)

# Hazard colours to try, in order, when the skin's accent is too close to a colour already
# in the scene (e.g. the dark skin's yellow agent): traps must never read as agent or goal.
_HAZARD_FALLBACKS: tuple[RGB, ...] = ((150, 50, 170), (240, 140, 40), (40, 80, 220), (120, 80, 40), (0, 200, 230))
_MIN_COLOR_DISTANCE = 100.0


@dataclass(frozen=True)
class TrapFieldConfig(TaskConfig):
    """How trap fields look and how many traps they hold."""

    cell_px: int = 32  # cell (and border block) size in pixels
    margin: int = 0
    trap_density: float | None = None  # share of free cells that are traps; None: the difficulty's
    min_detour: int | None = None  # forced extra moves beyond the Manhattan distance; None: the difficulty's
    trail: bool = False  # paint visited cells, so the path stays visible

    def validate(self) -> None:
        """Check every field; raise UserError naming the first bad one."""
        super().validate()
        check_range("cell_px", self.cell_px, 2, 512)
        check_range("margin", self.margin, 0, 512)
        if self.trap_density is not None:
            check_range("trap_density", self.trap_density, 0.0, 0.5)
        if self.min_detour is not None:
            if not isinstance(self.min_detour, int) or isinstance(self.min_detour, bool):
                raise UserError(f"min_detour must be an integer; got {self.min_detour!r}")
            check_range("min_detour", self.min_detour, 0, 20)
            if self.min_detour % 2:
                # On a grid every detour has even length (parity), so an odd one cannot be met exactly.
                raise UserError(f"min_detour must be even (grid detours come in pairs of moves); got {self.min_detour}")
        if not isinstance(self.trail, bool):
            raise UserError(f"trail must be true or false; got {self.trail!r}")


def hazard_color(skin: Skin) -> RGB:
    """The trap colour: the skin's accent unless it is too close to a colour already in the scene."""
    scene = [skin.agent, skin.goal, skin.floor, skin.wall, skin.background, skin.trail]
    for candidate in (skin.accent, *_HAZARD_FALLBACKS):
        if min(float(np.linalg.norm(np.subtract(candidate, c, dtype=float))) for c in scene) >= _MIN_COLOR_DISTANCE:
            return tuple(candidate)
    return tuple(skin.accent)


def _distances(grid: np.ndarray, source: tuple[int, int], blocked) -> dict[tuple[int, int], int]:
    """BFS move counts from ``source`` to every reachable open, unblocked cell."""
    return search([source], lambda cell: bg.open_neighbours(grid, cell, blocked))[1]


def _path_counts(dist: dict, cells_in_order) -> dict:
    """Number of shortest paths from the BFS source to each cell (cells in BFS order)."""
    counts = {}
    for cell in cells_in_order:
        d = dist[cell]
        if d == 0:
            counts[cell] = 1
            continue
        r, c = cell
        counts[cell] = sum(counts[n] for n in ((r + dr, c + dc) for dr, dc in bg.MOVES.values())
                           if dist.get(n) == d - 1)
    return counts


def shortest_path_load(grid: np.ndarray, start, goal, blocked) -> tuple[int, int, dict]:
    """``(distance, number of shortest paths, {cell: share of shortest paths through it})``.

    Returns distance -1 when ``goal`` is unreachable.
    """
    from_start = _distances(grid, start, blocked)
    if goal not in from_start:
        return -1, 0, {}
    from_goal = _distances(grid, goal, blocked)
    length = from_start[goal]
    on_path = [c for c in from_start if c in from_goal and from_start[c] + from_goal[c] == length]
    by_start = _path_counts(from_start, sorted(on_path, key=lambda c: from_start[c]))
    by_goal = _path_counts(from_goal, sorted(on_path, key=lambda c: from_goal[c]))
    total = by_start[goal]
    return length, total, {c: by_start[c] * by_goal[c] / total for c in on_path}


def place_traps(grid: np.ndarray, start, goal, rng: random.Random, density: float,
                min_detour: int) -> set[tuple[int, int]] | None:
    """Traps that keep the goal reachable, cut every path shorter than Manhattan + ``min_detour``,
    and sit on at least one trap-free shortest path; ``None`` if this layout cannot get there."""
    free = [tuple(map(int, rc)) for rc in np.argwhere(grid == bg.OPEN) if tuple(rc) not in (start, goal)]
    manhattan = abs(start[0] - goal[0]) + abs(start[1] - goal[1])
    traps: set[tuple[int, int]] = set()
    # Scattered traps first: the look of the puzzle.
    for cell in rng.sample(free, len(free)):
        if len(traps) >= round(density * len(free)):
            break
        if _reachable(grid, start, goal, traps | {cell}):
            traps.add(cell)
    # Then cut the remaining shortest paths until the detour is forced: pick cells that many
    # shortest paths share (a bottleneck), never right next to start or goal, which would be a
    # trivial wall around them.
    near_ends = {(r + dr, c + dc) for r, c in (start, goal) for dr, dc in bg.MOVES.values()}
    budget = max(4, len(free) // 6)
    while True:
        length, _, load = shortest_path_load(grid, start, goal, traps)
        touches_free_path = any(_in_box(t, start, goal) for t in traps)
        if length - manhattan >= min_detour and touches_free_path:
            return traps
        if budget == 0:
            return None
        options = {c: share for c, share in sorted(load.items()) if c not in (start, goal) and c not in near_ends}
        while options:
            cell = rng.choices(list(options), weights=list(options.values()))[0]
            if _reachable(grid, start, goal, traps | {cell}):
                traps.add(cell)
                break
            del options[cell]
        else:
            return None
        budget -= 1


def _reachable(grid: np.ndarray, start, goal, blocked) -> bool:
    """Whether ``goal`` can be reached from ``start`` avoiding ``blocked`` cells."""
    return goal in _distances(grid, start, blocked)


def _in_box(cell, a, b) -> bool:
    """Whether ``cell`` is inside the rectangle spanned by ``a`` and ``b`` (on some trap-free shortest path)."""
    return min(a[0], b[0]) <= cell[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= cell[1] <= max(a[1], b[1])


class TrapField(GridMaze):
    """Open grids with traps; the agent must reach the goal without entering a trap."""

    name = "maze/trapfield-v1"
    Config = TrapFieldConfig
    difficulties = tuple(NAMED_SIZES)

    def parse_difficulty(self, difficulty: str) -> str:
        """``easy``/``medium``/``hard`` or ``"NxM"`` cells (3 to 40)."""
        return parse_size(self.name, difficulty, NAMED_SIZES, low=3, high=40)

    @property
    def rooms_only(self) -> bool:
        """Every open block is a node (there are no thin walls)."""
        return False

    def geometry(self, shape: tuple[int, int]) -> bg.BlockGeometry:
        """Square blocks: cells and the border block have the same size."""
        return bg.BlockGeometry(shape, self.config.cell_px, self.config.cell_px, self.config.margin)

    def trap_settings(self, difficulty: str) -> tuple[float, int]:
        """``(trap density, minimum detour)`` for a difficulty, config overrides applied."""
        density, detour = NAMED_TRAPS.get(difficulty, DEFAULT_TRAPS)
        if self.config.trap_density is not None:
            density = self.config.trap_density
        if self.config.min_detour is not None:
            detour = self.config.min_detour
        return density, detour

    def _generate(self, rng: random.Random, difficulty: str, seed: int) -> Instance:
        rows, cols = size_of(difficulty, NAMED_SIZES)
        density, min_detour = self.trap_settings(difficulty)
        grid = np.zeros((rows + 2, cols + 2), np.uint8)
        grid[0, :] = grid[-1, :] = grid[:, 0] = grid[:, -1] = bg.WALL
        cells = [(r, c) for r in range(1, rows + 1) for c in range(1, cols + 1)]
        for _ in range(MAX_ATTEMPTS):
            start = rng.choice(cells)
            # The goal is far from the start: in the outer fifth of its reach, and at least
            # 60% of the grid's diameter away (a central start is re-drawn when it cannot be).
            reach = max(abs(start[0] - r) + abs(start[1] - c) for r, c in cells)
            least = max(0.8 * reach, 0.6 * (rows + cols - 2))
            far = [(r, c) for r, c in cells if abs(start[0] - r) + abs(start[1] - c) >= least]
            if not far:
                continue
            goal = rng.choice(far)
            traps = place_traps(grid, start, goal, rng, density, min_detour)
            if traps is not None:
                return self._build_with_traps(grid, start, goal, traps, seed, difficulty)
        raise UserError(
            f"could not place traps for {self.name} at {difficulty} with trap_density {density} and "
            f"min_detour {min_detour} in {MAX_ATTEMPTS} tries; lower min_detour or use a larger grid"
        )

    def _build_with_traps(self, grid, start, goal, traps, seed: int, difficulty: str) -> Instance:
        """GridMaze's build with the traps as hazards, in the layout and in the colours."""
        index = {cell: i for i, cell in enumerate(bg.open_cells(grid, rooms_only=False))}
        skin = get_skin(self.config.skin, self.config.agent_icon)
        trap_cells = sorted(traps)
        extra = {
            "layout": {"grid": ["".join(str(int(v)) for v in row) for row in grid], "start": list(start),
                       "goal": list(goal), "traps": [list(c) for c in trap_cells]},
            "hazards": sorted(index[c] for c in trap_cells),
            "colors": {"wall": list(skin.wall), "floor": list(skin.floor), "goal": list(skin.goal),
                       "background": list(skin.background), "trail": list(skin.trail),
                       "trap": list(hazard_color(skin))},
        }
        instance = self.build(grid, start, goal, seed, difficulty, extra_spec=extra, blocked=frozenset(traps))
        _, count, _ = shortest_path_load(grid, start, goal, traps)
        return dataclasses.replace(instance, solution={**instance.solution, "num_shortest_paths": count})

    def prompt(self, skin: Skin) -> str:
        """The task prompt in this skin's colour words."""
        return PROMPT.format(agent=color_name(skin.agent), icon=skin.agent_icon, goal=color_name(skin.goal),
                             goal_icon=skin.goal_icon, trap=color_name(hazard_color(skin)))

    # rendering --------------------------------------------------------------------
    def _traps(self, spec: dict) -> frozenset:
        """The trap cells of a spec, as ``(row, col)`` tuples."""
        return frozenset(tuple(c) for c in spec["layout"]["traps"])

    def block_path(self, instance: Instance) -> list[tuple[int, int]]:
        """The solution as a block path: the same trap-avoiding BFS path the spec was built from."""
        grid = self._grid(instance.spec)
        return bg.shortest_path(grid, tuple(instance.spec["layout"]["start"]), tuple(instance.spec["layout"]["goal"]),
                                self._traps(instance.spec))

    def scene(self, spec: dict):
        """Floor, border and traps (all static): ``(geometry, skin, image)``."""
        geom, skin, img = super().scene(spec)
        img = img.copy()
        color = tuple(spec["colors"]["trap"])
        for cell in sorted(self._traps(spec)):
            draw_trap(img, geom.box(cell), color)
        return geom, skin, img


def draw_trap(img: np.ndarray, box: list[int], color: RGB) -> None:
    """A trap: a filled square in ``color`` with an X in black or white (whichever contrasts)."""
    x0, y0, x1, y1 = box
    size = x1 - x0
    inset = size // 10 if size >= 8 else 0
    img[y0 + inset: y1 - inset, x0 + inset: x1 - inset] = color
    if size < 6:
        return  # too small for a readable X; the colour alone marks it
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    mark = (0, 0, 0) if luminance > 110 else (255, 255, 255)
    pad = inset + max(2, size // 5)
    thickness = max(1, size // 10)
    cv2.line(img, (x0 + pad, y0 + pad), (x1 - 1 - pad, y1 - 1 - pad), mark, thickness, cv2.LINE_AA)
    cv2.line(img, (x1 - 1 - pad, y0 + pad), (x0 + pad, y1 - 1 - pad), mark, thickness, cv2.LINE_AA)
