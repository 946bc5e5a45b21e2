"""Every subcommand given a user's mistake: exit code 2, exactly one line on stderr, no
traceback, caught before any compute (the model never loads), and nothing left behind that
would block the corrected command (no new folder, no config.yaml in a run folder).

One table of rows, run in this process (``gen_reason.cli.main``); a few rows run through
the installed ``genreason`` console script as well, to show it behaves the same. Mistakes
already tried in ``tests/test_cli.py`` and ``tests/runs/test_scoring_cli.py`` are not
repeated here. The trainers have their own table (``tests/train/test_train_bad_inputs.py``).
A broken *model output* is the other side of the line: it is a FAIL row with its reason,
not an error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gen_reason.cli import main

UNWRITABLE = "/proc/genreason-cannot-create/out"  # /proc refuses new folders, even to root


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """The inputs the rows point at, made once: good ones and broken ones of every kind."""
    root = tmp_path_factory.mktemp("inputs")
    assert main(["puzzle", "--task", "maze/grid", "--difficulty", "3x3", "--frames", "6", "--out", str(root / "grid")]) == 0
    assert main(["puzzle", "--task", "maze/sokoban", "--frames", "6", "--out", str(root / "sokoban")]) == 0
    assert main(["make-dataset", "--task", "maze/grid", "--n", "2", "--difficulty", "3x3", "--frames", "5",
                 "--workers", "1", "--quiet", "--out", str(root / "dataset")]) == 0
    assert main(["make-dataset", "--format", "vrbench", "--task", "maze/grid", "--n", "2", "--workers", "1",
                 "--quiet", "--out", str(root / "levels")]) == 0
    # Videos named after those levels but showing another task's puzzle.
    (root / "wrong_videos").mkdir()
    for name in ("easy_0001.mp4", "easy_0002.mp4"):
        shutil.copy(root / "sokoban" / "solution.mp4", root / "wrong_videos" / name)
    instance = json.loads((root / "grid" / "instance.json").read_text())
    for key in ("solution", "prompt"):
        (root / f"no_{key}.json").write_text(json.dumps({k: v for k, v in instance.items() if k != key}))
    text = (root / "grid" / "instance.json").read_text()
    (root / "truncated.json").write_text(text[: len(text) // 2])
    (root / "empty.json").write_text("")
    (root / "list.json").write_text("[1, 2]")
    binary = bytes(range(256)) * 8
    (root / "binary.bin").write_bytes(binary)
    (root / "a_file").write_text("not a folder\n")
    (root / "folder").mkdir()
    # A dataset whose metadata.jsonl was cut short in the middle of its second line.
    shutil.copytree(root / "dataset", root / "cut_dataset")
    meta = (root / "cut_dataset" / "metadata.jsonl").read_text()
    (root / "cut_dataset" / "metadata.jsonl").write_text(meta[: len(meta) - 40])
    shutil.copytree(root / "dataset", root / "binary_dataset")
    shutil.copytree(root / "dataset", root / "imageless_dataset")
    for png in (root / "imageless_dataset").rglob("*.png"):
        png.unlink()
    (root / "binary_dataset" / "metadata.jsonl").write_bytes(binary)
    # Videos named after the dataset's instances (score a folder).
    record = json.loads(meta.splitlines()[0])
    (root / "videos").mkdir()
    shutil.copy(root / "dataset" / record["video"], root / "videos" / f"{record['uid']}_s0.mp4")
    # Eval configs.
    good = {"data": {"tasks": ["maze/grid"], "difficulties": ["3x3"], "n": 1}, "model": {"path": "embedded"},
            "solvers": ["single"]}
    (root / "eval.yaml").write_text(json.dumps(good))  # JSON is YAML
    (root / "empty.yaml").write_text("")
    (root / "comments.yaml").write_text("# nothing but a comment\n")
    (root / "invalid.yaml").write_text("data: {tasks: [maze/grid\nmodel: [1,\n")
    (root / "list.yaml").write_text("- data\n- model\n")
    (root / "typo.yaml").write_text(json.dumps({**good, "modle": {"path": "embedded"}}))
    (root / "cut_dataset.yaml").write_text(json.dumps({**good, "data": {"dataset": str(root / "cut_dataset")}}))
    # Run folders for report.
    (root / "run_empty").mkdir()
    (root / "run_empty" / "config.yaml").write_text("out: x\n")
    (root / "run_done").mkdir()
    (root / "run_done" / "config.yaml").write_text("out: x\n")
    (root / "run_done" / "results.jsonl").write_text(json.dumps({"key": "k", "task": "maze/grid-v1"}) + "\n")
    (root / "run_binary").mkdir()
    (root / "run_binary" / "config.yaml").write_text("out: x\n")
    (root / "run_binary" / "results.jsonl").write_bytes(binary + b"\n")
    paths = {p.relative_to(root).as_posix(): str(p) for p in root.rglob("*")}
    paths["ROOT"] = str(root)
    paths["LEVEL_VIDEOS"] = str(next((root / "levels").rglob("videos")))
    return paths


# (id, argv with {placeholders} naming `files` entries or {OUT}, a fresh path; a piece of the message)
ROWS = [
    ("unknown-command", ["solv", "--task", "maze"], "invalid choice: 'solv'"),
    ("option-before-command", ["--bogus"], "unrecognised argument '--bogus'; give a command first"),
    # tasks
    ("tasks-unknown-option", ["tasks", "--bogus"], "unrecognised argument '--bogus'"),
    ("tasks-stray-argument", ["tasks", "maze"], "unrecognised argument 'maze'"),
    # puzzle
    ("puzzle-negative-seed", ["puzzle", "--seed", "-1", "--out", "{OUT}"], "--seed"),
    ("puzzle-text-seed", ["puzzle", "--seed", "abc", "--out", "{OUT}"], "--seed"),
    ("puzzle-zero-frames", ["puzzle", "--frames", "0", "--out", "{OUT}"], "--frames"),
    ("puzzle-text-frames", ["puzzle", "--frames", "many", "--out", "{OUT}"], "--frames"),
    ("puzzle-file-as-out", ["puzzle", "--out", "{a_file}/out"], "cannot write to"),
    ("puzzle-unwritable-out", ["puzzle", "--out", UNWRITABLE], "cannot write to"),
    # make-dataset
    ("dataset-zero-n", ["make-dataset", "--n", "0", "--out", "{OUT}"], "--n"),
    ("dataset-negative-n", ["make-dataset", "--n", "-3", "--out", "{OUT}"], "--n"),
    ("dataset-text-n", ["make-dataset", "--n", "ten", "--out", "{OUT}"], "--n"),
    ("dataset-no-n", ["make-dataset", "--out", "{OUT}"], "--n"),
    ("dataset-no-out", ["make-dataset", "--n", "2"], "--out"),
    ("dataset-zero-workers", ["make-dataset", "--n", "2", "--workers", "0", "--out", "{OUT}"], "--workers"),
    ("dataset-crf-99", ["make-dataset", "--n", "2", "--crf", "99", "--out", "{OUT}"], "--crf"),
    ("dataset-negative-crf", ["make-dataset", "--n", "2", "--crf", "-1", "--out", "{OUT}"], "--crf"),
    ("dataset-test-fraction", ["make-dataset", "--n", "2", "--test-fraction", "1.5", "--out", "{OUT}"],
     "--test-fraction"),
    ("dataset-zero-frames", ["make-dataset", "--n", "2", "--frames", "0", "--out", "{OUT}"], "--frames"),
    ("dataset-unknown-format", ["make-dataset", "--n", "2", "--format", "webdataset", "--out", "{OUT}"], "--format"),
    ("dataset-unknown-difficulty", ["make-dataset", "--n", "2", "--difficulty", "extreme", "--out", "{OUT}"],
     "extreme"),
    ("dataset-file-as-out", ["make-dataset", "--n", "2", "--out", "{a_file}/out"], "cannot write to"),
    ("dataset-file-itself-as-out", ["make-dataset", "--n", "1", "--out", "{a_file}"], "cannot write to"),
    ("dataset-unknown-option", ["make-dataset", "--n", "2", "--bogus", "--out", "{OUT}"], "unrecognised argument"),
    # solve (the model must never load: see the `no_model_load` fixture)
    ("solve-zero-frames", ["solve", "--frames", "0", "--out", "{OUT}"], "--frames"),
    ("solve-zero-steps", ["solve", "--steps", "0", "--out", "{OUT}"], "--steps"),
    ("solve-text-steps", ["solve", "--steps", "fast", "--out", "{OUT}"], "--steps"),
    ("solve-negative-seed", ["solve", "--seed", "-5", "--out", "{OUT}"], "--seed"),
    ("solve-file-as-out", ["solve", "--out", "{a_file}/out"], "cannot write to"),
    ("solve-unwritable-out", ["solve", "--out", UNWRITABLE], "cannot write to"),
    ("solve-missing-model", ["solve", "--model", "{ROOT}/no-such-model", "--out", "{OUT}"], "model folder not found"),
    ("solve-file-as-model", ["solve", "--model", "{a_file}", "--out", "{OUT}"], "not a folder"),
    ("solve-folder-not-a-model", ["solve", "--model", "{folder}", "--out", "{OUT}"], "model_index.json"),
    ("solve-missing-lora", ["solve", "--lora", "{ROOT}/no-such-lora", "--out", "{OUT}"], "LoRA not found"),
    ("solve-unknown-solver", ["solve", "--solver", "bogo-sort", "--out", "{OUT}"], "bogo-sort"),
    ("solve-unknown-task", ["solve", "--task", "chess", "--out", "{OUT}"], "chess"),
    ("solve-unknown-option", ["solve", "--bogus", "1", "--out", "{OUT}"], "unrecognised argument"),
    ("solve-zero-candidates", ["solve", "--solver", "best-of-n", "--solver.n", "0", "--out", "{OUT}"], "n"),
    ("solve-unknown-solver-option", ["solve", "--solver.bogus", "1", "--out", "{OUT}"], "bogus"),
    ("solve-file-itself-as-out", ["solve", "--out", "{a_file}"], "cannot write to"),
    # score
    ("score-instance-without-solution", ["score", "{grid/solution.mp4}", "--instance", "{no_solution.json}"],
     "missing 'solution'"),
    ("score-instance-without-prompt", ["score", "{grid/solution.mp4}", "--instance", "{no_prompt.json}"],
     "missing 'prompt'"),
    ("score-binary-instance", ["score", "{grid/solution.mp4}", "--instance", "{binary.bin}"], "binary"),
    ("score-folder-as-instance", ["score", "{grid/solution.mp4}", "--instance", "{grid}"], "is a folder"),
    ("score-truncated-instance", ["score", "{grid/solution.mp4}", "--instance", "{truncated.json}"], "not valid JSON"),
    ("score-empty-instance", ["score", "{grid/solution.mp4}", "--instance", "{empty.json}"], "not valid JSON"),
    ("score-another-tasks-video", ["score", "{sokoban/solution.mp4}", "--instance", "{grid/instance.json}"],
     "starts with a maze/sokoban puzzle, not the maze/grid puzzle"),
    ("score-another-tasks-instance", ["score", "{grid/solution.mp4}", "--instance", "{sokoban/instance.json}"],
     "starts with a maze/grid puzzle, not the maze/sokoban puzzle"),
    ("score-truncated-metadata", ["score", "{videos}", "--dataset", "{cut_dataset}", "--out", "{OUT}"],
     "metadata.jsonl line 2"),
    ("score-binary-metadata", ["score", "{videos}", "--dataset", "{binary_dataset}", "--out", "{OUT}"],
     "not a text file"),
    ("score-folder-as-video", ["score", "{folder}", "--instance", "{grid/instance.json}"], "is a folder"),
    ("score-file-as-videos", ["score", "{a_file}", "--dataset", "{dataset}"], "not a folder of videos"),
    ("score-dataset-without-images", ["score", "{videos}", "--dataset", "{imageless_dataset}", "--out", "{OUT}"],
     "metadata.jsonl line 1"),
    ("score-file-as-dataset", ["score", "{videos}", "--dataset", "{a_file}", "--out", "{OUT}"],
     "not a genreason dataset"),
    ("score-file-as-out", ["score", "{grid/solution.mp4}", "--instance", "{grid/instance.json}", "--out",
                           "{a_file}/out"], "cannot write to"),
    ("score-unwritable-out", ["score", "{videos}", "--dataset", "{dataset}", "--out", UNWRITABLE], "cannot write to"),
    ("score-vrbench-another-tasks-videos", ["score", "{wrong_videos}", "--vrbench", "{levels}", "--out", "{OUT}"],
     "start with maze/sokoban puzzles, not the vrbench/maze"),
    ("score-unknown-kind", ["score", "{grid/solution.mp4}", "--instance", "{grid/instance.json}", "--kind", "vibes"],
     "--kind"),
    ("score-unknown-option", ["score", "{grid/solution.mp4}", "--instance", "{grid/instance.json}", "--bogus"],
     "unrecognised argument '--bogus'"),
    # compare-referees
    ("compare-unknown-option", ["compare-referees", "--videos", "{LEVEL_VIDEOS}", "--levels", "{levels}", "--bogus"],
     "unrecognised argument '--bogus'"),
    ("compare-no-levels", ["compare-referees", "--videos", "{LEVEL_VIDEOS}"], "--levels"),
    ("compare-missing-videos", ["compare-referees", "--videos", "{ROOT}/nothing", "--levels", "{levels}"],
     "not found"),
    ("compare-not-levels", ["compare-referees", "--videos", "{LEVEL_VIDEOS}", "--levels", "{folder}"],
     "is not a VR-Bench folder"),
    ("compare-another-tasks-videos", ["compare-referees", "--videos", "{wrong_videos}", "--levels", "{levels}",
                                      "--out", "{OUT}"], "start with maze/sokoban puzzles, not the vrbench/maze"),
    ("compare-not-a-checkout", ["compare-referees", "--videos", "{LEVEL_VIDEOS}", "--levels", "{levels}",
                                "--vrbench-repo", "{folder}", "--out", "{OUT}"], "is not a VR-Bench checkout"),
    ("compare-unknown-tracker", ["compare-referees", "--videos", "{LEVEL_VIDEOS}", "--levels", "{levels}",
                                 "--tracker", "kcf"], "--tracker"),
    ("compare-file-as-out", ["compare-referees", "--videos", "{LEVEL_VIDEOS}", "--levels", "{levels}", "--out",
                             "{a_file}/out"], "cannot write to"),
    ("compare-unwritable-out", ["compare-referees", "--videos", "{LEVEL_VIDEOS}", "--levels", "{levels}", "--out",
                                UNWRITABLE], "cannot write to"),
    # eval (the model must never load; a refused run leaves no run folder and no config.yaml)
    ("eval-no-config", ["eval", "--out", "{OUT}"], "--config"),
    ("eval-empty-config", ["eval", "--config", "{empty.yaml}", "--out", "{OUT}"], "is empty"),
    ("eval-comment-only-config", ["eval", "--config", "{comments.yaml}", "--out", "{OUT}"], "is empty"),
    ("eval-missing-config", ["eval", "--config", "{ROOT}/nope.yaml", "--out", "{OUT}"], "not found"),
    ("eval-folder-as-config", ["eval", "--config", "{folder}", "--out", "{OUT}"], "not a file"),
    ("eval-binary-config", ["eval", "--config", "{binary.bin}", "--out", "{OUT}"], "not a text file"),
    ("eval-invalid-yaml", ["eval", "--config", "{invalid.yaml}", "--out", "{OUT}"], "not valid YAML"),
    ("eval-list-config", ["eval", "--config", "{list.yaml}", "--out", "{OUT}"], "mapping"),
    ("eval-unknown-key", ["eval", "--config", "{typo.yaml}", "--out", "{OUT}"], "modle"),
    ("eval-text-n", ["eval", "--config", "{eval.yaml}", "--data.n", "abc", "--out", "{OUT}"], "data.n"),
    ("eval-zero-n", ["eval", "--config", "{eval.yaml}", "--data.n", "0", "--out", "{OUT}"], "data.n"),
    ("eval-negative-n", ["eval", "--config", "{eval.yaml}", "--data.n", "-2", "--out", "{OUT}"], "data.n"),
    ("eval-text-steps", ["eval", "--config", "{eval.yaml}", "--model.steps", "many", "--out", "{OUT}"],
     "model.steps"),
    ("eval-unknown-task", ["eval", "--config", "{eval.yaml}", "--data.tasks", "[chess]", "--out", "{OUT}"], "chess"),
    ("eval-missing-model", ["eval", "--config", "{eval.yaml}", "--model.path", "{ROOT}/no-model", "--out", "{OUT}"],
     "model folder not found"),
    ("eval-unknown-solver", ["eval", "--config", "{eval.yaml}", "--solvers.0.name", "bogo", "--out", "{OUT}"],
     "bogo"),
    ("eval-file-as-dataset", ["eval", "--config", "{eval.yaml}", "--data.dataset", "{a_file}", "--out", "{OUT}"],
     "not a genreason dataset"),
    ("eval-truncated-dataset", ["eval", "--config", "{cut_dataset.yaml}", "--out", "{OUT}"], "metadata.jsonl line 2"),
    ("eval-file-as-out", ["eval", "--config", "{eval.yaml}", "--out", "{a_file}/run"], "cannot write"),
    ("eval-zero-steps", ["eval", "--config", "{eval.yaml}", "--model.steps", "0", "--out", "{OUT}"], "steps"),
    ("eval-zero-frames", ["eval", "--config", "{eval.yaml}", "--model.num_frames", "0", "--out", "{OUT}"], "frames"),
    ("eval-zero-candidates", ["eval", "--config", "{eval.yaml}", "--solvers.0.name", "best-of-n",
                              "--solvers.0.params.n", "0", "--out", "{OUT}"], "n"),
    ("eval-unknown-difficulty", ["eval", "--config", "{eval.yaml}", "--data.difficulties", "[extreme]", "--out",
                                 "{OUT}"], "extreme"),
    ("eval-missing-dataset", ["eval", "--config", "{eval.yaml}", "--data.dataset", "{ROOT}/none", "--out", "{OUT}"],
     "not a genreason dataset"),
    ("eval-split-without-dataset", ["eval", "--config", "{eval.yaml}", "--data.split", "test", "--out", "{OUT}"],
     "needs data.dataset"),
    ("eval-unknown-split", ["eval", "--config", "{eval.yaml}", "--data.dataset", "{dataset}", "--data.split", "val",
                            "--out", "{OUT}"], "data.split"),
    ("eval-empty-split", ["eval", "--config", "{eval.yaml}", "--data.dataset", "{dataset}", "--data.split", "test",
                          "--out", "{OUT}"], "selects no puzzles"),
    ("eval-unknown-option", ["eval", "--config", "{eval.yaml}", "--bogus", "--out", "{OUT}"], "unrecognised argument"),
    # report
    ("report-unknown-option", ["report", "{run_done}", "--bogus", "--out", "{OUT}"], "unrecognised argument '--bogus'"),
    ("report-no-run", ["report"], "runs"),
    ("report-missing-run", ["report", "{ROOT}/no-run", "--out", "{OUT}"], "not a run folder"),
    ("report-not-a-run", ["report", "{folder}", "--out", "{OUT}"], "not a run folder"),
    ("report-file-as-run", ["report", "{a_file}", "--out", "{OUT}"], "not a run folder"),
    ("report-no-results", ["report", "{run_empty}", "--out", "{OUT}"], "no results yet"),
    ("report-binary-results", ["report", "{run_binary}", "--out", "{OUT}"], "results.jsonl is not a text file"),
    ("report-file-as-out", ["report", "{run_done}", "--out", "{a_file}/report"], "cannot write to"),
    ("report-unwritable-out", ["report", "{run_done}", "--out", UNWRITABLE], "cannot write to"),
    # inspect-model
    ("inspect-missing-folder", ["inspect-model", "{ROOT}/no-model"], "model folder not found"),
    ("inspect-file", ["inspect-model", "{a_file}"], "not a folder"),
    ("inspect-not-a-model", ["inspect-model", "{folder}"], "model_index.json"),
    ("inspect-zero-frames", ["inspect-model", "{folder}", "--frames", "0"], "--frames"),
    ("inspect-unknown-option", ["inspect-model", "{folder}", "--bogus"], "unrecognised argument '--bogus'"),
    # probe (the model must never load)
    ("probe-zero-instances", ["probe", "--instances", "0", "--out", "{OUT}"], "--instances"),
    ("probe-zero-seeds", ["probe", "--seeds", "0", "--out", "{OUT}"], "--seeds"),
    ("probe-zero-every", ["probe", "--every", "0", "--out", "{OUT}"], "--every"),
    ("probe-negative-steps", ["probe", "--steps", "-4", "--out", "{OUT}"], "--steps"),
    ("probe-text-instances", ["probe", "--instances", "few", "--out", "{OUT}"], "--instances"),
    ("probe-unknown-probe-option", ["probe", "--probe.nope", "1", "--out", "{OUT}"], "unknown probe key 'nope'"),
    ("probe-unknown-option", ["probe", "--bogus", "--out", "{OUT}"], "unrecognised argument"),
    ("probe-dotted-every", ["probe", "--probe.every", "0", "--out", "{OUT}"], "--probe.every: set it with its own"),
    ("probe-dotted-instances", ["probe", "--probe.instances", "few", "--out", "{OUT}"], "--probe.instances"),
    ("probe-dotted-zero-frames", ["probe", "--probe.num_frames", "0", "--out", "{OUT}"], "num_frames"),
    ("probe-dotted-negative-decode", ["probe", "--probe.decode_scale", "-1", "--out", "{OUT}"], "decode_scale"),
    ("probe-text-pool", ["probe", "--probe.pool", "abc", "--out", "{OUT}"], "pool"),
    ("probe-negative-project-dim", ["probe", "--probe.project_dim", "-1", "--out", "{OUT}"], "project_dim"),
    ("probe-text-intervention-steps", ["probe", "--probe.intervention_steps", "[a, b]", "--out", "{OUT}"],
     "intervention_steps"),
    ("probe-float-layers", ["probe", "--probe.layers", "[1.5]", "--out", "{OUT}"], "layers"),
    ("probe-missing-model", ["probe", "--model", "{ROOT}/no-model", "--out", "{OUT}"], "model folder not found"),
    ("probe-unknown-task", ["probe", "--task", "chess", "--out", "{OUT}"], "chess"),
    ("probe-file-as-out", ["probe", "--out", "{a_file}/probe"], "cannot write to"),
    ("probe-unwritable-out", ["probe", "--out", UNWRITABLE], "cannot write to"),
]


def _argv(template: list[str], files: dict[str, str], out: Path) -> list[str]:
    values = {**files, "OUT": str(out)}
    return [re.sub(r"\{([^{}]+)\}", lambda m: values[m.group(1)], part) for part in template]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def no_model_load(monkeypatch):
    """Loading a model fails the test: every mistake must be caught before it."""
    import gen_reason.models.loading as loading

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the mistake was caught")

    monkeypatch.setattr(loading, "load_generator", refuse)


def _call(argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("template,message", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_a_mistake_is_one_line_exit_2_and_leaves_nothing(template, message, files, tmp_path, monkeypatch, capsys,
                                                         no_model_load):
    workdir = tmp_path / "cwd"  # default outputs (out/solve, runs/eval, ...) would land here
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    out = tmp_path / "fresh" / "out"
    inputs_before = _tree(Path(files["ROOT"]))
    code, err = _call(_argv(template, files, out), capsys)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert message in lines[0], lines[0]
    assert not (tmp_path / "fresh").exists(), "a refused command left its output folder behind"
    assert not any(workdir.iterdir()), f"a refused command wrote into the working folder: {list(workdir.iterdir())}"
    assert _tree(Path(files["ROOT"])) == inputs_before, "a refused command changed its inputs' folders"


CONSOLE_ROWS = ["tasks-unknown-option", "dataset-zero-workers", "score-binary-instance", "eval-empty-config",
                "report-file-as-out"]


@pytest.mark.parametrize("row", CONSOLE_ROWS)
def test_the_console_script_says_the_same(row, files, tmp_path):
    """The installed ``genreason`` script: same exit code and line as in-process."""
    script = Path(sys.executable).with_name("genreason")
    if not script.exists():
        pytest.skip("the genreason console script is not installed beside this Python")
    _, template, message = next(r for r in ROWS if r[0] == row)
    out = tmp_path / "fresh" / "out"
    proc = subprocess.run([str(script), *_argv(template, files, out)], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "fresh").exists()


def test_argparse_errors_name_the_subcommand(capsys):
    """One line that says which command and where to look, not argparse's usage block."""
    code, err = _call(["make-dataset", "--n", "2", "--workers", "0", "--out", "x"], capsys)
    assert code == 2
    assert err.strip() == ("genreason: error: argument --workers: expected an integer >= 1, got 0 "
                           "(see genreason make-dataset --help)")


def test_broken_model_outputs_are_fail_rows_not_errors(files, tmp_path, capsys):
    """An empty, truncated or undecodable video is the model's failure: scored FAIL with the
    reason, exit 0, in a folder and against one instance alike."""
    records = [json.loads(line) for line in Path(files["dataset/metadata.jsonl"]).read_text().splitlines()]
    good = Path(files["ROOT"]) / "dataset" / records[0]["video"]
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    shutil.copy(good, outputs / f"{records[0]['uid']}_good.mp4")
    (outputs / f"{records[0]['uid']}_empty.mp4").write_bytes(b"")
    data = good.read_bytes()
    (outputs / f"{records[1]['uid']}_truncated.mp4").write_bytes(data[: len(data) // 3])
    (outputs / f"{records[1]['uid']}_noise.mp4").write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096,
                                                                                                     dtype=np.uint8)))
    code, err = _call(["score", str(outputs), "--dataset", files["dataset"]], capsys)
    assert code == 0, err
    rows = {Path(r["video"]).stem.split("_")[-1]: r for r in
            json.loads((outputs / "scores" / "scores.json").read_text())}
    assert set(rows) == {"good", "empty", "truncated", "noise"}
    assert rows["good"]["success"]
    for name in ("empty", "truncated", "noise"):
        assert not rows[name]["success"] and rows[name]["reason"], rows[name]
    code, err = _call(["score", str(outputs / f"{records[1]['uid']}_truncated.mp4"), "--instance",
                       files["grid/instance.json"]], capsys)
    assert code == 0 and "Traceback" not in err, err


def test_one_odd_video_in_a_folder_is_a_verdict_not_a_refusal(files, tmp_path, capsys):
    """The pairing check refuses a folder only when its first videos all show another task:
    a model's odd video among right ones is scored (and fails)."""
    videos = tmp_path / "videos"
    videos.mkdir()
    own = sorted(Path(files["LEVEL_VIDEOS"]).glob("*.mp4"))
    shutil.copy(own[0], videos / own[0].name)
    shutil.copy(files["sokoban/solution.mp4"], videos / own[1].name)
    code, err = _call(["score", str(videos), "--vrbench", files["levels"]], capsys)
    assert code == 0, err
    rows = {Path(r["video"]).name: r for r in json.loads((videos / "scores" / "scores.json").read_text())}
    assert rows[own[0].name]["success"] and not rows[own[1].name]["success"]


def test_broken_videos_named_after_levels_are_fail_rows(files, tmp_path, capsys):
    """The pairing check skips what it cannot read: broken videos against VR-Bench levels
    are FAIL rows with their reason, not a refusal and not a traceback."""
    videos = tmp_path / "videos"
    videos.mkdir()
    own = sorted(Path(files["LEVEL_VIDEOS"]).glob("*.mp4"))
    (videos / own[0].name).write_bytes(b"")
    data = own[1].read_bytes()
    (videos / own[1].name).write_bytes(data[: len(data) // 3])
    code, err = _call(["score", str(videos), "--vrbench", files["levels"]], capsys)
    assert code == 0, err
    rows = json.loads((videos / "scores" / "scores.json").read_text())
    assert len(rows) == 2 and all(not row["success"] and row["reason"] for row in rows), rows


FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "vrbench"


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="the VR-Bench fixture levels are not in this checkout")
def test_vrbench_videos_of_another_game_are_refused(tmp_path, capsys):
    """VR-Bench's own maze videos named after trap-field levels (a flat folder, as models
    write them): refused in one line; the trap-field videos themselves are scored."""
    levels = tmp_path / "levels"
    levels.mkdir()
    (levels / "trapfield").symlink_to(FIXTURES / "trapfield", target_is_directory=True)
    maze_videos, own_videos = tmp_path / "maze_videos", tmp_path / "own_videos"
    for folder, game in ((maze_videos, "maze"), (own_videos, "trapfield")):
        folder.mkdir()
        for video in (FIXTURES / game / "1" / "easy" / "videos").glob("*.mp4"):
            shutil.copy(video, folder / video.name)
    code, err = _call(["score", str(maze_videos), "--vrbench", str(levels)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not the vrbench/trapfield puzzles" in err, err
    assert not (maze_videos / "scores").exists()
    code, err = _call(["score", str(own_videos), "--vrbench", str(levels)], capsys)
    assert code == 0, err


def _degraded_first_frames(instance) -> dict[str, np.ndarray]:
    """What a model's video of this puzzle may start with: heavy H.264, a tiny blurred
    rendering, letterboxing into a landscape frame, colour jitter, noise."""
    from gen_reason.verifiers import degrade
    from gen_reason.video import letterbox

    video = instance.solution_video(2)
    tiny = degrade.resize(video, (max(16, video.shape[1] // 7), max(16, video.shape[2] // 7)))
    boxed = np.stack([letterbox(frame, (480, 832))[0] for frame in video])
    return {"tiny-blurred-h264": degrade.h264(degrade.blur(tiny, 1.0), crf=40)[0],
            "letterboxed-h264": degrade.h264(degrade.blur(boxed, 1.5), crf=38)[0],
            "stretched": degrade.resize(video, (480, 832))[0],
            "jitter": degrade.colour_jitter(video, 0.2)[0], "noise": degrade.noise(video, 20)[0]}


def _shown(instance, frame):
    from gen_reason.errors import UserError
    from gen_reason.runs.pairing import task_shown
    from gen_reason.verifiers.framing import frame_video

    try:  # as score_one does: where the referee finds the puzzle, else the whole frame
        frame = frame_video(instance, frame[None])[0]
    except UserError:
        pass
    return task_shown(instance, frame)


def test_another_tasks_video_is_told_apart_from_a_poor_video_of_the_right_puzzle():
    """The criterion of `score --instance`: no degraded video of the right puzzle and no
    blank frame (a model's failure) is refused, on any task; a first frame of another
    task's puzzle (another seed, easy or hard) is refused in most pairings."""
    from gen_reason.puzzles import TASKS, get_task

    instances = {name: get_task(name).generate(0, "easy") for name in TASKS.names()}
    blank = {"black": np.zeros((240, 320, 3), np.uint8), "white": np.full((240, 320, 3), 255, np.uint8),
             "gray": np.full((240, 320, 3), 128, np.uint8),
             "noise": np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)}
    verdicts = {(name, how): _shown(inst, frame) for name, inst in instances.items()
                for how, frame in {**_degraded_first_frames(inst), **blank}.items()}
    assert {key: shown for key, shown in verdicts.items() if shown is not None} == {}
    others = {(name, level): get_task(name).generate(5, level).first_frame
              for name in TASKS.names() for level in ("easy", "hard")}
    pairs = [(a, b) for a in instances for b in others if b[0] != a]
    caught = [(a, b) for a, b in pairs if _shown(instances[a], others[b]) is not None]
    assert len(caught) >= 0.75 * len(pairs), sorted(set(pairs) - set(caught))
