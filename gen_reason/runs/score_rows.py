"""The table ``genreason score`` prints: one line per video and the success rates."""

from __future__ import annotations

from pathlib import Path


def _headline(metrics: dict) -> str:
    """The few numbers a table line shows for a row, by what its verifier measures: PR and
    EM for the maze family, silhouette IoU and pieces placed for tangram, none for draw."""
    if "precision_rate" in metrics:
        pr = metrics["precision_rate"]
        return f"PR={pr if pr is None else round(pr, 3)} EM={metrics.get('exact_match')}"
    if "silhouette_iou" in metrics:
        return f"IoU={round(metrics['silhouette_iou'], 3)} placed={metrics.get('pieces_placed_frac', 0.0):.0%}"
    return ""


def print_table(rows: list[dict]) -> None:
    """Print one line per video and the success rate (strict; beside it the lenient rate
    over the rows that have one: VR-Bench's SR for the maze family, the final frame alone
    for draw and tangram)."""
    for row in rows:
        verdict = "SKIP" if row.get("status") == "skipped" else ("PASS" if row["success"] else "FAIL")
        label = row.get("level") or Path(row["video"]).name
        print(" ".join(part for part in (f"{verdict}  {label:40s}", _headline(row["metrics"]), row.get("reason", ""))
                       if part).rstrip())
    scored = [r for r in rows if r.get("status") != "skipped"]
    if len(rows) > 1 and scored:
        skipped = len(rows) - len(scored)
        with_lenient = [r for r in scored if "success_lenient" in r["metrics"]]
        lenient = sum(bool(r["metrics"]["success_lenient"]) for r in with_lenient)
        # draw and tangram rows judge their final frame alone, as VideoThinkBench does
        final_frame = any("silhouette_iou" in r["metrics"] or "touches_start" in r["metrics"] for r in with_lenient)
        anchor = "VR-Bench's SR for mazes, the final frame alone for draw and tangram" if final_frame \
            else "as VR-Bench's SR"
        print(f"success {sum(r['success'] for r in scored)}/{len(scored)}"
              + (f" (lenient, {anchor}: {lenient}/{len(with_lenient)})" if with_lenient else "")
              + (f"; {skipped} skipped" if skipped else ""))
