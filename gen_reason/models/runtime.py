"""Where and how a loaded pipeline runs: device, dtype, offload, VAE tiling, attention, compile.

The names and values here are what ``from_pretrained`` takes (and what
:mod:`gen_reason.models.options` checks for every command). ``offload``, ``vae_tiling``
and ``max_batch`` left to ``auto`` are the memory planner's to choose
(:mod:`gen_reason.models.planner`, which also places the pipeline as it planned).
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass

import torch

from gen_reason.errors import UserError
from gen_reason.models.families import Family
from gen_reason.models.model_folder import ModelFolder, first_line, listed_components

_DTYPES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
    "float": torch.float32,
}
#: Offload modes: none, diffusers' model CPU offload, sequential (per-layer) offload, group offload.
OFFLOAD_MODES = ("none", "model", "sequential", "group")


@dataclass(frozen=True)
class MemoryRequest:
    """The memory settings a caller fixed; ``None`` leaves one to the memory planner."""

    offload: str | None
    vae_tiling: bool | None
    max_batch: int | None


def check_memory_request(folder: ModelFolder, *, offload: str | None = None, cpu_offload: bool = False,
                         vae_tiling: bool | str | None = None, max_batch: int | str | None = None) -> MemoryRequest:
    """``offload`` / ``vae_tiling`` / ``max_batch`` as ``from_pretrained`` takes them (``None`` or
    ``"auto"``: the planner's), checked against ``folder``; a one-line :class:`UserError` otherwise."""
    offload = None if offload in (None, "auto") and not cpu_offload else resolve_offload(offload, cpu_offload)
    tiling = _planner_switch(vae_tiling)
    if tiling and "vae" not in listed_components(folder.model_index):
        raise UserError(f"{folder.path.name} has no VAE: vae_tiling does not apply to it")
    max_batch = None if max_batch in (None, "auto") else int(max_batch)
    if max_batch is not None and max_batch < 1:
        raise UserError(f"max_batch must be at least 1, got {max_batch}")
    return MemoryRequest(offload, tiling, max_batch)


def check_offload_device(offload: str | None, device: torch.device) -> None:
    """Raise a one-line :class:`UserError` when ``offload`` asks for a GPU that ``device`` is not."""
    if offload not in (None, "none") and device.type != "cuda":
        raise UserError(f"offload {offload} moves models between the CPU and a GPU; it needs a CUDA device, "
                        f"not {device}")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a ``torch.device``; default CUDA, then Apple MPS, then CPU."""
    if device is not None:
        try:
            device = torch.device(device)
        except RuntimeError as exc:
            raise UserError(f"unknown device {device!r}: {first_line(exc)}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"device {device} requested but CUDA is not available here")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``dtype`` as a ``torch.dtype``; default bfloat16 on CUDA, float32 elsewhere."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if str(dtype).lower() not in _DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; choose one of {', '.join(_DTYPES)}")
    return _DTYPES[str(dtype).lower()]


def attention_backends(family: Family | None = None) -> list[str]:
    """Attention backends the installed diffusers offers (``sdpa`` first, then its dispatch
    backends that need no download at run time), restricted to what ``family`` supports."""
    names = ["sdpa"]
    try:
        from diffusers.models.attention_dispatch import AttentionBackendName
    except ImportError:  # older diffusers: xformers through the pipeline only
        names.append("xformers")
    else:
        names += [backend.value for backend in AttentionBackendName
                  if not backend.value.startswith("_") and not backend.value.endswith("_hub")
                  and backend.value not in ("native", "sdpa")]
    if family is not None and family.attention_backends is not None:
        names = [name for name in names if name in family.attention_backends]
    return names


def check_attention(family: Family, attention: str) -> None:
    """Raise a one-line :class:`UserError` for an attention backend unknown here or unsupported by ``family``."""
    if attention == "auto":
        return
    if attention not in attention_backends():
        raise UserError(f"unknown attention {attention!r}; choose auto or one of {', '.join(attention_backends())}")
    if attention not in attention_backends(family):
        raise UserError(f"{family.name} models do not support {attention} attention; choose auto or one of "
                        f"{', '.join(attention_backends(family))}")


def _planner_switch(value: bool | str | None) -> bool | None:
    """``vae_tiling`` as the planner takes it: ``None`` (its choice), ``True`` or ``False``."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("auto",):
        return None
    if text in ("on", "true", "1", "yes"):
        return True
    if text in ("off", "false", "0", "no"):
        return False
    raise UserError(f"vae_tiling must be auto, on or off; got {value!r}")


def resolve_offload(offload: str | None, cpu_offload: bool = False) -> str:
    """``offload`` as one of :data:`OFFLOAD_MODES` (``cpu_offload=True`` means ``"model"``)."""
    if offload is None or offload is False:
        return "model" if cpu_offload else "none"
    if offload is True:
        return "model"
    if str(offload) not in OFFLOAD_MODES:
        raise UserError(f"unknown offload {offload!r}; choose one of {', '.join(OFFLOAD_MODES)}")
    return str(offload)


def set_attention(pipe, family: Family, attention: str, device: torch.device) -> None:
    """Switch ``pipe``'s transformer(s) to ``attention`` (``auto``: on CUDA the first installed backend of
    ``family.auto_attention``, else PyTorch SDPA); an explicit backend that fails is a :class:`UserError`,
    ``auto`` falls back to SDPA with a warning."""
    explicit = attention != "auto"
    if attention == "auto":
        if device.type != "cuda":
            return
        installed = [name for name in family.auto_attention if importlib.util.find_spec(name)]
        if not installed:
            return
        attention = installed[0]
    if attention == "sdpa":
        return
    try:
        if attention == "xformers":
            pipe.enable_xformers_memory_efficient_attention()
        else:
            for model in transformers_of(pipe):
                model.set_attention_backend(attention)
    except (ImportError, ValueError, RuntimeError) as exc:
        if explicit:
            raise UserError(f"{attention} attention is not available: {first_line(exc)}") from None
        warnings.warn(f"{attention} attention failed ({first_line(exc)}); using PyTorch SDPA", stacklevel=3)


def transformers_of(pipe) -> list:
    """The pipeline's transformer and, on Wan 2.2 A14B, its second expert."""
    return [model for model in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)) if model]



def compile_denoisers(pipe, folder_name: str) -> None:
    """Run the pipeline's transformer(s), or its UNet, through ``torch.compile``."""
    denoisers = transformers_of(pipe) or [model for model in (getattr(pipe, "unet", None),) if model is not None]
    if not denoisers:
        raise UserError(f"{folder_name} has no transformer or UNet to compile")
    for model in denoisers:
        model.compile()
