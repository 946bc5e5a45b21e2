"""genreason: reasoning via video generation.

The import root for the whole toolkit: ``gen_reason.puzzles`` (procedural puzzles),
``gen_reason.verifiers`` (the referee), ``gen_reason.solvers`` (test-time strategies),
``gen_reason.models`` (video generators). This module imports nothing heavy so that
``import gen_reason.puzzles`` never pulls in torch.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `from gen_reason import solve` without importing torch at `import gen_reason`.
    if name == "solve":
        from gen_reason.runs.solve import solve

        return solve
    raise AttributeError(f"module 'gen_reason' has no attribute {name!r}")
