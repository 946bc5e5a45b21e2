"""Datasets on disk: byte-identical, resumable, split without leakage, readable."""

import csv
import hashlib
import json
import shutil

import pytest

from gen_reason.datasets import DatasetSpec, iter_dataset, make_dataset
from gen_reason.errors import UserError


def _digest(folder):
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


SPEC = DatasetSpec(task="maze/grid", n=12, difficulties=("easy", "3x3"), seed=5, num_frames=9,
                   test_fraction=0.3, task_config={"cell_px": 8})


def test_same_arguments_same_bytes_serial_and_parallel(tmp_path):
    a = make_dataset(SPEC, tmp_path / "a", workers=1, progress=False)
    b = make_dataset(SPEC, tmp_path / "b", workers=2, progress=False)
    assert _digest(a) == _digest(b)


def test_interrupted_run_resumes_to_identical_bytes(tmp_path):
    full = make_dataset(SPEC, tmp_path / "full", workers=1, progress=False)
    part = tmp_path / "part"
    shutil.copytree(full, part)
    # Simulate a kill: the index never written, some items missing, one item half-written.
    (part / "metadata.jsonl").unlink()
    (part / "metadata.csv").unlink()
    records = sorted((part / "records").iterdir())
    for record in records[5:]:
        record.unlink()
    video = next((part / "videos").iterdir())
    video.write_bytes(b"truncated")
    rec = json.loads((full / "records" / records[0].name).read_text())
    (part / rec["video"]).write_bytes(b"garbage")  # item 0's video corrupt but its record missing:
    records[0].unlink()  # ...so it is redone
    (part / "videos" / "x.mp4.123-abcd.part").write_bytes(b"half")  # a write the kill cut short
    make_dataset(SPEC, part, workers=2, progress=False)
    assert _digest(part) == _digest(full)  # the stale temporary file is gone too


def test_rerun_with_other_arguments_is_refused(tmp_path):
    make_dataset(SPEC, tmp_path / "d", workers=1, progress=False)
    other = DatasetSpec(**{**SPEC.__dict__, "n": 13})
    with pytest.raises(UserError, match="different dataset"):
        make_dataset(other, tmp_path / "d", workers=1, progress=False)


def test_split_has_no_puzzle_in_both_and_metadata_is_readable(tmp_path):
    spec = DatasetSpec(task="maze/grid", n=40, difficulties=("2x2",), seed=0, video=True, num_frames=5,
                       test_fraction=0.5, task_config={"cell_px": 6})
    out = make_dataset(spec, tmp_path / "d", workers=1, progress=False)
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    train = {r["canonical_hash"] for r in rows if r["split"] == "train"}
    test = {r["canonical_hash"] for r in rows if r["split"] == "test"}
    assert train and test and not (train & test)
    with open(out / "metadata.csv") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 40 and {"video", "prompt", "input_image"} <= set(table[0])
    assert all((out / row["video"]).exists() and (out / row["input_image"]).exists() for row in table)
    instances = list(iter_dataset(out, split="test"))
    assert len(instances) == len([r for r in rows if r["split"] == "test"])
    inst, record = instances[0]
    assert inst.first_frame.shape[:2] == tuple(inst.spec["image_size"])


def test_dedupe_drops_repeated_puzzles(tmp_path):
    spec = DatasetSpec(task="maze/grid", n=30, difficulties=("2x2",), video=False, dedupe=True,
                       task_config={"cell_px": 6})
    out = make_dataset(spec, tmp_path / "d", workers=1, progress=False)
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    hashes = [r["canonical_hash"] for r in rows]
    assert len(hashes) == len(set(hashes)) < 30


def test_hf_datasets_reads_metadata_jsonl(tmp_path):
    datasets = pytest.importorskip("datasets")
    out = make_dataset(SPEC, tmp_path / "d", workers=1, progress=False)
    ds = datasets.load_dataset("json", data_files=str(out / "metadata.jsonl"), split="train")
    assert len(ds) == SPEC.n and "prompt" in ds.column_names


def test_bad_arguments_are_user_errors(tmp_path):
    with pytest.raises(UserError):
        make_dataset(DatasetSpec(task="maze/nope", n=3), tmp_path / "x", progress=False)
    with pytest.raises(UserError):
        make_dataset(DatasetSpec(task="maze/grid", n=0), tmp_path / "x", progress=False)
    with pytest.raises(UserError):
        make_dataset(DatasetSpec(task="maze/grid", n=2, difficulties=("extreme",)), tmp_path / "x", progress=False)


def test_lossless_videos_decode_to_the_rendered_frames(tmp_path):
    """``--lossless`` datasets (RGB H.264) give back the ground-truth frames bit for bit,
    at odd sizes too; ordinary crf 0 (YUV 4:2:0) smears a small agent's colour."""
    import numpy as np

    from gen_reason.cli import main
    from gen_reason.video import read_video, write_mp4

    config = dict(skin="tiny", wall_style="thin", trail=True, cell_px=5, wall_px=1, margin=0)
    out = make_dataset(DatasetSpec(task="maze/grid", n=2, difficulties=("5x5",), num_frames=8, task_config=config,
                                   lossless=True), tmp_path / "d")
    for inst, record in iter_dataset(out):
        truth = inst.solution_video(num_frames=8)
        assert truth.shape[1:3] == (31, 31)
        assert np.array_equal(read_video(out / record["video"]), truth)
    yuv = read_video(write_mp4(tmp_path / "yuv.mp4", truth, crf=0))[:, :31, :31]
    assert np.abs(yuv.astype(int) - truth).max() > 60
    assert main(["make-dataset", "--task", "maze/grid", "--n", "1", "--lossless", "--quiet", "--workers", "1",
                 "--out", str(tmp_path / "cli")]) == 0
    _, record = next(iter_dataset(tmp_path / "cli"))
    assert read_video(tmp_path / "cli" / record["video"]).shape[0] > 1
