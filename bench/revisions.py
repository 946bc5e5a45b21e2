"""An older revision of the repository, for the benches that time it beside the current code.

Read straight from git (``git show`` / ``git archive``), so the working tree, the index and
the repository's worktree list stay as they are:

- :func:`tree_at`: the revision's source packages unpacked into a folder, to be imported
  whole in a separate process (``bench_referee.py --against``: the old referee, puzzles and
  video reader together, by ``referee_driver.py``; ``bench_trainer.py``: the old trainers on
  their own helpers, by ``trainer_driver.py``; ``tests/train/check_same_weights.py``).
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The folders the packages are built from (pyproject.toml's package-dir).
PACKAGES = ("gen_reason", "puzzles", "verifiers", "solvers")


def _git(*args: str) -> bytes:
    """The output of ``git args`` in the repository; a failure ends the bench with git's message."""
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)}: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def commit_of(ref: str) -> str:
    """The full commit id ``ref`` names (ends the bench in one line when there is none,
    e.g. in a shallow clone)."""
    if not has_commit(ref):
        raise SystemExit(f"no commit {ref!r} in this repository (a shallow clone? fetch its history first)")
    return _git("rev-parse", f"{ref}^{{commit}}").decode().strip()


def has_commit(ref: str) -> bool:
    """Whether the repository holds the commit ``ref`` (a shallow clone may not)."""
    done = subprocess.run(["git", "cat-file", "-e", f"{ref}^{{commit}}"], cwd=ROOT, capture_output=True)
    return done.returncode == 0


def describe_head() -> str:
    """The current code in words, for a bench's section: HEAD's short id, and whether the
    source folders (:data:`PACKAGES`) have uncommitted changes."""
    head = commit_of("HEAD")[:7]
    changed = _git("status", "--porcelain", "--", *PACKAGES).decode().strip()
    return f"`{head}`" + (" with uncommitted changes in the source folders" if changed else "")


def tree_at(ref: str, folder: Path, paths: tuple[str, ...] = PACKAGES) -> Path:
    """The folders ``paths`` of revision ``ref`` unpacked into ``folder`` (created), which
    is returned: a source root with the same layout as the repository's."""
    present = set(_git("ls-tree", "--name-only", ref).decode().split())
    archive = _git("archive", "--format=tar", ref, "--", *[p for p in paths if p in present])
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder
