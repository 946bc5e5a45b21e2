"""Tiny random VLMs in the layout of real model folders, for tests (no torch at import).

:func:`build_tiny_vlm` makes a random-weight VLM of a few hundred thousand parameters with
a real folder's config keys (Qwen2.5-VL, Qwen3-VL, Gemma 3), tiny sizes and a tiny
tokenizer, built in-process (nothing downloaded) and saved to a folder that
:meth:`~gen_reason.vlm.TransformersVLM.from_pretrained` loads;
:func:`build_tiny_qwen25vl` makes the Qwen2.5-VL one without a real folder at hand. Their
answers are noise. :mod:`gen_reason.vlm.testing` re-exports them beside its scripted doubles.
"""

from __future__ import annotations

import json
from pathlib import Path

#: Each family's special tokens by their id in the real vocabulary: the tiny models keep the
#: tokens and the config keys that name them, with ids in a 64-token vocabulary.
_QWEN_TOKENS = {151643: "<|endoftext|>", 151644: "<|im_start|>", 151645: "<|im_end|>", 151652: "<|vision_start|>",
                151653: "<|vision_end|>", 151654: "<|vision_pad|>", 151655: "<|image_pad|>", 151656: "<|video_pad|>"}
_GEMMA3_TOKENS = {0: "<pad>", 1: "<eos>", 2: "<bos>", 3: "<unk>", 105: "<start_of_turn>", 106: "<end_of_turn>",
                  255999: "<start_of_image>", 256000: "<end_of_image>", 262144: "<image_soft_token>"}
_WORDS = (
    "system user assistant model you are a helpful judge video frame frames maze agent goal wall corridor "
    "moves reaches only json criteria name passed reason score true false yes no { } [ ] : , \" "
    "instruction temporal visual content focus 0 1 2 3 4"
).split()
TINY_VOCAB_SIZE = 64
TINY_WIDTH = 32

_TINY_TEXT = dict(hidden_size=TINY_WIDTH, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=TINY_VOCAB_SIZE)
_TINY_MROPE = [2, 1, 1]  # sums to head_dim / 2 = 32 / 4 / 2


def _set_mrope(section: dict) -> None:
    for key in ("rope_scaling", "rope_parameters"):
        if isinstance(section.get(key), dict) and "mrope_section" in section[key]:
            section[key]["mrope_section"] = list(_TINY_MROPE)


def _shrink_qwen2_5_vl(config: dict) -> None:
    # The published 7B config keeps the text settings at the top level; newer saves nest them.
    for section in (config, config.get("text_config")):
        if isinstance(section, dict):
            section.update({k: v for k, v in _TINY_TEXT.items() if k in section or section is config})
            if "max_window_layers" in section:
                section["max_window_layers"] = 2
            _set_mrope(section)
    config["vision_config"].update(depth=2, hidden_size=TINY_WIDTH, intermediate_size=32, num_heads=4,
                                   out_hidden_size=TINY_WIDTH, fullatt_block_indexes=[1], window_size=56)


def _shrink_qwen3_vl(config: dict) -> None:
    config["text_config"].update(_TINY_TEXT, head_dim=8)
    _set_mrope(config["text_config"])
    config["vision_config"].update(depth=2, hidden_size=TINY_WIDTH, intermediate_size=32, num_heads=4,
                                   out_hidden_size=TINY_WIDTH, deepstack_visual_indexes=[0], num_position_embeddings=64)


def _shrink_gemma3(config: dict) -> None:
    config["text_config"].update(_TINY_TEXT, head_dim=8, query_pre_attn_scalar=8, sliding_window=16)
    config["vision_config"].update(hidden_size=TINY_WIDTH, intermediate_size=32, num_hidden_layers=2,
                                   num_attention_heads=4, image_size=56, patch_size=14)
    config["mm_tokens_per_image"] = 4  # a 4x4 patch grid pooled to 2x2


def _shrink_qwen_pixels(processor: dict, unit: int) -> None:
    # At most 16 visual tokens per image: each token is a merged unit x unit pixel square.
    low, high = unit * unit * 4, unit * unit * 16
    if "min_pixels" in processor or "max_pixels" in processor:
        processor.update(min_pixels=low, max_pixels=high)
    if isinstance(processor.get("size"), dict):
        processor["size"] = {"shortest_edge": low, "longest_edge": high}


def _shrink_gemma3_pixels(processor: dict, unit: int) -> None:
    if "size" in processor:
        processor["size"] = {"height": 56, "width": 56}
    if "image_seq_length" in processor:
        processor["image_seq_length"] = 4


#: model_type -> (real token ids, tokenizer roles, named extra tokens, config shrink, processor shrink, pixel unit)
_FAMILIES = {
    "qwen2_5_vl": (_QWEN_TOKENS, dict(eos_token="<|im_end|>", pad_token="<|endoftext|>"), {},
                   _shrink_qwen2_5_vl, _shrink_qwen_pixels, 28),
    "qwen3_vl": (_QWEN_TOKENS, dict(eos_token="<|im_end|>", pad_token="<|endoftext|>"), {},
                 _shrink_qwen3_vl, _shrink_qwen_pixels, 32),
    "gemma3": (_GEMMA3_TOKENS, dict(bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"),
               dict(boi_token="<start_of_image>", eoi_token="<end_of_image>", image_token="<image_soft_token>"),
               _shrink_gemma3, _shrink_gemma3_pixels, 0),
}
TINY_FAMILIES = tuple(_FAMILIES)


def tiny_tokenizer(model_type: str = "qwen2_5_vl"):
    """A word-level tokenizer with a family's special tokens and a made-up 64-token vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    real_ids, roles, named, *_ = _FAMILIES[model_type]
    specials = [t for t in real_ids.values() if t != "<unk>"]
    vocab: dict[str, int] = {"<unk>": 0}
    for token in specials + _WORDS:
        vocab.setdefault(token, len(vocab))
    for i in range(TINY_VOCAB_SIZE - len(vocab)):  # fill up so every id the model can emit decodes
        vocab[f"w{i}"] = len(vocab)
    if len(vocab) != TINY_VOCAB_SIZE:
        raise RuntimeError(f"tiny vocabulary has {len(vocab)} tokens, expected {TINY_VOCAB_SIZE}")
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # Named family tokens (Gemma 3's boi_token, image_token, ...) go as keyword arguments.
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", extra_special_tokens=specials,
                                   **roles, **named)


def tiny_qwen_tokenizer():
    """The tiny Qwen-VL tokenizer (see :func:`tiny_tokenizer`)."""
    return tiny_tokenizer("qwen2_5_vl")


def _remap_token_ids(node, real_to_tiny: dict[int, int], where: str = ""):
    """Every ``*token_id(s)`` / ``*token_index`` value of a config, moved to the tiny vocabulary."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key.endswith(("token_id", "token_ids", "token_index")) and value is not None:
                ids = value if isinstance(value, list) else [value]
                unknown = [i for i in ids if i not in real_to_tiny]
                if unknown:
                    raise ValueError(f"{where}{key}: token id(s) {unknown} are not in the tiny vocabulary's table")
                moved = [real_to_tiny[i] for i in ids]
                out[key] = moved if isinstance(value, list) else moved[0]
            else:
                out[key] = _remap_token_ids(value, real_to_tiny, f"{where}{key}.")
        return out
    if isinstance(node, list):
        return [_remap_token_ids(item, real_to_tiny, where) for item in node]
    return node


def build_tiny_vlm(real, path, seed: int = 0) -> Path:
    """A random tiny VLM in the layout of a real model folder, saved to ``path``; returns ``path``.

    ``real`` is a folder holding a published model's ``config.json`` (and, as shipped,
    ``generation_config.json``, ``preprocessor_config.json``, ``video_preprocessor_config.json``,
    ``processor_config.json``, ``chat_template.json``), or a dict ``{file name: JSON object}``
    of the same. The tiny folder keeps every key of those files and changes only sizes
    (width 32, two layers, at most 16 visual tokens per image) and token ids (a 64-token
    word-level vocabulary that holds the family's special tokens). Weights are random,
    saved with ``save_pretrained`` as safetensors, with the tokenizer beside them; the
    answers are noise. Families: Qwen2.5-VL, Qwen3-VL, Gemma 3 (:data:`TINY_FAMILIES`).
    """
    import copy

    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    files = real if isinstance(real, dict) else {
        f.name: json.loads(f.read_text()) for f in sorted(Path(real).glob("*.json"))
        if f.name in ("config.json", "generation_config.json", "preprocessor_config.json",
                      "video_preprocessor_config.json", "processor_config.json", "chat_template.json")}
    config = copy.deepcopy(files["config.json"])
    model_type = config.get("model_type")
    if model_type not in _FAMILIES:
        raise ValueError(f"no tiny layout for model type {model_type!r}; known: {', '.join(TINY_FAMILIES)}")
    real_ids, _, _, shrink, shrink_pixels, unit = _FAMILIES[model_type]
    tokenizer = tiny_tokenizer(model_type)
    real_to_tiny = {real_id: tokenizer.convert_tokens_to_ids(token) for real_id, token in real_ids.items()}
    shrink(config)
    config = _remap_token_ids(config, real_to_tiny)

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config, indent=2))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(path)).eval()
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    # save_pretrained writes transformers' own serialisation; put back the real folder's keys.
    (path / "config.json").write_text(json.dumps(config, indent=2))
    for name, content in files.items():
        if name == "config.json":
            continue
        content = _remap_token_ids(copy.deepcopy(content), real_to_tiny)
        if name in ("preprocessor_config.json", "video_preprocessor_config.json", "processor_config.json"):
            shrink_pixels(content, unit)
        (path / name).write_text(json.dumps(content, indent=2))
    return path


#: The files of a Qwen2.5-VL folder that the tiny test model needs (the published 7B layout,
#: sizes and ids shrunk by :func:`build_tiny_vlm`).
_QWEN25_LAYOUT = {
    "config.json": {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
        "bos_token_id": 151643, "eos_token_id": 151645, "vision_start_token_id": 151652,
        "vision_end_token_id": 151653, "vision_token_id": 151654, "image_token_id": 151655,
        "video_token_id": 151656, "hidden_act": "silu", "hidden_size": 3584, "intermediate_size": 18944,
        "max_position_embeddings": 128000, "max_window_layers": 28, "num_attention_heads": 28,
        "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
        "tie_word_embeddings": False, "vocab_size": 152064,
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
                          "num_heads": 16, "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14,
                          "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
                          "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2, "temporal_patch_size": 2},
    },
    "generation_config.json": {"bos_token_id": 151643, "pad_token_id": 151643, "eos_token_id": [151645, 151643]},
    "preprocessor_config.json": {
        "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor"},
    "chat_template.json": {"chat_template": (
        "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in "
        "messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful "
        "assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string "
        "%}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if "
        "content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = "
        "image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif "
        "%}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content "
        "%}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value "
        "}}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ "
        "content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if "
        "add_generation_prompt %}<|im_start|>assistant\n{% endif %}")},
}


def build_tiny_qwen25vl(path, seed: int = 0) -> Path:
    """A ~91k-parameter random Qwen2.5-VL in the published folder layout (see :func:`build_tiny_vlm`).

    The image processor keeps at most 28*28*16 pixels per image (<= 16 visual tokens), so a
    chat with a few frames runs in well under a second on a CPU.
    """
    return build_tiny_vlm(_QWEN25_LAYOUT, path, seed=seed)
