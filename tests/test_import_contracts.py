"""The allowed imports between our layers, as import-linter contracts in pyproject.toml.

import-linter finds a package by walking its folder, and three of our subpackages live in
other folders (``puzzles/`` is ``gen_reason.puzzles``: the package-dir mapping in
pyproject.toml). So the test lays the sources out as they are installed, in a temporary
folder (Python files only), and runs ``lint-imports`` there with the project's contracts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def installed_layout(dest: Path) -> Path:
    """Copy every package's Python files to where ``package-dir`` installs them."""
    import tomllib

    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    skip = shutil.ignore_patterns("__pycache__", "assets", "prompts", "*.pyc")
    for package, folder in sorted(mapping.items()):
        target = dest.joinpath(*package.split("."))
        shutil.copytree(ROOT / folder, target, ignore=skip, dirs_exist_ok=True)
    return dest


def lint_imports(src: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` with the project's contracts over the installed layout ``src``."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    return subprocess.run([exe, "--no-cache", str(ROOT / "pyproject.toml")], cwd=src,
                          env={**os.environ, "PYTHONPATH": str(src)}, capture_output=True, text=True, timeout=600)


def test_every_import_contract_is_kept(tmp_path):
    run = lint_imports(installed_layout(tmp_path / "src"))
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "BROKEN" not in run.stdout and " KEPT" in run.stdout


def test_the_contracts_catch_a_forbidden_import(tmp_path):
    """A puzzle module that imports the referee breaks its contract (the check can fail)."""
    src = installed_layout(tmp_path / "src")
    (src / "gen_reason" / "puzzles" / "_bad.py").write_text("import gen_reason.verifiers.rules\n")
    run = lint_imports(src)
    assert run.returncode != 0 and "gen_reason.puzzles._bad -> gen_reason.verifiers" in run.stdout
