"""A local Qwen2-VL / Qwen2.5-VL model loaded with transformers, as a :class:`VLM`.

The model is read from a local folder only (``local_files_only``, safetensors weights,
no remote code). The processor is assembled from the tokenizer and the PIL
``Qwen2VLImageProcessorPil``, because ``Qwen2_5_VLProcessor`` wants torchvision for its
video processor (FIELD_NOTES, "Vision-language models"). For the same reason a video
part is sent as ``video_frames`` evenly spaced frames, each as an image, in order.

The prompt is Qwen's ChatML, written here rather than by a chat template so that the
image placeholders can be expanded to the exact token counts the image processor
produces::

    <|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n
    <|im_start|>user\\n<|vision_start|><|image_pad|>...<|vision_end|>text<|im_end|>\\n
    <|im_start|>assistant\\n
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from gen_reason.errors import UserError
from gen_reason.vlm.base import VLM, check_messages, sample_frames

#: config.json ``model_type`` -> transformers model class name.
SUPPORTED_MODEL_TYPES = {
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
}

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
_DTYPES = ("float32", "float16", "bfloat16")


class TransformersVLM(VLM):
    """A Qwen2-VL-family model in this process; build it with :meth:`from_pretrained`."""

    def __init__(self, model, tokenizer, image_processor, *, name: str = "qwen-vl", video_frames: int = 8,
                 system_prompt: str | None = DEFAULT_SYSTEM_PROMPT):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.name = name
        self.video_frames = int(video_frames)
        self.system_prompt = system_prompt
        self.merge_size = int(getattr(image_processor, "merge_size", 2))

    @classmethod
    def from_pretrained(cls, path, device=None, dtype=None, *, max_pixels: int | None = None,
                        video_frames: int = 8) -> "TransformersVLM":
        """Load the model, tokenizer and image processor saved in the folder ``path``.

        ``device`` defaults to CUDA when available, else CPU; ``dtype`` (a torch dtype or
        ``"float32"``/``"float16"``/``"bfloat16"``) defaults to bfloat16 on CUDA and
        float32 on CPU. ``max_pixels`` caps the pixels per image the processor keeps
        (fewer visual tokens; Qwen's default is ~12.8 M). Raises
        :class:`~gen_reason.errors.UserError` for a missing folder, a folder without
        ``config.json`` or safetensors weights, or an unsupported model type.
        """
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise UserError(f"VLM model folder not found: {folder}")
        config_file = folder / "config.json"
        if not config_file.is_file():
            raise UserError(f"{folder} is not a transformers model folder (no config.json)")
        try:
            model_type = json.loads(config_file.read_text()).get("model_type")
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise UserError(f"{config_file} is not valid JSON: {error}") from None
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise UserError(f"unsupported VLM type {model_type!r} in {folder}; "
                            f"supported: {', '.join(sorted(SUPPORTED_MODEL_TYPES))} (Qwen2-VL, Qwen2.5-VL)")
        if not any(folder.glob("*.safetensors")):
            raise UserError(f"{folder} has no .safetensors weights (only safetensors are loaded, never pickles)")
        if not any((folder / name).is_file() for name in ("tokenizer.json", "vocab.json", "tokenizer.model")):
            raise UserError(f"{folder} has no tokenizer (tokenizer.json or vocab.json)")

        import torch
        import transformers
        from transformers import AutoTokenizer, Qwen2VLImageProcessorPil

        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch_dtype = _resolve_dtype(dtype, device)
        model_class = getattr(transformers, SUPPORTED_MODEL_TYPES[model_type])
        try:
            model = model_class.from_pretrained(folder, local_files_only=True, use_safetensors=True,
                                                dtype=torch_dtype, trust_remote_code=False)
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
            processor_kwargs = {}
            if max_pixels is not None:
                processor_kwargs["max_pixels"] = int(max_pixels)
            image_processor = Qwen2VLImageProcessorPil.from_pretrained(folder, local_files_only=True,
                                                                       **processor_kwargs)
        except OSError as error:  # a missing tokenizer/processor file, a truncated shard
            raise UserError(f"cannot load the VLM from {folder}: {error}") from None
        _check_tokenizer(tokenizer, folder)
        model.to(device).eval()
        return cls(model, tokenizer, image_processor, name=f"transformers:{folder.name}", video_frames=video_frames)

    @property
    def device(self):
        """The torch device the model runs on."""
        return next(self.model.parameters()).device

    # --- prompt ----------------------------------------------------------------------

    def build_prompt(self, messages: list[dict]) -> tuple[str, list[np.ndarray]]:
        """The ChatML prompt text with one ``<|image_pad|>`` per image, and the images in order.

        Video parts become :attr:`video_frames` evenly spaced frames (see module docstring).
        """
        checked = check_messages(messages)
        lines, images = [], []
        if self.system_prompt is not None and checked[0]["role"] != "system":
            lines.append(f"<|im_start|>system\n{self.system_prompt}<|im_end|>\n")
        for message in checked:
            pieces = []
            for part in message["content"]:
                if part["type"] == "text":
                    pieces.append(part["text"])
                else:
                    frames = [part["image"]] if part["type"] == "image" else sample_frames(
                        part["video"], self.video_frames)[1]
                    for frame in frames:
                        images.append(frame)
                        pieces.append("<|vision_start|><|image_pad|><|vision_end|>")
            lines.append(f"<|im_start|>{message['role']}\n{''.join(pieces)}<|im_end|>\n")
        lines.append("<|im_start|>assistant\n")
        return "".join(lines), images

    def _model_inputs(self, messages: list[dict]) -> dict:
        text, images = self.build_prompt(messages)
        inputs = {}
        if images:
            vision = self.image_processor(images=images, return_tensors="pt")
            # Each placeholder stands for grid_t * grid_h * grid_w / merge_size**2 tokens.
            counts = (vision["image_grid_thw"].prod(-1) // self.merge_size**2).tolist()
            chunks = text.split("<|image_pad|>")
            text = chunks[0] + "".join("<|image_pad|>" * int(n) + chunk for n, chunk in zip(counts, chunks[1:]))
            inputs.update(pixel_values=vision["pixel_values"], image_grid_thw=vision["image_grid_thw"])
        encoded = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        inputs.update(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"])
        return inputs

    # --- chat ------------------------------------------------------------------------

    def chat(self, messages: list[dict], *, max_tokens: int = 512, temperature: float = 0.0) -> str:
        """Generate the assistant's answer (greedy at ``temperature=0``, sampled above)."""
        import torch

        started = time.perf_counter()
        device = self.device
        inputs = {k: v.to(device) for k, v in self._model_inputs(messages).items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        sampling = {"do_sample": True, "temperature": float(temperature)} if temperature > 0 else {"do_sample": False}
        eos = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
        with torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=int(max_tokens), eos_token_id=eos,
                                         pad_token_id=pad, **sampling)
        prompt_length = inputs["input_ids"].shape[1]
        new_tokens = output[0, prompt_length:]
        completion_tokens = int((new_tokens != pad).sum()) if pad != eos else int(new_tokens.numel())
        answer = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
        self.usage.record(prompt_tokens=prompt_length, completion_tokens=completion_tokens,
                          seconds=time.perf_counter() - started)
        return answer.strip()


#: Tokens the ChatML prompt relies on; a tokenizer without them would turn the prompt into noise.
_REQUIRED_TOKENS = ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>")


def _check_tokenizer(tokenizer, folder: Path) -> None:
    # transformers builds an empty tokenizer, silently, from some incomplete folders.
    unknown = [t for t in _REQUIRED_TOKENS
               if tokenizer.convert_tokens_to_ids(t) in (None, tokenizer.unk_token_id)]
    if unknown:
        raise UserError(f"the tokenizer in {folder} lacks Qwen-VL's special tokens ({', '.join(unknown)}); "
                        "is this a Qwen2-VL / Qwen2.5-VL folder?")


def _resolve_dtype(dtype, device):
    import torch

    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and dtype in _DTYPES:
        return getattr(torch, dtype)
    raise UserError(f"unknown dtype {dtype!r}; use one of {', '.join(_DTYPES)}")
