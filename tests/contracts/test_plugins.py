"""Third-party plugins: a throwaway package declares one plugin of each kind through entry
points (``genreason.tasks``, ``genreason.verifiers``, ``genreason.solvers``,
``genreason.families``), is pip-installed into a folder, and the contract sweep in this
directory picks every one of them up with no new test code."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

PLUGIN = '''
"""A throwaway genreason plugin: one task, its verifiers, one solver, one model family."""
from gen_reason.models.embedded import EmbeddedVideoPipeline
from gen_reason.puzzles.maze.grid import GridMaze
from gen_reason.solvers.single import SingleSample
from gen_reason.verifiers.maze import MazeReferenceVerifier, MazeRuleVerifier


class ToyGrid(GridMaze):
    """A grid maze under another name, judged by the plugin's own verifiers."""
    name = "toy/grid-v1"
    verifier_family = "toy"


class ToyRule(MazeRuleVerifier):
    """The plugin's rule verifier."""


class ToyReference(MazeReferenceVerifier):
    """The plugin's reference verifier."""


class ToySolver(SingleSample):
    """One sample, under the plugin's name."""
    name = "toy-solver"


class ToyPipeline(EmbeddedVideoPipeline):
    """A pipeline class of the plugin's own (a model family)."""
'''

PYPROJECT = '''
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "genreason-toy-plugin"
version = "0.0.1"

[tool.setuptools]
py-modules = ["genreason_toy_plugin"]

[project.entry-points."genreason.tasks"]
"toy/grid-v1" = "genreason_toy_plugin:ToyGrid"

[project.entry-points."genreason.verifiers"]
"toy:rule" = "genreason_toy_plugin:ToyRule"
"toy:reference" = "genreason_toy_plugin:ToyReference"

[project.entry-points."genreason.solvers"]
"toy-solver" = "genreason_toy_plugin:ToySolver"

[project.entry-points."genreason.families"]
"ToyPipeline" = "genreason_toy_plugin:ToyPipeline"
'''


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The throwaway package, pip-installed (no dependencies, no network) into a folder."""
    root = tmp_path_factory.mktemp("plugin")
    package = root / "package"
    package.mkdir()
    (package / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (package / "genreason_toy_plugin.py").write_text(textwrap.dedent(PLUGIN))
    site = root / "site"
    run = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--no-index", "--target", str(site), str(package)], capture_output=True, text=True)
    if run.returncode != 0:
        pytest.skip(f"cannot pip-install the throwaway plugin here: {run.stderr.strip()[-300:]}")
    return site


def test_registries_list_the_installed_plugins(plugin_site):
    code = ("from gen_reason.puzzles import TASKS; from gen_reason.solvers.registry import SOLVERS; "
            "from gen_reason.verifiers.registry import VERIFIERS, verifier_for; "
            "from gen_reason.models.families import PIPELINES; "
            "print('toy/grid-v1' in TASKS.names(), 'toy-solver' in SOLVERS.names(), "
            "'toy:rule' in VERIFIERS.names(), 'ToyPipeline' in PIPELINES.names(), "
            "type(verifier_for('toy/grid', 'rule')).__name__)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(plugin_site)})
    assert run.stdout.split() == ["True", "True", "True", "True", "ToyRule"], run.stderr[-2000:]


def test_the_contract_sweep_runs_every_plugin(plugin_site):
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", str(HERE), "-k",
         "(toy or Toy) and not test_plugins"],
        capture_output=True, text=True, cwd=HERE.parents[1],
        env={**os.environ, "PYTHONPATH": str(plugin_site), "OMP_WAIT_POLICY": "PASSIVE"})
    passed = [line for line in run.stdout.splitlines() if line.startswith("PASSED")]
    assert run.returncode == 0, run.stdout[-3000:]
    for expected in ("test_ground_truth_succeeds_under_every_verifier_kind[toy/grid-v1-rule]",
                     "test_ground_truth_succeeds_under_every_verifier_kind[toy/grid-v1-reference]",
                     "test_rule_verifier_judges_without_the_solution[toy/grid-v1]",
                     "test_solver_stays_in_budget_and_repeats_for_a_seed[toy-solver]",
                     "test_family_generates_and_gives_exact_x0_at_the_last_step[ToyPipeline]"):
        assert any(expected in line for line in passed), f"{expected} did not run and pass:\n{run.stdout[-3000:]}"
