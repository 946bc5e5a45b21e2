"""What trains in a fine-tuning run: the pipeline frozen, then a peft LoRA injected into the
objective's network(s) (one adapter per Wan 2.2 A14B expert) or every weight of it made
trainable (the checkpoints save only what trains: :class:`~gen_reason.train.checkpoint.TrainableState`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import torch

from gen_reason.errors import UserError

if TYPE_CHECKING:
    from gen_reason.train.lora_config import LoraTrainConfig


def add_lora(model: torch.nn.Module, config: LoraTrainConfig, targets: Sequence[str], seed: int):
    """Inject a peft LoRA into ``model`` (its own parameters frozen); return the peft config."""
    from peft import LoraConfig, inject_adapter_in_model

    names = [name for name, _ in model.named_modules()]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        examples = ", ".join(n for n in names if n.count(".") >= 2)[:300]
        raise UserError(f"target module(s) {', '.join(missing)} match nothing in {type(model).__name__}; "
                        f"its modules include: {examples} ...")
    lora_config = LoraConfig(r=config.rank, lora_alpha=config.alpha or config.rank, lora_dropout=config.dropout,
                             init_lora_weights=True, target_modules=list(targets))
    torch.manual_seed(seed)  # LoRA A's initialisation: the same on every process and every rerun
    if hasattr(model, "add_adapter"):  # diffusers models with peft support
        model.add_adapter(lora_config)
    else:  # e.g. UNet2DModel: peft directly
        inject_adapter_in_model(lora_config, model)
        for name, parameter in model.named_parameters():
            parameter.requires_grad_("lora_" in name)
    for parameter in model.parameters():
        if parameter.requires_grad:  # trainable weights in float32 whatever the base dtype
            parameter.data = parameter.data.float()
    return lora_config


#: Offsets of each network's LoRA initialisation seed (an expert trained alone starts as it would beside the other).
_SEED_OFFSETS = {"transformer_2": 1}


def make_trainable(pipe, objective, config: LoraTrainConfig) -> tuple[Any, list[str] | None]:
    """Freeze the pipeline, then make the objective's trained network(s) trainable: a LoRA or every weight.

    On Wan 2.2 A14B that is each expert ``config.experts`` names, with its own adapter.
    Returns the peft LoRA config (``None`` for full fine-tuning) and the target modules.
    """
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.requires_grad_(False)
            component.eval()
    lora_config, targets = None, None
    for name, model in objective.trained_modules.items():
        if config.lora:
            targets = list(config.target_modules or objective.default_targets)
            lora_config = add_lora(model, config, targets, config.seed + _SEED_OFFSETS.get(name, 0))
        else:
            if model.dtype != torch.float32:  # master weights in float32; autocast computes in low precision
                model.to(torch.float32)
            model.requires_grad_(True)
        if config.gradient_checkpointing:
            if not getattr(model, "_supports_gradient_checkpointing", False):
                raise UserError(f"{type(model).__name__} does not support gradient checkpointing")
            model.enable_gradient_checkpointing()
    objective.model.train()
    return lora_config, targets
