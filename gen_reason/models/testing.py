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
    "ltx-condition": {"size": (32, 32), "num_frames": 9},
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


def tiny_unigram_tokenizer(cls=None):
    """A T5 tokenizer (``cls``, default ``T5TokenizerFast``: the class real T5/UMT5 folders
    name) over a made-up unigram vocabulary of :data:`_WORDS`, ids below 64 (no download)."""
    if cls is None:
        from transformers import T5TokenizerFast as cls

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + word, -1.0) for word in dict.fromkeys(_WORDS)]
    return cls(vocab=vocab, extra_ids=0, model_max_length=512)


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


def _build_ltx(seed: int, pipeline: str = "LTXImageToVideoPipeline"):
    import diffusers
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel

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
    return getattr(diffusers, pipeline)(
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
    # LTX-Video 0.9.5+: the same tiny parts behind the condition pipeline.
    "ltx-condition": lambda seed: _build_ltx(seed, "LTXConditionPipeline"),
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


# -- real folder layouts --------------------------------------------------------------------
#: Config-only copies of real Hub folders (tests/models/real_configs in a source checkout).
REAL_CONFIGS_DIR = Path(__file__).resolve().parents[2] / "tests" / "models" / "real_configs"


def _component_class(library: str, class_name: str):
    import importlib

    return getattr(importlib.import_module(library), class_name)


def _narrow(values, divisor: int, floor: int = 4) -> list[int]:
    return [max(floor, int(value) // divisor) for value in values]


def _small_vae(library: str, class_name: str, config: dict):
    """The folder's VAE class with its real latent channels and compression, every width cut
    16x and one layer per block (a few hundred thousand parameters)."""
    cls = _component_class(library, class_name)
    config = {key: value for key, value in config.items() if not key.startswith("_")}
    if class_name == "AutoencoderKLWan":
        config.update(base_dim=max(4, config.get("base_dim", 96) // 16), num_res_blocks=1)
        if config.get("decoder_base_dim"):
            config["decoder_base_dim"] = max(4, config["decoder_base_dim"] // 16)
    elif class_name == "AutoencoderKLCogVideoX":
        config.update(block_out_channels=_narrow(config.get("block_out_channels", (128, 256, 256, 512)), 16, 8),
                      layers_per_block=1, norm_num_groups=4)
    elif class_name == "AutoencoderKLLTXVideo":
        config.update(block_out_channels=_narrow(config["block_out_channels"], 16),
                      decoder_block_out_channels=_narrow(config["decoder_block_out_channels"], 16),
                      layers_per_block=[1] * len(config["layers_per_block"]),
                      decoder_layers_per_block=[1] * len(config["decoder_layers_per_block"]))
    return cls.from_config(config)


def _random_on_cpu(cls, config: dict, dtype: torch.dtype):
    """``cls.from_config(config)`` with random weights, built on the meta device and filled in
    place: matrices N(0, 1/fan_in), norm scales 1, biases 0. Buffers (rotary tables,
    positional grids) are computed as usual. A real-width layer has hundreds of millions of
    parameters and drawing each one takes seconds on a small CPU, so a large matrix repeats
    one random block of at most 2**20 values (each row of the block differs)."""
    from accelerate import init_empty_weights
    from accelerate.utils import set_module_tensor_to_device

    with init_empty_weights():
        model = cls.from_config(config)
    for name, parameter in list(model.named_parameters()):
        if parameter.ndim >= 2:
            rows, columns = parameter.shape[0], parameter[0].numel()
            block_rows = max(1, min(rows, 2**20 // columns))
            block = torch.randn(block_rows, columns, dtype=dtype) * columns**-0.5
            value = block.repeat(-(-rows // block_rows), 1)[:rows].reshape(parameter.shape)
        elif "norm" in name and name.endswith("weight"):
            value = torch.ones(parameter.shape, dtype=dtype)
        else:
            value = torch.zeros(parameter.shape, dtype=dtype)
        set_module_tensor_to_device(model, name, "cpu", value=value, dtype=dtype)
    return model.eval()


def save_real_layout_model(real_folder: str | Path, path: str | Path, *, num_layers: int = 1, seed: int = 0,
                           dtype: torch.dtype = torch.bfloat16) -> Path:
    """A random-weight model in the exact layout of the config-only folder ``real_folder``:
    its own ``model_index.json`` (the real ``_class_name``), its scheduler, and its
    transformer(s) at the real width with ``num_layers`` blocks; the VAE is the real class
    and compression made narrow (:func:`_small_vae`), the text encoder a one-layer T5 of
    the width the transformer reads, the tokenizer :func:`tiny_tokenizer`, the image
    encoder (Wan 2.1) its real CLIP vision tower with one layer. Saved with safetensors; the
    transformer(s) in ``dtype`` (bfloat16 by default, half the bytes; loading casts).
    """
    import json
    import shutil

    import transformers

    from gen_reason.models.model_folder import listed_components, read_component_configs, read_model_index

    real_folder, path = Path(real_folder), Path(path)
    model_index = read_model_index(real_folder)
    configs = read_component_configs(real_folder, model_index)
    transformer_config = configs["transformer"]
    text_dim = transformer_config.get("text_dim") or transformer_config.get("caption_channels") \
        or transformer_config.get("text_embed_dim")
    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    for name, (library, class_name) in listed_components(model_index).items():
        cls = _component_class(library, class_name)
        config = configs.get(name, {})
        if name.startswith("transformer"):
            component = _random_on_cpu(cls, {**config, "num_layers": num_layers}, dtype)
        elif name == "vae":
            component = _small_vae(library, class_name, config)
        elif name == "text_encoder":
            sizes = dict(vocab_size=64, d_model=int(text_dim), d_kv=8, d_ff=37, num_layers=1, num_heads=4)
            config_cls = transformers.UMT5Config if "UMT5" in class_name else transformers.T5Config
            component = cls(config_cls(**sizes)).eval()
        elif name == "tokenizer":
            component = tiny_unigram_tokenizer(cls)
        elif name == "image_encoder":
            component = cls(transformers.CLIPVisionConfig(**{**config, "num_hidden_layers": 1})).eval()
        elif "Processor" in class_name or "Scheduler" in class_name:
            shutil.copytree(real_folder / name, path / name, dirs_exist_ok=True)
            continue
        else:
            raise ValueError(f"no random-weight builder for component {name} ({class_name})")
        component.save_pretrained(path / name, **({} if name == "tokenizer" else {"safe_serialization": True}))
    (path / "model_index.json").write_text(json.dumps(model_index, indent=2) + "\n")
    return path
