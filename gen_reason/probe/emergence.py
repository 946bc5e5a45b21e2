"""What the step probe's scores say (:class:`~gen_reason.probe.steps.StepProbeResult`):

- :func:`emergence`: per step, the mean of the referee's metrics (success, precision
  rate, ...), the share of samples whose path already is their final path, and the
  *commit step* of each sample (from which step on its path never changes again).
- :func:`exploration`: the distinct candidate paths (the referee's node paths) that
  appear in the early steps and across seeds: how many solutions the model considers
  before it commits.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING, Sequence

import numpy as np

from gen_reason.errors import UserError

if TYPE_CHECKING:
    from gen_reason.probe.steps import StepProbeResult


#: The referee metrics the emergence curve follows by default (those a maze verifier gives).
EMERGENCE_METRICS = ("success", "success_lenient", "precision_rate", "exact_match", "track_coverage")


def path_similarity(path: Sequence[int], final: Sequence[int]) -> float:
    """1 - (edit distance between two node paths) / (the longer length); 1 for two empty paths."""
    if not path and not final:
        return 1.0
    previous = list(range(len(final) + 1))
    for i, node in enumerate(path, 1):
        current = [i]
        for j, other in enumerate(final, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (node != other)))
        previous = current
    return 1.0 - previous[-1] / max(len(path), len(final))


def emergence(results: Sequence[StepProbeResult], metrics: Sequence[str] = EMERGENCE_METRICS) -> dict:
    """The emergence curve over all probed samples: per kept step, how much of the answer is there.

    Returns a JSON-ready dict: ``steps``, ``sigmas``, ``metrics`` (``{name: [mean per
    step]}``, NaN-aware, only metrics the referee reports), ``final_agreement`` (share of
    samples whose node path at the step is already their final path),
    ``final_similarity`` (mean :func:`path_similarity` to the final path: a graded
    version, since one tracker hiccup makes two paths unequal),
    ``distinct_paths`` (mean over instances of the number of distinct node paths across
    seeds at the step), and the commit step: per sample, the first kept step from which
    its node path equals the final one at every later kept step (``commit_steps``; its
    mean as a step and as a fraction of the schedule in ``mean_commit_step`` /
    ``mean_commit_fraction``).
    """
    if not results:
        raise UserError("no probe results to summarise")
    steps = results[0].steps
    for result in results:
        if result.steps != steps:
            raise UserError("probe results kept different steps; probe every instance with the same settings")
    num_steps = results[0].num_steps
    present = [name for name in metrics if any(name in score.metrics for r in results for score in r.final_scores)]
    per_metric: dict[str, list[float]] = {}
    for name in present:
        per_metric[name] = [
            _nanmean([r.step_scores[i][step].metrics.get(name, math.nan) for r in results for i in range(len(r.seeds))])
            for step in steps
        ]
    agreement, similarity, distinct = [], [], []
    for step in steps:
        pairs = [(node_path(r.step_scores[i][step]), node_path(r.final_scores[i]))
                 for r in results for i in range(len(r.seeds))]
        agreement.append(float(np.mean([path == final for path, final in pairs])) if pairs else math.nan)
        similarity.append(float(np.mean([path_similarity(path, final) for path, final in pairs])) if pairs else math.nan)
        distinct.append(float(np.mean([len({tuple(node_path(r.step_scores[i][step])) for i in range(len(r.seeds))})
                                       for r in results])))
    commits = [_commit_step(r, i, steps) for r in results for i in range(len(r.seeds))]
    return {
        "steps": list(steps),
        "num_steps": num_steps,
        "sigmas": [results[0].sigmas.get(step) for step in steps],
        "metrics": per_metric,
        "final_agreement": agreement,
        "final_similarity": similarity,
        "distinct_paths": distinct,
        "commit_steps": commits,
        "mean_commit_step": float(np.mean(commits)),
        "mean_commit_fraction": float(np.mean(commits)) / max(1, num_steps - 1),
    }


def _commit_step(result: StepProbeResult, sample: int, steps: Sequence[int]) -> int:
    """The first kept step from which ``sample``'s node path equals its final path at every
    later kept step (the last step when it never does before)."""
    final = node_path(result.final_scores[sample])
    commit = steps[-1]
    for step in reversed(steps):
        if node_path(result.step_scores[sample][step]) != final:
            break
        commit = step
    return commit


def exploration(results: Sequence[StepProbeResult], early_fraction: float = 0.5, top: int = 5) -> dict:
    """Distinct candidate paths the model shows before it commits, across early steps and seeds.

    Early steps are the kept steps before ``early_fraction`` of the schedule. For each
    instance: the distinct node paths seen over its early steps and all its seeds (the
    agent standing still counts as no candidate), how many end on the goal, whether the
    true solution is among them, how many distinct final paths its seeds end on, and
    the ``top`` most frequent candidates. Aggregates: means over instances, and the mean
    number of distinct early candidates per single seed.
    """
    per_instance, per_seed = [], []
    for r in results:
        early = [step for step in r.steps if step < early_fraction * r.num_steps] or r.steps[:1]
        counts: Counter = Counter()
        for i in range(len(r.seeds)):
            seed_paths = {tuple(node_path(r.step_scores[i][step])) for step in early}
            seed_paths = {path for path in seed_paths if len(path) > 1}
            per_seed.append(len(seed_paths))
            for step in early:
                path = tuple(node_path(r.step_scores[i][step]))
                if len(path) > 1:
                    counts[path] += 1
        spec = getattr(r.instance, "spec", {}) or {}
        goal = spec.get("goal")
        solution = tuple((getattr(r.instance, "solution", None) or {}).get("path", []) or [])
        finals = {tuple(node_path(score)) for score in r.final_scores}
        per_instance.append({
            "instance": getattr(r.instance, "uid", str(r.instance)),
            "early_steps": early,
            "distinct_candidates": len(counts),
            "candidates_reaching_goal": sum(1 for path in counts if goal is not None and path[-1] == goal),
            "solution_among_candidates": bool(solution) and solution in counts,
            "distinct_final_paths": len(finals),
            "top_candidates": [{"path": list(path), "count": count} for path, count in counts.most_common(top)],
        })
    return {
        "early_fraction": early_fraction,
        "mean_distinct_candidates": _nanmean([item["distinct_candidates"] for item in per_instance]),
        "mean_distinct_candidates_per_seed": _nanmean(per_seed),
        "mean_distinct_final_paths": _nanmean([item["distinct_final_paths"] for item in per_instance]),
        "solution_among_candidates": _nanmean([float(item["solution_among_candidates"]) for item in per_instance]),
        "instances": per_instance,
    }


def finite_mean(values) -> float | None:
    """The mean of the finite values (``None`` when there are none)."""
    array = np.asarray([float(v) for v in values], dtype=float)
    array = array[np.isfinite(array)]
    return float(array.mean()) if array.size else None


def _nanmean(values) -> float:
    """:func:`finite_mean`, NaN when there are no finite values."""
    value = finite_mean(values)
    return math.nan if value is None else value


def node_path(score) -> list[int]:
    """The referee's node path of a score (the agent's visited nodes; empty when none)."""
    if score is None:
        return []
    path = (getattr(score, "trace", None) or {}).get("node_path") or []
    return [int(node) for node in path]
