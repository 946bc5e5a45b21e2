"""bench/bench_referee.py --against: each side's driver loads its own revision's referee, and
both score the same tiny input to the same verdict; the verdict comparison reports a change."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

BENCH = Path(__file__).resolve().parents[1] / "bench"
OLD = "a8b1926"  # the state before the one-of-each refactors (issue #19)


@pytest.fixture()
def bench(monkeypatch):
    """The before/after module and revisions helper, imported from bench/."""
    monkeypatch.syspath_prepend(str(BENCH))
    import referee_before_after
    import revisions

    return referee_before_after, revisions


def _request(folder: Path, instance, video) -> dict:
    from gen_reason.video import write_mp4

    (folder / "instance.json").write_text(json.dumps(instance.to_dict()))
    np.save(folder / "frame.npy", instance.first_frame, allow_pickle=False)
    path = write_mp4(folder / "video.mp4", video, fps=16)
    return {"id": "one", "video": str(path), "instance": str(folder / "instance.json"),
            "frame": str(folder / "frame.npy")}


def test_both_revisions_load_their_own_code_and_agree_on_a_tiny_maze(bench, tmp_path):
    before_after, revisions = bench
    if not revisions.has_commit(OLD):
        pytest.skip(f"commit {OLD} is not in this clone (shallow?): nothing to compare against")
    from gen_reason.puzzles import get_task
    from gen_reason.verifiers.cheats import make_cheat

    task = get_task("maze/grid", cell_px=16)
    instance = task.generate(3, "easy")
    truth = task.solution_video(instance)
    requests = [_request(tmp_path, instance, truth)]
    cheat = tmp_path / "cheat"
    cheat.mkdir()
    requests.append({**_request(cheat, instance, make_cheat("reversed", truth)), "id": "reversed"})

    old_root = revisions.tree_at(OLD, tmp_path / "old")
    sides = {}
    try:
        sides["old"] = before_after.Side("old", old_root)
        sides["new"] = before_after.Side("new", revisions.ROOT)
        answers = {name: [side.ask(r) for r in requests] for name, side in sides.items()}
    finally:
        for side in sides.values():
            side.close()
    assert sides["old"].ready["verifiers"] == str(old_root / "verifiers")
    assert sides["new"].ready["verifiers"] == str(revisions.ROOT / "verifiers")
    for name, (truth_answer, cheat_answer) in answers.items():
        assert "error" not in truth_answer and "error" not in cheat_answer, (name, truth_answer, cheat_answer)
        assert truth_answer["frames"] == len(truth)
        assert set(truth_answer["wall"]) == {"decode", "rule", "reference"}
        assert truth_answer["verdicts"]["rule"]["success"] and truth_answer["verdicts"]["reference"]["success"]
        assert not cheat_answer["verdicts"]["rule"]["success"] and cheat_answer["verdicts"]["rule"]["rule"]
    for index in range(2):
        old, new = (answers[side][index]["verdicts"] for side in ("old", "new"))
        assert {k: (v["success"], v["rule"]) for k, v in old.items()} == \
            {k: (v["success"], v["rule"]) for k, v in new.items()}


def test_a_changed_verdict_is_reported_and_a_changed_metric_apart(bench):
    before_after, _ = bench

    def answer(success: bool, rule, pr: float) -> dict:
        verdict = {"success": success, "rule": rule, "reason": "", "metrics": {"precision_rate": pr}}
        return {"verdicts": {"rule": verdict, "reference": verdict}}

    groups = {"maze": [
        {"path": "a.mp4", "answers": {"old": answer(True, None, 1.0), "new": answer(True, None, 1.0)}},
        {"path": "b.mp4", "answers": {"old": answer(False, "teleport", 0.5), "new": answer(True, None, 0.5)}},
        {"path": "c.mp4", "answers": {"old": answer(False, "teleport", 0.5), "new": answer(False, "teleport", 0.7)}},
    ]}
    counts, verdicts, metrics, wording = before_after.differences(groups)
    assert counts == {"maze": (1, 1)}
    assert len(verdicts) == 2 and all(", b, " in line and "old fail (teleport)" in line and "new pass" in line
                                      for line in verdicts)
    assert len(metrics) == 2 and "precision_rate 0.5 -> 0.7" in metrics[0]
    assert wording == 0
