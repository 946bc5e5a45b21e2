"""VideoThinkBench draw-the-path mazes (square, hexagon, labyrinth), judged by ``maze/draw``'s rules.

VideoThinkBench (OpenMOSS-Team) stores each maze puzzle as a record in ``data.json``:
``id``, ``prompt``, ``canvas_dimensions`` ``[W, H]``, ``start_point`` / ``goal_point``
``[x, y]`` (the two red dots), ``image`` (the puzzle PNG, relative to the folder),
``solution_image_path``, plus the generator's sizes (``cell_size`` for square mazes,
``cell_radius`` and ``wall_thickness`` for hexagons, ``ring_width`` for labyrinths). A
model answers with a final image or a video in which it drew a red path.

:func:`puzzle_from_record` turns a record and its puzzle image into a ``maze/draw``-style
spec, so :func:`gen_reason.verifiers.draw.score_draw` (video: final frame and sequence)
and :func:`~gen_reason.verifiers.draw.score_draw_image` (final frame) judge it with the
same rules as our own ``maze/draw`` (see that module: no red on a wall, red leaves both
dots and joins them, drawn red stays):

- walls: the puzzle's dark pixels (max channel <= 40, VideoThinkBench's wall test),
  cleared within VideoThinkBench's safe radius of each dot (0.45 ``cell_size``, 0.8
  ``cell_radius`` or 0.6 ``ring_width``), thinned by ``wall_tolerance_px`` a side (so
  colour bleeding at a wall's edge is not a crossing; a wall's middle line always stays,
  so a line across even a 1 px wall still touches it), and stored as ``walls``: pixel
  runs one row high, which the draw referee redraws at the answer's resolution;
- dots: the record's points; ``dot_radius`` measured from the red blob at each point of
  the puzzle image; ``line_width`` from the record (``line_width``, else a sixth of a cell,
  as ``maze/draw`` draws), at least 3 px.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gen_reason.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mov", ".gif")


@dataclass(frozen=True)
class DrawPuzzle:
    """One VideoThinkBench maze: its id, the ``maze/draw``-style spec, and the record."""

    id: str
    shape: str  # "square", "hexagon", "labyrinth" or "unknown"
    spec: dict
    record: dict = field(repr=False)


def _shape(record: dict) -> str:
    if "cell_size" in record or "grid_size" in record:
        return "square"
    if "cell_radius" in record:
        return "hexagon"
    if "ring_width" in record:
        return "labyrinth"
    return "unknown"


def _safe_radius(record: dict) -> float:
    """VideoThinkBench's endpoint radius within which walls do not count (4 px at least)."""
    if "cell_size" in record:
        return max(4.0, 0.45 * float(record["cell_size"]))
    if "cell_radius" in record:
        return max(4.0, 0.8 * float(record["cell_radius"]))
    if "ring_width" in record:
        return max(4.0, 0.6 * float(record["ring_width"]))
    return 4.0


def _line_width(record: dict) -> float:
    if "line_width" in record:
        return float(record["line_width"])
    if "cell_size" in record:
        cell = float(record["cell_size"])
    elif "cell_radius" in record:
        cell = 2.0 * float(record["cell_radius"])
    elif "ring_width" in record:
        cell = float(record["ring_width"])
    else:
        return 3.0
    return max(3.0, round(cell / 6))


def wall_core(walls: np.ndarray, tolerance_px: float = 1.0) -> np.ndarray:
    """``walls`` (bool HxW) thinned by ``tolerance_px`` a side, keeping every wall's ridge
    (the pixels farthest from its edges), so thin walls keep a core one or two pixels wide."""
    import cv2

    mask = walls.astype(np.uint8)
    if not mask.any():
        return walls.copy()
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    ridge = (dist >= cv2.dilate(dist, np.ones((3, 3), np.uint8)) - 1e-6) & walls
    return walls & ((dist > tolerance_px) | ridge)


def _runs(mask: np.ndarray) -> list[list[float]]:
    """Horizontal runs of True pixels as segments ``[x0, y, x1, y]``."""
    segments = []
    padded = np.pad(mask.astype(np.int8), ((0, 0), (1, 1)))
    for y in np.flatnonzero(mask.any(axis=1)):
        edges = np.diff(padded[y])
        for x0, x1 in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1):
            segments.append([float(x0), float(y), float(x1), float(y)])
    return segments


def _dot_radius(image: np.ndarray, point, fallback: float) -> float:
    """Radius of the red blob at ``point`` of the puzzle image (disk of the same area)."""
    import cv2

    from gen_reason.verifiers.draw import red_mask

    red = red_mask(image).astype(np.uint8)
    x, y = int(round(point[0])), int(round(point[1]))
    h, w = red.shape
    if not (0 <= x < w and 0 <= y < h):
        return fallback
    num, labels = cv2.connectedComponents(red, connectivity=8)
    r = max(2, int(math.ceil(fallback)))
    window = labels[max(0, y - r): y + r + 1, max(0, x - r): x + r + 1]
    found = [lab for lab in np.unique(window) if lab != 0]
    if not found:
        return fallback
    area = max(int(np.count_nonzero(labels == lab)) for lab in found)
    return max(2.0, math.sqrt(area / math.pi))


def puzzle_from_record(record: dict, image: np.ndarray, wall_tolerance_px: float = 1.0) -> DrawPuzzle:
    """A :class:`DrawPuzzle` from a VideoThinkBench record and its puzzle image (RGB uint8)."""
    from gen_reason.verifiers.draw import WALL_MAX

    for key in ("start_point", "goal_point"):
        if key not in record:
            raise UserError(f"VideoThinkBench record {record.get('id', '?')} has no {key}")
    image = np.asarray(image)
    h, w = image.shape[:2]
    canvas_w, canvas_h = record.get("canvas_dimensions", (w, h))
    sx, sy = w / float(canvas_w), h / float(canvas_h)
    dots = [[float(record[k][0]) * sx, float(record[k][1]) * sy] for k in ("start_point", "goal_point")]
    scale = math.sqrt(sx * sy)
    safe = _safe_radius(record) * scale
    walls = image.max(axis=2) <= WALL_MAX
    yy, xx = np.mgrid[:h, :w]
    for x, y in dots:
        walls &= (xx - x) ** 2 + (yy - y) ** 2 > safe ** 2
    line_width = _line_width(record) * scale
    radii = [_dot_radius(image, p, safe / 2) for p in dots]
    spec = {"family": "maze", "image_size": [h, w],
            "draw": {"dots": dots, "dot_radius": float(np.mean(radii)), "line_width": float(line_width),
                     "wall_px": 1, "walls": _runs(wall_core(walls, wall_tolerance_px))}}
    return DrawPuzzle(id=str(record.get("id", "")), shape=_shape(record), spec=spec, record=record)


def _records(data: Path) -> list[dict]:
    text = data.read_text()
    if data.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    loaded = json.loads(text)
    if isinstance(loaded, dict):
        loaded = loaded.get("records") or loaded.get("data") or list(loaded.values())
    if not isinstance(loaded, list):
        raise UserError(f"{data} holds no list of puzzle records")
    return loaded


def load_puzzles(folder: str | os.PathLike, wall_tolerance_px: float = 1.0) -> list[DrawPuzzle]:
    """Every puzzle of a VideoThinkBench maze folder (``data.json`` or ``data.jsonl``, image
    paths relative to the folder)."""
    from gen_reason.video import read_image

    folder = Path(folder)
    data = next((folder / n for n in ("data.json", "data.jsonl") if (folder / n).exists()), None)
    if data is None:
        raise UserError(f"no data.json or data.jsonl in {folder} (a VideoThinkBench maze folder)")
    try:
        records = _records(data)
    except json.JSONDecodeError as exc:
        raise UserError(f"{data} is not valid JSON: {exc}") from None
    puzzles = []
    for record in records:
        if "image" not in record:
            raise UserError(f"VideoThinkBench record {record.get('id', '?')} has no image")
        puzzles.append(puzzle_from_record(record, read_image(folder / record["image"]), wall_tolerance_px))
    return puzzles


def score_answer(puzzle: DrawPuzzle, answer, **options):
    """Judge an answer: a final image (path or ``(H, W, 3)`` array) by the final-frame rules,
    a video (path or ``(T, H, W, 3)`` array) by the final frame and the sequence. A file that
    cannot be read is a recorded failure with the reason."""
    from gen_reason.verifiers.draw import score_draw, score_draw_image
    from gen_reason.verifiers.score import Score
    from gen_reason.video import read_image, read_video

    options.setdefault("wall_tolerance_px", 0.0)  # the spec's walls are already thinned
    if isinstance(answer, (str, os.PathLike)):
        path = Path(answer)
        try:
            answer = read_image(path) if path.suffix.lower() in IMAGE_SUFFIXES else read_video(path)
        except UserError as exc:
            return Score.failure(f"unreadable answer: {exc}", success=0.0)
    answer = np.asarray(answer)
    if answer.ndim == 3:
        return score_draw_image(puzzle.spec, answer, **options)
    return score_draw(puzzle.spec, answer, **options)


def score_folder(folder: str | os.PathLike, answers: str | os.PathLike, **options) -> list[dict]:
    """Score every answer file in ``answers`` named ``<id>*`` (image or video) against the
    puzzles of ``folder``; one row per answer (``id``, ``answer``, ``shape``, score)."""
    puzzles = {p.id: p for p in load_puzzles(folder)}
    answers = Path(answers)
    if not answers.is_dir():
        raise UserError(f"not a folder of answers: {answers}")
    rows = []
    for path in sorted(answers.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
            continue
        pid = next((i for i in sorted(puzzles, key=len, reverse=True) if path.stem == i or path.stem.startswith(i + "_")),
                   None)
        if pid is None:
            continue
        score = score_answer(puzzles[pid], path, **options)
        rows.append({"id": pid, "answer": str(path), "shape": puzzles[pid].shape, **score.to_dict()})
    if not rows:
        raise UserError(f"no file in {answers} is named after a puzzle id of {folder}")
    return rows
