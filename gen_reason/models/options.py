"""The model options every entry point takes, under one set of names.

``genreason solve`` / ``probe`` flags, ``genreason train lora`` flags and config fields,
the ``model:`` section of an eval config, and the Python arguments of
:func:`~gen_reason.models.loading.load_generator` all use these names:

==============  =====================  ==================================================
flag            field / argument       values
==============  =====================  ==================================================
``--size``      ``size``               ``HxW`` in pixels (``480x832``); default: the model's
``--dtype``     ``dtype``              ``bf16``, ``fp16``, ``fp32`` (and their long names)
``--device``    ``device``             ``cuda``, ``cuda:1``, ``cpu``, ``mps``
``--offload``   ``offload``            ``auto`` (the planner), ``none``, ``model``,
                                       ``sequential``, ``group``
``--vae-tiling````vae_tiling``         ``auto`` (the planner), ``on``, ``off``
``--attention`` ``attention``          ``auto`` or a backend of the installed diffusers
``--compile``   ``compile``            ``torch.compile`` the transformer(s)
``--max-batch`` ``max_batch``          videos per model call; ``auto`` (the planner)
==============  =====================  ==================================================

Every value is checked here, before anything loads; a bad one is a one-line
:class:`~gen_reason.errors.UserError`.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from gen_reason.errors import UserError

#: The option names, in the order the flags are listed.
MODEL_OPTIONS = ("size", "dtype", "device", "offload", "vae_tiling", "attention", "compile", "max_batch")
#: ``auto`` lets the memory planner choose; the rest are the generator backend's offload
#: modes (``none``, ``model``, ``sequential``, ``group``) and tiling switches.
TILING_MODES = ("auto", "on", "off")

_SIZE = re.compile(r"^\s*(\d+)\s*[xX*,]\s*(\d+)\s*$")


def parse_size(value: Any) -> tuple[int, int] | None:
    """``"480x832"``, ``[480, 832]`` or ``(480, 832)`` -> ``(480, 832)`` (height, width); ``None`` stays."""
    if value is None:
        return None
    if isinstance(value, str):
        match = _SIZE.match(value)
        if not match:
            raise UserError(f"size must be HEIGHTxWIDTH in pixels, e.g. 480x832; got {value!r}")
        height, width = int(match.group(1)), int(match.group(2))
    else:
        try:
            height, width = (int(side) for side in value)
        except (TypeError, ValueError):
            raise UserError(f"size must be HEIGHTxWIDTH in pixels, e.g. 480x832; got {value!r}") from None
    if height < 1 or width < 1:
        raise UserError(f"size must be at least 1x1 pixels; got {height}x{width}")
    return height, width


def offload_modes() -> tuple[str, ...]:
    """``auto`` and the generator backend's offload modes."""
    from gen_reason.models.runtime import OFFLOAD_MODES

    return ("auto", *OFFLOAD_MODES)


def attention_choices() -> tuple[str, ...]:
    """``auto`` and every attention backend the installed diffusers offers (``native`` means ``sdpa``)."""
    from gen_reason.models.runtime import attention_backends

    return ("auto", *attention_backends(), "native")


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    text = str(value).strip().lower()
    if text not in allowed:
        raise UserError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return text


def _switch(name: str, value: Any) -> str:
    """``on`` / ``off`` / ``auto`` from a flag string or a YAML boolean."""
    if isinstance(value, bool):
        return "on" if value else "off"
    text = str(value).strip().lower()
    text = {"true": "on", "yes": "on", "1": "on", "false": "off", "no": "off", "0": "off"}.get(text, text)
    return _choice(name, text, TILING_MODES)


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise UserError(f"{name} must be true or false; got {value!r}")


def check_model_options(**values: Any) -> dict[str, Any]:
    """Validate model options (any subset of :data:`MODEL_OPTIONS`; ``None`` = not given).

    Returns the given ones normalised: ``size`` a ``(height, width)`` tuple, ``dtype`` a
    torch dtype name (``bfloat16``), ``offload`` / ``vae_tiling`` / ``attention`` lower-case choices,
    ``compile`` a bool, ``max_batch`` a positive int (``auto`` is dropped: the planner
    decides). Raises a one-line :class:`UserError` for the first bad value or unknown name.
    """
    unknown = sorted(set(values) - set(MODEL_OPTIONS))
    if unknown:
        raise UserError(f"unknown model option(s) {', '.join(unknown)}; known: {', '.join(MODEL_OPTIONS)}")
    out: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        if name == "size":
            out[name] = parse_size(value)
        elif name == "dtype":
            if not isinstance(value, str):  # a torch.dtype from Python callers
                out[name] = value
                continue
            import torch

            from gen_reason.models.runtime import resolve_dtype

            out[name] = str(resolve_dtype(value, torch.device("cpu"))).replace("torch.", "")
        elif name == "device":
            out[name] = _check_device(value)
        elif name == "offload":
            out[name] = _choice("offload", value, offload_modes())
        elif name == "vae_tiling":
            out[name] = _switch("vae_tiling", value)
        elif name == "attention":
            out[name] = "sdpa" if str(value).lower() == "native" else _choice("attention", value, attention_choices())
        elif name == "compile":
            out[name] = _flag("compile", value)
        elif name == "max_batch":
            if str(value).strip().lower() == "auto":
                continue
            try:
                number = int(value)
            except (TypeError, ValueError):
                number = 0
            if isinstance(value, bool) or number < 1 or str(number) != str(value).strip():
                raise UserError(f"max_batch must be a positive integer or auto; got {value!r}")
            out[name] = number
    return out


def _check_device(value: Any) -> Any:
    if not isinstance(value, str):
        return value  # a torch.device
    import torch

    try:
        torch.device(value)
    except RuntimeError:
        raise UserError(f"unknown device {value!r}; e.g. cuda, cuda:1, cpu, mps") from None
    return value


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--size``, ``--dtype``, ``--device``, ``--offload``, ``--vae-tiling``, ``--attention``,
    ``--compile`` and ``--max-batch`` to ``parser`` (values are checked later, in one line)."""
    group = parser.add_argument_group("model options (default: the model's own; auto: the memory planner's)")
    group.add_argument("--size", default=None, metavar="HxW", help="video size in pixels, e.g. 480x832")
    group.add_argument("--dtype", default=None, help="bf16 (default on CUDA), fp16 or fp32 (default on CPU)")
    group.add_argument("--device", default=None, help="cuda, cuda:N, cpu or mps (default: the best there is)")
    group.add_argument("--offload", default=None, metavar="MODE",
                       help="auto (default: offload only what does not fit), none, model, sequential or group")
    group.add_argument("--vae-tiling", default=None, metavar="auto|on|off",
                       help="decode the video in tiles (auto: when the whole frame does not fit)")
    group.add_argument("--attention", default=None, metavar="BACKEND",
                       help="auto, sdpa, or a diffusers attention backend (flash, sage, xformers, ...)")
    group.add_argument("--compile", action="store_true", default=None, help="torch.compile the transformer(s)")
    group.add_argument("--max-batch", default=None, metavar="N",
                       help="videos per model call (auto: the most that fit in memory)")


def model_options_from_args(args: argparse.Namespace, dotted: dict[str, Any] | None = None) -> dict[str, Any]:
    """The model options given on the command line, checked (see :func:`check_model_options`).

    ``dotted`` holds the ``--model.FIELD value`` flags (the one dotted grammar, as in an eval
    config's ``model:`` section): ``--model.offload model`` is ``--offload model``. An
    unknown field is refused with the closest known one; one option given both ways, too.
    """
    import difflib

    given = {name: getattr(args, name, None) for name in MODEL_OPTIONS}
    for key, value in (dotted or {}).items():
        if key not in MODEL_OPTIONS:
            close = difflib.get_close_matches(key, MODEL_OPTIONS, n=1)
            hint = f"did you mean --model.{close[0]}?" if close else f"known: {', '.join(MODEL_OPTIONS)}"
            raise UserError(f"unknown model option --model.{key}; {hint}")
        if given[key] is not None:
            raise UserError(f"--model.{key} and --{key.replace('_', '-')} both given; give one")
        given[key] = value
    return check_model_options(**given)
