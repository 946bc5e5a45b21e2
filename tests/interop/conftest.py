"""Shared pieces of the interop tests: the VR-Bench fixtures and cheats built from their videos.

The fixtures are levels made by VR-Bench's own generator (the shared VR-Bench fixtures folder beside the repository,
see its README); each test module locates them and skips, with the reason, when absent.

Cheats are made from a level's ground-truth video, since VR-Bench skins are textures we
cannot redraw: the agent's sprite is the pixels of its start box that differ from the
start box's median over the video (the floor, once the agent has left), and the agent is
pasted at the positions a cheating model would show.
"""

from __future__ import annotations

import numpy as np
import pytest

from gen_reason.verifiers.walk import SHORT_WAY

CHEATS = ("through_wall", "teleport", "stops_early", "static", "end_state_only")


class Sprite:
    """The agent cut out of a ground-truth video, and a background without it."""

    def __init__(self, video: np.ndarray, state: dict) -> None:
        b = state["entities"]["player"]["bbox"]
        h_img, w_img = video.shape[1:3]
        self.x0, self.y0 = max(0, int(b["x"])), max(0, int(b["y"]))
        self.x1, self.y1 = min(w_img, int(b["x"] + b["width"])), min(h_img, int(b["y"] + b["height"]))
        first = video[0, self.y0:self.y1, self.x0:self.x1].astype(np.int16)
        floor = np.median(video[:, self.y0:self.y1, self.x0:self.x1], axis=0).astype(np.int16)
        self.patch = video[0, self.y0:self.y1, self.x0:self.x1].copy()
        self.mask = np.abs(first - floor).max(axis=2) > 40
        self.background = video[0].copy()
        self.background[self.y0:self.y1, self.x0:self.x1] = floor.astype(np.uint8)
        self.center = np.array([(self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2])

    def frame_at(self, xy) -> np.ndarray:
        """The background with the agent pasted centred at pixel ``xy``."""
        img = self.background.copy()
        dx, dy = (np.asarray(xy, float) - self.center).round().astype(int)
        h, w = img.shape[:2]
        ys, xs = np.nonzero(self.mask)
        ys, xs = ys + self.y0 + dy, xs + self.x0 + dx
        keep = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
        img[ys[keep], xs[keep]] = self.patch[np.nonzero(self.mask)][keep]
        return img


def glide(sprite: Sprite, first: np.ndarray, points, px_per_frame: float, hold: int = 12) -> np.ndarray:
    """A video of the agent gliding along ``points`` (pixels) at ``px_per_frame``."""
    pts = [np.asarray(p, float) for p in points]
    positions = [pts[0]]
    for a, b in zip(pts, pts[1:]):
        n = max(1, int(np.ceil(np.linalg.norm(b - a) / px_per_frame)))
        positions += [a + (b - a) * k / n for k in range(1, n + 1)]
    positions += [pts[-1]] * hold
    video = np.stack([sprite.frame_at(p) for p in positions])
    video[0] = first
    return video


def make_cheat(name: str, video: np.ndarray, state: dict, instance, gt_positions) -> np.ndarray:
    """One cheat video for a VR-Bench level (see the module docstring and CHEATS)."""
    spec = instance.spec
    t = len(video)
    cell = float(state["render"]["cell_size"])
    speed = cell / 12  # VR-Bench's pace: one cell per 12 frames
    start = np.asarray(spec["nodes"][spec["start"]], float)
    if name == "static":
        return np.repeat(video[:1], t, axis=0)
    if name == "end_state_only":
        return np.concatenate([video[:1], np.repeat(video[-1:], t - 1, axis=0)])
    if name == "stops_early":
        half = t // 2
        return np.concatenate([video[:half], np.repeat(video[half - 1: half], 24, axis=0)])
    if name == "teleport":
        pos = np.asarray([p if p is not None else [np.nan, np.nan] for p in gt_positions], float)
        # Cut out the frames between a third of the way and the first frame more than the
        # referee's always-plausible move (SHORT_WAY, 2 steps: any speed may take that in
        # one frame) on: three cells in one frame of a video that moves a cell in 12. In
        # sokoban the jump carries the box two cells, which the push rules judge at any
        # speed (its easy walks are too short for three).
        step = float(spec["step_px"])
        jump = 2.0 if spec.get("box") else SHORT_WAY + 1.0
        for i in range(t // 3, 0, -1):
            far = [j for j in range(i + 1, t) if np.linalg.norm(pos[j] - pos[i]) >= jump * step]
            if far:
                return np.concatenate([video[: i + 1], video[far[0]:]])
        raise ValueError(f"the agent never moves {jump:g} cells in this video")
    if name == "through_wall":
        sprite = Sprite(video, state)
        if spec.get("box"):
            # Sokoban: walk straight into the nearest wall block (around the box), and stay there.
            grid = np.asarray(state["grid"]["data"])
            r, c = state["entities"]["player"]["grid_pos"]["row"], state["entities"]["player"]["grid_pos"]["col"]

            def blocks_to_wall(d):
                k = 1
                while grid[r + k * d[0], c + k * d[1]] not in (1, 2):  # 2: the box
                    k += 1
                return (k if grid[r + k * d[0], c + k * d[1]] == 1 else 99), d

            k, (dr, dc) = min(blocks_to_wall(d) for d in ((0, -1), (0, 1), (-1, 0), (1, 0)))
            return glide(sprite, video[0], [start, start + np.array([dc, dr]) * cell * k], speed, hold=24)
        goal = np.asarray(spec["nodes"][spec["goal"]], float)
        return glide(sprite, video[0], [start, goal], speed)
    raise ValueError(name)


#: The first rule each cheat must be caught by (sokoban moves a box too: its own set).
EXPECTED_RULES = {
    "through_wall": {"wall_crossing", "off_board", "hazard"},
    "teleport": {"teleport", "end_state_only"},  # a jump on a short route skips half of it
    "static": {"static_video"},
    "end_state_only": {"end_state_only"},
}
# A sokoban end state shows the box moved without a push: a jump, or a box moving on its own.
SOKOBAN_RULES = {"end_state_only": {"end_state_only", "teleport", "wall_crossing", "box_teleport", "box_pulled",
                                    "box_unpushed"}}


@pytest.fixture(scope="session")
def cheats():
    """The cheat builders and the rules each cheat must be caught by."""
    import types

    return types.SimpleNamespace(make=make_cheat, names=CHEATS, expected=EXPECTED_RULES, sokoban=SOKOBAN_RULES,
                                 Sprite=Sprite, glide=glide)
