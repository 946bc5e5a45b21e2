"""The probe's run folder: killed with ``kill -9`` after its first puzzle is stored, a rerun
probes only the rest and writes what an uninterrupted run writes; a rerun with another config
is refused in one line before the model loads; a mistake found after the folder opened leaves
no ``config.yaml`` behind.

A tiny random embedded model saved to a folder (with the puzzle settings it "was trained on"),
so the killed subprocess and the in-process runs load the same weights. Fixtures:
tests/probe/conftest.py.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gen_reason.errors import UserError
from gen_reason.probe import run_probe

TINY_SETTINGS = {
    "difficulty": "3x3", "num_frames": 8, "task_config": {"skin": "tiny", "wall_style": "thin", "trail": True},
    "task_config_by_difficulty": {"3x3": {"cell_px": 4, "wall_px": 1, "margin": 0}},
}
#: Three puzzles (the layer probe needs two), two seeds (the swap intervention), three steps.
OPTIONS = {"instances": 3, "seeds": 2, "steps": 3, "every": 1, "intervention_steps": [0, 1], "progress": False}
SECOND_PUZZLE = "maze-grid-v1_3x3_1000001"


@pytest.fixture(scope="module")
def model_folder(tiny_generator, tmp_path_factory) -> Path:
    """The tiny embedded model saved as a model folder with its genreason.json."""
    folder = tmp_path_factory.mktemp("model") / "tiny"
    tiny_generator("embedded").pipeline.save_pretrained(folder, safe_serialization=True)
    (folder / "genreason.json").write_text(json.dumps(TINY_SETTINGS))
    return folder


def _summary_numbers(summary: dict) -> dict:
    """The summary without what differs between two folders or two processes: paths and timings."""
    return {key: value for key, value in summary.items() if key not in ("files", "seconds")}


def _kill_after_first_puzzle(model: Path, out: Path) -> None:
    """Run the probe in a subprocess that pauses once the second puzzle's rows are appended (its
    unit not stored yet), and kill it there with SIGKILL."""
    script = textwrap.dedent(f"""
        import os, sys, time
        import torch
        torch.set_num_threads(1)
        import gen_reason.probe.run as run

        store = run.save_unit

        def pausing(path, result, **options):
            if result.instance.uid == {SECOND_PUZZLE!r}:
                print("ready", flush=True)
                time.sleep(120)
            return store(path, result, **options)

        run.save_unit = pausing
        run.run_probe("maze", {str(model)!r}, {str(out)!r}, **{OPTIONS!r})
    """)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "ready"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_killed_probe_resumes_and_matches_an_uninterrupted_run(model_folder, tmp_path, monkeypatch):
    import gen_reason.probe.run as run
    import gen_reason.probe.interventions as interventions

    killed = tmp_path / "killed"
    _kill_after_first_puzzle(model_folder, killed)
    assert [p.name for p in (killed / "units").iterdir()] == ["maze-grid-v1_3x3_1000000.safetensors"]
    rows = [json.loads(line) for line in (killed / "scores.jsonl").read_text().splitlines()]
    assert {row["instance"] for row in rows} == {"maze-grid-v1_3x3_1000000", SECOND_PUZZLE}  # the second cut short
    assert not (killed / "summary.json").exists()

    probed, generated = [], []
    real_probe, real_generate = run.run_step_probe, interventions.run_intervention
    monkeypatch.setattr(run, "run_step_probe",
                        lambda generator, instance, *a, **k: probed.append(instance.uid) or real_probe(
                            generator, instance, *a, **k))
    monkeypatch.setattr(interventions, "run_intervention",
                        lambda *a, **k: generated.append(1) or real_generate(*a, **k))
    resumed = run_probe("maze", str(model_folder), killed, **OPTIONS)
    assert probed == [SECOND_PUZZLE, "maze-grid-v1_3x3_1000002"]  # the stored puzzle is not probed again
    assert len(generated) == 4  # noise and swap at steps 0 and 1

    probed.clear()
    whole = tmp_path / "whole"
    uninterrupted = run_probe("maze", str(model_folder), whole, **OPTIONS)
    assert len(probed) == 3
    # The same rows, byte for byte (one per puzzle x seed x step, none twice), summary, tensors and figures.
    assert (killed / "scores.jsonl").read_bytes() == (whole / "scores.jsonl").read_bytes()
    assert len((whole / "scores.jsonl").read_text().splitlines()) == 3 * 2 * 3
    assert _summary_numbers(resumed) == _summary_numbers(uninterrupted)
    assert resumed["layer_probe"]["accuracy"] and len(resumed["interventions"]) == 4
    for name in ("x0.safetensors", "features.safetensors"):
        a, b = load_file(killed / name), load_file(whole / name)
        assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a), name
    for name in ("filmstrip.png", "step_metrics.png", "emergence.png", "layer_probe.png", "interventions.jsonl"):
        assert (killed / name).read_bytes() == (whole / name).read_bytes(), name

    # A finished run rerun with its config: nothing is generated again but the missing intervention row.
    lines = (whole / "interventions.jsonl").read_text().splitlines(keepends=True)
    (whole / "interventions.jsonl").write_text("".join(lines[:-1]))
    probed.clear()
    generated.clear()
    again = run_probe("maze", str(model_folder), whole, **OPTIONS)
    assert probed == [] and len(generated) == 1
    assert _summary_numbers(again) == _summary_numbers(uninterrupted)
    assert (whole / "interventions.jsonl").read_text() == "".join(lines)


def test_a_changed_config_is_refused_in_one_line_before_the_model_loads(model_folder, tmp_path, monkeypatch,
                                                                        capsys):
    import gen_reason.models.loading as loading
    from gen_reason.cli import main

    out = tmp_path / "probe"
    argv = ["probe", "--model", str(model_folder), "--instances", "1", "--seeds", "1", "--steps", "2", "--no-layers",
            "--no-interventions", "--probe.save_x0", "none", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    config = (out / "config.yaml").read_text()

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the changed config was refused")

    monkeypatch.setattr(loading, "load_generator", refuse)
    capsys.readouterr()
    assert main(argv[:-2] + ["--every", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different config (every" in err[0] and "Traceback" not in err[0], err
    assert (out / "config.yaml").read_text() == config
    # A folder holding another command's run: refused, and nothing but the folder's lock file is added.
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.yaml").write_text("out: x\n")
    assert main(argv[:-2] + ["--out", str(other)]) == 2
    assert "different config" in capsys.readouterr().err
    assert sorted(p.name for p in other.iterdir()) == [".genreason-rank0.lock", "config.yaml"]


def test_a_frame_count_only_the_loaded_pipeline_knows_is_still_recorded_and_checked(tiny_generator, tmp_path,
                                                                                    capsys):
    from gen_reason.cli import main

    folder = tmp_path / "model"
    tiny_generator("embedded").pipeline.save_pretrained(folder, safe_serialization=True)
    (folder / "genreason.json").write_text(json.dumps({k: v for k, v in TINY_SETTINGS.items() if k != "num_frames"}))
    out = tmp_path / "probe"
    argv = ["probe", "--model", str(folder), "--instances", "1", "--seeds", "1", "--steps", "2", "--no-layers",
            "--no-interventions", "--out", str(out)]
    # A bad layer name is found on the loaded model, after the folder opened: taken back, folder let go.
    assert main([arg for arg in argv if arg != "--no-layers"] + ["--probe.layers", "[nope]"]) == 2
    assert "unknown layer 'nope'" in capsys.readouterr().err and not (out / "config.yaml").exists()
    assert main(argv) == 0, capsys.readouterr().err
    assert "num_frames: 8" in (out / "config.yaml").read_text().splitlines()
    capsys.readouterr()
    # Refused after the load here (the frame count is known only then: diffusers' loading bar
    # comes first on stderr), still one line of ours.
    assert main(argv + ["--probe.early_fraction", "0.25"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "different config (early_fraction" in err.strip().splitlines()[-1], err


def test_a_mistake_found_after_the_folder_opened_leaves_no_config(tiny_generator, tmp_path):
    generator = tiny_generator("embedded")
    tiny_mazes = {**TINY_SETTINGS["task_config"], **TINY_SETTINGS["task_config_by_difficulty"]["3x3"]}
    options = {"difficulty": "3x3", "task_config": tiny_mazes,
               "instances": 1, "seeds": 1, "interventions": False, "save_x0": "none", "progress": False}
    with pytest.raises(UserError, match="unknown layer 'nope'"):
        run_probe("maze", None, tmp_path, generator=generator, layers=["nope"], **options)
    assert not (tmp_path / "config.yaml").exists() and not (tmp_path / "units").exists()
    # The corrected command is not refused as "a different config".
    summary = run_probe("maze", None, tmp_path, generator=generator, layers=[0], **options)
    assert summary["settings"]["layers"] == ["unet.down_blocks.0"]


def test_a_folder_another_process_holds_is_refused(tiny_generator, tmp_path):
    from gen_reason.folders import hold_folder

    with hold_folder(tmp_path, ".genreason-rank0.lock"):  # what a running probe holds
        with pytest.raises(UserError, match="in use by another genreason process"):
            run_probe("maze", None, tmp_path, generator=tiny_generator("embedded"), difficulty="3x3", instances=1,
                      seeds=1, task_config={**TINY_SETTINGS["task_config"], "cell_px": 4, "wall_px": 1, "margin": 0},
                      progress=False)
    assert not (tmp_path / "config.yaml").exists()
