"""Shared test setup: quiet, deterministic threading before torch is ever imported."""

import os
from pathlib import Path

import pytest

# Spinning OpenMP threads make CPU torch ~25x slower on a busy 2-core box.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """The shared fixtures folder beside the repository (``shared/fixtures``), or skip when it is absent."""
    path = SHARED / "fixtures"
    if not path.is_dir():
        pytest.skip(f"shared fixtures not found at {path} (they live beside the repository checkout)")
    return path
