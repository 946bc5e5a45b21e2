"""`genreason train embedded` and `genreason train lora` given a user's mistake: exit code 2,
exactly one line on stderr, no traceback, checked before any training, and nothing left
behind in the working folder (so the corrected command runs as if the mistake never
happened). Nothing is ever written into the installed package."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gen_reason.cli import main

PICKLE_MARKER = "pickle-ran"


class Payload:
    """Unpickling this creates the marker file: code an attacker would run."""

    def __reduce__(self):
        return (open, (PICKLE_MARKER, "w"))


def tree(root: Path) -> set[str]:
    """Every path under ``root`` (the working folder's contents)."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    """``genreason ARGS`` in this process: its exit code and stderr."""
    capsys.readouterr()
    code = main(args)
    return code, capsys.readouterr().err


def assert_refused(root: Path, args: list[str], capsys, match: str) -> None:
    """The command exits 2 with one line naming ``match``, and leaves ``root`` as it was."""
    before = tree(root)
    code, err = run_cli(args, capsys)
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert match.lower() in err.lower(), err
    assert tree(root) == before, sorted(tree(root) ^ before)
    assert not (root / PICKLE_MARKER).exists()


# -- train embedded ---------------------------------------------------------------------------
def _yaml(config, **changes) -> str:
    return yaml.safe_dump({**config.to_dict(), **changes})


def _corrupt_weights(root: Path) -> str:
    (root / "exported" / "unet").mkdir(parents=True)
    (root / "exported" / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x10\x00" * 40)
    return "exported"


def _pickle_file(root: Path) -> str:
    import torch

    torch.save({"ema": Payload()}, root / "payload.pt")
    return "payload.pt"


def _old_run(root: Path) -> None:
    import torch

    (root / "old").mkdir()
    torch.save({"ema": Payload()}, root / "old" / "checkpoint.pt")


# (id, YAML text of the config (None: the tiny config), setup(root) -> init_from or None, extra args, message)
def _damaged_checkpoint(root):
    """A run folder whose newest checkpoint's state.json a crash left cut short."""
    folder = root / "run" / "checkpoints" / "step-000000002"
    folder.mkdir(parents=True)
    (folder / "state.json").write_text('{"step": 2, "con')


EMBEDDED_CASES = [
    ("invalid-yaml", "sizes: [3\nlearning_rate: 0.1\n", None, [], "not valid YAML"),
    ("string-learning-rate", {"learning_rate": "fast"}, None, [], "'learning_rate': Input should be a valid number"),
    ("list-learning-rate", {"learning_rate": [0.1]}, None, [], "learning_rate"),
    ("negative-steps", {"max_steps": -3}, None, [], "max_steps"),
    ("bool-batch", {"batch_size": True}, None, [], "'batch_size': Input should be a valid integer"),
    ("float-steps", {"max_steps": 2.5}, None, [], "max_steps"),
    ("unknown-key", {"learning_rat": 0.1}, None, [], "learning_rat"),
    ("unknown-tracker", {"trackers": "mlflow"}, None, [], "trackers must be one of none, tensorboard, wandb"),
    ("empty-config", "", None, [], "empty"),
    ("comment-only-config", "# nothing yet\n", None, [], "empty"),
    ("list-config", "- 1\n- 2\n", None, [], "mapping"),
    ("binary-config", b"\xff\xfe\x00\x81" * 64, None, [], "not a text file"),
    ("corrupt-init-from", {"init_from": "garbage.safetensors"}, lambda r: (r / "garbage.safetensors").write_bytes(
        os.urandom(300)), [], "garbage.safetensors"),
    ("pickle-init-from", {"init_from": "payload.pt"}, _pickle_file, [], "pickle"),
    ("corrupt-exported-init-from", {"init_from": "exported"}, _corrupt_weights, [], "cannot be read"),
    ("missing-init-from", {"init_from": "nowhere"}, None, [], "init_from"),
    ("stop-after-0", {}, None, ["--stop-after-steps", "0"], "stop-after-steps"),
    ("stop-after-negative", {}, None, ["--stop-after-steps", "-2"], "stop-after-steps"),
    ("stop-after-text", {}, None, ["--stop-after-steps", "abc"], "invalid int"),
    ("unknown-option", {}, None, ["--bogus"], "--bogus"),
    ("unknown-field-flag", {}, None, ["--train.max_stepz", "3"], "did you mean max_steps"),
    ("field-flag-without-section", {}, None, ["--max_steps", "3"], "did you mean --train.max_steps?"),
    ("field-flag-bad-value", {}, None, ["--train.max_steps", "many"], "max_steps"),
    ("export-only-without-checkpoint", {}, None, ["--export-only", "--export", "exp"], "no checkpoint"),
    ("export-only-without-export", {}, None, ["--export-only"], "--export"),
    ("out-under-a-file", {}, None, ["--out", "/etc/hostname/out"], "/etc/hostname/out"),
    ("out-in-proc", {}, None, ["--out", "/proc/genreason-x/run"], "/proc/genreason-x"),
    ("out-is-a-file", {}, None, ["--out", "config.yaml"], "config.yaml"),
    ("export-under-a-file", {}, None, ["--export", "/etc/hostname/model"], "/etc/hostname/model"),
    ("old-pickle-checkpoint", {}, _old_run, ["--out", "old"], "older genreason"),
    ("export-old-pickle-checkpoint", {}, _old_run, ["--out", "old", "--export-only", "--export", "exp"],
     "older genreason"),
    ("export-damaged-checkpoint", {}, _damaged_checkpoint, ["--export-only", "--export", "exp"],
     "cannot read run/checkpoints/step-000000002/state.json"),
]


@pytest.mark.parametrize("name,config_text,setup,extra,match", EMBEDDED_CASES, ids=[c[0] for c in EMBEDDED_CASES])
def test_train_embedded_refuses_in_one_line(name, config_text, setup, extra, match, tmp_path, monkeypatch, capsys,
                                            tiny_config):
    monkeypatch.chdir(tmp_path)
    if setup is not None:
        setup(tmp_path)
    if isinstance(config_text, dict):
        config_text = _yaml(tiny_config(max_steps=2), **config_text)
    config = tmp_path / "config.yaml"
    config.write_bytes(config_text if isinstance(config_text, bytes) else config_text.encode())
    args = ["train", "embedded", "--config", "config.yaml"]
    if "--out" not in extra:
        args += ["--out", "run"]
    assert_refused(tmp_path, args + extra, capsys, match)
    assert not (tmp_path / "gen_reason").exists()  # never the package's asset folder


def test_embedded_config_checks_need_no_file(tiny_config):
    """Missing and folder configs are refused by name."""
    from gen_reason.errors import UserError
    from gen_reason.train.embedded_config import EmbeddedTrainConfig

    with pytest.raises(UserError, match="not found"):
        EmbeddedTrainConfig.from_yaml("/nonexistent/c.yaml")
    with pytest.raises(UserError, match="not a file"):
        EmbeddedTrainConfig.from_yaml("/")


def test_export_only_never_writes_into_the_package(tmp_path, monkeypatch, capsys, tiny_config):
    """`--export-only` on a run with a checkpoint but without `--export` is refused; with
    `--export DIR` it writes there, and the corrected command runs after a refusal."""
    from gen_reason.train.embedded import train_embedded

    monkeypatch.chdir(tmp_path)
    config = tiny_config(max_steps=1)
    (tmp_path / "config.yaml").write_text(_yaml(config))
    train_embedded(config, tmp_path / "run", progress=False, validate=False)
    assert_refused(tmp_path, ["train", "embedded", "--config", "config.yaml", "--out", "run", "--export-only"],
                   capsys, "--export")
    assert not (tmp_path / "gen_reason").exists()
    code, err = run_cli(["train", "embedded", "--config", "config.yaml", "--out", "run", "--export-only",
                         "--export", "model"], capsys)
    assert code == 0, err
    assert (tmp_path / "model" / "unet" / "diffusion_pytorch_model.safetensors").is_file()


# -- train lora ---------------------------------------------------------------------------------
LORA_BASE = {"model": "m", "data": "d", "rank": 4}
LORA_CASES = [
    ("invalid-yaml", "rank: [4\n", [], "not valid YAML"),
    ("string-learning-rate", {"learning_rate": "fast"}, [], "'learning_rate': Input should be a valid number"),
    ("string-learning-rate-flag", {}, ["--train.learning_rate", "fast"], "'learning_rate': Input should be a valid number"),
    ("float-rank", {"rank": 4.5}, [], "'rank': Input should be a valid integer"),
    ("empty-config", "", [], "empty"),
    ("list-config", "- rank\n", [], "mapping"),
    ("binary-config", b"\xff\xfe\x00\x81" * 64, [], "not a text file"),
    ("zero-rank", {"rank": 0}, [], "rank"),
    ("negative-max-steps", {}, ["--train.max_steps", "-1"], "max_steps"),
    ("unknown-key", {}, ["--lora.rnak", "8"], "did you mean rank"),
    ("flag-without-section", {}, ["--rank", "8"], "did you mean --lora.rank?"),
    ("unknown-model-option", {}, ["--model.ofload", "none"], "did you mean --model.offload?"),
    ("model-option-twice", {}, ["--model.offload", "none", "--offload", "model"], "both given"),
    ("unknown-section", {}, ["--lroa.rank", "8"], "did you mean --lora.rank?"),
    ("stray-argument", {}, ["oops"], "oops"),
    ("out-under-a-file", {}, ["--out", "/etc/hostname/out"], "/etc/hostname/out"),
    ("out-in-proc", {}, ["--out", "/proc/genreason-x/run"], "/proc/genreason-x"),
    ("out-is-a-file", {}, ["--out", "config.yaml"], "config.yaml"),
    ("missing-model-and-data", {}, [], "not found"),
]


@pytest.mark.parametrize("name,config_text,extra,match", LORA_CASES, ids=[c[0] for c in LORA_CASES])
def test_train_lora_refuses_in_one_line(name, config_text, extra, match, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    if isinstance(config_text, dict):
        config_text = yaml.safe_dump({**LORA_BASE, **config_text})
    (tmp_path / "config.yaml").write_bytes(config_text if isinstance(config_text, bytes) else config_text.encode())
    args = ["train", "lora", "--config", "config.yaml", "--quiet"]
    if "--out" not in extra:
        args += ["--out", "run"]
    assert_refused(tmp_path, args + extra, capsys, match)


def test_the_real_command_prints_one_line(tmp_path):
    """Through the console entry point in a fresh process (warnings and all): one line, exit 2."""
    configs = {"embedded": "learning_rate: fast\n", "lora": "model: m\ndata: d\nlearning_rate: fast\n"}
    for kind, text in configs.items():
        config = tmp_path / "config.yaml"
        config.write_text(text)
        result = subprocess.run([sys.executable, "-m", "gen_reason.cli", "train", kind, "--config", str(config),
                                 "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300,
                                env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "learning_rate" in result.stderr, result.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_refused_command_leaves_the_folder_usable(tmp_path, monkeypatch, capsys, tiny_config):
    """After a refusal into a run folder, the corrected command trains there."""
    monkeypatch.chdir(tmp_path)
    good = tiny_config(max_steps=1)
    (tmp_path / "bad.yaml").write_text(_yaml(good, learning_rate="fast"))
    (tmp_path / "good.yaml").write_text(_yaml(good))
    assert run_cli(["train", "embedded", "--config", "bad.yaml", "--out", "run"], capsys)[0] == 2
    code, err = run_cli(["train", "embedded", "--config", "good.yaml", "--out", "run"], capsys)
    assert code == 0, err
    assert list((tmp_path / "run" / "checkpoints").glob("step-*"))
    shutil.rmtree(tmp_path / "run")


def test_dotted_flags_override_the_trainers_config(tmp_path, monkeypatch, capsys, tiny_config):
    """`--train.FIELD` overrides a field of the YAML config in train embedded (and is written to config.yaml)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text(_yaml(tiny_config(max_steps=3)))
    code, err = run_cli(["train", "embedded", "--config", "config.yaml", "--out", "run", "--train.max_steps", "1"],
                        capsys)
    assert code == 0, err
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["max_steps"] == 1
    assert [p.name for p in (tmp_path / "run" / "checkpoints").glob("step-*")] == ["step-000000001"]
