"""Visual skins: colours, textures and agent/goal icons, chosen by name in a task config.

A skin never changes a puzzle's logic, only its pixels. Icons in ``HELD_OUT_ICONS`` are
never used by the default training skins, so a generalisation test can swap them in
(as "Thinking in Frames" does with unseen agent icons).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from gen_reason.errors import UserError

RGB = tuple[int, int, int]

TRAIN_ICONS = ("circle", "square", "diamond", "triangle")
HELD_OUT_ICONS = ("star", "cross", "hexagon", "ring")
ICONS = TRAIN_ICONS + HELD_OUT_ICONS


@dataclass(frozen=True)
class Skin:
    """Colours and icons of one look. ``texture`` adds a fixed pattern to the floor."""

    name: str
    background: RGB
    floor: RGB
    wall: RGB
    agent: RGB
    agent_icon: str
    goal: RGB
    goal_icon: str
    trail: RGB
    accent: RGB = (230, 180, 40)  # boxes, traps, ladders: the task's third object
    target: RGB = (60, 170, 90)
    texture: str = "none"  # "none" | "checker" | "noise"

    def with_icon(self, icon: str) -> "Skin":
        """The same skin with another agent icon (for held-out icon tests)."""
        if icon not in ICONS:
            raise UserError(f"unknown icon {icon!r}; known: {', '.join(ICONS)}")
        return Skin(**{**self.__dict__, "agent_icon": icon})


SKINS: dict[str, Skin] = {
    "classic": Skin("classic", (255, 255, 255), (255, 255, 255), (20, 20, 20), (220, 30, 30), "circle",
                    (30, 160, 40), "square", (250, 170, 170)),
    "dark": Skin("dark", (25, 25, 35), (40, 40, 55), (200, 200, 210), (255, 200, 0), "diamond",
                 (0, 200, 255), "square", (120, 100, 30)),
    "pastel": Skin("pastel", (245, 240, 230), (250, 246, 238), (90, 70, 120), (60, 110, 230), "triangle",
                   (240, 120, 60), "circle", (170, 190, 240), texture="checker"),
    "forest": Skin("forest", (200, 225, 190), (214, 234, 200), (40, 90, 40), (180, 30, 160), "square",
                   (240, 220, 30), "diamond", (220, 170, 220), texture="noise"),
    # A low-resolution skin with maximal contrast, for tiny models (32x32 videos).
    "tiny": Skin("tiny", (255, 255, 255), (255, 255, 255), (0, 0, 0), (255, 0, 0), "square",
                 (0, 200, 0), "square", (90, 90, 255)),
}


def get_skin(name: str, icon: str | None = None) -> Skin:
    """Look up a skin by name, optionally overriding its agent icon."""
    if name not in SKINS:
        raise UserError(f"unknown skin {name!r}; known: {', '.join(SKINS)}")
    skin = SKINS[name]
    return skin.with_icon(icon) if icon else skin


def _polygon(cx: float, cy: float, r: float, n: int, phase: float) -> np.ndarray:
    angles = phase + np.arange(n) * 2 * math.pi / n
    return np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], axis=1)


def draw_icon(img: np.ndarray, icon: str, center: tuple[float, float], size: float, color: RGB) -> None:
    """Draw a filled ``icon`` of width ~``size`` pixels centred at ``center`` (x, y), in place.

    Sub-pixel centres are honoured (OpenCV fixed-point drawing) so motion is smooth.
    """
    shift = 4
    scale = 1 << shift
    cx, cy = center
    r = max(size / 2.0, 0.5)
    color = tuple(int(c) for c in color)
    if icon == "square" or r < 1.5:
        # Tiny icons degrade to squares: anything else is unreadable below 3 px.
        x0, y0 = int(round(cx - r)), int(round(cy - r))
        x1, y1 = int(round(cx + r)) - 1, int(round(cy + r)) - 1
        cv2.rectangle(img, (x0, y0), (max(x0, x1), max(y0, y1)), color, -1)
        return
    if icon == "circle":
        cv2.circle(img, (int(round(cx * scale)), int(round(cy * scale))), int(round(r * scale)), color, -1,
                   cv2.LINE_AA, shift)
        return
    if icon == "ring":
        cv2.circle(img, (int(round(cx * scale)), int(round(cy * scale))), int(round(r * 0.8 * scale)), color,
                   max(1, int(r * 0.45)), cv2.LINE_AA, shift)
        return
    if icon == "diamond":
        pts = _polygon(cx, cy, r, 4, 0.0)
    elif icon == "triangle":
        pts = _polygon(cx, cy + r * 0.15, r, 3, -math.pi / 2)
    elif icon == "hexagon":
        pts = _polygon(cx, cy, r, 6, 0.0)
    elif icon == "star":
        outer = _polygon(cx, cy, r, 5, -math.pi / 2)
        inner = _polygon(cx, cy, r * 0.45, 5, -math.pi / 2 + math.pi / 5)
        pts = np.empty((10, 2))
        pts[0::2], pts[1::2] = outer, inner
    elif icon == "cross":
        w = r * 0.38
        pts = np.array([(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w),
                        (-r, w), (-r, -w), (-w, -w)]) + (cx, cy)
    else:
        raise UserError(f"unknown icon {icon!r}; known: {', '.join(ICONS)}")
    cv2.fillPoly(img, [np.round(pts * scale).astype(np.int32)], color, cv2.LINE_AA, shift)


def floor_texture(shape: tuple[int, int], skin: Skin, cell_px: float) -> np.ndarray:
    """The floor image for ``skin``: flat, a faint checkerboard, or fixed faint noise."""
    h, w = shape
    floor = np.empty((h, w, 3), np.uint8)
    floor[:] = skin.floor
    if skin.texture == "checker":
        step = max(int(cell_px // 2), 2)
        yy, xx = np.mgrid[0:h, 0:w]
        mask = ((yy // step + xx // step) % 2).astype(bool)
        floor[mask] = np.clip(np.array(skin.floor, int) - 12, 0, 255)
    elif skin.texture == "noise":
        # A fixed pattern (seeded by size), so the same skin always looks the same.
        rng = np.random.default_rng(h * 100003 + w)
        noise = rng.integers(-10, 11, size=(h, w, 1))
        floor = np.clip(floor.astype(int) + noise, 0, 255).astype(np.uint8)
    return floor


_COLOR_NAMES = {
    "black": (0, 0, 0), "white": (255, 255, 255), "gray": (128, 128, 128), "red": (220, 30, 30),
    "green": (30, 160, 40), "blue": (40, 80, 220), "yellow": (250, 220, 30), "orange": (240, 140, 40),
    "purple": (150, 50, 170), "cyan": (0, 200, 230), "pink": (240, 150, 200), "brown": (120, 80, 40),
    "dark green": (40, 90, 40), "light blue": (150, 180, 240),
}


def color_name(rgb: RGB) -> str:
    """The nearest plain English colour name (for prompts)."""
    rgb_arr = np.array(rgb, float)
    return min(_COLOR_NAMES, key=lambda name: float(np.sum((np.array(_COLOR_NAMES[name]) - rgb_arr) ** 2)))
