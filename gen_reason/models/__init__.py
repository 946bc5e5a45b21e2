"""Video generators: one class over diffusers image-to-video pipelines (docs/ARCHITECTURE.md).

``VideoGenerator`` and ``StepState`` (the contract) import no torch;
``DiffusersVideoGenerator``, ``PIPELINES`` and the families load torch and diffusers on
first use, so ``import gen_reason.models`` stays cheap.

    from gen_reason.models import DiffusersVideoGenerator
    generator = DiffusersVideoGenerator.from_pretrained("models/Wan2.1-I2V-14B-480P-Diffusers")
    videos = generator.generate(instance.first_frame, instance.prompt, seeds=range(8))
"""

from __future__ import annotations

from typing import Any

from gen_reason.models.base import OnStep, StepState, VideoGenerator

__all__ = ["DiffusersVideoGenerator", "OnStep", "PIPELINES", "StepState", "VideoGenerator"]

_LAZY = {
    "DiffusersVideoGenerator": "gen_reason.models.diffusers_backend",
    "PIPELINES": "gen_reason.models.families",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gen_reason.models' has no attribute {name!r}")
