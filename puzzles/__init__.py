"""Procedural puzzles (installed as ``gen_reason.puzzles``): generators, exact solvers,
prompts and ground-truth solution videos. Imports numpy and OpenCV only, never torch.

>>> from gen_reason.puzzles import get_task
>>> inst = get_task("maze/grid").generate(seed=0, difficulty="easy")
"""

from gen_reason.puzzles.instance import Instance
from gen_reason.puzzles.registry import TASKS, get_task, task_names

__all__ = ["Instance", "TASKS", "get_task", "task_names"]
