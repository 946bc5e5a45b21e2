"""Measure the peak memory of torch code without a GPU: live tensor bytes, counted op by op.

:class:`PeakMemoryCounter` is a ``TorchDispatchMode`` that sees every tensor an operator
creates, adds its storage's bytes when the storage is new and takes them off again when
torch frees the storage (a weak-reference callback). Its ``peak`` is therefore the most
bytes of tensor storage alive at once: what ``torch.cuda.max_memory_allocated`` reports
on a GPU, without the caching allocator's rounding and fragmentation and without library
workspaces (cuBLAS, cuDNN). It works the same on real CPU tensors and on ``meta`` tensors,
which have a size but no data, so a full-size model built on the meta device is "run" for
its memory in seconds with no memory at all.

On ``meta`` tensors PyTorch's attention would take its reference (math) path and count an
``N x N`` score matrix no GPU kernel materialises; :func:`count_peak` therefore routes
``scaled_dot_product_attention`` on meta tensors through the fused CPU flash-attention
operator, whose outputs have the shapes a fused GPU kernel returns.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Iterable, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary


class PeakMemoryCounter(TorchDispatchMode):
    """Counts the bytes of live tensor storage while active; ``peak`` is the most at once.

    Tensors that exist before the counter starts count only when passed to :meth:`track`
    (model weights, inputs). ``current`` is what is alive now.
    """

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self._seen: WeakIdKeyDictionary = WeakIdKeyDictionary()

    def track(self, tensors: Iterable[torch.Tensor]) -> None:
        """Count these already existing tensors (weights, buffers, inputs) as alive."""
        for tensor in tensors:
            self._add(tensor)

    def _add(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        if storage in self._seen:
            return
        size = storage.nbytes()
        self._seen[storage] = weakref.ref(storage, self._make_release(size))
        self.current += size
        self.peak = max(self.peak, self.current)

    def _make_release(self, size: int):
        def release(_ref) -> None:
            self.current -= size

        return release

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for item in tree_flatten(out)[0]:
            if isinstance(item, torch.Tensor):
                self._add(item)
        return out


def module_tensors(*modules: torch.nn.Module) -> Iterator[torch.Tensor]:
    """Every parameter and buffer of ``modules`` (skipping ``None``)."""
    for module in modules:
        if module is None:
            continue
        yield from module.parameters()
        yield from module.buffers()


@contextlib.contextmanager
def fused_attention_on_meta() -> Iterator[None]:
    """Inside: ``F.scaled_dot_product_attention`` on meta tensors returns what a fused kernel does.

    Real tensors keep PyTorch's own choice (on CPU that is already the fused flash kernel
    for masks-free float inputs).
    """
    functional = torch.nn.functional
    original = functional.scaled_dot_product_attention

    def attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        if query.device.type != "meta":
            return original(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                            scale=scale, enable_gqa=enable_gqa)
        if key.shape[-3] != query.shape[-3]:  # grouped-query attention: expand as the kernel would
            repeat = query.shape[-3] // key.shape[-3]
            key, value = key.repeat_interleave(repeat, -3), value.repeat_interleave(repeat, -3)
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, dropout_p, is_causal, attn_mask=attn_mask, scale=scale
        )[0]

    functional.scaled_dot_product_attention = attention
    try:
        yield
    finally:
        functional.scaled_dot_product_attention = original


@contextlib.contextmanager
def count_peak(*modules: torch.nn.Module, inputs: Iterable[torch.Tensor] = ()) -> Iterator[PeakMemoryCounter]:
    """``with count_peak(model, inputs=[x]) as counter: model(x)`` -> ``counter.peak`` in bytes.

    The weights and buffers of ``modules`` and the ``inputs`` count from the start; runs
    under ``torch.no_grad()`` (inference, as the pipelines run).
    """
    counter = PeakMemoryCounter()
    counter.track(module_tensors(*modules))
    counter.track(inputs)
    with torch.no_grad(), fused_attention_on_meta(), counter:
        yield counter


# -- one denoising step and one decode of a pipeline, for the planner's checks ---------------------
def transformer_call(pipe, family, geometry, batch: int, model=None):
    """A function that runs one forward pass of ``pipe``'s transformer at ``geometry`` for
    ``batch`` videos (times 2 where the pipeline batches classifier-free guidance), with
    zero inputs of the shapes the pipeline passes, and the input tensors it made.

    Supports Wan, CogVideoX and LTX transformers (``TypeError`` for others). The inputs
    are on the model's device in its dtype: on the meta device this "runs" a full-size
    model for its memory in seconds.
    """
    model = model if model is not None else pipe.transformer
    config = model.config
    name = type(model).__name__
    parameter = next(model.parameters())
    device, dtype = parameter.device, parameter.dtype
    channels, frames, height, width = family.latent_shape(pipe, geometry)

    def zeros(*shape, kind=dtype):
        return torch.zeros(*shape, device=device, dtype=kind)

    if name == "WanTransformer3DModel":
        patch_t, patch_h, patch_w = config.patch_size
        tokens = (frames // patch_t) * (height // patch_h) * (width // patch_w)
        hidden = zeros(batch, config.in_channels, frames, height, width)
        timestep = zeros(batch, tokens) if pipe.config.get("expand_timesteps") else zeros(batch)
        text = zeros(batch, 512, config.text_dim)
        image = zeros(batch, 257, config.image_dim) if config.image_dim else None
        inputs = [t for t in (hidden, timestep, text, image) if t is not None]
        return (lambda: model(hidden, timestep, text, encoder_hidden_states_image=image, return_dict=False)), inputs
    if name == "CogVideoXTransformer3DModel":
        batch *= 2
        hidden = zeros(batch, frames, config.in_channels, height, width)
        text = zeros(batch, config.max_text_seq_length, config.text_embed_dim)
        timestep = zeros(batch)
        patch, patch_t = config.patch_size, config.patch_size_t or 1
        tokens = (frames // patch_t) * (height // patch) * (width // patch)
        rotary = None
        if config.use_rotary_positional_embeddings:
            rotary = (zeros(tokens, config.attention_head_dim, kind=torch.float32),
                      zeros(tokens, config.attention_head_dim, kind=torch.float32))
        ofs = zeros(batch) if config.ofs_embed_dim else None
        inputs = [hidden, text, timestep, *(rotary or ())]
        return (lambda: model(hidden, text, timestep, image_rotary_emb=rotary, ofs=ofs, return_dict=False)), inputs
    if name == "LTXVideoTransformer3DModel":
        batch *= 2
        tokens = frames * height * width
        hidden = zeros(batch, tokens, config.in_channels)
        length = 256 if type(pipe).__name__ == "LTXConditionPipeline" else 128
        text = zeros(batch, length, config.caption_channels)
        timestep = zeros(batch, tokens)
        mask = torch.ones(batch, length, device=device)
        scale = (1 / 25 * family.frame_step(pipe), 32, 32)
        inputs = [hidden, text, timestep, mask]
        return (lambda: model(hidden, text, timestep, encoder_attention_mask=mask, num_frames=frames, height=height,
                              width=width, rope_interpolation_scale=scale, return_dict=False)), inputs
    raise TypeError(f"no input builder for {name}")


def decode_call(pipe, family, geometry, tiling: bool = False):
    """A function that decodes one video's latents at ``geometry`` through the family's own
    decode (on ``pipe.vae``'s device), and the latents it made."""
    vae = pipe.vae
    parameter = next(vae.parameters())
    latents = torch.zeros(1, *family.latent_shape(pipe, geometry), device=parameter.device, dtype=torch.float32)
    if tiling:
        vae.enable_tiling()
    else:
        vae.disable_tiling()
    return (lambda: family.decode(pipe, latents, None, family.defaults)), [latents]


def one_block_model(folder):
    """A real model folder built at full width on the meta device with its transformer cut
    to one block (at inference one block's activations are freed before the next), the
    geometry of its own default video, and the planner's workload for it:
    ``(meta model, geometry, workload)``. What the planner's constants are measured on,
    by its tests and by ``bench/calibrate_planner.py``."""
    from gen_reason.models import planner
    from gen_reason.models.families import Geometry
    from gen_reason.models.inspect import build_meta

    meta = build_meta(folder)
    family, pipe = meta.family, meta.pipeline
    height, width = family.limits(meta.configs).fixed_size or family.defaults.size
    geometry = Geometry(family.defaults.num_frames, height, width)
    blocks = "blocks" if hasattr(pipe.transformer, "blocks") else "transformer_blocks"
    setattr(pipe.transformer, blocks, torch.nn.ModuleList(getattr(pipe.transformer, blocks)[:1]))
    workload = planner.workload_for(pipe, family, geometry, meta.dtypes["transformer"], meta.dtypes.get("vae"))
    return meta, geometry, workload
