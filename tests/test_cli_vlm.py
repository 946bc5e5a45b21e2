"""`genreason solve --vlm URL`: the VLM solvers from the command line, on the embedded video
model, against a scripted OpenAI-compatible server on loopback (gen_reason.vlm.testing)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP threads spin on a busy CPU

import json
import re
import socket

from gen_reason.cli import main
from gen_reason.vlm.testing import serve_scripted_openai

FAST = ["--frames", "9", "--steps", "4"]  # the embedded model's shortest clip, few denoising steps
REWRITTEN = "Slide the red circle along the open corridors to the green square."


def _answer(body: dict) -> str:
    """A well-formed answer to whichever of the solvers' prompts this request is."""
    text = json.dumps(body["messages"])
    if "You are reviewing videos" in text:  # videotpo's critic: one entry per candidate shown
        count = int(re.search(r"Below are (\d+) candidate videos", text).group(1))
        return json.dumps({"candidates": [{"strengths": "moves", "weaknesses": "stops early"}] * count})
    if "You improve prompts" in text:  # videotpo's rewrite
        return json.dumps({"prompt": REWRITTEN})
    if "You are the planner" in text:  # closed-loop's planner
        return json.dumps({"observation": "a maze", "remaining_goal": "reach the square", "task_complete": False,
                           "instruction": "move the circle towards the square", "target_state": "closer",
                           "estimated_steps_remaining": 1})
    if "You check one short video clip" in text:  # closed-loop's clip judge
        return json.dumps({"verdict": "accept", "action_executed": True, "progress": 0.5, "good_fraction": 1.0,
                           "confidence": 0.9, "reason": "it moved", "suggestion": ""})
    raise AssertionError(f"unexpected request: {text[:200]}")


def _purposes(url) -> list[str]:
    names = {"You are reviewing videos": "critic", "You improve prompts": "rewrite",
             "You are the planner": "planner", "You check one short video clip": "judge"}
    out = []
    for body in url.requests:
        text = json.dumps(body["messages"])
        out.append(next(name for marker, name in names.items() if marker in text))
    return out


def test_solve_videotpo_with_a_server_url(tmp_path, capsys):
    out = tmp_path / "out"
    with serve_scripted_openai(_answer, model="qwen-vl-served") as url:
        code = main(["solve", "--solver", "videotpo", "--vlm", url.removesuffix("/v1"), "--seed", "3",
                     *FAST, "--out", str(out), "--solver.rounds", "2", "--solver.stop_on_success", "false"])
        printed = capsys.readouterr()
        assert code == 0, printed.err
        assert url.gets == ["/v1/models"]  # the bare server address, the model asked of the server
        assert _purposes(url) == ["critic", "rewrite"]
        assert all(body["model"] == "qwen-vl-served" for body in url.requests)
        critic = url.requests[0]["messages"][0]["content"]
        assert sum(part["type"] == "image_url" for part in critic) >= 2  # the candidates are shown
    attempt = json.loads((out / "score.json").read_text())["attempt"]
    assert attempt["meta"]["final_prompt"] == REWRITTEN and not attempt["meta"]["vlm_failures"]
    assert attempt["compute"]["vlm_calls"] == 2
    assert "solver videotpo" in printed.out and (out / "generated.mp4").is_file()


def test_solve_closed_loop_plans_and_judges_with_the_vlm(tmp_path, capsys):
    out = tmp_path / "out"
    with serve_scripted_openai(_answer) as url:
        code = main(["solve", "--solver", "closed-loop", "--vlm", url + "#scripted-vlm", "--seed", "3",
                     *FAST, "--out", str(out), "--solver.max_steps", "1", "--solver.attempts_per_step", "1"])
        assert code == 0, capsys.readouterr().err
        assert url.gets == []  # URL#MODEL names the model: nothing to ask
        assert _purposes(url) == ["planner", "judge"]
    attempt = json.loads((out / "score.json").read_text())["attempt"]
    assert attempt["config"]["planner"] == "vlm" and attempt["config"]["judge"] == "both"
    assert not attempt["meta"]["vlm_failures"] and attempt["compute"]["vlm_calls"] == 2


def test_vlm_mistakes_are_one_line_before_anything_runs(tmp_path, capsys):
    def one_line(argv):
        code = main(argv + ["--seed", "3", "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "Traceback" not in err[0], err
        assert not (tmp_path / "out").exists()
        return err[0]

    with serve_scripted_openai([]) as url:
        assert "solver single uses no VLM" in one_line(["solve", "--vlm", url])
        assert url.gets == [] and url.requests == []  # refused before the server was asked anything
    assert "needs a VLM (give one with --vlm)" in one_line(["solve", "--solver", "videotpo"])
    assert "neither an http(s):// server URL nor an existing model folder" in one_line(
        ["solve", "--solver", "videotpo", "--vlm", str(tmp_path / "nowhere")])
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert "cannot reach the VLM server" in one_line(
        ["solve", "--solver", "closed-loop", "--vlm", f"http://127.0.0.1:{port}"])
    # A folder that is not a complete VLM: one line from the folder check, nothing loaded.
    assert "no config.json" in one_line(["solve", "--solver", "videotpo", "--vlm", str(tmp_path)])


def test_eval_takes_vlm_on_the_command_line(tmp_path, capsys):
    config = tmp_path / "eval.yaml"
    config.write_text(f"data: {{n: 1}}\nsolvers: [{{name: videotpo}}]\nout: {tmp_path / 'run'}\n")
    code = main(["eval", "--config", str(config), "--vlm", str(tmp_path / "nowhere"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "neither an http(s):// server URL" in err[0], err


def test_solve_closed_loop_with_a_local_vlm_folder(tmp_path, capsys):
    from gen_reason.vlm.testing import build_tiny_qwen25vl

    folder = build_tiny_qwen25vl(tmp_path / "Qwen2.5-VL-tiny")
    out = tmp_path / "out"
    code = main(["solve", "--solver", "closed-loop", "--vlm", str(folder), "--seed", "3", *FAST, "--out", str(out),
                 "--solver.max_steps", "1", "--solver.attempts_per_step", "1", "--solver.vlm_max_tokens", "8"])
    assert code == 0, capsys.readouterr().err
    attempt = json.loads((out / "score.json").read_text())["attempt"]
    # Random weights answer noise: the planner and the judge are each asked three times, then recorded.
    assert [f["purpose"] for f in attempt["meta"]["vlm_failures"]] == ["planner", "clip judge"]
    assert attempt["compute"]["vlm_calls"] == 6 and attempt["compute"]["vlm_tokens"] > 0
