"""What a fine-tuning run leaves: the LoRA weights (diffusers format; one file per expert on
Wan 2.2 A14B; the embedded model's UNet LoRA), or the whole fine-tuned model folder, and
the model card (``README.md``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from gen_reason.models.families import Geometry
from gen_reason.folders import read_jsonl

if TYPE_CHECKING:
    from gen_reason.train.lora_config import LoraTrainConfig

LORA_WEIGHTS = "pytorch_lora_weights.safetensors"


def save_embedded_lora(directory: Path, layers: dict[str, torch.Tensor], lora_config) -> Path:
    """Save the embedded model's UNet LoRA (``unet.``-prefixed peft keys, its LoRA config in the metadata)."""
    from safetensors.torch import save_file

    settings = {"r": lora_config.r, "lora_alpha": lora_config.lora_alpha, "lora_dropout": lora_config.lora_dropout,
                "target_modules": sorted(lora_config.target_modules)}
    path = directory / LORA_WEIGHTS
    save_file({f"unet.{k}": v.detach().cpu().contiguous() for k, v in layers.items()}, str(path),
              metadata={"lora_config": json.dumps(settings)})
    return path


def load_embedded_lora(pipe, path: str | os.PathLike, adapter_name: str = "default") -> None:
    """Put a LoRA saved by :func:`save_embedded_lora` into an ``EmbeddedVideoPipeline``'s UNet
    (the pipeline's own ``load_lora_weights``, kept here for callers of the trainer)."""
    pipe.load_lora_weights(path, adapter_name=adapter_name)


def save_outputs(out: Path, pipe, objective, model, lora_config) -> Path:
    """Write the trained weights: the LoRA (diffusers format) or, for full fine-tuning, the model folder.

    On a two-expert pipeline (Wan 2.2 A14B) each trained expert's LoRA goes to its own
    file (:func:`save_expert_loras`); the high-noise one, if trained, is the return value.
    """
    if lora_config is None:
        pipe.save_pretrained(out, safe_serialization=True)
        return out
    from peft.utils import get_peft_model_state_dict

    if getattr(pipe, "transformer_2", None) is not None:
        return save_expert_loras(out, pipe, objective.trained_modules)
    layers = get_peft_model_state_dict(model)
    if objective.name == "embedded":
        return save_embedded_lora(out, layers, lora_config)
    metadata = model.peft_config["default"].to_dict() if hasattr(model, "peft_config") else None
    type(pipe).save_lora_weights(out, transformer_lora_layers=layers, safe_serialization=True,
                                 transformer_lora_adapter_metadata=metadata)
    return out / LORA_WEIGHTS


def save_expert_loras(out: Path, pipe, experts: dict[str, torch.nn.Module]) -> Path:
    """Save each Wan 2.2 A14B expert's LoRA as its own diffusers LoRA file, and the manifest saying whose is whose.

    diffusers names every Wan LoRA key ``transformer.*`` and loads one file into one
    expert (``load_into_transformer_2=True`` picks the second), so two experts with
    their own adapters need two files: ``out/pytorch_lora_weights.safetensors``
    (``transformer``, high noise: what ``pipe.load_lora_weights(out)`` reads) and
    ``out/transformer_2/pytorch_lora_weights.safetensors`` (``transformer_2``). A file
    of an expert not trained this time is removed, so the folder never mixes runs.
    """
    from peft.utils import get_peft_model_state_dict

    from gen_reason.models.diffusers_backend import EXPERT_LORA_FILES, EXPERT_LORA_MANIFEST

    manifest: dict[str, Any] = {"pipeline": type(pipe).__name__,
                                "boundary_ratio": pipe.config.get("boundary_ratio")}
    for name, relative in EXPERT_LORA_FILES.items():
        file = out / relative
        model = experts.get(name)
        if model is None:
            file.unlink(missing_ok=True)
            manifest[name] = None
            continue
        metadata = model.peft_config["default"].to_dict()
        type(pipe).save_lora_weights(file.parent, transformer_lora_layers=get_peft_model_state_dict(model),
                                     safe_serialization=True, transformer_lora_adapter_metadata=metadata,
                                     weight_name=file.name)
        manifest[name] = relative
    (out / EXPERT_LORA_MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return out / EXPERT_LORA_FILES["transformer"] if "transformer" in experts else out / EXPERT_LORA_MANIFEST


def _validation_summary(out: Path) -> str:
    """The model card's line on held-out success: first and last validation, or that none ran."""
    rows = [r for r in read_jsonl(out / "validation.jsonl") if r.get("success") is not None]
    if not rows:
        return "no validation was run"
    first, last = rows[0], rows[-1]
    return (f"held-out success {first['success']:.1%} at step {first['step']} -> {last['success']:.1%} "
            f"at step {last['step']} ({last['count']} puzzles, reference referee); see validation.png")


def _usage(out: Path, config: LoraTrainConfig, family_name: str) -> str:
    """The model card's "Use" section: how to load what this run saved."""
    if config.lora and family_name == "embedded":
        return (
            "```python\n"
            "from gen_reason.models import DiffusersVideoGenerator\n"
            "from gen_reason.train.outputs import load_embedded_lora\n"
            f"generator = DiffusersVideoGenerator.from_pretrained({config.model!r})\n"
            f"load_embedded_lora(generator.pipeline, {str(out)!r})\n"
            "```"
        )
    if config.lora and family_name == "wan2.2-i2v-a14b":
        return (
            "```python\n"
            "from gen_reason.models import DiffusersVideoGenerator\n"
            f"generator = DiffusersVideoGenerator.from_pretrained({config.model!r}, lora={str(out)!r})\n"
            "```\n\n"
            f"or `genreason solve --model {config.model} --lora {out}`: each expert gets its own LoRA "
            f"(experts trained: {config.experts}; `lora_experts.json` says which file is whose). In diffusers:\n\n"
            "```python\n"
            + (f"pipe.load_lora_weights({str(out)!r}, adapter_name='puzzles')  # transformer (high noise)\n"
               if config.experts in ("both", "high") else "")
            + (f"pipe.load_lora_weights({str(out / 'transformer_2')!r}, adapter_name='puzzles',\n"
               "                        load_into_transformer_2=True)  # transformer_2 (low noise)\n"
               if config.experts in ("both", "low") else "")
            + "```"
        )
    if config.lora:
        return (
            "```python\n"
            "from gen_reason.models import DiffusersVideoGenerator\n"
            f"generator = DiffusersVideoGenerator.from_pretrained({config.model!r}, lora={str(out)!r})\n"
            "```\n\n"
            f"or `genreason solve --model {config.model} --lora {out}`; in diffusers, "
            f"`pipe.load_lora_weights({str(out)!r})`."
        )
    return f"`DiffusersVideoGenerator.from_pretrained({str(out)!r})` (this folder is a diffusers model folder)."


def write_model_card(out: Path, config: LoraTrainConfig, family_name: str, geometry: Geometry, steps: int,
                     num_samples: int, final_loss: float | None, targets: Sequence[str] | None) -> Path:
    """``README.md``: what was trained on what, how, with what held-out result, and how to use it."""
    validation = _validation_summary(out)
    kind = f"LoRA rank {config.rank}, alpha {config.alpha or config.rank}" if config.lora else "full fine-tune"
    if family_name == "wan2.2-i2v-a14b":
        kind += {"both": " on both experts", "high": " on the high-noise expert (transformer)",
                 "low": " on the low-noise expert (transformer_2)"}[config.experts]
    usage = _usage(out, config, family_name)
    text = f"""---
library_name: diffusers
base_model: {config.model}
tags: [genreason, image-to-video, {'lora' if config.lora else 'full-finetune'}, puzzles]
---

# {Path(config.model).name} fine-tuned on {Path(config.data).name}

- base model: `{config.model}` ({family_name})
- data: `{config.data}` split `{config.split}`, {num_samples} videos, trained at {geometry.num_frames} frames
  of {geometry.height}x{geometry.width}
- recipe: {kind}{f', targets {", ".join(targets)}' if targets else ''}; lr {config.learning_rate:g}
  ({config.lr_scheduler}), {steps} optimizer steps of {config.batch_size} x processes x
  {config.gradient_accumulation_steps} samples, mixed precision {config.mixed_precision}, seed {config.seed}
- final training loss: {'n/a' if final_loss is None else f'{final_loss:.4f}'}
- validation: {validation}

Made by `genreason train lora` (gen_reason.train.lora); `config.yaml` holds every setting.

## Use

{usage}
"""
    path = out / "README.md"
    path.write_text(text)
    return path
