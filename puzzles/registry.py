"""The task registry: every puzzle task by versioned name (``maze/grid-v1``).

Adding a task is one module and one line here; the sweep tests pick it up. A bare
name (``maze/grid``) resolves to the highest version; ``maze`` is an alias of
``maze/grid``.
"""

from __future__ import annotations

from gen_reason.puzzles.task import Task
from gen_reason.registry import Registry

TASKS: Registry[type[Task]] = Registry("task", base=Task, entry_points="genreason.tasks")
TASKS.register("maze/grid-v1", "gen_reason.puzzles.maze.grid:GridMaze", aliases=("maze",))
TASKS.register("maze/irregular-v1", "gen_reason.puzzles.maze.irregular:IrregularMaze")
TASKS.register("maze/trapfield-v1", "gen_reason.puzzles.maze.trapfield:TrapField")
TASKS.register("maze/sokoban-v1", "gen_reason.puzzles.maze.sokoban:Sokoban")
TASKS.register("maze/3d-v1", "gen_reason.puzzles.maze.maze3d:Maze3D")
TASKS.register("maze/draw-v1", "gen_reason.puzzles.maze.draw:DrawMaze")
TASKS.register("tangram-v1", "gen_reason.puzzles.tangram:Tangram")


def get_task(name: str, **config) -> Task:
    """An instance of the task registered as ``name``, configured with ``config``."""
    return TASKS.get(name)(**config)


def task_names() -> list[str]:
    """All registered task names."""
    return TASKS.names()
