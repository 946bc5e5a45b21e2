"""Evaluation runs: configs, the run store, the runner, reports and plots (the top layer)."""
