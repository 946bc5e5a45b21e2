"""``genreason score``: referee videos against an instance or a dataset, with debug strips."""

from __future__ import annotations

import json
from pathlib import Path

from gen_reason.errors import UserError
from gen_reason.puzzles import Instance

VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mov", ".gif")


def load_instance(path: Path) -> Instance:
    """An instance from a JSON file written by ``genreason puzzle`` or a dataset record."""
    if not path.exists():
        raise UserError(f"instance file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
    for key in ("task", "seed", "difficulty", "spec"):
        if key not in data:
            raise UserError(f"{path} is not an instance (missing {key!r})")
    try:
        return Instance.from_dict(data)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _score(instance: Instance, video_path: Path, kind: str, out: Path | None) -> dict:
    from gen_reason.verifiers.registry import verifier_for
    from gen_reason.video import read_video

    try:
        video = read_video(video_path)
    except UserError as exc:
        from gen_reason.verifiers.score import Score

        score = Score.failure(f"unreadable video: {exc}")
        video = None
    else:
        score = verifier_for(instance.task, kind).score(instance, video)
    row = {"video": str(video_path), "uid": instance.uid, "task": instance.task, **score.to_dict()}
    if out is not None and video is not None:
        from gen_reason.runs.solve import draw_track, upscale
        from gen_reason.video import filmstrip, write_image

        strip = filmstrip(draw_track(video, score.to_dict()["trace"]), 8)
        row["debug_strip"] = str(write_image(out / f"{video_path.stem}_debug.png", upscale(strip[None], 96)[0]))
    return row


def score_one(video: Path, instance_path: Path, kind: str = "reference", out: Path | None = None) -> dict:
    """Score one video file against the instance in ``instance_path``."""
    instance = load_instance(instance_path)
    if out:
        out.mkdir(parents=True, exist_ok=True)
    row = _score(instance, video, kind, out)
    if out:
        (out / "scores.json").write_text(json.dumps([row], indent=1))
    return row


def score_folder(folder: Path, dataset: Path, kind: str = "reference", out: Path | None = None) -> list[dict]:
    """Score every video in ``folder`` whose name starts with a dataset instance's uid."""
    from gen_reason.datasets import iter_dataset

    if not folder.is_dir():
        raise UserError(f"not a folder of videos: {folder}")
    videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise UserError(f"no videos in {folder}")
    out = out or folder / "scores"
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    instances = {inst.uid: inst for inst, _ in iter_dataset(dataset)}
    for video in videos:
        # Longest uid first, so "..._1" never claims "..._12_sample0.mp4".
        uid = next((u for u in sorted(instances, key=len, reverse=True)
                    if video.stem == u or video.stem.startswith(u + "_")), None)
        if uid is None:
            continue
        rows.append(_score(instances[uid], video, kind, out))
    if not rows:
        raise UserError(f"no video in {folder} is named after an instance of {dataset} (<uid>*.mp4)")
    (out / "scores.json").write_text(json.dumps(rows, indent=1))
    return rows


def print_table(rows: list[dict]) -> None:
    """Print one line per scored video and the mean success."""
    for row in rows:
        m = row["metrics"]
        pr = m.get("precision_rate")
        print(f"{'PASS' if row['success'] else 'FAIL'}  {Path(row['video']).name:40s} "
              f"PR={pr if pr is None else round(pr, 3)} EM={m.get('exact_match')} {row.get('reason', '')}")
    if len(rows) > 1:
        print(f"success {sum(r['success'] for r in rows)}/{len(rows)}")
