"""``maze/irregular``: winding roads with junctions and dead ends; drive the agent to the goal.

VR-Bench's "pathfinder": curved roads on a plain background. The road graph is a jittered
lattice of junctions whose candidate roads (lattice sides plus some diagonals, which keeps
the graph planar) are bent into cubic Bezier curves; candidates that would touch another
road are straightened or dropped. A random spanning tree of the rest, plus a few extra
roads that close loops, is the map; the tree's leaves are the dead ends.

The spec follows the maze-family contract: ``nodes`` are the junctions (indices
``0..J-1``) followed by points sampled along every road about ``step_px`` apart, and
``edges`` join consecutive samples, so one move is a short hop that a referee can check
stays on the road. ``layout`` is the canonical road graph (junctions and control points,
rounded); every pixel and node is derived from it.

Difficulties: ``easy`` / ``medium`` / ``hard`` are 4x4, 5x5 and 6x6 junction lattices with
1, 2 and 3 loop roads and solutions of at least 3, 5 and 7 roads; ``"NxM"`` asks for an
N x M lattice directly (2 to 12). The start is a dead end and the goal the dead end
farthest from it. The stored solution is an optimal (fewest moves, BFS) node path.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import cv2
import numpy as np

from gen_reason.errors import UserError
from gen_reason.puzzles.instance import Instance
from gen_reason.puzzles.maze import blockgrid as bg
from gen_reason.puzzles.maze.graph import adjacency, bfs, walk_back
from gen_reason.puzzles.maze.grid import check_node_path, graph_distance, parse_size, size_of
from gen_reason.puzzles.maze.roads import (MARGIN, bend_roads, candidate_pairs, jittered_lattice, road_curves, road_nodes,
                                           spanning_roads)
from gen_reason.puzzles.skins import color_name, draw_icon, floor_texture, get_skin
from gen_reason.puzzles.task import Task, TaskConfig, check_range

NAMED_LATTICES = {"easy": (4, 4), "medium": (5, 5), "hard": (6, 6)}
NAMED_EXTRA_ROADS = {"easy": 1, "medium": 2, "hard": 3}
NAMED_MIN_ROADS = {"easy": 3, "medium": 5, "hard": 7}  # roads the solution must follow
MAX_ATTEMPTS = 40

PROMPT = (
    "A top-down map of winding {road} roads. The {agent} {icon} is the agent and the {goal} {goal_icon} is "
    "the goal. Move the agent along the roads until it reaches the goal, never leaving the road; some roads "
    "are dead ends. The map and the camera stay fixed; only the agent moves."
)


@dataclass(frozen=True)
class IrregularMazeConfig(TaskConfig):
    """How road maps look and are built."""

    spacing_px: int = 72  # mean distance between neighbouring junctions
    road_px: int | None = None  # road width; None: spacing_px // 5
    step_px: float | None = None  # distance between nodes along a road; None: twice the road width
    curviness: float = 0.18  # largest sideways bend of a road's control points, as a share of its length
    diagonals: float = 0.5  # chance that a lattice square gets a diagonal road candidate
    extra_roads: int | None = None  # roads added to the spanning tree to close loops; None: the difficulty's
    goal_placement: str = "farthest"  # "farthest" dead end from a random dead-end start, or "diameter"
    trail: bool = False  # paint the road driven so far

    def validate(self) -> None:
        """Check every field; raise UserError naming the first bad one."""
        super().validate()
        check_range("spacing_px", self.spacing_px, 16, 512)
        if self.road_px is not None:
            check_range("road_px", self.road_px, 1, 128)
            if self.road_px * 4 > self.spacing_px:
                raise UserError(f"road_px {self.road_px} is too wide for spacing_px {self.spacing_px}: "
                                "roads need spacing_px >= 4 * road_px to stay apart")
        if self.step_px is not None:
            check_range("step_px", self.step_px, 1, self.spacing_px / 2)
        check_range("curviness", self.curviness, 0.0, 0.4)
        check_range("diagonals", self.diagonals, 0.0, 1.0)
        if self.extra_roads is not None:
            if not isinstance(self.extra_roads, int) or isinstance(self.extra_roads, bool):
                raise UserError(f"extra_roads must be an integer; got {self.extra_roads!r}")
            check_range("extra_roads", self.extra_roads, 0, 100)
        if self.goal_placement not in ("farthest", "diameter"):
            raise UserError(f"goal_placement must be 'farthest' or 'diameter'; got {self.goal_placement!r}")
        if not isinstance(self.trail, bool):
            raise UserError(f"trail must be true or false; got {self.trail!r}")

    @property
    def road_width(self) -> int:
        """Road width in pixels."""
        return self.road_px if self.road_px is not None else max(2, self.spacing_px // 5)

    @property
    def node_step(self) -> float:
        """Target distance between consecutive nodes along a road."""
        # Twice the road width: a hop is about 1.5 agent widths, as one cell is in the grid maze,
        # and the referee's tolerances (a share of step_px) then match the road's edges.
        return float(self.step_px) if self.step_px is not None else 2.0 * self.road_width


class IrregularMaze(Task):
    """Curved road maps with junctions, loops and dead ends (VR-Bench "pathfinder")."""

    name = "maze/irregular-v1"
    verifier_family = "maze"
    Config = IrregularMazeConfig
    difficulties = tuple(NAMED_LATTICES)

    def parse_difficulty(self, difficulty: str) -> str:
        """``easy``/``medium``/``hard`` or ``"NxM"`` junctions (2 to 12)."""
        return parse_size(self.name, difficulty, NAMED_LATTICES, low=2, high=12)

    def image_size(self, rows: int, cols: int) -> tuple[int, int]:
        """(H, W) of a ``rows`` x ``cols`` junction lattice."""
        s = self.config.spacing_px
        return int(round((rows - 1 + 2 * MARGIN) * s)), int(round((cols - 1 + 2 * MARGIN) * s))

    def _generate(self, rng: random.Random, difficulty: str, seed: int) -> Instance:
        cfg = self.config
        rows, cols = size_of(difficulty, NAMED_LATTICES)
        extra = cfg.extra_roads if cfg.extra_roads is not None else NAMED_EXTRA_ROADS.get(difficulty, 2)
        min_roads = NAMED_MIN_ROADS.get(difficulty, max(1, (rows + cols - 2) // 2))
        size = self.image_size(rows, cols)
        best = None
        for _ in range(MAX_ATTEMPTS):
            junctions = jittered_lattice(rows, cols, cfg.spacing_px, rng)
            candidates = bend_roads(junctions, candidate_pairs(rows, cols, cfg.diagonals, rng), size,
                                    cfg.road_width, cfg.curviness, rng)
            roads = spanning_roads(len(junctions), candidates, extra, rng)
            if roads is None:
                continue
            layout = {"junctions": junctions, "roads": roads}
            found = self._place_ends(layout, rng)
            if found is None:
                continue
            start, goal, junction_path = found
            if best is None or len(junction_path) > len(best[3]):
                best = (layout, start, goal, junction_path)
            if len(junction_path) - 1 >= min_roads:
                break
        if best is None:
            raise UserError(f"could not build a connected road map with two dead ends for {self.name} at "
                            f"{difficulty}; lower road_px or curviness, or raise spacing_px")
        layout, start, goal, _ = best
        return self.build({**layout, "start": start, "goal": goal}, seed, difficulty)

    def _place_ends(self, layout: dict, rng: random.Random) -> tuple[int, int, list[int]] | None:
        """A dead-end start, the dead end farthest from it (in moves), and the junctions between."""
        count = len(layout["junctions"])
        nodes, edges = road_nodes(layout, self.config.node_step)
        degree = [0] * count
        for i, j, _ in layout["roads"]:
            degree[i] += 1
            degree[j] += 1
        leaves = [k for k in range(count) if degree[k] == 1]
        if len(leaves) < 2:
            return None
        start = rng.choice(leaves)
        if self.config.goal_placement == "diameter":
            dist, _ = bfs(adjacency(len(nodes), edges), start)
            start = max(leaves, key=lambda k: (dist[k], -k))
        dist, parent = bfs(adjacency(len(nodes), edges), start)
        goal = max((k for k in leaves if k != start), key=lambda k: (dist[k], -k))
        return start, goal, [k for k in walk_back(parent, start, goal) if k < count]

    def build(self, layout: dict, seed: int, difficulty: str) -> Instance:
        """Assemble spec, solution, prompt and first frame for a road layout."""
        cfg = self.config
        skin = get_skin(cfg.skin, cfg.agent_icon)
        junctions = layout["junctions"]
        h, w = self.image_size(*size_of(difficulty, NAMED_LATTICES))
        nodes, edges = road_nodes(layout, cfg.node_step)
        start, goal = layout["start"], layout["goal"]
        path = walk_back(bfs(adjacency(len(nodes), edges), start)[1], start, goal)
        hops = [math.dist(nodes[a], nodes[b]) for a, b in edges]
        width = cfg.road_width
        goal_size = self.goal_size()
        gx, gy = junctions[goal]
        spec = {
            "family": "maze",
            "image_size": [h, w],
            "layout": {"junctions": junctions, "roads": layout["roads"], "start": start, "goal": goal},
            "nodes": nodes,
            "edges": edges,
            "start": start,
            "goal": goal,
            "step_px": round(float(np.mean(hops)), 3),
            "road_width_px": float(width),
            "goal_box": [int(math.floor(gx - goal_size / 2)), int(math.floor(gy - goal_size / 2)),
                         int(math.ceil(gx + goal_size / 2)), int(math.ceil(gy + goal_size / 2))],
            "agent": {"color": list(skin.agent), "icon": skin.agent_icon, "size_px": self.agent_size()},
            "colors": {"road": list(skin.floor), "floor": list(skin.floor), "wall": list(skin.wall),
                       "background": list(skin.wall), "goal": list(skin.goal), "trail": list(skin.trail)},
            "hazards": [],
            "trail": cfg.trail,
        }
        solution = {"path": path, "junctions": [k for k in path if k < len(junctions)]}
        prompt = PROMPT.format(road=color_name(skin.floor), agent=color_name(skin.agent), icon=skin.agent_icon,
                               goal=color_name(skin.goal), goal_icon=skin.goal_icon)
        return self.make_instance(seed=seed, difficulty=difficulty, prompt=prompt,
                                  first_frame=self._draw(spec, path, 0.0), solution=solution, spec=spec)

    # rendering --------------------------------------------------------------------
    def agent_size(self) -> float:
        """Agent icon width: a little wider than the road, so it reads at any resolution."""
        return 1.3 * self.config.road_width

    def goal_size(self) -> float:
        """Goal icon width."""
        return 1.6 * self.config.road_width

    def scene(self, spec: dict) -> np.ndarray:
        """The static map: roads (floor colour and texture) on the off-road colour."""
        cfg = self.config
        skin = get_skin(cfg.skin, cfg.agent_icon)
        h, w = spec["image_size"]
        width = int(cfg.road_width)
        mask = np.zeros((h, w), np.uint8)
        scale = 16  # 4 bits of sub-pixel precision for cv2 drawing
        for curve in road_curves(spec["layout"]):
            cv2.polylines(mask, [np.round(curve * scale).astype(np.int32)], False, 255, width, cv2.LINE_AA, 4)
        for x, y in spec["layout"]["junctions"]:
            # Round caps and joints, whatever cv2 does at polyline ends.
            cv2.circle(mask, (int(round(x * scale)), int(round(y * scale))), int(round(width / 2 * scale)), 255, -1,
                       cv2.LINE_AA, 4)
        textured = skin.texture != "none"
        road = floor_texture((h, w), skin, cfg.spacing_px / 2) if textured else None
        img = np.empty((h, w, 3), np.uint8)
        img[:] = skin.wall
        inside = mask == 255
        img[inside] = road[inside] if textured else skin.floor
        # Blend only the anti-aliased rim: a few thousand pixels instead of the whole image.
        rim = np.nonzero((mask > 0) & (mask < 255))
        alpha = mask[rim].astype(np.float32)[:, None] / 255.0
        colour = road[rim].astype(np.float32) if textured else np.array(skin.floor, np.float32)
        off_road = np.array(skin.wall, np.float32)
        img[rim] = np.round(off_road + (colour - off_road) * alpha).astype(np.uint8)
        return img

    def _draw(self, spec: dict, path: list[int], t: float, scene: np.ndarray | None = None,
              out: np.ndarray | None = None) -> np.ndarray:
        """The frame at time ``t``: written into ``out`` when given (saves a copy per video frame)."""
        cfg = self.config
        skin = get_skin(cfg.skin, cfg.agent_icon)
        scene = scene if scene is not None else self.scene(spec)
        if out is None:
            img = scene.copy()
        else:
            out[...] = scene
            img = out
        nodes = spec["nodes"]
        if cfg.trail and t > 0:
            visited = [nodes[k] for k in path[: int(math.floor(t)) + 1]] + [position_along(nodes, path, t)]
            pts = np.round(np.array(visited) * 16).astype(np.int32)
            cv2.polylines(img, [pts], False, tuple(int(c) for c in skin.trail), max(1, cfg.road_width // 2),
                          cv2.LINE_AA, 4)
        draw_icon(img, skin.goal_icon, tuple(spec["layout"]["junctions"][spec["goal"]]), self.goal_size(), skin.goal)
        draw_icon(img, skin.agent_icon, position_along(nodes, path, t), self.agent_size(), skin.agent)
        return img

    def num_moves(self, instance: Instance) -> int:
        """Node hops in the solution path."""
        return len(instance.solution["path"]) - 1

    def render_at(self, instance: Instance, t: float) -> np.ndarray:
        """The map with the agent ``t`` hops along the solution (fractions interpolate)."""
        return self._draw(instance.spec, instance.solution["path"], t)

    def solution_video(self, instance: Instance, num_frames: int | None = None) -> np.ndarray:
        """Ground-truth video; the map is drawn once, not per frame."""
        scene = self.scene(instance.spec)
        path = instance.solution["path"]
        times = self.video_times(instance, num_frames)
        video = np.empty((len(times), *scene.shape), np.uint8)
        for k, t in enumerate(times):
            self._draw(instance.spec, path, float(t), scene, out=video[k])
        video[0] = instance.first_frame
        return video

    # checking ---------------------------------------------------------------------
    def check_solution(self, instance: Instance, solution) -> tuple[bool, str]:
        """Legal: starts at start, every hop is an edge along a road, ends at goal."""
        return check_node_path(instance.spec, solution.get("path", []))

    def optimal_length(self, instance: Instance) -> int:
        """Fewest hops from start to goal (BFS over the spec graph)."""
        return graph_distance(instance.spec, instance.spec["start"], instance.spec["goal"])


position_along = bg.node_position_along  # the shared node-path interpolation
