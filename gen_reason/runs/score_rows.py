"""The rows of ``genreason score`` (:class:`ScoreRow`: one video judged, or skipped) and the
table it prints: one line per video and the success rates."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gen_reason.folders import from_record

#: The keys of a row on disk, in the order ``scores.json`` shows them; the optional ones
#: (``None``) are left out.
_ORDER = ("level", "video", "uid", "task", "status", "success", "metrics", "trace", "reason", "debug_strip")
_OPTIONAL = ("level", "uid", "task", "debug_strip")


@dataclass
class ScoreRow:
    """One video of a ``genreason score`` run: the verdict of the referee (``success``,
    ``metrics``, ``trace``, ``reason``, as :meth:`~gen_reason.verifiers.score.Score.to_dict`
    writes them) on the video file ``video``, with the puzzle it answers (``uid``, ``task``;
    ``level`` for a VR-Bench level) and its debug strip. ``status`` is ``scored``, or
    ``skipped`` for a level the referee cannot read (left out of the success rate).

    On disk (:meth:`to_dict`, in ``scores.json`` and each ``scores.jsonl`` line's ``row``)
    it is one JSON object with these keys, the optional ones only when set; :meth:`from_dict`
    reads it back.
    """

    video: str
    status: str
    success: bool
    metrics: dict
    trace: dict = field(default_factory=dict)
    reason: str = ""
    uid: str | None = None
    task: str | None = None
    level: str | None = None
    debug_strip: str | None = None

    @classmethod
    def scored(cls, video: str | Path, score, *, uid: str | None = None, task: str | None = None) -> "ScoreRow":
        """The row of a video judged to ``score`` (a :class:`~gen_reason.verifiers.score.Score`)."""
        verdict = score.to_dict()
        return cls(video=str(video), status="scored", success=verdict["success"], metrics=verdict["metrics"],
                   trace=verdict["trace"], reason=verdict["reason"], uid=uid, task=task)

    def to_dict(self) -> dict:
        """The JSON record (the keys ``genreason score`` has always written)."""
        return {name: getattr(self, name) for name in _ORDER
                if not (name in _OPTIONAL and getattr(self, name) is None)}

    @classmethod
    def from_dict(cls, record: dict) -> "ScoreRow":
        """A row from its JSON record; unknown keys (a newer writer's) or missing ones are
        refused in one line."""
        return from_record(cls, record, "score row")

    @property
    def score(self):
        """The verdict as a :class:`~gen_reason.verifiers.score.Score`."""
        from gen_reason.verifiers.score import Score

        return Score.from_dict({"success": self.success, "metrics": self.metrics, "trace": self.trace,
                                "reason": self.reason})

    @property
    def label(self) -> str:
        """How the table names the row: its level, else the video's file name."""
        return self.level or Path(self.video).name


def _headline(metrics: dict) -> str:
    """The few numbers a table line shows for a row, by what its verifier measures: PR and
    EM for the maze family, silhouette IoU and pieces placed for tangram, none for draw."""
    if "precision_rate" in metrics:
        pr = metrics["precision_rate"]
        return f"PR={pr if pr is None else round(pr, 3)} EM={metrics.get('exact_match')}"
    if "silhouette_iou" in metrics:
        return f"IoU={round(metrics['silhouette_iou'], 3)} placed={metrics.get('pieces_placed_frac', 0.0):.0%}"
    return ""


def print_table(rows: list[ScoreRow | dict]) -> None:
    """Print one line per video and the success rate (strict; beside it the lenient rate
    over the rows that have one: VR-Bench's SR for the maze family, the final frame alone
    for draw and tangram). Rows may also be given as their JSON records."""
    rows = [row if isinstance(row, ScoreRow) else ScoreRow.from_dict(row) for row in rows]
    for row in rows:
        verdict = "SKIP" if row.status == "skipped" else ("PASS" if row.success else "FAIL")
        print(" ".join(part for part in (f"{verdict}  {row.label:40s}", _headline(row.metrics), row.reason)
                       if part).rstrip())
    scored = [r for r in rows if r.status != "skipped"]
    if len(rows) > 1 and scored:
        skipped = len(rows) - len(scored)
        with_lenient = [r for r in scored if "success_lenient" in r.metrics]
        lenient = sum(bool(r.metrics["success_lenient"]) for r in with_lenient)
        # draw and tangram rows judge their final frame alone, as VideoThinkBench does
        final_frame = any("silhouette_iou" in r.metrics or "touches_start" in r.metrics for r in with_lenient)
        anchor = "VR-Bench's SR for mazes, the final frame alone for draw and tangram" if final_frame \
            else "as VR-Bench's SR"
        print(f"success {sum(r.success for r in scored)}/{len(scored)}"
              + (f" (lenient, {anchor}: {lenient}/{len(with_lenient)})" if with_lenient else "")
              + (f"; {skipped} skipped" if skipped else ""))
