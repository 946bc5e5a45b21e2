"""Tiny random-weight image-to-video pipelines, built in-process, for tests.

Every pipeline family that :class:`~gen_reason.models.DiffusersVideoGenerator` supports
has a builder here, sized like diffusers' own ``get_dummy_components`` (a few thousand
parameters, seconds per video on a CPU). Nothing is downloaded: the T5 text encoder
gets a ``tokenizers`` WordLevel vocabulary made on the spot.

Other packages' tests use this module too (solvers, probe, trainer)::

    from gen_reason.models import testing
    path = testing.save_tiny_pipeline("wan2.1-i2v", tmp_path / "wan")
    generator = DiffusersVideoGenerator.from_pretrained(path, **testing.TINY_GEOMETRY["wan2.1-i2v"])
"""

from __future__ import annotations

from pathlib import Path

import torch

#: The kinds of tiny pipeline this module can build, with the working geometry each
#: one supports (``size`` is (H, W); CogVideoX's learned positional embeddings fix it).
TINY_GEOMETRY: dict[str, dict] = {
    "wan2.1-i2v": {"size": (16, 16), "num_frames": 9},
    "wan2.2-ti2v": {"size": (32, 32), "num_frames": 9},
    "wan2.2-i2v-a14b": {"size": (16, 16), "num_frames": 9},
    "cogvideox-i2v": {"size": (16, 16), "num_frames": 9},
    "ltx-i2v": {"size": (32, 32), "num_frames": 9},
}

_WORDS = (
    "a red dot moves through the maze to green goal along white path without crossing "
    "black walls agent start end left right up down grid puzzle solve video frame"
).split()


def tiny_tokenizer():
    """A fast T5-style tokenizer over a made-up word-level vocabulary (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in _WORDS:
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # T5 appends </s>; the pipelines' attention masks count it.
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=512
    )


def tiny_text_encoder(seed: int = 0, umt5: bool = False):
    """A two-layer T5 encoder with ``d_model=32`` (the text width the tiny transformers expect).

    ``umt5=True`` gives the UMT5 variant Wan pipelines are typed for.
    """
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    sizes = dict(vocab_size=64, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4)
    if umt5:
        return UMT5EncoderModel(UMT5Config(**sizes)).eval()
    return T5EncoderModel(T5Config(**sizes)).eval()


def _wan_transformer(in_channels: int, out_channels: int, image_dim: int | None):
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=in_channels,
        out_channels=out_channels,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        image_dim=image_dim,
    )


def _build_wan21(seed: int):
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    transformer = _wan_transformer(36, 16, image_dim=4)
    image_encoder = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=4,
            projection_dim=4,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            intermediate_size=16,
            patch_size=1,
        )
    )
    return WanImageToVideoPipeline(
        tokenizer=tiny_tokenizer(),
        text_encoder=tiny_text_encoder(seed, umt5=True),
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        image_processor=CLIPImageProcessor(crop_size=32, size=32),
        image_encoder=image_encoder,
        transformer=transformer,
    )


def _build_wan22_ti2v(seed: int):
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline

    torch.manual_seed(seed)
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=48,
        in_channels=12,
        out_channels=12,
        is_residual=True,
        patch_size=2,
        latents_mean=[0.0] * 48,
        latents_std=[1.0] * 48,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
        temperal_downsample=[False, True, True],
    )
    return WanImageToVideoPipeline(
        tokenizer=tiny_tokenizer(),
        text_encoder=tiny_text_encoder(seed, umt5=True),
        vae=vae,
        scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0),
        transformer=_wan_transformer(48, 48, image_dim=None),
        expand_timesteps=True,
    )


def _build_wan22_a14b(seed: int):
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline

    torch.manual_seed(seed)
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    return WanImageToVideoPipeline(
        tokenizer=tiny_tokenizer(),
        text_encoder=tiny_text_encoder(seed, umt5=True),
        vae=vae,
        scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0),
        transformer=_wan_transformer(36, 16, image_dim=None),
        transformer_2=_wan_transformer(36, 16, image_dim=None),
        # As the real model: with 2 steps (timesteps 999, 833) each expert runs once.
        boundary_ratio=0.9,
    )


def _build_cogvideox(seed: int):
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXImageToVideoPipeline,
        CogVideoXTransformer3DModel,
    )

    torch.manual_seed(seed)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=8,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=32,
        num_layers=1,
        sample_width=2,
        sample_height=2,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=16,
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=True,
    )
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    scheduler = CogVideoXDDIMScheduler(
        prediction_type="v_prediction", timestep_spacing="trailing", rescale_betas_zero_snr=True
    )
    return CogVideoXImageToVideoPipeline(
        tokenizer=tiny_tokenizer(),
        text_encoder=tiny_text_encoder(seed),
        vae=vae,
        transformer=transformer,
        scheduler=scheduler,
    )


def _build_ltx(seed: int):
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXImageToVideoPipeline,
        LTXVideoTransformer3DModel,
    )

    torch.manual_seed(seed)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=1,
        caption_channels=32,
    )
    vae = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    return LTXImageToVideoPipeline(
        tokenizer=tiny_tokenizer(),
        text_encoder=tiny_text_encoder(seed),
        vae=vae,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )


_BUILDERS = {
    "wan2.1-i2v": _build_wan21,
    "wan2.2-ti2v": _build_wan22_ti2v,
    "wan2.2-i2v-a14b": _build_wan22_a14b,
    "cogvideox-i2v": _build_cogvideox,
    "ltx-i2v": _build_ltx,
}


def build_tiny_pipeline(kind: str, seed: int = 0):
    """Build a tiny random-weight diffusers pipeline of ``kind`` (a key of :data:`TINY_GEOMETRY`)."""
    if kind not in _BUILDERS:
        raise ValueError(f"unknown tiny pipeline {kind!r}; known: {', '.join(_BUILDERS)}")
    return _BUILDERS[kind](seed)


def save_tiny_pipeline(kind: str, path: str | Path, seed: int = 0) -> Path:
    """Build a tiny pipeline of ``kind`` and save it (safetensors) as a model folder at ``path``."""
    path = Path(path)
    build_tiny_pipeline(kind, seed).save_pretrained(path, safe_serialization=True)
    return path


def save_tiny_lora(kind: str, path: str | Path, seed: int = 0, rank: int = 4) -> Path:
    """Save a random, non-zero LoRA (diffusers format) for the tiny ``kind`` transformer at ``path``.

    ``init_lora_weights`` leaves LoRA B at zero (a no-op adapter); the B weights are
    drawn at random here so that loading the LoRA visibly changes the output.
    """
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    path = Path(path)
    pipe = build_tiny_pipeline(kind, seed)
    transformer = pipe.transformer
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    transformer.add_adapter(config)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, parameter in transformer.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    type(pipe).save_lora_weights(
        path, transformer_lora_layers=get_peft_model_state_dict(transformer), safe_serialization=True
    )
    return path
