"""The solver registry: every test-time strategy by name (``--solver NAME``).

Targets are lazy ``"module:Class"`` strings, so listing solvers imports none of them.
"""

from __future__ import annotations

from typing import Any

from gen_reason.registry import Registry
from gen_reason.solvers.base import Solver

SOLVERS: Registry[type[Solver]] = Registry("solver", base=Solver, entry_points="genreason.solvers")
SOLVERS.register("single", "gen_reason.solvers.single:SingleSample")
SOLVERS.register("best-of-n", "gen_reason.solvers.best_of_n:BestOfN", aliases=("bon",))
SOLVERS.register("latent-ensemble", "gen_reason.solvers.latent_ensemble:LatentEnsemble", aliases=("ensemble",))
SOLVERS.register("visual-tts", "gen_reason.solvers.visual_tts:VisualTestTimeScaling")
SOLVERS.register("videotpo", "gen_reason.solvers.videotpo:VideoTPO")
SOLVERS.register("closed-loop", "gen_reason.solvers.closed_loop:ClosedLoop", aliases=("collabvr",))


def get_solver(name: str, *, vlm: Any = None, **config: Any) -> Solver:
    """A solver registered as ``name``, configured with ``config`` (and ``vlm`` where it uses one)."""
    return SOLVERS.get(name)(vlm=vlm, **config)


def solver_names() -> list[str]:
    """All registered solver names."""
    return SOLVERS.names()
