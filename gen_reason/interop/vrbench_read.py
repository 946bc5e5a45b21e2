"""Read a VR-Bench folder as instances, and match model outputs named as VR-Bench names them.

VR-Bench (FoundationAgents/VR-Bench) stores levels as::

    [<split>/]<game>/<skin>/<difficulty>/states/<difficulty>_<NNNN>.json   UnifiedState v1.0
                                        /images/<difficulty>_<NNNN>.png    first frame
                                        /videos/<difficulty>_<NNNN>[_<k>].mp4  ground truth

and its evaluator expects a model's answer to level ``easy_0001`` to be named
``easy_0001.mp4`` (or ``easy_0001_<anything>.mp4``). This module finds the levels under
any folder of that tree (the root, a game, a skin or one difficulty), turns each into an
:class:`~gen_reason.puzzles.instance.Instance` with
:func:`gen_reason.verifiers.vrbench.load_level`, and matches a folder of model outputs to
them.

Instances are ``vrbench/<game>`` tasks (maze, trapfield, sokoban, pathfinder, maze3d; a
level ``load_level`` refuses, such as an unknown game, is reported as skipped with the
reason). Their identity:
``difficulty`` is the difficulty folder and ``seed`` is ``skin * 10000 + NNNN`` (a
non-numeric skin name is hashed), so levels of several skins keep distinct uids. The
prompt is the one stored by ``genreason make-dataset --format vrbench`` when present,
else a plain description of the game. When a state carries ``metadata.genreason``
(written by us), its ``solution_cells`` replace the solution ``load_level`` derives, so
a ground-truth video we rendered is compared with the path it shows (trap fields and
sokoban rooms can have several optimal solutions).
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from gen_reason.errors import UserError
from gen_reason.puzzles.instance import Instance

VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mov", ".gif")
SPLIT_NAMES = ("train", "eval", "test")
#: VR-Bench's alternative folder names for its games (its prompts module maps them too).
GAME_ALIASES = {"irregular_maze": "pathfinder", "regular_maze": "maze", "3d_maze": "maze3d"}
_LEVEL_STEM = re.compile(r"^(?P<difficulty>.+)_(?P<number>\d+)$")
_MAX_DEPTH = 5  # states/ sits at most split/game/skin/difficulty below the folder given

PROMPTS = {
    "maze": ("A top-down maze. Move the player one cell at a time along the open floor until it reaches the "
             "goal, never passing through a wall. The maze and the camera stay fixed; only the player moves."),
    "trapfield": ("A top-down field of traps. Move the player one cell at a time to the goal without ever "
                  "stepping on a trap. The field and the camera stay fixed; only the player moves."),
    "sokoban": ("A top-down sokoban room. The player walks one cell at a time and pushes the box by walking "
                "into it; it cannot pull it, and neither passes through a wall. Push the box onto the target. "
                "The room and the camera stay fixed; only the player and the box move."),
    "pathfinder": ("A top-down map of winding roads. Move the player along the roads until it reaches the goal, "
                   "never leaving the road. The map and the camera stay fixed; only the player moves."),
    "maze3d": ("An isometric 3D maze of cubes and ladders. Move the player along the tops of the cubes, climbing "
               "ladders, until it reaches the goal. The scene and the camera stay fixed; only the player moves."),
}


@dataclass(frozen=True)
class VRBenchLevel:
    """One VR-Bench level on disk: its state file and where it sits in the tree."""

    state: Path
    game: str  # the state's game_type (maze, trapfield, sokoban, pathfinder, maze3d)
    skin: str  # the skin folder's name
    difficulty: str  # the difficulty folder's name
    split: str | None = None  # "train" / "eval" when the tree has split folders

    @property
    def stem(self) -> str:
        """``<difficulty>_<NNNN>``: the name VR-Bench gives the level's files."""
        return self.state.stem

    @property
    def folder(self) -> Path:
        """The difficulty folder holding ``states/``, ``images/`` and ``videos/``."""
        return self.state.parent.parent

    @property
    def image(self) -> Path:
        """The first frame."""
        return self.folder / "images" / f"{self.stem}.png"

    @property
    def key(self) -> str:
        """``[split/]game/skin/difficulty/stem``: unique within one tree."""
        return "/".join(p for p in (self.split, self.game, self.skin, self.difficulty, self.stem) if p)

    @property
    def seed(self) -> int:
        """``skin * 10000 + NNNN`` (see the module docstring)."""
        match = _LEVEL_STEM.match(self.stem)
        number = int(match["number"]) if match else zlib.crc32(self.stem.encode()) % 10000
        skin = int(self.skin) if self.skin.isdigit() else zlib.crc32(self.skin.encode()) % 100000
        return skin * 10000 + number

    def gt_videos(self) -> list[Path]:
        """Ground-truth videos: ``<stem>_<k>.mp4`` (several solutions) or ``<stem>.mp4``."""
        videos = self.folder / "videos"
        several = sorted(p for p in videos.glob(f"{self.stem}_*.mp4") if p.stem[len(self.stem) + 1:].isdigit())
        if several:
            return several
        single = videos / f"{self.stem}.mp4"
        return [single] if single.exists() else []


def _state_dirs(folder: Path) -> list[Path]:
    found = []
    for depth in range(_MAX_DEPTH):
        pattern = "/".join(["*"] * depth + ["states"])
        found += [p for p in folder.glob(pattern) if p.is_dir()]
    return sorted(set(found))


def is_vrbench_folder(path: str | Path) -> bool:
    """Whether ``path`` holds VR-Bench levels (a ``states/`` folder of JSON files at most
    ``split/game/skin/difficulty`` below it)."""
    path = Path(path)
    return path.is_dir() and any(any(d.glob("*.json")) for d in _state_dirs(path))


def find_levels(folder: str | Path, split: str | None = None) -> list[VRBenchLevel]:
    """Every level under ``folder`` (optionally one split; ``"test"`` also selects VR-Bench's
    ``"eval"``), sorted by key. Raises :class:`UserError` when there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"VR-Bench folder not found: {folder}")
    levels = []
    for states in _state_dirs(folder):
        for state in sorted(states.glob("*.json")):
            try:
                game = json.loads(state.read_text()).get("game_type")
            except (OSError, json.JSONDecodeError) as exc:
                raise UserError(f"cannot read VR-Bench state {state}: {exc}") from None
            if not isinstance(game, str):
                raise UserError(f"{state} is not a VR-Bench UnifiedState (no game_type)")
            difficulty_dir = state.parent.parent
            above_game = difficulty_dir.parent.parent.parent.name  # <split>/<game>/<skin>/<difficulty>
            split_name = above_game if above_game in SPLIT_NAMES else None
            levels.append(VRBenchLevel(state=state, game=GAME_ALIASES.get(game, game), skin=difficulty_dir.parent.name,
                                       difficulty=difficulty_dir.name, split=split_name))
    if split:
        wanted = {"test", "eval"} if split in ("test", "eval") else {split}
        levels = [lv for lv in levels if lv.split in wanted]
    if not levels:
        where = f" in split {split!r}" if split else ""
        raise UserError(f"no VR-Bench levels{where} under {folder} (expected <game>/<skin>/<difficulty>/states/*.json)")
    return sorted(levels, key=lambda lv: lv.key)


def level_instances(matches) -> dict:
    """``{level key: Instance}`` for every level in ``matches`` (``(video, level)`` pairs from
    :func:`match_videos`), read once each; a level that cannot be read maps to the one-line
    reason instead (its videos are then reported as skipped, not scored)."""
    instances: dict = {}
    for _, level in matches:
        if level.key not in instances:
            try:
                instances[level.key] = level_instance(level)
            except UserError as exc:
                instances[level.key] = str(exc)
    return instances


def level_instance(level: VRBenchLevel) -> Instance:
    """The :class:`Instance` of one level (raises :class:`UserError` for a level it cannot read)."""
    from gen_reason.verifiers.vrbench import load_level

    instance = load_level(level.state, level.image)
    state = json.loads(level.state.read_text())
    ours = (state.get("metadata") or {}).get("genreason") or {}
    solution = instance.solution
    if ours.get("solution_cells"):
        solution = _solution_from_cells(instance.spec, state, ours["solution_cells"])
    config = {"source": str(level.state), "game": level.game, "skin": level.skin, "level": level.stem}
    if level.split:
        config["split"] = level.split
    return dataclasses.replace(instance, seed=level.seed, prompt=ours.get("prompt") or PROMPTS.get(level.game, ""),
                               solution=solution, config=config)


def _solution_from_cells(spec: dict, state: dict, cells: dict) -> dict:
    """Map stored ``{"agent": [[row, col], ...], "box": [...]}`` onto ``load_level``'s nodes."""
    cell_size = float(state["render"]["cell_size"])
    index = {(round(x, 3), round(y, 3)): i for i, (x, y) in enumerate(spec["nodes"])}

    def node(cell) -> int:
        r, c = cell
        key = (round((c + 0.5) * cell_size, 3), round((r + 0.5) * cell_size, 3))
        if key not in index:
            raise UserError(f"stored solution cell {cell} is not a place the player may stand")
        return index[key]

    solution = {"path": [node(c) for c in cells["agent"]]}
    if cells.get("box"):
        solution["box_path"] = [node(c) for c in cells["box"]]
    return solution


def load_levels(folder: str | Path, split: str | None = None,
                ) -> tuple[list[tuple[Instance, VRBenchLevel]], list[tuple[VRBenchLevel, str]]]:
    """``(loaded, skipped)``: every level's instance, and the levels that could not be loaded
    (unsupported game, unreadable image) with the reason. Duplicate uids are refused."""
    loaded, skipped = [], []
    for level in find_levels(folder, split):
        try:
            loaded.append((level_instance(level), level))
        except UserError as exc:
            skipped.append((level, str(exc)))
    seen: dict[str, VRBenchLevel] = {}
    for instance, level in loaded:
        if instance.uid in seen:
            raise UserError(f"levels {seen[instance.uid].key} and {level.key} would share the uid {instance.uid}; "
                            "point at one split or one skin folder")
        seen[instance.uid] = level
    return loaded, skipped


def iter_vrbench_instances(folder: str | Path, split: str | None = None) -> Iterator[Instance]:
    """The instances of a VR-Bench folder (for ``genreason eval``); unsupported levels are
    reported on stderr and left out."""
    loaded, skipped = load_levels(folder, split)
    if skipped:
        games = sorted({level.game for level, _ in skipped})
        print(f"genreason: skipping {len(skipped)} VR-Bench level(s) of {', '.join(games)}: {skipped[0][1]}",
              file=sys.stderr)
    for instance, _ in loaded:
        yield instance


def list_videos(folder: str | Path) -> list[Path]:
    """Every video file under ``folder`` (recursively), sorted."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())


def match_videos(videos: list[Path], levels: list[VRBenchLevel],
                 ) -> tuple[list[tuple[Path, VRBenchLevel]], list[tuple[Path, str]]]:
    """Match model outputs to levels the way VR-Bench names them.

    A video answers level ``<stem>`` when it is named ``<stem>.<ext>`` or
    ``<stem>_<anything>.<ext>`` (the longest matching stem wins). When several levels share
    the stem (``easy_0001`` of two games or skins), the one whose game, skin, difficulty
    and split folder names appear most in the video's folder path wins; a tie is
    ambiguous. Returns ``(matches, problems)``: problems are ``(video, reason)`` for
    ambiguous videos and for videos named after no level.
    """
    by_stem: dict[str, list[VRBenchLevel]] = {}
    for level in levels:
        by_stem.setdefault(level.stem, []).append(level)
    matches, problems = [], []
    for video in videos:
        parts = video.stem.split("_")
        candidates: list[VRBenchLevel] = []
        for k in range(len(parts), 0, -1):
            candidates = by_stem.get("_".join(parts[:k]), [])
            if candidates:
                break
        if not candidates:
            problems.append((video, "named after no level (expected <difficulty>_<NNNN>[_*].mp4)"))
            continue
        if len(candidates) == 1:
            matches.append((video, candidates[0]))
            continue
        folders = set(video.absolute().parent.parts)  # not resolved: a link's own folder names it

        def overlap(level: VRBenchLevel) -> int:
            names = {level.game, level.folder.parent.parent.name, level.skin, level.difficulty, level.split}
            return len(folders & {n for n in names if n})

        ranked = sorted(candidates, key=overlap, reverse=True)
        if overlap(ranked[0]) == overlap(ranked[1]):
            tied = [lv.key for lv in ranked if overlap(lv) == overlap(ranked[0])]
            problems.append((video, f"ambiguous: {len(tied)} levels are named {ranked[0].stem} ({', '.join(tied)}); "
                                    "put the outputs in folders named after their game and skin"))
            continue
        matches.append((video, ranked[0]))
    return matches, problems
