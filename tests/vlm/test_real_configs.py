"""Real VLM folders (config files only, tests/vlm/real_configs/) through transformers' auto classes.

Each published configuration builds at full size on the meta device from the unmodified
folder; a random tiny model saved in the same layout (same config keys, tiny sizes) loads
through TransformersVLM and answers a chat with images and a video.
"""

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from gen_reason.errors import UserError  # noqa: E402
from gen_reason.vlm import load_vlm, user_message  # noqa: E402
from gen_reason.vlm.testing import build_tiny_vlm  # noqa: E402
from gen_reason.vlm.transformers_client import TransformersVLM, check_vlm_folder, chat_template  # noqa: E402

REAL = Path(__file__).parent / "real_configs"

#: folder -> (model class, parameters at full size as built here, turn marker of its chat template)
FOLDERS = {
    "Qwen2.5-VL-7B-Instruct": ("Qwen2_5_VLForConditionalGeneration", 8_292_166_656, "<|im_start|>"),
    "Qwen3-VL-8B-Instruct": ("Qwen3VLForConditionalGeneration", 8_767_123_696, "<|im_start|>"),
    "gemma-3-4b-it": ("Gemma3ForConditionalGeneration", 4_300_079_472, "<start_of_turn>"),
}


def _keys(node, prefix=""):
    """Every key path of a JSON object (nested objects included)."""
    if not isinstance(node, dict):
        return set()
    out = set()
    for key, value in node.items():
        out.add(prefix + key)
        out |= _keys(value, prefix + key + ".")
    return out


def test_every_fixture_folder_is_listed():
    assert sorted(p.name for p in REAL.iterdir() if p.is_dir()) == sorted(FOLDERS)


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_real_folder_builds_at_full_size_on_meta(name):
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageTextToText

    folder = REAL / name
    model_class, parameters, _ = FOLDERS[name]
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    assert type(model).__name__ == model_class == json.loads((folder / "config.json").read_text())["architectures"][0]
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - parameters) / parameters < 0.01, count
    assert all(p.device.type == "meta" for p in model.parameters())
    # The image processor and chat template come from the same unmodified folder.
    assert AutoImageProcessor.from_pretrained(folder, local_files_only=True) is not None
    assert chat_template(folder)


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_config_only_folder_is_refused_in_one_line(name):
    with pytest.raises(UserError, match="has no weights") as caught:
        check_vlm_folder(REAL / name)
    assert "\n" not in str(caught.value)
    with pytest.raises(UserError, match="has no weights"):
        load_vlm(str(REAL / name))


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-real-layout")
    return {name: build_tiny_vlm(REAL / name, root / name) for name in FOLDERS}


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_tiny_model_in_the_real_layout_chats(name, tiny_folders):
    folder = tiny_folders[name]
    real_config = json.loads((REAL / name / "config.json").read_text())
    tiny_config = json.loads((folder / "config.json").read_text())
    assert _keys(real_config) <= _keys(tiny_config)  # every published key is kept
    for file in ("generation_config.json", "preprocessor_config.json", "chat_template.json"):
        assert _keys(json.loads((REAL / name / file).read_text())) <= _keys(json.loads((folder / file).read_text()))
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))

    vlm = TransformersVLM.from_pretrained(folder, device="cpu")
    assert type(vlm.model).__name__ == FOLDERS[name][0]
    assert sum(p.numel() for p in vlm.model.parameters()) < 300_000
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(2)]
    video = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    messages = [{"role": "system", "content": "you are a judge"},
                user_message("judge the video", images=images, video=video)]
    vlm.video_frames = 3
    text, shown = vlm.build_prompt(messages)
    assert FOLDERS[name][2] in text and "you are a judge" in text and len(shown) == 2 + 3
    inputs = vlm._model_inputs(messages)
    image_token = vlm.processor.tokenizer.convert_tokens_to_ids(
        getattr(vlm.processor.tokenizer, "image_token", None) or vlm.processor.image_token)
    tokens = int((inputs["input_ids"] == image_token).sum())
    if "image_grid_thw" in inputs:  # Qwen: one token per merged 2x2 patch block
        assert tokens == int(inputs["image_grid_thw"].prod(-1).sum()) // 4
    else:  # Gemma 3: mm_tokens_per_image soft tokens per image
        assert tokens == 5 * tiny_config["mm_tokens_per_image"]
    before = vlm.usage.snapshot()
    answer = vlm.chat(messages, max_tokens=6)
    assert isinstance(answer, str)  # random weights: the content means nothing
    spent = vlm.usage.since(before)
    assert spent.calls == 1 and spent.prompt_tokens == inputs["input_ids"].shape[1] and 0 < spent.completion_tokens <= 6
    assert vlm.chat(messages, max_tokens=6) == answer  # greedy decoding is repeatable


def test_bfloat16_on_the_cpu_casts_the_pixels(tiny_folders):
    vlm = TransformersVLM.from_pretrained(tiny_folders["gemma-3-4b-it"], device="cpu", dtype="bfloat16")
    assert vlm.model.dtype == torch.bfloat16
    image = np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    assert isinstance(vlm.chat([user_message("what is this?", images=[image])], max_tokens=3), str)
