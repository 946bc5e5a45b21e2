"""Test-time strategies (installed as ``gen_reason.solvers``): single, best-of-N, ensembles, closed loop.

Every strategy implements the solver contract (docs/ARCHITECTURE.md), ``solve(instance, generator,
verifier, budget) -> Attempt``, and is registered by name in :data:`SOLVERS`::

    from gen_reason.solvers import Budget, get_solver
    solver = get_solver("best-of-n", n=8)
    attempt = solver.solve(instance, generator, rule_verifier, Budget(max_nfe=800))
    attempt.video, attempt.score, attempt.compute.nfe

This package imports no torch until a strategy that needs it runs.
"""

from gen_reason.solvers.base import Attempt, Budget, Candidate, Compute, Solver, SolverConfig
from gen_reason.solvers.passk import pass_at_k, pass_at_k_curve
from gen_reason.solvers.registry import SOLVERS, get_solver, solver_names

__all__ = [
    "Attempt",
    "Budget",
    "Candidate",
    "Compute",
    "SOLVERS",
    "Solver",
    "SolverConfig",
    "get_solver",
    "pass_at_k",
    "pass_at_k_curve",
    "solver_names",
]
