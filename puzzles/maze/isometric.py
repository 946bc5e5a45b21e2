"""The isometric picture of a ``maze/3d`` maze: the projection of stacked floors
(:class:`IsoGeometry`) and the drawing of floors, walls and ladders.

Room ``(z, r, c)`` projects to ``x = ox + (c - r) * hw``, ``y = oy + (c + r) * hh - z * dz``;
polygons are filled with OpenCV at sub-pixel precision (``SHIFT`` fixed-point bits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from gen_reason.puzzles.maze import blockgrid as bg
from gen_reason.puzzles.skins import Skin

SHIFT = 4  # OpenCV fixed-point bits: sub-pixel polygon corners

Room = tuple[int, int, int]  # (floor, row, col)


@dataclass(frozen=True)
class IsoGeometry:
    """Isometric projection of ``floors`` stacked ``rooms x rooms`` floors.

    Room ``(z, r, c)`` projects to ``x = ox + (c - r) * hw``, ``y = oy + (c + r) * hh - z * dz``:
    columns run down-right, rows down-left, floors straight up by ``dz`` (a whole floor's
    height plus the gap, so floors never overlap on screen).
    """

    floors: int
    rooms: int
    tile_px: int
    margin: int
    gap_px: int

    @property
    def hw(self) -> float:
        """Half the width of a floor tile."""
        return self.tile_px / 2

    @property
    def hh(self) -> float:
        """Half the height of a floor tile."""
        return self.tile_px / 4

    @property
    def wall_px(self) -> float:
        """How high walls rise above the floor."""
        return round(0.6 * self.hh, 1)

    @property
    def slab_px(self) -> float:
        """Thickness of a floor's platform (its shaded front faces)."""
        return round(0.5 * self.hh, 1)

    @property
    def dz(self) -> float:
        """Vertical screen offset between neighbouring floors."""
        return 2 * self.rooms * self.hh + self.wall_px + self.slab_px + self.gap_px

    @property
    def origin(self) -> tuple[float, float]:
        """Screen position of room ``(0, 0, 0)``."""
        return (self.margin + self.rooms * self.hw,
                self.margin + self.hh + self.wall_px + (self.floors - 1) * self.dz)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the rendered image."""
        oy = self.origin[1]
        return (int(math.ceil(oy + (2 * self.rooms - 1) * self.hh + self.slab_px + self.margin)),
                int(math.ceil(2 * self.rooms * self.hw + 2 * self.margin)))

    @property
    def step_px(self) -> float:
        """Pixel length of one move between neighbouring rooms."""
        return math.hypot(self.hw, self.hh)

    def project(self, z: float, r: float, c: float) -> tuple[float, float]:
        """Screen ``(x, y)`` of a (possibly fractional) room position."""
        ox, oy = self.origin
        return ox + (c - r) * self.hw, oy + (c + r) * self.hh - z * self.dz

    def tile(self, z: int, r: int, c: int) -> np.ndarray:
        """The four screen corners (top, right, bottom, left) of a room's floor tile."""
        x, y = self.project(z, r, c)
        return np.array([(x, y - self.hh), (x + self.hw, y), (x, y + self.hh), (x - self.hw, y)])


def mix(a, b, f: float) -> tuple[int, int, int]:
    """The colour ``f`` of the way from ``a`` to ``b`` (RGB, rounded)."""
    return tuple(int(round(x * (1 - f) + y * f)) for x, y in zip(a, b))


# -- drawing -------------------------------------------------------------------------------
def agent_size(geom: IsoGeometry) -> float:
    """Agent icon size: most of a floor tile's height."""
    return round(1.3 * geom.hh, 3)


def goal_size(geom: IsoGeometry) -> float:
    """Goal icon size: a little larger than the agent, so it shows around it."""
    return round(1.5 * geom.hh, 3)


def _fill(img: np.ndarray, corners: np.ndarray, color) -> None:
    cv2.fillPoly(img, [np.round(corners * (1 << SHIFT)).astype(np.int32)], tuple(int(v) for v in color),
                 cv2.LINE_AA, SHIFT)


def _outline(img: np.ndarray, corners: np.ndarray, color, closed: bool = True) -> None:
    cv2.polylines(img, [np.round(corners * (1 << SHIFT)).astype(np.int32)], closed, tuple(int(v) for v in color),
                  1, cv2.LINE_AA, SHIFT)


def draw_floor(img: np.ndarray, geom: IsoGeometry, z: int, grid: np.ndarray, colors: dict, skin: Skin,
               goal_room: Room) -> None:
    """Draw floor ``z``: platform faces, tiles, then walls from back to front."""
    n = geom.rooms
    floor, wall = colors["floor"], colors["wall"]
    down = np.array([0.0, geom.slab_px])
    left_corner = geom.tile(z, n - 1, 0)[3]
    bottom_corner = geom.tile(z, n - 1, n - 1)[2]
    right_corner = geom.tile(z, 0, n - 1)[1]
    _fill(img, np.array([left_corner, bottom_corner, bottom_corner + down, left_corner + down]), mix(floor, wall, 0.45))
    _fill(img, np.array([bottom_corner, right_corner, right_corner + down, bottom_corner + down]), mix(floor, wall, 0.3))
    line = mix(floor, wall, 0.3)
    goal_tint = mix(floor, colors["goal"], 0.3)
    for r in range(n):
        for c in range(n):
            corners = geom.tile(z, r, c)
            if (z, r, c) == goal_room:
                color = goal_tint
            elif skin.texture == "checker" and (r + c) % 2:
                color = mix(floor, wall, 0.07)
            else:
                color = floor
            _fill(img, corners, color)
            _outline(img, corners, line)
    rise = np.array([0.0, -geom.wall_px])
    walls = []
    for r in range(n):
        for c in range(n):
            top, right, bottom, left = geom.tile(z, r, c)
            if c + 1 < n and grid[2 * r + 1, 2 * c + 2] == bg.WALL:
                walls.append((r + c + 0.5, right, bottom, 0.0))  # between (r, c) and (r, c + 1)
            if r + 1 < n and grid[2 * r + 2, 2 * c + 1] == bg.WALL:
                walls.append((r + c + 0.5, bottom, left, 0.25))  # between (r, c) and (r + 1, c)
    light = mix(wall, colors["floor"], 0.45)
    for _, a, b, shade in sorted(walls, key=lambda w: w[0]):
        face = np.array([a, b, b + rise, a + rise])
        _fill(img, face, mix(wall, (0, 0, 0), shade) if shade else wall)
        _outline(img, np.array([a + rise, b + rise]), light, closed=False)


def draw_ladder(img: np.ndarray, geom: IsoGeometry, ladder: dict, color) -> None:
    """Draw a ladder as two rails and rungs from the bottom room's centre up to the top room's."""
    x, y0 = geom.project(*ladder["bottom"])
    _, y1 = geom.project(*ladder["top"])
    half = geom.hw * 0.22
    color = tuple(int(v) for v in color)
    thick = max(1, int(round(geom.tile_px / 28)))
    scale = 1 << SHIFT
    for dx in (-half, half):
        cv2.line(img, (int(round((x + dx) * scale)), int(round(y0 * scale))),
                 (int(round((x + dx) * scale)), int(round(y1 * scale))), color, thick, cv2.LINE_AA, SHIFT)
    rungs = max(2, int((y0 - y1) // max(geom.hh * 0.8, 3)))
    for y in np.linspace(y1, y0, rungs + 1)[1:-1]:
        cv2.line(img, (int(round((x - half) * scale)), int(round(y * scale))),
                 (int(round((x + half) * scale)), int(round(y * scale))), color, thick, cv2.LINE_AA, SHIFT)
