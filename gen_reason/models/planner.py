"""The memory planner: how many videos per call, what to offload and whether to tile the VAE.

A generation runs in three phases, one after the other: the text (and image) encoders,
the denoising loop (the transformer, or on Wan 2.2 A14B one expert at a time), and the
VAE decode (our generator decodes one sample at a time). The estimated peak is the
largest phase::

    peak = max over phases p of  W_p(offload) + A_p

    W_p  weights on the GPU during phase p (params x bytes per param of each component):
         offload none        every component, all the time
                 model       only the component(s) phase p runs (accelerate's model offload;
                             one A14B expert at a time)
                 group       the transformer(s) stream their blocks (diffusers' block-level group
                             offloading: two blocks on the GPU); the other components stay resident
                 sequential  one block of the running component (each layer moved when called)

    A_text    = max(56 x L_text^2 + batch x 8 x L_text x d_text x b,      (T5's relative position
                    c_E x P_enc x b_vae)                                  buckets and bias; states)
                the VAE's encode of the conditioning image (P_enc = H x W; Wan 2.1 and
                A14B encode a whole video of the first frame and zeros, chunk by chunk,
                which costs about the same per pixel); c_E measured as c_V below.
    A_denoise = batch x cfg x N_tokens x c_T x D x b
                N_tokens = (F / p_t) (h / p) (w / p) latent patches of one video, D the
                transformer width (heads x head dim), b its bytes per value; cfg = 2 where
                the pipeline runs the conditional and unconditional passes as one batch
                (CogVideoX, LTX), 1 where it runs them one after the other (Wan);
                c_T the live tensors of one block per token and unit of width (attention
                with a fused kernel holds no N x N matrix: x, norm, q, k, v, out, rope
                tables; FFN: x plus two N x d_ff tensors); measured below.
    A_decode  = c_V x P x b_vae + 3 x T x H x W x 4
                P = H x W pixels the VAE decodes at once (x T for LTX, which decodes every
                frame in one pass); with tiling, P is one tile's pixels (x the tile's
                frames for LTX) and the decoded tiles are kept (+ 3 x T x H x W x b_vae);
                c_V the decoder's live bytes per output pixel per byte of its dtype.

The constants c_T and c_V were measured with :mod:`gen_reason.models.peak_memory` (live
tensor bytes of one transformer block / one VAE decode built at full width on the meta
device, at each model's default size) and are re-measured by
``tests/models/test_planner.py`` on the config-only copies of the real Hub folders, which
checks every estimate lies within 15 % of the measured peak. A model whose classes are not
in the tables gets conservative values and its estimate says ``calibrated=False``.

:func:`plan` searches, fastest first, offload none -> model -> group -> sequential and
VAE tiling off -> on, and takes the first setting where one video fits the budget, then
the largest batch (up to ``batch_cap``) that fits with it. Anything the user forces is
kept as given. The budget is the device's free memory (``torch.cuda.mem_get_info``) or a
given size, less :data:`HEADROOM` (CUDA context, allocator fragmentation, cuBLAS
workspaces that live-tensor accounting does not see).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

GIB = 2**30
#: Share of the budget the estimate may use; the rest covers what live-tensor accounting does not see.
HEADROOM = 0.90
#: The most videos the planner puts in one call (more rarely speeds anything up).
BATCH_CAP = 16
#: max_batch when there is no budget (a CPU run) and the user gave none.
DEFAULT_MAX_BATCH = 4
OFFLOAD_ORDER = ("none", "model", "group", "sequential")

#: c_T per transformer class: live bytes of one block per latent token per unit of width per byte
#: (``per_token_timesteps``: Wan 2.2 TI2V-5B and LTX embed a timestep for every token).
TOKEN_WORKSET = {
    ("WanTransformer3DModel", False): 11.2,
    ("WanTransformer3DModel", True): 32.6,
    ("CogVideoXTransformer3DModel", False): 13.2,
    ("LTXVideoTransformer3DModel", True): 29.2,
}
FALLBACK_TOKEN_WORKSET = 34.0
#: cfg: transformer forward batch per video under classifier-free guidance.
CFG_BATCH = {"WanTransformer3DModel": 1}
#: c_V per VAE (class, decoder top width): live bytes per output pixel (per decoded frame for LTX) per byte.
VAE_WORKSET = {
    ("AutoencoderKLWan", 96): 4879.0,  # Wan 2.1 VAE
    ("AutoencoderKLWan", 256): 5393.0,  # Wan 2.2 VAE (TI2V-5B)
    ("AutoencoderKLCogVideoX", 128): 22300.0,
    ("AutoencoderKLLTXVideo", 128): 44.1,  # LTX 0.9.0
    ("AutoencoderKLLTXVideo", 256): 44.1,  # LTX 0.9.1, 0.9.5+
}
#: c_E per VAE (class, decoder top width): live bytes per conditioning pixel per byte while encoding it.
ENCODE_WORKSET = {
    ("AutoencoderKLWan", 96): 3773.0,
    ("AutoencoderKLWan", 256): 490.0,
    ("AutoencoderKLCogVideoX", 128): 2665.0,
    ("AutoencoderKLLTXVideo", 128): 75.0,
    ("AutoencoderKLLTXVideo", 256): 91.0,
}
FALLBACK_VAE_WORKSET = {"AutoencoderKLWan": 9000.0, "AutoencoderKLCogVideoX": 30000.0, "AutoencoderKLLTXVideo": 200.0}
#: VAEs that decode every frame in one pass (the working set grows with the frame count).
WHOLE_CLIP_VAES = ("AutoencoderKLLTXVideo",)

ROLES = {"transformer": "denoise", "transformer_2": "denoise", "text_encoder": "text", "image_encoder": "text",
         "vae": "decode", "unet": "denoise"}


@dataclass(frozen=True)
class ComponentMemory:
    """One model component's weights: ``params`` at ``bytes_per_param``; ``blocks`` repeated layers."""

    name: str
    class_name: str
    params: int
    dtype: str
    bytes_per_param: int
    blocks: int = 1

    @property
    def nbytes(self) -> int:
        """Bytes of weights."""
        return self.params * self.bytes_per_param

    @property
    def phase(self) -> str:
        """The phase this component runs in: ``text``, ``denoise`` or ``decode``."""
        return ROLES.get(self.name, "text")


@dataclass(frozen=True)
class Workload:
    """What one video costs beyond the weights (see the module docstring for the formula)."""

    height: int
    width: int
    num_frames: int
    tokens: int  # N_tokens: latent patches of one video
    hidden: int  # D
    compute_bytes: int  # b
    token_workset: float  # c_T
    cfg: int
    text_tokens: int
    text_hidden: int
    vae_pixels: int  # P without tiling
    vae_tile_pixels: int  # P with tiling
    vae_workset: float  # c_V
    vae_bytes: int  # b_vae
    calibrated: bool = True
    encode_workset: float = 0.0  # c_E

    @property
    def output_bytes(self) -> int:
        """The decoded video of one sample in float32."""
        return 3 * self.num_frames * self.height * self.width * 4


@dataclass(frozen=True)
class Estimate:
    """Peak bytes of one setting, and of each phase."""

    batch: int
    offload: str
    vae_tiling: bool
    phases: dict

    @property
    def peak(self) -> int:
        """The largest phase."""
        return max(self.phases.values())

    @property
    def peak_gib(self) -> float:
        """:attr:`peak` in GiB."""
        return self.peak / GIB


@dataclass(frozen=True)
class Plan:
    """What the planner chose: ``max_batch``, ``offload``, ``vae_tiling``, with the estimate behind it."""

    max_batch: int
    offload: str
    vae_tiling: bool
    estimate: Estimate | None
    budget: int | None
    forced: tuple[str, ...] = ()
    fits: bool = True
    notes: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        """One line: the choice, the estimated peak, the budget."""
        forced = f" (forced: {', '.join(self.forced)})" if self.forced else ""
        text = (f"memory plan: max_batch {self.max_batch}, offload {self.offload}, "
                f"VAE tiling {'on' if self.vae_tiling else 'off'}{forced}")
        if self.estimate is not None and self.budget is not None:
            text += f"; estimated peak {self.estimate.peak_gib:.1f} GiB of {self.budget / GIB:.1f} GiB usable"
        elif self.budget is None:
            text += "; no memory limit (CPU)"
        if not self.fits:
            text += " - does NOT fit: expect out-of-memory; try a smaller --size or fewer --frames"
        return text


def estimate(components: Iterable[ComponentMemory], workload: Workload, *, batch: int = 1, offload: str = "none",
             vae_tiling: bool = False) -> Estimate:
    """The estimated peak of one setting (the formula in the module docstring)."""
    components = list(components)
    w = workload
    activations = {
        "text": max(56 * w.text_tokens**2 + batch * 8 * w.text_tokens * w.text_hidden * w.compute_bytes,
                    w.encode_workset * w.height * w.width * w.vae_bytes),
        "denoise": batch * w.cfg * w.tokens * w.token_workset * w.hidden * w.compute_bytes,
        "decode": w.vae_workset * (w.vae_tile_pixels if vae_tiling else w.vae_pixels) * w.vae_bytes
        + w.output_bytes + (3 * w.num_frames * w.height * w.width * w.vae_bytes if vae_tiling else 0),
    }
    phases = {}
    for phase, activation in activations.items():
        phases[phase] = int(_weights_on_device(components, phase, offload) + activation)
    return Estimate(batch, offload, vae_tiling, phases)


def _weights_on_device(components: list[ComponentMemory], phase: str, offload: str) -> float:
    if offload == "none":
        return sum(c.nbytes for c in components)
    running = [c for c in components if c.phase == phase]
    if offload == "group":  # the transformer(s) stream their blocks; the other components stay resident
        streamed = [c for c in components if c.phase == "denoise"]
        resident = sum(c.nbytes for c in components if c.phase != "denoise")
        return resident + (max(2 * c.nbytes / max(1, c.blocks) for c in streamed) if streamed else 0.0)
    if not running:
        return 0.0
    if offload == "model":
        return max(c.nbytes for c in running)  # one model (one A14B expert) at a time
    largest = max(running, key=lambda c: c.nbytes)
    return largest.nbytes / max(1, largest.blocks)  # sequential: about one block at a time


def device_budget(device: Any = None, gpu_memory_gib: float | None = None) -> int | None:
    """Usable bytes: ``gpu_memory_gib`` when given, else the CUDA device's free memory, else ``None``
    (no limit); :data:`HEADROOM` of it."""
    if gpu_memory_gib is not None:
        return int(float(gpu_memory_gib) * GIB * HEADROOM)
    import torch

    device = torch.device(device) if device is not None else None
    if device is not None and device.type != "cuda":
        return None
    if not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free * HEADROOM)


def plan(components: Iterable[ComponentMemory], workload: Workload, budget: int | None, *,
         offload: str | None = None, vae_tiling: bool | None = None, max_batch: int | None = None,
         batch_cap: int = BATCH_CAP) -> Plan:
    """Choose ``max_batch``, ``offload`` and VAE tiling so the estimate fits ``budget`` bytes.

    ``offload`` / ``vae_tiling`` / ``max_batch``: ``None`` lets the planner choose, a value
    forces it. ``budget=None`` (no limit known: a CPU run) keeps everything resident,
    untiled, at :data:`DEFAULT_MAX_BATCH`.
    """
    components = list(components)
    forced = tuple(name for name, value in (("max_batch", max_batch), ("offload", offload),
                                            ("vae_tiling", vae_tiling)) if value is not None)
    if budget is None:
        batch = max_batch or DEFAULT_MAX_BATCH
        setting = (offload or "none", bool(vae_tiling))
        return Plan(batch, setting[0], setting[1], estimate(components, workload, batch=batch, offload=setting[0],
                                                            vae_tiling=setting[1]), None, forced)
    offloads = (offload,) if offload is not None else OFFLOAD_ORDER
    tilings = (vae_tiling,) if vae_tiling is not None else (False, True)
    settings = [(mode, tiling) for mode in offloads for tiling in tilings]
    for mode, tiling in settings:
        first = estimate(components, workload, batch=max_batch or 1, offload=mode, vae_tiling=tiling)
        if first.peak > budget:
            continue
        if max_batch is not None:
            return Plan(max_batch, mode, tiling, first, budget, forced)
        best = first
        for batch in range(2, batch_cap + 1):
            candidate = estimate(components, workload, batch=batch, offload=mode, vae_tiling=tiling)
            if candidate.peak > budget:
                break
            best = candidate
        return Plan(best.batch, mode, tiling, best, budget, forced)
    mode, tiling = settings[-1]
    last = estimate(components, workload, batch=max_batch or 1, offload=mode, vae_tiling=tiling)
    return Plan(max_batch or 1, mode, tiling, last, budget, forced, fits=False)


# -- reading a pipeline ------------------------------------------------------------------------
_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "float64": 8, "float8_e4m3fn": 1}


def component_memory(name: str, module: Any, dtype: Any = None) -> ComponentMemory:
    """A component's weight size; ``dtype`` (a torch dtype) overrides the module's own
    (a model built on the meta device in float32 that will load in bfloat16)."""
    import torch

    params = sum(p.numel() for p in module.parameters()) + sum(b.numel() for b in module.buffers())
    dtype = dtype or next((p.dtype for p in module.parameters()), torch.float32)
    name_of_dtype = str(dtype).replace("torch.", "")
    blocks = _block_count(module)
    return ComponentMemory(name, type(module).__name__, int(params), name_of_dtype,
                           _DTYPE_BYTES.get(name_of_dtype, 4), blocks)


def _block_count(module: Any) -> int:
    """The length of the longest ``ModuleList`` directly under the model (its repeated blocks)."""
    import torch

    lengths = [len(child) for child in module.modules() if isinstance(child, torch.nn.ModuleList)]
    return max(lengths, default=1)


def pipeline_components(pipe: Any, dtypes: dict[str, Any] | None = None) -> list[ComponentMemory]:
    """Every ``torch.nn.Module`` component of a pipeline (built or on the meta device)."""
    import torch

    dtypes = dtypes or {}
    return [component_memory(name, module, dtypes.get(name))
            for name, module in pipe.components.items() if isinstance(module, torch.nn.Module)]


def workload_for(pipe: Any, family: Any, geometry: Any, compute_dtype: Any, vae_dtype: Any = None) -> Workload:
    """The :class:`Workload` of one video at ``geometry`` (a families ``Geometry``) on ``pipe``."""
    compute_bytes = _DTYPE_BYTES.get(str(compute_dtype).replace("torch.", ""), 4)
    vae_bytes = _DTYPE_BYTES.get(str(vae_dtype or compute_dtype).replace("torch.", ""), compute_bytes)
    transformer = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
    channels, frames, height, width = family.latent_shape(pipe, geometry)
    calibrated = True
    if transformer is not None and hasattr(transformer.config, "num_attention_heads"):
        config = transformer.config
        hidden = int(config.num_attention_heads) * int(config.attention_head_dim)
        patch, patch_t = _patch_sizes(config)
        tokens = math.ceil(frames / patch_t) * (height // patch) * (width // patch)
        per_token = bool(getattr(pipe, "config", {}).get("expand_timesteps")) or type(transformer).__name__.startswith("LTX")
        key = (type(transformer).__name__, per_token)
        token_workset = TOKEN_WORKSET.get(key, FALLBACK_TOKEN_WORKSET)
        calibrated &= key in TOKEN_WORKSET
        cfg = CFG_BATCH.get(type(transformer).__name__, 2)
    else:  # a UNet on pixels (the embedded model): a conservative per-pixel working set
        hidden = int(max(getattr(getattr(transformer, "config", None), "block_out_channels", (64,))))
        tokens = height * width
        token_workset, cfg, calibrated = FALLBACK_TOKEN_WORKSET, 1, False
    text = getattr(pipe, "text_encoder", None)
    text_hidden = int(getattr(getattr(text, "config", None), "d_model", 0) or 0) if text is not None else 0
    text_tokens = int(getattr(getattr(pipe, "tokenizer", None), "model_max_length", 512) or 512) if text else 0
    text_tokens = min(text_tokens, 512)
    vae = getattr(pipe, "vae", None)
    vae_pixels = geometry.height * geometry.width
    tile_pixels = vae_pixels
    vae_workset = encode_workset = 0.0
    if vae is not None:
        name = type(vae).__name__
        top = _vae_top_width(vae.config)
        vae_workset = VAE_WORKSET.get((name, top), FALLBACK_VAE_WORKSET.get(name, 30000.0))
        encode_workset = ENCODE_WORKSET.get((name, top), vae_workset)
        calibrated &= (name, top) in VAE_WORKSET
        tile_h = min(geometry.height, int(getattr(vae, "tile_sample_min_height", geometry.height)))
        tile_w = min(geometry.width, int(getattr(vae, "tile_sample_min_width", geometry.width)))
        tile_pixels = tile_h * tile_w
        if name in WHOLE_CLIP_VAES:
            vae_pixels *= geometry.num_frames
            tile_pixels *= geometry.num_frames  # its tiling is spatial unless framewise decoding is on
    return Workload(geometry.height, geometry.width, geometry.num_frames, int(tokens), hidden, compute_bytes,
                    token_workset, cfg, text_tokens, text_hidden, vae_pixels, tile_pixels, vae_workset, vae_bytes,
                    calibrated, encode_workset)


def _patch_sizes(config: Any) -> tuple[int, int]:
    patch = getattr(config, "patch_size", 1)
    if isinstance(patch, (tuple, list)):  # Wan: (t, h, w)
        return int(patch[-1]), int(patch[0])
    patch_t = getattr(config, "patch_size_t", None) or 1
    return int(patch or 1), int(patch_t)


def _vae_top_width(config: Any) -> int:
    """The channel count of the VAE decoder's full-resolution stage."""
    for key in ("decoder_base_dim", "base_dim"):
        if config.get(key):
            return int(config[key])
    for key in ("decoder_block_out_channels", "block_out_channels"):
        if config.get(key):
            return int(config[key][0])
    return 0



def plan_for(generator: Any, device: Any, *, offload: str | None = None, vae_tiling: bool | None = None,
             max_batch: int | None = None, gpu_memory_gib: float | None = None) -> Plan:
    """The plan for a loaded :class:`~gen_reason.models.DiffusersVideoGenerator` (weights still on
    the CPU) at its default video size, on ``device``; ``None`` arguments are the planner's to choose."""
    import torch

    pipe = generator.pipeline
    components = pipeline_components(pipe)
    geometry = generator._geometry(None, None)
    compute = next((c.dtype for c in components if c.phase == "denoise"), "float32")
    vae = getattr(pipe, "vae", None)
    vae_dtype = next(vae.parameters()).dtype if isinstance(vae, torch.nn.Module) else compute
    workload = workload_for(pipe, generator.family, geometry, compute, vae_dtype)
    return plan(components, workload, device_budget(device, gpu_memory_gib), offload=offload, vae_tiling=vae_tiling,
                max_batch=max_batch)


def apply_placement(pipe: Any, device: Any, offload: str, vae_tiling: bool) -> None:
    """Put an in-memory pipeline where a plan says: on ``device`` whole (``none``), or with
    diffusers' model, sequential or (transformer) group offloading; VAE tiling on or off."""
    import torch

    device = torch.device(device)
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    elif offload == "group":
        pipe.to(device)
        for name in ("transformer", "transformer_2"):
            model = getattr(pipe, name, None)
            if model is not None:
                model.enable_group_offload(onload_device=device, offload_device=torch.device("cpu"),
                                           offload_type="block_level", num_blocks_per_group=1)
    else:
        pipe.to(device)
    vae = getattr(pipe, "vae", None)
    if vae is not None and hasattr(vae, "enable_tiling"):
        vae.enable_tiling() if vae_tiling else vae.disable_tiling()
