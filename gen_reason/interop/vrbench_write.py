"""Write our datasets in the anchors' layouts: VR-Bench's level tree and DiffSynth-Studio's CSV.

``make-dataset --format vrbench`` (:func:`make_vrbench_dataset`) writes maze-family
puzzles as VR-Bench writes its own levels, so its evaluator
(``evaluation/videomodel_eval/batch_evaluate.py``) and its training metadata tool read
them unchanged::

    <out>/[train|eval/]<game>/<skin>/<difficulty>/states/<difficulty>_<NNNN>.json
                                                 /images/<difficulty>_<NNNN>.png
                                                 /videos/<difficulty>_<NNNN>.mp4   (24 fps)
    <out>/[train|eval/]metadata.csv      video,prompt,input_image (DiffSynth-Studio)
    <out>/genreason_vrbench.json         the arguments that made it (a rerun must match)

Games: ``maze/grid`` -> ``maze`` (block walls, no margin: VR-Bench's grid is square
blocks of ``render.cell_size``), ``maze/trapfield`` -> ``trapfield`` (our border walls
are written as trap cells, ``1``: forbidden either way), ``maze/sokoban`` -> ``sokoban``
(VR-Bench's symbols: 0 empty, 1 wall, 2 box, 3 target, 5 player), ``maze/irregular`` ->
``pathfinder`` (roads as Bezier ``segments`` of 4 control points, where VR-Bench's own
generator writes 3; ``road_width``; ``solution_path`` through the junctions). Other tasks
are refused. Each state follows UnifiedState v1.0: ``entities`` player / goal / boxes
with ``pixel_pos``, ``bbox`` (with ``center_x``/``center_y``) and ``grid_pos``;
``render`` ``cell_size``, ``image_width``, ``image_height``; ``grid`` ``data`` (0 empty,
1 wall, 2 player, 3 goal), ``height``, ``width``. ``metadata.genreason`` adds what
VR-Bench ignores and our reader uses: the source task, seed, prompt and the solution's
cells.

Timing: VR-Bench's ground truth moves one cell per 12 frames at 24 fps; that is the
default here (``frames_per_step`` 12 unless ``--task.frames_per_step`` says otherwise, and
natural length unless ``--frames`` says otherwise; road maps: one node per road width at 6
frames, see :func:`_vrbench_spec`). A fixed ``--frames`` short enough that the agent
moves more than 1.5 cells (0.75 road widths on road maps) between frames reads as a
teleport. A train/test split (``--test-fraction``) writes VR-Bench's ``train/`` and
``eval/`` trees.

``make-dataset --format diffsynth`` (:func:`make_diffsynth_dataset`) writes our own
dataset layout and a ``metadata.csv`` with exactly the columns DiffSynth-Studio's (and
VR-Bench's) video training scripts read: ``video,prompt,input_image``; the train split
goes to ``metadata.csv`` and the test split, when there is one, to ``metadata_test.csv``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

from gen_reason.errors import UserError, writable_dir
from gen_reason.folders import hold_folder, remove_stale_temps, write_atomic
from gen_reason.puzzles import Instance, get_task

#: Our task (unversioned) -> VR-Bench game.
VRBENCH_GAMES = {"maze/grid": "maze", "maze/trapfield": "trapfield", "maze/sokoban": "sokoban",
                 "maze/irregular": "pathfinder"}
VRBENCH_FPS = 24
VRBENCH_FRAMES_PER_STEP = 12
SOKOBAN_SYMBOLS = {"empty": 0, "wall": 1, "box": 2, "target": 3, "box_on_target": 4, "player": 5,
                   "player_on_target": 6}
MANIFEST = "genreason_vrbench.json"
FORMAT_VERSION = 1
CSV_COLUMNS = ("video", "prompt", "input_image")


def vrbench_game(task_name: str) -> str:
    """The VR-Bench game our task is written as; :class:`UserError` for the others."""
    from gen_reason.registry import split_version

    base, _ = split_version(task_name)
    if base not in VRBENCH_GAMES:
        raise UserError(f"--format vrbench writes maze/grid, maze/irregular, maze/trapfield and maze/sokoban "
                        f"(VR-Bench's maze, pathfinder, trapfield, sokoban); {task_name} has no VR-Bench "
                        "counterpart (our maze/3d stacks thin-walled floors; VR-Bench's maze3d is cubes and "
                        "ladders drawn by matplotlib)")
    return VRBENCH_GAMES[base]


# ----------------------------------------------------------------------------- states
def _bbox(x: int, y: int, w: int, h: int) -> dict:
    return {"x": int(x), "y": int(y), "width": int(w), "height": int(h), "center_x": int(x + w // 2),
            "center_y": int(y + h // 2)}


def _grid_entity(row: int, col: int, cell: int) -> dict:
    """VR-Bench's ``Entity.from_grid_pos``: the block's box and its integer centre."""
    return {"pixel_pos": {"x": col * cell + cell // 2, "y": row * cell + cell // 2},
            "bbox": _bbox(col * cell, row * cell, cell, cell), "grid_pos": {"row": int(row), "col": int(col)}}


def _point_entity(x: float, y: float, size: float) -> dict:
    side = int(round(size))
    cx, cy = int(round(x)), int(round(y))
    return {"pixel_pos": {"x": cx, "y": cy}, "bbox": _bbox(cx - side // 2, cy - side // 2, side, side)}


def _block_grid(spec: dict) -> list[list[int]]:
    return [[int(ch) for ch in row] for row in spec["layout"]["grid"]]


def _check_blocks(instance: Instance) -> int:
    """VR-Bench's grid games are square blocks of ``cell_size`` from the image's corner."""
    geom = instance.spec.get("geometry", {})
    if geom.get("rooms_only") or geom.get("wall_px") != geom.get("cell_px"):
        raise UserError(f"{instance.task} with thin walls has no VR-Bench layout (its walls are whole blocks); "
                        "use --task.wall_style block")
    if geom.get("margin", 0):
        raise UserError(f"{instance.task} with a margin has no VR-Bench layout (its grid starts at the image "
                        "corner); use --task.margin 0")
    return int(geom["cell_px"])


def vrbench_state(instance: Instance, task=None) -> dict:
    """The UnifiedState v1.0 dict of one of our maze-family instances (see the module docstring)."""
    task = task or get_task(instance.task, **instance.config)
    game = vrbench_game(instance.task)
    spec = instance.spec
    height, width = spec["image_size"]
    ours = {"task": instance.task, "seed": instance.seed, "difficulty": instance.difficulty, "uid": instance.uid,
            "prompt": instance.prompt}
    if game == "pathfinder":
        return _pathfinder_state(instance, ours)
    cell = _check_blocks(instance)
    grid = _block_grid(spec)
    if game == "sokoban":
        agent_cells, box_cells = task.cell_paths(instance)
        start, box, target = agent_cells[0], box_cells[0], tuple(spec["layout"]["target"])
        grid[target[0]][target[1]] = SOKOBAN_SYMBOLS["target"]
        grid[box[0]][box[1]] = SOKOBAN_SYMBOLS["box_on_target" if box == target else "box"]
        grid[start[0]][start[1]] = SOKOBAN_SYMBOLS["player_on_target" if start == target else "player"]
        entities = {"player": _grid_entity(*start, cell), "goal": _grid_entity(*target, cell),
                    "boxes": [_grid_entity(*box, cell)]}
        metadata = {"symbols": dict(SOKOBAN_SYMBOLS)}
        ours["solution_cells"] = {"agent": [list(c) for c in agent_cells], "box": [list(c) for c in box_cells]}
    else:
        cells = task.block_path(instance)
        if game == "trapfield":
            # VR-Bench trap fields have no walls: 1 is a trap. Our border walls become traps
            # (forbidden either way), so the grid still covers the whole image.
            for r, c in spec["layout"]["traps"]:
                grid[r][c] = 1
        start, goal = cells[0], cells[-1]
        grid[start[0]][start[1]] = 2
        grid[goal[0]][goal[1]] = 3
        entities = {"player": _grid_entity(*start, cell), "goal": _grid_entity(*goal, cell), "boxes": []}
        metadata = {}
        ours["solution_cells"] = {"agent": [list(c) for c in cells]}
    metadata["genreason"] = ours
    return {"version": "1.0", "game_type": game, "entities": entities,
            "render": {"cell_size": cell, "image_width": int(width), "image_height": int(height)},
            "metadata": metadata, "grid": {"data": grid, "height": len(grid), "width": len(grid[0])}}


def _pathfinder_state(instance: Instance, ours: dict) -> dict:
    import math

    spec = instance.spec
    layout = spec["layout"]
    junctions = [[float(x), float(y)] for x, y in layout["junctions"]]
    for i, a in enumerate(junctions):
        for b in junctions[i + 1:]:
            if math.dist(a, b) < 10:  # VR-Bench merges road ends closer than 10 px
                raise UserError("two junctions are closer than 10 px, which VR-Bench's pathfinder reads as one; "
                                "use a larger --task.spacing_px")
    roads = layout["roads"]
    segments = [[junctions[i], *[[float(x), float(y)] for x, y in controls], junctions[j]] for i, j, controls in roads]
    waypoints = [n for n in instance.solution["path"] if n < len(junctions)]
    road_of = {}
    for k, (i, j, _) in enumerate(roads):
        road_of[(i, j)] = road_of[(j, i)] = k
    road = float(spec["road_width_px"])
    height, width = spec["image_size"]
    x0, y0, x1, y1 = spec["goal_box"]
    start, goal = junctions[spec["start"]], junctions[spec["goal"]]
    metadata = {"segments": segments, "start_point": start, "end_point": goal,
                "solution_segments": [road_of[(a, b)] for a, b in zip(waypoints, waypoints[1:])],
                "solution_path": [junctions[n] for n in waypoints], "road_width": road, "genreason": ours}
    goal_entity = {"pixel_pos": {"x": int(round(goal[0])), "y": int(round(goal[1]))},
                   "bbox": _bbox(x0, y0, x1 - x0, y1 - y0)}
    return {"version": "1.0", "game_type": "pathfinder",
            "entities": {"player": _point_entity(*start, math.ceil(float(spec["agent"]["size_px"]))),
                         "goal": goal_entity, "boxes": []},
            "render": {"cell_size": int(round(road)), "image_width": int(width), "image_height": int(height)},
            "metadata": metadata}


# ----------------------------------------------------------------------------- VR-Bench tree
def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text)


def _vrbench_spec(spec):
    """The dataset spec with VR-Bench's timing unless the user set one.

    Road maps also get one node per road width (``step_px``) at half the frames per
    node: the same pace as 12 frames per default node (two road widths), but our agent
    glides along the chord between nodes while VR-Bench's state holds only the curve,
    which the referee samples every half road width; one-road-width chords stay within
    its snapping distance of the curve, two-road-width chords do not on tight bends.
    """
    config = dict(spec.task_config)
    if vrbench_game(spec.task) == "pathfinder":
        config.setdefault("step_px", float(get_task(spec.task, **config).config.road_width))
        config.setdefault("frames_per_step", VRBENCH_FRAMES_PER_STEP // 2)
    config.setdefault("frames_per_step", VRBENCH_FRAMES_PER_STEP)
    return replace(spec, task_config=config).validate()


def _plan(spec, out: Path) -> list[dict]:
    """Where every item goes: ``[{idx, split, root, folder, stem}]`` (duplicates dropped
    with ``dedupe``); numbering is per split and difficulty, in item order."""
    task = get_task(spec.task, **spec.task_config)
    game = vrbench_game(task.name)
    skin = str(task.config.skin)
    counts: Counter = Counter()
    seen: set[str] = set()
    plan = []
    for idx in range(spec.n):
        seed, difficulty = spec.item(idx)
        instance = task.generate(seed, difficulty)
        if spec.dedupe:
            if instance.canonical_hash in seen:
                continue
            seen.add(instance.canonical_hash)
        split = spec.split_of(instance)
        root = out / ("eval" if split == "test" else "train") if spec.test_fraction > 0 else out
        counts[(split, difficulty)] += 1
        plan.append({"idx": idx, "split": split, "root": root, "folder": root / game / skin / difficulty,
                     "stem": f"{difficulty}_{counts[(split, difficulty)]:04d}"})
    return plan


def _write_level(spec, item: dict, task_cache: dict = {}) -> dict:  # noqa: B006 - per-process cache
    """Write one level's image, video and state (the state last: its presence means done)."""
    from gen_reason.video import write_image, write_mp4

    folder, stem = item["folder"], item["stem"]
    state_path = folder / "states" / f"{stem}.json"
    key = (spec.task, json.dumps(spec.task_config, sort_keys=True))
    if key not in task_cache:
        task_cache[key] = get_task(spec.task, **spec.task_config)
    task = task_cache[key]
    seed, difficulty = spec.item(item["idx"])
    instance = task.generate(seed, difficulty)
    row = {"video": f"{folder.relative_to(item['root']).as_posix()}/videos/{stem}.mp4",
           "input_image": f"{folder.relative_to(item['root']).as_posix()}/images/{stem}.png",
           "prompt": instance.prompt}
    if state_path.exists():
        return row
    state = vrbench_state(instance, task)
    write_image(folder / "images" / f"{stem}.png", instance.first_frame)
    if spec.video:
        video = task.solution_video(instance, spec.num_frames)
        write_mp4(folder / "videos" / f"{stem}.mp4", video, fps=VRBENCH_FPS, crf=spec.crf)
    _atomic_write_text(state_path, json.dumps(state, indent=2))
    return row


def _level_worker(args) -> dict:
    spec, item = args
    return _write_level(spec, item)


def _write_csv(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([row[c] for c in CSV_COLUMNS])
    _atomic_write_text(path, buffer.getvalue())


def make_vrbench_dataset(spec, out: str | os.PathLike, workers: int | None = None, progress: bool = True) -> Path:
    """Write (or finish writing) ``spec`` (a :class:`~gen_reason.datasets.DatasetSpec`) in
    VR-Bench's layout under ``out``; resumable, and a folder holding a different dataset is
    refused, and so is a folder another process is writing (as :func:`~gen_reason.datasets.make_dataset`).
    Returns ``out``."""
    from gen_reason.datasets import check_workers

    vrbench_game(spec.task)
    spec = _vrbench_spec(spec)
    check_workers(workers)
    out = writable_dir(out)
    with hold_folder(out):
        return _write_vrbench(spec, out, workers, progress)


def _write_vrbench(spec, out: Path, workers: int | None, progress: bool) -> Path:
    """:func:`make_vrbench_dataset`'s work, in a folder this process holds."""
    remove_stale_temps(out)
    manifest = json.loads(json.dumps({"format": "vrbench", "format_version": FORMAT_VERSION, **asdict(spec)}))
    manifest_path = out / MANIFEST
    if manifest_path.exists():
        if json.loads(manifest_path.read_text()) != manifest:
            raise UserError(f"{out} already holds a different dataset ({manifest_path}); choose another --out")
    else:
        # Refuse early (before any file) when the first puzzle cannot be written as VR-Bench's.
        first = get_task(spec.task, **spec.task_config)
        vrbench_state(first.generate(*spec.item(0)), first)
        _atomic_write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True))
    plan = _plan(spec, out)
    from tqdm.auto import tqdm

    workers = max(1, min(workers or os.cpu_count() or 1, len(plan)))
    bar = tqdm(total=len(plan), desc=f"make-dataset {spec.task} (vrbench)", unit="level", disable=not progress)
    if workers == 1:
        rows = []
        for item in plan:
            rows.append(_write_level(spec, item))
            bar.update()
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn" if os.name == "nt" else "fork")
        with ctx.Pool(workers) as pool:
            rows = []
            for row in pool.imap(_level_worker, [(spec, item) for item in plan], chunksize=4):
                rows.append(row)
                bar.update()
    bar.close()
    if spec.video:
        for root in sorted({item["root"] for item in plan}):
            _write_csv(root / "metadata.csv", [r for r, item in zip(rows, plan) if item["root"] == root])
    return out


# ----------------------------------------------------------------------------- DiffSynth
def make_diffsynth_dataset(spec, out: str | os.PathLike, workers: int | None = None, progress: bool = True) -> Path:
    """Our dataset layout with a ``metadata.csv`` of exactly ``video,prompt,input_image``
    (the train split; the test split, if any, in ``metadata_test.csv``)."""
    from gen_reason.datasets import make_dataset

    if not spec.video:
        raise UserError("--format diffsynth lists videos for training; drop --no-video")
    spec = spec.validate()
    out = writable_dir(out)
    with hold_folder(out):  # held until the CSVs are written too
        return _write_diffsynth(spec, make_dataset(spec, out, workers=workers, progress=progress, lock=False))


def _write_diffsynth(spec, out: Path) -> Path:
    """:func:`make_diffsynth_dataset`'s CSVs, beside the dataset just written."""
    records = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines() if line.strip()]
    rows = {"train": [], "test": []}
    for record in records:
        rows[record["split"]].append({"video": record["video"], "prompt": record["prompt"],
                                      "input_image": record["image"]})
    _write_csv(out / "metadata.csv", rows["train"])
    if rows["test"]:
        _write_csv(out / "metadata_test.csv", rows["test"])
    return out
