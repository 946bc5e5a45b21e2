"""The command line: jobs run, and user mistakes give one line and exit code 2."""

import subprocess
import sys

import pytest

from gen_reason.cli import main


def test_puzzle_writes_files(tmp_path, capsys):
    assert main(["puzzle", "--task", "maze", "--seed", "3", "--difficulty", "4x4", "--frames", "9",
                 "--task.skin", "dark", "--out", str(tmp_path)]) == 0
    for name in ("puzzle.png", "solution.mp4", "solution.gif", "solution_strip.png", "instance.json"):
        assert (tmp_path / name).stat().st_size > 0
    assert "maze/grid-v1 seed=3" in capsys.readouterr().out


def test_make_dataset_cli(tmp_path):
    assert main(["make-dataset", "--task", "maze/grid", "--n", "4", "--difficulty", "easy,medium",
                 "--frames", "5", "--workers", "1", "--quiet", "--out", str(tmp_path / "d")]) == 0
    assert len((tmp_path / "d" / "metadata.jsonl").read_text().splitlines()) == 4


@pytest.mark.parametrize(
    "argv,message",
    [
        (["puzzle", "--task", "maze/gird"], "Did you mean maze/grid"),
        (["puzzle", "--difficulty", "extreme"], "unknown difficulty 'extreme'"),
        (["puzzle", "--task.skin", "neon"], "unknown skin 'neon'"),
        (["puzzle", "--task.nope", "1"], "unknown task maze/grid-v1 config key 'nope'"),
        (["puzzle", "--bogus"], "unrecognised argument"),
        (["make-dataset", "--n", "2", "--out", "/proc/forbidden/x"], "cannot write to"),
    ],
)
def test_user_mistakes_one_line_exit_2(argv, message):
    proc = subprocess.run([sys.executable, "-m", "gen_reason", *argv], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_output_piped_into_a_reader_that_leaves_is_not_a_traceback():
    """`genreason tasks | head -1`: the rest of the output goes nowhere, quietly."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "gen_reason", "tasks"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
