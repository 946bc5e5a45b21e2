"""``genreason compare-referees``: where our referee and VR-Bench's disagree, and why.

For every video named after a VR-Bench level (:mod:`gen_reason.interop.vrbench_read`) the report holds:

- our strict success (the goal reached without breaking a rule), our lenient success
  (VR-Bench's SR: any tracked position inside the goal box, whatever the rules), our EM
  (VR-Bench's definition) and the first rule broken;
- with ``vrbench_repo`` (a local VR-Bench checkout; never downloaded, never required):
  VR-Bench's own evaluator on the same video, run in a subprocess that imports it from
  that path: ``evaluate_single_video`` of ``evaluation/videomodel_eval/batch_evaluate.py``
  with its command line defaults (NCC tracker, search margin 50, eps 0.01, 100 samples).
  Its ground-truth lookup needs the level's exact name, so each video is linked under
  ``<difficulty>_<NNNN>.mp4`` in a temporary folder first. Its package ``__init__``
  imports its VLM client (``openai``), which video scoring does not use, so the driver
  registers ``evaluation`` as a bare package and imports only the video evaluator.

``agree`` compares our strict success with VR-Bench's SR when it ran, else with our
lenient success; ``why`` says what made them differ: a rule our referee enforces and SR
ignores (through a wall, teleport, end state only, ...), or a tracker that lost the agent
(theirs: its track never entered the goal box while ours followed the agent there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from gen_reason.errors import UserError, writable_dir
from gen_reason.runs.score_rows import ScoreRow

#: VR-Bench's batch_evaluate.py command line defaults.
VRBENCH_DEFAULTS = {"threshold": 0.01, "num_samples": 100, "fidelity_pixel_threshold": 5, "frame_step": 1,
                    "tracker": "ncc", "search_margin": 50}
TRACKERS = ("ncc", "csrt", "optical_flow")

_DRIVER = r'''
import json, sys, types
from pathlib import Path

repo, jobs_path, out_path = sys.argv[1:4]
sys.path.insert(0, repo)
package = types.ModuleType("evaluation")
package.__path__ = [str(Path(repo) / "evaluation")]
sys.modules["evaluation"] = package
from evaluation.videomodel_eval.batch_evaluate import evaluate_single_video

results = {}
for job in json.loads(Path(jobs_path).read_text()):
    try:
        result = evaluate_single_video(tuple(job["args"]))
    except Exception as exc:
        result = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
    result.pop("traceback", None)
    results[job["id"]] = result
Path(out_path).write_text(json.dumps(results))
'''


def check_vrbench_repo(repo: str | os.PathLike) -> Path:
    """``repo`` as a path, if it is a VR-Bench checkout (raises :class:`UserError` if not)."""
    repo = Path(repo)
    if not (repo / "evaluation" / "videomodel_eval" / "batch_evaluate.py").is_file() or not (repo / "core" / "schema").is_dir():
        raise UserError(f"{repo} is not a VR-Bench checkout (no evaluation/videomodel_eval/batch_evaluate.py "
                        "and core/schema)")
    return repo


def run_vrbench_evaluator(repo: Path, jobs: list[tuple[Path, "object"]], tracker: str = "ncc",
                          result_dir: Path | None = None) -> dict[int, dict]:
    """VR-Bench's evaluation of each ``(video, level)`` job, by job index (one subprocess)."""
    repo = check_vrbench_repo(repo).resolve()
    if tracker not in TRACKERS:
        raise UserError(f"unknown VR-Bench tracker {tracker!r}; choose from {', '.join(TRACKERS)}")
    d = VRBENCH_DEFAULTS
    with tempfile.TemporaryDirectory(prefix="genreason-vrbench-") as tmp:
        tmp = Path(tmp)
        results_dir = Path(result_dir or tmp / "results").resolve()
        payload = []
        for i, (video, level) in enumerate(jobs):
            staged = tmp / "videos" / str(i) / f"{level.stem}{video.suffix}"
            staged.parent.mkdir(parents=True)
            try:
                staged.symlink_to(Path(video).resolve())
            except OSError:
                import shutil

                shutil.copyfile(video, staged)
            payload.append({"id": i, "args": [str(staged), str(level.folder.resolve()), d["threshold"],
                                              d["num_samples"], str(results_dir / str(i)),
                                              d["fidelity_pixel_threshold"], d["frame_step"], tracker,
                                              d["search_margin"]]})
        (tmp / "jobs.json").write_text(json.dumps(payload))
        (tmp / "driver.py").write_text(_DRIVER)
        proc = subprocess.run([sys.executable, str(tmp / "driver.py"), str(repo), str(tmp / "jobs.json"),
                               str(tmp / "results.json")], cwd=repo, capture_output=True, text=True)
        if proc.returncode != 0 or not (tmp / "results.json").exists():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"VR-Bench's evaluator failed to run from {repo}: {last}")
        return {int(k): v for k, v in json.loads((tmp / "results.json").read_text()).items()}


def _ours(row: ScoreRow) -> dict:
    """Our referee's side of a comparison row, from the row ``genreason score`` makes."""
    m = row.metrics
    return {"success": bool(row.success), "success_lenient": bool(m.get("success_lenient")),
            "exact_match": m.get("exact_match"), "exact_match_strict": m.get("exact_match_strict"),
            "precision_rate": m.get("precision_rate"), "track_coverage": m.get("track_coverage"),
            "first_violation": row.trace.get("first_violation"), "reason": row.reason}


def _theirs(result: dict | None) -> dict | None:
    if result is None:
        return None
    if result.get("status") != "success":
        return {"status": "error", "error": result.get("error", "unknown error")}
    return {"status": "success", "sr": float(result.get("sr", 0.0)), "em": float(result.get("em", 0.0)),
            "pr": float(result.get("pr", 0.0)), "sd": result.get("sd"), "mf": result.get("mf"),
            "gt_length": result.get("gt_length"), "gen_length": result.get("gen_length")}


def explain(ours: dict | None, theirs: dict | None, skipped: str | None = None) -> tuple[bool | None, str]:
    """``(agree, why)`` for one video (``agree`` is None when one side could not judge)."""
    if skipped:
        return None, f"our referee skips this level: {skipped}"
    rule = ours["first_violation"]
    rule_text = f"{rule['rule']} at frame {rule['frame']}" if rule else ours["reason"]
    if theirs is None:
        if ours["success"] == ours["success_lenient"]:
            return True, "strict and lenient agree"
        if ours["success_lenient"]:
            return False, f"lenient success (the goal box was reached) but a rule was broken: {rule_text}"
        return False, "strict success on the goal node, but the track never entered the goal box"
    if theirs["status"] != "success":
        return None, f"VR-Bench's evaluator failed: {theirs['error']}"
    their_success = theirs["sr"] >= 0.5
    if their_success == ours["success"]:
        return True, "both succeed" if their_success else "both fail"
    if their_success and ours["success_lenient"]:
        return False, f"VR-Bench counts success (lenient SR); our referee found {rule_text}"
    if their_success:
        return False, f"VR-Bench's track entered the goal box; ours did not: {ours['reason']}"
    coverage = ours.get("track_coverage")
    seen = f" in {coverage:.0%} of the frames" if coverage is not None else ""
    return False, (f"VR-Bench's track never entered the goal box (its PR {theirs['pr']:.2f}): its tracker lost "
                   f"or stalled on the agent (the box, in sokoban); ours followed it there{seen}")


def compare_referees(videos: str | os.PathLike, levels: str | os.PathLike, vrbench_repo: str | os.PathLike | None = None,
                     tracker: str = "ncc", out: str | os.PathLike | None = None) -> dict:
    """The agreement report (see the module docstring): ``{"rows": [...], "summary": {...}}``.

    Writes ``compare.json`` (and VR-Bench's trajectory images under ``vrbench/``) into
    ``out`` when given.
    """
    from gen_reason.interop.vrbench_read import find_levels, is_vrbench_folder, level_instances, list_videos, match_videos
    from gen_reason.runs.pairing import check_pairing
    from gen_reason.runs.scoring import score_video

    videos, levels = Path(videos), Path(levels)
    if not videos.exists():
        raise UserError(f"videos folder not found: {videos}")
    if not is_vrbench_folder(levels):
        raise UserError(f"{levels} is not a VR-Bench folder (expected <game>/<skin>/<difficulty>/states/*.json)")
    repo = check_vrbench_repo(vrbench_repo) if vrbench_repo else None
    files = [videos] if videos.is_file() else list_videos(videos)
    matches, problems = match_videos(files, find_levels(levels))
    if not matches:
        why = problems[0][1] if problems else "no videos"
        raise UserError(f"no video in {videos} is named after a VR-Bench level of {levels} ({why})")
    instances = level_instances(matches)
    check_pairing([(instances[level.key], video) for video, level in matches
                   if not isinstance(instances[level.key], str)], videos, levels)
    out = Path(out) if out else None
    if out:
        writable_dir(out)  # before any scoring: a bad --out is one line, not a traceback at the end
    theirs_by_job = run_vrbench_evaluator(repo, matches, tracker, out / "vrbench" if out else None) if repo else {}
    rows = []
    for i, (video, level) in enumerate(matches):
        instance = instances[level.key]
        skipped = instance if isinstance(instance, str) else None
        ours = None if skipped else _ours(score_video(instance, video, "reference"))
        theirs = _theirs(theirs_by_job.get(i)) if repo else None
        agree, why = explain(ours, theirs, skipped)
        rows.append({"video": str(video), "level": level.key, "ours": ours, "vrbench": theirs, "agree": agree,
                     "why": why})
    report = {"rows": rows, "summary": _summary(rows, repo is not None),
              "vrbench": {**VRBENCH_DEFAULTS, "repo": str(repo), "tracker": tracker} if repo else None,
              "unmatched": [{"video": str(v), "reason": why} for v, why in problems]}
    if out:
        (out / "compare.json").write_text(json.dumps(report, indent=1))
    return report


def _summary(rows: list[dict], with_vrbench: bool) -> dict:
    judged = [r for r in rows if r["ours"] is not None]
    n = len(judged)

    def rate(values) -> float | None:
        values = list(values)
        return round(sum(values) / len(values), 4) if values else None

    summary = {"videos": len(rows), "judged_by_us": n,
               "ours_success": rate(r["ours"]["success"] for r in judged),
               "ours_success_lenient": rate(r["ours"]["success_lenient"] for r in judged),
               "ours_exact_match": rate(bool(r["ours"]["exact_match"]) for r in judged),
               "disagreements": sum(r["agree"] is False for r in rows)}
    if with_vrbench:
        ran = [r for r in rows if r["vrbench"] and r["vrbench"]["status"] == "success"]
        summary.update({"judged_by_vrbench": len(ran), "vrbench_sr": rate(r["vrbench"]["sr"] >= 0.5 for r in ran),
                        "vrbench_em": rate(r["vrbench"]["em"] >= 0.5 for r in ran)})
    return summary


def print_report(report: dict) -> None:
    """Print the per-video table (disagreements marked) and the summary."""
    with_vrbench = report["vrbench"] is not None
    for row in report["rows"]:
        ours, theirs = row["ours"], row["vrbench"]
        mark = {True: "  ", False: "!!", None: "--"}[row["agree"]]
        if ours is None:
            ours_text = "ours: skipped              "
        else:
            ours_text = f"ours: strict {int(ours['success'])} lenient {int(ours['success_lenient'])} " \
                        f"EM {int(bool(ours['exact_match']))}"
        line = f"{mark} {row['level']:38s} {ours_text}"
        if with_vrbench:
            line += "  vrbench: " + (f"SR {int(theirs['sr'])} EM {int(theirs['em'])}"
                                     if theirs and theirs["status"] == "success" else "error")
        print(f"{line}  {row['why']}")
    s = report["summary"]
    text = (f"{s['videos']} videos; ours: success {s['ours_success']}, lenient (VR-Bench SR) "
            f"{s['ours_success_lenient']}, EM {s['ours_exact_match']}")
    if with_vrbench:
        text += f"; VR-Bench ({report['vrbench']['tracker']}): SR {s['vrbench_sr']}, EM {s['vrbench_em']}"
    print(f"{text}; {s['disagreements']} disagreement(s)")
