"""Test-time strategies (installed as ``gen_reason.solvers``): single, best-of-N, ensembles, closed loop."""
