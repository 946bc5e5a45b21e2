"""The maze-family referee: one rule verifier and one reference verifier for every maze task.

Both read the shared spec contract (``gen_reason.puzzles.maze``): nodes, edges, start,
goal, goal box, agent colour and size, hazards, trail, and ``box`` for sokoban.

- :class:`MazeRuleVerifier` uses only ``instance.spec`` (legal at test time; solvers may
  use it): it tracks the agent (:mod:`.track`), maps the track onto the spec graph and
  checks the rules (:mod:`.rules`). Strict ``success``: the agent (the box, for sokoban)
  stands on the goal node in the last frame where it is seen, and no rule was broken.
- :class:`MazeReferenceVerifier` adds VR-Bench's metrics (:mod:`.metrics`) against
  ``instance.solution``: precision rate, step deviation, exact match, maze fidelity.

Metrics (flat floats; NaN where undefined):

- ``success``: strict success (above). ``success_lenient``: VR-Bench's SR, any tracked
  agent position (box position, for sokoban) inside ``goal_box``, whatever the rules.
- ``reached_goal`` / ``ends_at_goal``: stood on the goal node at some frame / at the end.
- ``num_violations`` and ``violation_<rule>`` (0/1) for every rule of :mod:`.rules`.
- ``track_coverage``: share of frames where the agent was found.
- reference only: ``precision_rate``, ``step_deviation`` (NaN unless ``success_lenient``,
  as in VR-Bench), ``exact_match`` (VR-Bench's EM: ``success_lenient`` and PR >= 0.98 and
  |SD| <= 0.1), ``exact_match_strict`` (EM and strict success), ``maze_fidelity``,
  ``precision_rate_raw`` (PR on the raw tracked centres, without mapping to the graph).

The generated trajectory the reference metrics read is the track mapped onto the puzzle's
geometry (:func:`graph_trajectory`): the centres of the nodes the agent stood on, in
order (a node counts once the agent comes within 0.3 step of it), with every position
off the graph inserted as tracked, so tracker jitter never counts as path length while
a walk through a wall still does. ``precision_rate_raw`` shows the raw-centre number.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np

from gen_reason.errors import UserError
from gen_reason.verifiers import metrics as M
from gen_reason.verifiers.framing import frame_video
from gen_reason.verifiers.rules import RULE_NAMES, RuleReport, check_rules
from gen_reason.verifiers.score import Score
from gen_reason.verifiers.track import track_objects
from gen_reason.verifiers.tracked import Track
from gen_reason.verifiers.walk import SNAP, SpecGraph
from gen_reason.verifiers.work import prepare_video, to_uint8


def _load(video) -> np.ndarray:
    if isinstance(video, (str, os.PathLike)):
        from gen_reason.video import read_video

        return read_video(Path(video))
    if not isinstance(video, np.ndarray):
        raise UserError(f"a video must be a numpy array (T, H, W, 3) or a file path; got {type(video).__name__}")
    return video


def _failure(reason: str, reference: bool) -> Score:
    metrics = {"success": 0.0, "success_lenient": 0.0, "reached_goal": 0.0, "ends_at_goal": 0.0,
               "num_violations": math.nan, "track_coverage": 0.0}
    if reference:
        metrics.update({"precision_rate": 0.0, "step_deviation": math.nan, "exact_match": 0.0,
                        "exact_match_strict": 0.0, "maze_fidelity": math.nan, "precision_rate_raw": 0.0})
    return Score(success=False, metrics=metrics, trace={"error": reason}, reason=reason)


class MazeRuleVerifier:
    """Scores a maze-family video against ``instance.spec`` only (no solution)."""

    name = "maze-rules"
    reference = False
    reads_solution = False

    def score(self, instance, video) -> Score:
        """Track, map to the graph, check every rule; never raises on a bad video."""
        spec = instance.spec
        try:
            frames = self.read_video(video, instance) if isinstance(video, (str, os.PathLike)) else _load(video)
            frames = frame_video(instance, frames)  # a stretched or letterboxed video: the puzzle's part
            work = prepare_video(frames, spec)
            frames = to_uint8(frames)
        except UserError as exc:
            return _failure(f"cannot judge the video: {exc}", self.reference)
        track = track_objects(work, spec)
        report = check_rules(track, spec)
        metrics, trace = self._rule_metrics(track, report, spec)
        self._add_reference(instance, frames, track, report, metrics, trace)
        success = bool(metrics["success"])
        return Score(success=success, metrics=metrics, trace=trace, reason=_reason(report, spec, success))

    def read_video(self, path, instance) -> np.ndarray:
        """Decode a video file for :meth:`score`, straight to the referee's working size
        (:func:`~gen_reason.verifiers.work.read_work_video`: every verdict as at full
        size, several times faster on large videos; only maze fidelity, which compares
        frames as given, moves slightly; a video whose size cannot show the puzzle is
        decoded whole, and :meth:`score` says why). Raises ``UserError`` when the file is
        unreadable."""
        from gen_reason.verifiers.work import read_work_video

        return read_work_video(Path(path), instance.spec, whole_if_unfit=True)

    def _rule_metrics(self, track: Track, report: RuleReport, spec: dict) -> tuple[dict, dict]:
        lenient_traj = track.box.positions if (spec.get("box") and track.box is not None) else track.agent.positions
        seen = lenient_traj[~np.isnan(lenient_traj[:, 0])]
        lenient = M.reached_box(seen, spec["goal_box"])
        strict = report.ends_at_goal and not report.violations
        metrics = {"success": float(strict), "success_lenient": float(lenient),
                   "reached_goal": float(report.reached_goal), "ends_at_goal": float(report.ends_at_goal),
                   "num_violations": float(len(report.violations)),
                   "track_coverage": float((~track.agent.lost).mean())}
        metrics.update(report.flags())
        trace = track.to_trace()
        trace.update({"node_path": report.agent.node_path, "node_frames": report.agent.node_frames,
                      "first_violation": report.first_violation, "violations": report.violations,
                      "final_node": report.final_node, "video_size": list(track.work.source_size),
                      "image_size": list(spec["image_size"]),
                      "num_frames": track.num_frames})
        if report.box is not None:
            trace["box_node_path"] = report.box.node_path
        return metrics, trace

    def _add_reference(self, instance, frames, track, report, metrics, trace) -> None:
        """Hook for :class:`MazeReferenceVerifier`."""


class MazeReferenceVerifier(MazeRuleVerifier):
    """The rule verifier plus VR-Bench's reference metrics against ``instance.solution``.

    ``pr_eps`` and ``pr_samples`` are PR's tolerance (normalised units) and sample count:
    VR-Bench's metric class defaults are 0.01 and 100 (used here), its evaluation
    script passes 0.05 and 1000.
    """

    name = "maze-reference"
    reference = True
    reads_solution = True

    def __init__(self, pr_eps: float = M.DEFAULT_EPS, pr_samples: int = M.DEFAULT_SAMPLES) -> None:
        self.pr_eps = float(pr_eps)
        self.pr_samples = int(pr_samples)

    def _add_reference(self, instance, frames, track, report, metrics, trace) -> None:
        spec = instance.spec
        height, width = spec["image_size"]
        graph = SpecGraph(spec)
        gt_px = graph.nodes[[int(n) for n in instance.solution["path"]]]
        gen_px = graph_trajectory(track.agent.positions, graph, report.agent.node_path, report.agent.node_frames)
        raw_px = track.agent.positions[~track.agent.lost]
        gt = M.normalise(gt_px, width, height)
        gen = M.normalise(gen_px, width, height)
        lenient = bool(metrics["success_lenient"])
        pr = M.precision_rate(gt, gen, self.pr_eps, self.pr_samples)
        sd = M.step_deviation(gt, gen, lenient)
        em = M.exact_match(lenient, pr, sd)
        metrics.update({
            "precision_rate": pr,
            "step_deviation": sd,
            "exact_match": float(em),
            "exact_match_strict": float(em and bool(metrics["success"])),
            "maze_fidelity": _fidelity(frames, track, spec),
            "precision_rate_raw": M.precision_rate(gt, M.normalise(raw_px, width, height), self.pr_eps,
                                                   self.pr_samples),
        })
        trace["generated_trajectory"] = [[round(float(x), 1), round(float(y), 1)] for x, y in gen_px]


def graph_trajectory(positions: np.ndarray, graph: SpecGraph, node_path: list[int], node_frames: list[int]) -> np.ndarray:
    """The track mapped onto the puzzle's geometry (see the module docstring).

    The node path (from :func:`walk.walk_graph`, with hysteresis) becomes the polyline of
    its node centres; positions off the graph are inserted as they were tracked, in frame
    order, so a walk through a wall still shows; a last position between two nodes adds
    its projection onto the graph (a move begun but not finished).
    """
    step = graph.step
    seen_idx = np.flatnonzero(~np.isnan(positions[:, 0]))
    events: list[tuple[int, int, np.ndarray]] = [(f, 0, graph.nodes[n]) for n, f in zip(node_path, node_frames)]
    if len(seen_idx):
        pts = positions[seen_idx]
        off = graph.distance_to_graph(pts) > graph.off_tolerance
        events += [(int(k), 1, p) for k, p, o in zip(seen_idx, pts, off) if o]
        last = pts[-1]
        if not off[-1] and np.linalg.norm(last - graph.nodes[node_path[-1]]) > SNAP * step:
            proj, _ = graph.project(last[None], graph.off_tolerance)
            events.append((int(seen_idx[-1]), 2, proj[0]))
    events.sort(key=lambda e: (e[0], e[1]))
    return np.asarray([p for _, _, p in events], float)


def _fidelity(frames: np.ndarray, track: Track, spec: dict) -> float:
    """VR-Bench MF on the video as given (full resolution, as VR-Bench computes it):
    start box = the start node's cell, goal box from the spec, agent box of the same size
    on the track (the last seen position where the agent was lost)."""
    h, w = frames.shape[1:3]
    spec_h, spec_w = spec["image_size"]
    sx, sy = w / spec_w, h / spec_h
    half = 0.5 * float(spec["step_px"])
    start = np.asarray(spec["nodes"][int(spec["start"])], float)
    start_box = _scale_box([start[0] - half, start[1] - half, start[0] + half, start[1] + half], sx, sy)
    goal_box = _scale_box(spec["goal_box"], sx, sy)
    positions = track.agent.positions.copy()
    last = start
    for k in range(len(positions)):
        if np.isnan(positions[k, 0]):
            positions[k] = last
        else:
            last = positions[k]
    traj = np.stack([(positions[:, 0] + 0.5) * sx - 0.5, (positions[:, 1] + 0.5) * sy - 0.5], 1)
    agent_wh = (start_box[2] - start_box[0], start_box[3] - start_box[1])
    return M.maze_fidelity(frames, traj, start_box, goal_box, agent_wh)


def _scale_box(box, sx: float, sy: float) -> list[int]:
    """A spec pixel box ``[x0, y0, x1, y1]`` in the video's pixels (VR-Bench truncates)."""
    return [int(box[0] * sx), int(box[1] * sy), int(box[2] * sx), int(box[3] * sy)]


def _reason(report: RuleReport, spec: dict, success: bool) -> str:
    moves = max(0, len(report.agent.node_path) - 1)
    obj = "box" if spec.get("box") else "agent"
    if success:
        return f"the {obj} reached the goal ({moves} agent moves) without breaking a rule"
    first = report.first_violation
    if first is not None:
        others = sorted({v["rule"] for v in report.violations} - {first["rule"]})
        more = f" (also: {', '.join(others)})" if others else ""
        return f"{first['rule']} at frame {first['frame']}: {first['detail']}{more}"
    graph = SpecGraph(spec)
    final = report.final_node
    if final is None:
        return f"the {obj} was never found"
    dist = graph.distances_from(final, avoid_hazards=False).get(int(spec["goal"]))
    away = f"{dist} moves from the goal" if dist is not None else "cut off from the goal"
    if report.reached_goal:
        return f"the {obj} reached the goal but left it: it ends at node {final}, {away}"
    return f"the {obj} did not reach the goal: it ends at node {final}, {away}"


def debug_strip(instance, video, score: Score, frames: int = 8) -> np.ndarray:
    """A strip of frames with the track drawn and the first violation circled (for the CLI).

    Frames are evenly spaced, always including the first violation's frame. The track so
    far is drawn in white over black, the current position as a ring, and the first
    violation as a thick red circle with its rule name.
    """
    video = _load(video)
    t, h, w = video.shape[:3]
    spec = instance.spec
    spec_h, spec_w = spec["image_size"]
    sx, sy = w / spec_w, h / spec_h
    positions = score.trace.get("agent_positions") or [None] * t
    first = score.trace.get("first_violation")
    picks = set(np.linspace(0, t - 1, num=min(frames, t)).round().astype(int).tolist())
    if first is not None and 0 <= first["frame"] < t:
        picks.add(int(first["frame"]))
    picks = sorted(picks)
    radius = max(3, int(round(0.5 * float(spec["agent"]["size_px"]) * min(sx, sy))))
    thick = max(1, radius // 4)
    tiles = []
    for k in picks:
        img = np.ascontiguousarray(video[k].copy())
        pts = [(int(round((p[0] + 0.5) * sx - 0.5)), int(round((p[1] + 0.5) * sy - 0.5)))
               for p in positions[: k + 1] if p is not None]
        if len(pts) > 1:
            poly = np.array(pts, np.int32).reshape(-1, 1, 2)
            cv2.polylines(img, [poly], False, (0, 0, 0), thick + 2)
            cv2.polylines(img, [poly], False, (255, 255, 255), thick)
        if k < len(positions) and positions[k] is not None:
            cv2.circle(img, pts[-1], radius + 2, (255, 255, 255), thick)
        if first is not None and first["frame"] == k:
            centre = pts[-1] if pts else (w // 2, h // 2)
            cv2.circle(img, centre, radius * 2 + 4, (255, 0, 0), thick + 2)
            cv2.putText(img, first["rule"], (2, max(10, h // 12)), cv2.FONT_HERSHEY_SIMPLEX, max(0.3, h / 400),
                        (255, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, str(k), (2, h - 4), cv2.FONT_HERSHEY_SIMPLEX, max(0.3, h / 500), (128, 128, 128), 1,
                    cv2.LINE_AA)
        tiles.append(img)
    gap = np.full((h, 2, 3), 255, np.uint8)
    parts = []
    for i, tile in enumerate(tiles):
        if i:
            parts.append(gap)
        parts.append(tile)
    return np.concatenate(parts, axis=1)


__all__ = ["MazeRuleVerifier", "MazeReferenceVerifier", "debug_strip", "graph_trajectory", "RULE_NAMES"]
