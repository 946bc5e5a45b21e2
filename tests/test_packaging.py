"""One import root: puzzles/, solvers/, verifiers/ install as gen_reason.* (docs/ARCHITECTURE.md)."""

import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"gen_reason": "gen_reason", "gen_reason.puzzles": "puzzles", "gen_reason.solvers": "solvers",
         "gen_reason.verifiers": "verifiers"}


def _declared():
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_declared():
    cfg = _declared()
    assert cfg["package-dir"] == ROOTS
    found = set()
    for name, folder in ROOTS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([name, *rel.parts]))
    assert found == set(cfg["packages"]), "add new package folders to pyproject.toml [tool.setuptools] packages"


def test_installed_names_resolve_to_repo_folders():
    import gen_reason.puzzles
    import gen_reason.solvers
    import gen_reason.verifiers

    assert Path(gen_reason.puzzles.__file__).parent == REPO / "puzzles"
    assert Path(gen_reason.verifiers.__file__).parent == REPO / "verifiers"
    assert Path(gen_reason.solvers.__file__).parent == REPO / "solvers"


def test_bare_names_are_not_claimed():
    # The bare `verifiers` / `puzzles` / `solvers` names stay free for PyPI's packages.
    code = "import importlib.util as u; print([n for n in ('verifiers','puzzles','solvers') if u.find_spec(n)])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/").stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_built_wheel_installs_in_fresh_venv(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(dist)], check=True, cwd=tmp_path)
    wheel = next(dist.glob("genreason-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "gen_reason/puzzles/maze/grid.py" in names
    assert "gen_reason/verifiers/__init__.py" in names and "gen_reason/solvers/__init__.py" in names
    assert not any(n.startswith(("puzzles/", "verifiers/", "solvers/")) for n in names)
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    py = env / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    # find_spec of a direct subpackage imports only gen_reason (no dependencies needed here).
    code = ("import importlib.util as u, os, gen_reason; root = gen_reason.__path__[0]; "
            "print(all(u.find_spec(n).origin.startswith(root) "
            "for n in ('gen_reason.puzzles', 'gen_reason.verifiers', 'gen_reason.solvers')) "
            "and os.path.exists(os.path.join(root, 'puzzles', 'maze', 'grid.py')))")
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout.strip() == "True", out.stderr


def test_the_code_cites_nothing_outside_the_repository():
    """Comments and docstrings give their reasons in place or point at docs/, never at notes
    that are not part of the project."""
    import re

    root = Path(__file__).resolve().parents[1]
    # the names are spelled in pieces so that this test does not cite them itself
    pattern = re.compile("|".join(["FIELD" + "_NOTES", re.escape("../" + "shared"), re.escape("DESIGN" + ".md")]))
    found = [f"{path.relative_to(root)}:{n}" for folder in ("gen_reason", "puzzles", "solvers", "verifiers", "bench",
                                                             "tests", "configs", "notebooks")
             for path in (root / folder).rglob("*") if path.suffix in (".py", ".toml", ".yaml", ".md", ".ipynb")
             for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
             if pattern.search(line)]
    found += [f"pyproject.toml:{n}" for n, line in enumerate((root / "pyproject.toml").read_text().splitlines(), 1)
              if pattern.search(line)]
    assert not found, f"cites outside the repository: {found[:10]}"
