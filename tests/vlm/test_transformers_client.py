"""TransformersVLM on a tiny random Qwen2.5-VL built in-process (no download)."""

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from gen_reason.errors import UserError  # noqa: E402
from gen_reason.vlm import load_vlm, user_message  # noqa: E402
from gen_reason.vlm.testing import build_tiny_qwen25vl  # noqa: E402
from gen_reason.vlm.transformers_client import TransformersVLM  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory):
    return build_tiny_qwen25vl(tmp_path_factory.mktemp("vlm") / "tiny-qwen25vl")


@pytest.fixture(scope="module")
def tiny_vlm(tiny_model_path):
    return TransformersVLM.from_pretrained(tiny_model_path, device="cpu")


def _image(seed=0, shape=(40, 56, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_tiny_model_is_tiny_and_saved_as_safetensors(tiny_model_path, tiny_vlm):
    assert (tiny_model_path / "model.safetensors").is_file()
    assert not list(tiny_model_path.glob("*.bin"))
    assert sum(p.numel() for p in tiny_vlm.model.parameters()) < 150_000
    assert json.loads((tiny_model_path / "config.json").read_text())["model_type"] == "qwen2_5_vl"


def test_chat_returns_a_string_and_counts_usage(tiny_vlm):
    before = tiny_vlm.usage.snapshot()
    answer = tiny_vlm.chat([{"role": "system", "content": "you are a judge"},
                            user_message("judge the video", images=[_image(0), _image(1)])], max_tokens=12)
    assert isinstance(answer, str)  # random weights: the content means nothing
    spent = tiny_vlm.usage.since(before)
    assert spent.calls == 1 and spent.prompt_tokens > 8 and 0 < spent.completion_tokens <= 12
    # Greedy decoding is repeatable.
    again = tiny_vlm.chat([{"role": "system", "content": "you are a judge"},
                           user_message("judge the video", images=[_image(0), _image(1)])], max_tokens=12)
    assert again == answer
    sampled = tiny_vlm.chat([user_message("judge")], max_tokens=5, temperature=0.8)
    assert isinstance(sampled, str)


def test_video_goes_as_sampled_frames_with_expanded_placeholders(tiny_vlm):
    video = np.stack([_image(i, (28, 28, 3)) for i in range(9)])
    text, images = tiny_vlm.build_prompt([user_message("what happens?", video=video)])
    assert len(images) == tiny_vlm.video_frames == 8
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert text.count("<|image_pad|>") == 8 and text.endswith("<|im_start|>assistant\n")
    inputs = tiny_vlm._model_inputs([user_message("what happens?", video=video)])
    tokens_per_image = int(inputs["image_grid_thw"][0].prod()) // 4
    image_token = tiny_vlm.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((inputs["input_ids"] == image_token).sum()) == 8 * tokens_per_image
    assert isinstance(tiny_vlm.chat([user_message("what happens?", video=video)], max_tokens=4), str)


def test_judge_with_a_random_model_records_a_judge_failure(tiny_vlm):
    from gen_reason.verifiers.vlm_judge import MMECoFJudge

    instance = SimpleNamespace(task="maze/grid-v1", prompt="Move the red circle to the green square.")
    video = np.stack([_image(i, (64, 64, 3)) for i in range(5)])
    score = MMECoFJudge(tiny_vlm, num_frames=3, retries=1, max_tokens=24).score(instance, video)
    assert score.success is False
    assert score.metrics["judge_failed"] == 1.0 and np.isnan(score.metrics["judge_score"])
    assert score.reason.startswith("judge failure: no valid JSON answer after 2 attempts")
    assert len(score.trace["raw_answers"]) == 2 and score.trace["usage"]["calls"] == 2


def _copy(tiny_model_path, tmp_path, name):
    folder = tmp_path / name
    shutil.copytree(tiny_model_path, folder)
    return folder


def test_missing_or_unsupported_folders_are_user_errors(tiny_model_path, tmp_path):
    with pytest.raises(UserError, match="VLM model folder not found"):
        TransformersVLM.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(UserError, match="no config.json"):
        TransformersVLM.from_pretrained(tmp_path)
    llama = tmp_path / "llama"
    llama.mkdir()
    (llama / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(UserError, match="unsupported VLM type 'llama'"):
        TransformersVLM.from_pretrained(llama)
    pickled = _copy(tiny_model_path, tmp_path, "pickled")
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(UserError, match="only pickle weights"):
        TransformersVLM.from_pretrained(pickled)
    no_weights = _copy(tiny_model_path, tmp_path, "no-weights")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(UserError, match="has no weights"):
        TransformersVLM.from_pretrained(no_weights)
    no_tokenizer = _copy(tiny_model_path, tmp_path, "no-tokenizer")
    (no_tokenizer / "tokenizer.json").unlink()
    (no_tokenizer / "tokenizer_config.json").unlink()
    with pytest.raises(UserError, match="has no tokenizer"):
        TransformersVLM.from_pretrained(no_tokenizer)
    no_processor = _copy(tiny_model_path, tmp_path, "no-processor")
    (no_processor / "preprocessor_config.json").unlink()
    with pytest.raises(UserError, match="no preprocessor_config.json"):
        TransformersVLM.from_pretrained(no_processor)
    no_template = _copy(tiny_model_path, tmp_path, "no-template")
    (no_template / "chat_template.json").unlink()
    with pytest.raises(UserError, match="no chat template"):
        TransformersVLM.from_pretrained(no_template)
    with pytest.raises(UserError, match="unknown dtype"):
        TransformersVLM.from_pretrained(tiny_model_path, dtype="float8")


def test_half_downloaded_weights_are_named_in_one_line(tiny_model_path, tmp_path):
    pointer = _copy(tiny_model_path, tmp_path, "lfs-pointer")
    (pointer / "model.safetensors").write_text("version https://git-lfs.github.com/spec/v1\n"
                                               "oid sha256:0123\nsize 123456\n")
    with pytest.raises(UserError, match="git-lfs pointer"):
        TransformersVLM.from_pretrained(pointer)
    truncated = _copy(tiny_model_path, tmp_path, "truncated")
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(UserError, match=r"is cut short \(\d+ of \d+ bytes\)"):
        TransformersVLM.from_pretrained(truncated)
    sharded = _copy(tiny_model_path, tmp_path, "sharded")
    (sharded / "model.safetensors").rename(sharded / "model-00001-of-00002.safetensors")
    index = {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                            "b": "model-00002-of-00002.safetensors"}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(UserError, match="model-00002-of-00002.safetensors is missing"):
        TransformersVLM.from_pretrained(sharded)


def test_a_tokenizer_from_another_model_is_refused(tiny_model_path, tmp_path):
    wrong_tokenizer = _copy(tiny_model_path, tmp_path, "wrong-tokenizer")
    vocab = json.loads((wrong_tokenizer / "tokenizer.json").read_text())
    vocab["model"]["vocab"] = {"<unk>": 0, "hello": 1}
    vocab["added_tokens"] = []
    (wrong_tokenizer / "tokenizer.json").write_text(json.dumps(vocab))
    settings = json.loads((wrong_tokenizer / "tokenizer_config.json").read_text())
    settings.pop("extra_special_tokens", None)
    (wrong_tokenizer / "tokenizer_config.json").write_text(json.dumps(settings))
    with pytest.raises(UserError, match="does not know the image token '<\\|image_pad\\|>'"):
        TransformersVLM.from_pretrained(wrong_tokenizer)


def test_load_vlm_reads_a_folder(tiny_model_path):
    vlm = load_vlm(str(tiny_model_path), max_pixels=28 * 28 * 4)
    assert isinstance(vlm, TransformersVLM) and vlm.name == "transformers:tiny-qwen25vl"
    big = [user_message("x", images=[_image(shape=(200, 200, 3))])]
    # The tiny processor keeps <= 28*28*16 pixels (16 tokens); max_pixels caps it at 4.
    assert int(vlm._model_inputs(big)["image_grid_thw"][0].prod()) // 4 == 4
    assert int(TransformersVLM.from_pretrained(tiny_model_path)._model_inputs(big)["image_grid_thw"][0].prod()) == 64
