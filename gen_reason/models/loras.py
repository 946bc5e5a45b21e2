"""LoRA weights on a loaded pipeline: which files a LoRA path means, and loading them mixed.

A LoRA is a diffusers-format file or folder (``pytorch_lora_weights.safetensors``). A
folder that ``genreason train lora`` wrote for Wan 2.2 A14B holds one LoRA per expert,
listed in :data:`EXPERT_LORA_MANIFEST`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from gen_reason.errors import UserError
from gen_reason.models.model_folder import read_json

#: A LoRA folder with one adapter per Wan 2.2 A14B expert (``genreason train lora``) holds this manifest ...
EXPERT_LORA_MANIFEST = "lora_experts.json"
#: ... and its files, each a diffusers LoRA (``transformer.*`` keys) for the expert named.
EXPERT_LORA_FILES = {"transformer": "pytorch_lora_weights.safetensors",
                     "transformer_2": "transformer_2/pytorch_lora_weights.safetensors"}


def check_loras(lora: str | Path | Sequence[str | Path] | None,
                lora_scale: float | Sequence[float] = 1.0) -> tuple[list[Path], list[float]]:
    """``lora`` (one path, a list, or ``None``) as paths that exist, each with its scale
    (``lora_scale``: one number for all, or one per LoRA); a one-line :class:`UserError` otherwise."""
    loras = [Path(item).expanduser() for item in _as_list(lora)]
    scales = list(lora_scale) if isinstance(lora_scale, (list, tuple)) else [lora_scale] * len(loras)
    if len(scales) != len(loras):
        raise UserError(f"got {len(loras)} LoRA(s) but {len(scales)} lora_scale value(s)")
    for lora_path in loras:
        if not lora_path.exists():
            raise UserError(f"LoRA not found: {lora_path}")
    return loras, scales


def load_loras(pipe, paths: Sequence[str | Path], scales: Sequence[float]) -> None:
    """Load LoRA weights (diffusers format) into ``pipe`` and mix them with ``scales``.

    Wan 2.2 A14B has two experts. A folder with ``lora_experts.json`` (a run of
    ``genreason train lora`` on A14B) holds one LoRA per expert: each goes into its
    own expert, and an expert it has none for runs unchanged. Any other LoRA goes
    into both experts.
    """
    names = []
    two_experts = getattr(pipe, "transformer_2", None) is not None
    for index, lora_path in enumerate(paths):
        lora_path = Path(lora_path).expanduser()
        if not lora_path.exists():
            raise UserError(f"LoRA not found: {lora_path}")
        name = f"lora{index}"
        per_expert = expert_lora_files(lora_path)
        if per_expert is not None:
            if not two_experts:
                raise UserError(f"{lora_path} holds one LoRA per Wan 2.2 A14B expert; this model has a single "
                                "transformer")
            if per_expert["transformer"] is not None:
                pipe.load_lora_weights(str(per_expert["transformer"]), adapter_name=name)
            if per_expert["transformer_2"] is not None:
                pipe.load_lora_weights(str(per_expert["transformer_2"]), adapter_name=name,
                                       load_into_transformer_2=True)
        else:
            pipe.load_lora_weights(str(lora_path), adapter_name=name)
            if two_experts:
                pipe.load_lora_weights(str(lora_path), adapter_name=name, load_into_transformer_2=True)
        names.append(name)
    pipe.set_adapters(names, [float(scale) for scale in scales])


def expert_lora_files(path: Path) -> dict[str, Path | None] | None:
    """The per-expert LoRA files of a folder with ``lora_experts.json`` (``None`` for any other LoRA).

    Maps ``transformer`` / ``transformer_2`` to the file for that expert, or ``None``
    where that expert got no adapter; a listed file that is missing is a :class:`UserError`.
    """
    manifest_file = path / EXPERT_LORA_MANIFEST
    if not (path.is_dir() and manifest_file.is_file()):
        return None
    manifest = read_json(manifest_file)
    files: dict[str, Path | None] = {}
    for expert in EXPERT_LORA_FILES:
        relative = manifest.get(expert) if isinstance(manifest, dict) else None
        files[expert] = None if relative is None else path / str(relative)
        if files[expert] is not None and not files[expert].is_file():
            raise UserError(f"{manifest_file} lists {relative} for {expert}, but it is missing")
    if all(file is None for file in files.values()):
        raise UserError(f"{manifest_file} lists no LoRA file for either expert")
    return files


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, (str, Path)):
        return [value]
    return list(value)
