"""A local vision-language model folder loaded with transformers' auto classes, as a :class:`VLM`.

Any folder that ``AutoModelForImageTextToText`` and ``AutoProcessor`` understand loads
unmodified, as its authors ship it: Qwen2.5-VL, Qwen3-VL, Gemma 3, LLaVA and the rest of
transformers' image-text-to-text families. Only local files are read (``local_files_only``,
safetensors weights, no remote code). The prompt is the folder's own chat template
(``processor.apply_chat_template``), so each family gets its own turn markers, default
system prompt and image placeholders, and the processor expands the placeholders to the
number of visual tokens each image makes.

A video part is sent as ``video_frames`` evenly spaced frames, each as an image, in
order: every image-text family takes that, and a processor's video path needs
torchvision, which this toolkit does not require. Without torchvision the processors of
families that also handle video (Qwen2.5-VL, Qwen3-VL) are built without their video
processor (:func:`load_processor`).

Before anything heavy loads, :func:`check_vlm_folder` says in one line what is wrong with
a folder: no config, a model type that is not a VLM, weights missing, half-downloaded
(a shard absent, truncated, or a git-lfs pointer) or only in pickle form, no tokenizer,
no image processor config, no chat template.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from gen_reason.errors import UserError
from gen_reason.vlm.base import VLM, check_messages, sample_frames

_DTYPES = ("float32", "float16", "bfloat16")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model")
_LFS_POINTER = b"version https://git-lfs"


class TransformersVLM(VLM):
    """An image-text-to-text model in this process; build it with :meth:`from_pretrained`.

    ``processor`` is the folder's transformers processor (tokenizer, image processor and
    chat template); ``system_prompt``, when given, is added as a system turn to
    conversations that have none (by default the chat template decides: Qwen2.5-VL's
    adds "You are a helpful assistant.", Qwen3-VL's and Gemma 3's add nothing).
    """

    def __init__(self, model, processor, *, name: str = "transformers", video_frames: int = 8,
                 system_prompt: str | None = None):
        super().__init__()
        self.model = model
        self.processor = processor
        self.name = name
        self.video_frames = int(video_frames)
        self.system_prompt = system_prompt

    @property
    def tokenizer(self):
        """The processor's tokenizer."""
        return self.processor.tokenizer

    @classmethod
    def from_pretrained(cls, path, device=None, dtype=None, *, max_pixels: int | None = None,
                        video_frames: int = 8, system_prompt: str | None = None) -> "TransformersVLM":
        """Load the model, processor and chat template saved in the folder ``path``.

        ``device`` defaults to CUDA when available, else CPU; ``dtype`` (a torch dtype or
        ``"float32"``/``"float16"``/``"bfloat16"``) defaults to bfloat16 on CUDA and
        float32 on CPU. ``max_pixels`` caps the pixels per image of a dynamic-resolution
        processor (Qwen-VL: fewer visual tokens; the default is the folder's). Raises
        :class:`~gen_reason.errors.UserError` for anything :func:`check_vlm_folder`
        finds, for an unknown dtype, and when a file turns out unreadable while loading.
        """
        import torch

        folder = Path(path).expanduser()
        config_json = check_vlm_folder(folder)
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch_dtype = _resolve_dtype(dtype, device)

        from transformers import AutoConfig, AutoModelForImageTextToText

        try:
            processor = load_processor(folder, max_pixels=max_pixels)
            config = AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
            _check_image_token(processor, config, folder)
            # Straight onto the device: an 8B model is not held twice (CPU, then GPU) while loading.
            model = AutoModelForImageTextToText.from_pretrained(
                folder, config=config, local_files_only=True, use_safetensors=True, dtype=torch_dtype,
                trust_remote_code=False, device_map={"": str(device)})
        except UserError:
            raise
        except (OSError, ValueError, ImportError) as error:  # a damaged file, an unreadable config, a missing extra
            first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
            raise UserError(f"cannot load the VLM from {folder} ({config_json.get('model_type')}): {first}") from None
        model.eval()
        return cls(model, processor, name=f"transformers:{folder.name}", video_frames=video_frames,
                   system_prompt=system_prompt)

    @property
    def device(self):
        """The torch device the model runs on."""
        return next(self.model.parameters()).device

    # --- prompt ----------------------------------------------------------------------

    def _conversation(self, messages: list[dict], with_images: bool) -> tuple[list[dict], list[np.ndarray]]:
        """``messages`` in transformers' chat format, and the images in order (video parts as frames)."""
        from PIL import Image

        checked = check_messages(messages)
        conversation, images = [], []
        if self.system_prompt is not None and checked[0]["role"] != "system":
            conversation.append({"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        for message in checked:
            parts = []
            for part in message["content"]:
                if part["type"] == "text":
                    parts.append({"type": "text", "text": part["text"]})
                    continue
                frames = [part["image"]] if part["type"] == "image" else sample_frames(
                    part["video"], self.video_frames)[1]
                for frame in frames:
                    images.append(frame)
                    parts.append({"type": "image", "image": Image.fromarray(frame)} if with_images
                                 else {"type": "image"})
            conversation.append({"role": message["role"], "content": parts})
        return conversation, images

    def build_prompt(self, messages: list[dict]) -> tuple[str, list[np.ndarray]]:
        """The prompt text the chat template makes of ``messages`` (one placeholder per image), and the images.

        Video parts become :attr:`video_frames` evenly spaced frames (see module docstring).
        The processor expands each placeholder to the image's visual tokens.
        """
        conversation, images = self._conversation(messages, with_images=False)
        text = self.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        return (text[0] if isinstance(text, list) else text), images

    def _model_inputs(self, messages: list[dict]) -> dict:
        conversation, _ = self._conversation(messages, with_images=True)
        inputs = self.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True,
                                                    return_dict=True, return_tensors="pt")
        return dict(inputs)

    # --- chat ------------------------------------------------------------------------

    def chat(self, messages: list[dict], *, max_tokens: int = 512, temperature: float = 0.0) -> str:
        """Generate the assistant's answer (greedy at ``temperature=0``, sampled above).

        The folder's ``generation_config.json`` supplies the stop tokens and, when
        sampling, its authors' top-k/top-p; ``temperature`` and greedy decoding override
        its sampling switch.
        """
        import copy

        import torch

        started = time.perf_counter()
        device = self.device
        inputs = {k: v.to(device) for k, v in self._model_inputs(messages).items()}
        for key in ("pixel_values", "pixel_values_videos"):
            if key in inputs and inputs[key].is_floating_point():
                inputs[key] = inputs[key].to(self.model.dtype)
        generation = copy.deepcopy(self.model.generation_config)
        generation.max_new_tokens = int(max_tokens)
        if temperature > 0:
            generation.do_sample, generation.temperature = True, float(temperature)
        else:
            generation.do_sample = False
            generation.temperature = generation.top_p = generation.top_k = None
        eos = generation.eos_token_id if generation.eos_token_id is not None else self.tokenizer.eos_token_id
        eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
        if generation.pad_token_id is None:
            generation.pad_token_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None \
                else next(iter(sorted(eos_ids)), 0)
        with torch.inference_mode():
            output = self.model.generate(**inputs, generation_config=generation)
        prompt_length = inputs["input_ids"].shape[1]
        new_tokens = output[0, prompt_length:].tolist()
        stop = next((i for i, token in enumerate(new_tokens) if token in eos_ids), None)
        completion_tokens = len(new_tokens) if stop is None else stop + 1
        answer = self.tokenizer.decode(new_tokens[:completion_tokens], skip_special_tokens=True)
        self.usage.record(prompt_tokens=prompt_length, completion_tokens=completion_tokens,
                          seconds=time.perf_counter() - started)
        return answer.strip()


# --- checking and loading a folder ----------------------------------------------------


def check_vlm_folder(path) -> dict:
    """Check that ``path`` is a complete local VLM folder and return its ``config.json``.

    Reads only small files (configs, safetensors headers). Raises
    :class:`~gen_reason.errors.UserError` with one line for the first problem found.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise UserError(f"VLM model folder not found: {folder}")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise UserError(f"{folder} is not a transformers model folder (no config.json)")
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{config_file} is not valid JSON: {error}") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    if model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        raise UserError(f"unsupported VLM type {model_type!r} in {folder}: transformers' "
                        "AutoModelForImageTextToText does not know it (a VLM folder is e.g. Qwen2.5-VL, "
                        "Qwen3-VL, Gemma 3, LLaVA)")
    _check_weights(folder)
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        raise UserError(f"{folder} has no tokenizer ({', '.join(_TOKENIZER_FILES)}); download the folder's "
                        "tokenizer files too")
    if not (folder / "preprocessor_config.json").is_file():
        raise UserError(f"{folder} has no preprocessor_config.json (the image processor's settings)")
    if chat_template(folder) is None:
        raise UserError(f"{folder} has no chat template (chat_template.json, chat_template.jinja or "
                        "tokenizer_config.json's chat_template); is it an instruction-tuned model?")
    return config


def _check_weights(folder: Path) -> None:
    """Complete safetensors weights, or one line naming what is missing."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
            raise UserError(f"{index} is not a safetensors index (no weight_map)") from None
    elif (folder / "model.safetensors").exists():
        shards = ["model.safetensors"]
    elif any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
        raise UserError(f"{folder} has only pickle weights (.bin/.pt); only .safetensors are loaded, never pickles")
    else:
        raise UserError(f"{folder} has no weights (model.safetensors or model.safetensors.index.json); "
                        "is the download complete?")
    for name in shards:
        problem = _safetensors_problem(folder / name)
        if problem:
            raise UserError(f"{folder / name} {problem}")


def _safetensors_problem(file: Path) -> str | None:
    """Why ``file`` is not a whole safetensors file, or ``None``."""
    if not file.is_file():
        return "is missing (a shard the index lists); is the download complete?"
    size = file.stat().st_size
    with file.open("rb") as handle:
        start = handle.read(64)
        if start.startswith(_LFS_POINTER):
            return "is a git-lfs pointer, not the weights; run `git lfs pull` in the folder"
        if len(start) < 8:
            return "is empty or cut short; download it again"
        header_length = int.from_bytes(start[:8], "little")
        if header_length <= 0 or 8 + header_length > size:
            return "is cut short or not a safetensors file; download it again"
        handle.seek(8)
        try:
            header = json.loads(handle.read(header_length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return "has a damaged header; download it again"
    end = max((entry["data_offsets"][1] for key, entry in header.items()
               if key != "__metadata__" and isinstance(entry, dict) and "data_offsets" in entry), default=0)
    if 8 + header_length + end > size:
        return f"is cut short ({size} of {8 + header_length + end} bytes); download it again"
    return None


def chat_template(folder) -> str | None:
    """The chat template a model folder ships (chat_template.jinja/.json or tokenizer_config.json), or ``None``."""
    folder = Path(folder)
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    for name in ("chat_template.json", "tokenizer_config.json", "processor_config.json"):
        file = folder / name
        if file.is_file():
            try:
                template = json.loads(file.read_text()).get("chat_template")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                raise UserError(f"{file} is not valid JSON") from None
            if template:
                return template if isinstance(template, str) else json.dumps(template)
    return None


def load_processor(folder, *, max_pixels: int | None = None):
    """The folder's transformers processor (``AutoProcessor``), from local files only.

    When the processor class also handles video and torchvision is not installed,
    ``AutoProcessor`` refuses to build it; the same class is then built from the folder's
    tokenizer, image processor and chat template without its video processor (videos
    are sent as frames anyway). ``max_pixels`` caps a dynamic-resolution image
    processor's pixels per image; a fixed-size one (Gemma 3, LLaVA) refuses it.
    """
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    folder = Path(folder)
    try:
        processor = AutoProcessor.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except ImportError:
        import transformers
        from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
        processor_class = getattr(transformers, PROCESSOR_MAPPING_NAMES.get(model_type) or "", None)
        if processor_class is None or "video_processor" not in processor_class.get_attributes():
            raise
        parts = [name for name in processor_class.get_attributes() if name != "video_processor"]
        without_video = type(processor_class.__name__, (processor_class,),
                             {"get_attributes": classmethod(lambda cls: list(parts))})
        processor = without_video(
            image_processor=AutoImageProcessor.from_pretrained(folder, local_files_only=True),
            tokenizer=AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False),
            video_processor=None, chat_template=chat_template(folder))
    if getattr(processor, "chat_template", None) is None:
        processor.chat_template = chat_template(folder)
    if max_pixels is not None:
        _cap_pixels(processor.image_processor, int(max_pixels), folder)
    return processor


def _cap_pixels(image_processor, max_pixels: int, folder: Path) -> None:
    import dataclasses

    size = getattr(image_processor, "size", None)  # a dict, or transformers' SizeDict dataclass
    longest = size.get("longest_edge") if hasattr(size, "get") else None
    if longest is None and not hasattr(image_processor, "max_pixels"):
        raise UserError(f"max_pixels applies to dynamic-resolution image processors (Qwen-VL); "
                        f"{type(image_processor).__name__} in {folder} resizes every image to one size")
    if longest is not None:
        shortest = min(int(size.get("shortest_edge") or max_pixels), max_pixels)
        image_processor.size = (dataclasses.replace(size, longest_edge=max_pixels, shortest_edge=shortest)
                                if dataclasses.is_dataclass(size)
                                else {**size, "longest_edge": max_pixels, "shortest_edge": shortest})
    if hasattr(image_processor, "max_pixels"):
        image_processor.max_pixels = max_pixels
        if getattr(image_processor, "min_pixels", None) and image_processor.min_pixels > max_pixels:
            image_processor.min_pixels = max_pixels


def _check_image_token(processor, config, folder: Path) -> None:
    """The tokenizer must know the image token, at the id the model's config expects."""
    tokenizer = processor.tokenizer
    token = getattr(tokenizer, "image_token", None) or getattr(processor, "image_token", None)
    expected = getattr(config, "image_token_id", None)
    if expected is None:
        expected = getattr(config, "image_token_index", None)
    if not token:
        return
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise UserError(f"the tokenizer in {folder} does not know the image token {token!r}; "
                        "is the tokenizer from this model?")
    if expected is not None and token_id != expected:
        raise UserError(f"the tokenizer in {folder} gives the image token {token!r} id {token_id}, the model's "
                        f"config expects {expected}; is the tokenizer from this model?")


def _resolve_dtype(dtype, device):
    import torch

    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and dtype in _DTYPES:
        return getattr(torch, dtype)
    raise UserError(f"unknown dtype {dtype!r}; use one of {', '.join(_DTYPES)}")
