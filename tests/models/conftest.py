"""Fixtures for the generator tests: tiny random-weight model folders, built once per session."""

import os

# Idle OpenMP threads spin on a busy 2-core machine and slow torch ~25x;
# this must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """``tiny_model_dir(kind)`` -> a saved tiny model folder of that kind (see gen_reason.models.testing)."""
    from gen_reason.models import testing

    folders = {}

    def get(kind: str):
        if kind not in folders:
            root = tmp_path_factory.mktemp(kind.replace(".", "_"))
            folders[kind] = testing.save_tiny_pipeline(kind, root / kind)
        return folders[kind]

    return get


@pytest.fixture(scope="session")
def tiny_generator(tiny_model_dir):
    """``tiny_generator(kind)`` -> a loaded 2-step generator at the tiny geometry, shared by tests
    that do not change it."""
    from gen_reason.models import DiffusersVideoGenerator, testing

    generators = {}

    def get(kind: str):
        if kind not in generators:
            generators[kind] = DiffusersVideoGenerator.from_pretrained(
                tiny_model_dir(kind), steps=2, **testing.TINY_GEOMETRY[kind]
            )
        return generators[kind]

    return get
