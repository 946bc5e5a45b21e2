"""bench/bench_trainer.py: each side's driver loads its own revision's trainer, and both
train the same tiny embedded run to the same loss rows (timings are read, never checked)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

BENCH = Path(__file__).resolve().parents[1] / "bench"
OLD = "33cb1d8"  # the trainers before the one training loop (issue #19)


def test_both_revisions_train_their_own_code_to_the_same_losses(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCH))
    import bench_trainer
    import revisions

    if not revisions.has_commit(OLD):
        pytest.skip(f"commit {OLD} is not in this clone (shallow?): nothing to compare against")
    result = bench_trainer.measure(OLD, rounds=1, embedded_steps=2, lora_steps=0, folder=tmp_path,
                                   overrides={"batch_size": 2, "fresh_per_step": 2})
    # Each side imported its own tree: the old one from the unpacked revision, the new one from this checkout.
    assert Path(result["ready"]["old"]["gen_reason"]).is_relative_to(tmp_path / "old-source")
    assert Path(result["ready"]["new"]["gen_reason"]).resolve() == (revisions.ROOT / "gen_reason").resolve()
    # The same computation on both sides, warm-up and counted round: the loss rows are equal.
    assert result["same"] == {"embedded": [True, True]}, result["differences"]
    assert result["differences"] == []
    assert result["missing"]["new"] == []  # today's trainer knows every setting of today's config
    for figure in ("embedded steps/s, seen from outside", "embedded steps/s, the trainer's own timer",
                   "embedded run, wall s", "embedded run, CPU s"):
        assert [len(result["figures"][figure][side]) for side in ("old", "new")] == [1, 1]
        assert all(v > 0 for side in ("old", "new") for v in result["figures"][figure][side])
    assert "LoRA samples/s" not in result["figures"]  # lora_steps=0 leaves LoRA out
