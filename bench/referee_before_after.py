"""The referee before and after a change: ``python bench/bench_referee.py --against REF``.

The same scoring work as the referee bench (each video decoded as the reference verifier
reads it, then scored by the rule and the reference verifier) done by revision REF's code
and by the current code, side by side. Each side is its own process (``referee_driver.py``
on REF's source packages, unpacked by ``revisions.tree_at``, or on this checkout's), so
the two never share a module; the bench alternates between them video by video (old, new,
then new, old, ...) so a change in the machine's load hits both alike, for one uncounted
warm-up round and ``--reps`` counted ones.

Both sides score exactly the same inputs: the videos are written once (ground truth of
every maze task and tangram, the VR-Bench fixtures' ground truth, and the cheats of
``verifiers/cheats.py`` built from them), and each instance is handed over as its JSON and
first frame, rebuilt by each side's own ``Instance``. Their verdicts (success, the first
rule broken, the metrics) are compared; every difference is listed in the section, since
it is a change of behaviour to report.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from report import table, write_section
from revisions import ROOT, commit_of, describe_head, tree_at

DRIVER = Path(__file__).resolve().parent / "referee_driver.py"
SIDES = ("old", "new")
STEPS = ("decode", "rule", "reference")


class Side:
    """One side's driver process: ``ask`` sends a request and returns its answer. ``driver``:
    the script that loads ``root``'s packages (``referee_driver.py``; ``bench_trainer.py``
    passes ``trainer_driver.py``), whose first line says where they came from."""

    def __init__(self, name: str, root: Path, driver: Path = DRIVER) -> None:
        env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
        self.name = name
        self.process = subprocess.Popen([sys.executable, str(driver), str(root)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=env, cwd=driver.parent)
        self.ready = self._answer()
        for key in ("gen_reason", "verifiers"):
            if not Path(self.ready[key]).resolve().is_relative_to(root.resolve()):
                raise SystemExit(f"the {name} side loaded {key} from {self.ready[key]}, not from {root}")

    def _answer(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the {self.name} side's driver ended (exit code {self.process.wait()}); "
                             "its error is above")
        return json.loads(line)

    def ask(self, request: dict) -> dict:
        """The driver's answer to one request (see referee_driver.py)."""
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._answer()

    def close(self) -> None:
        """End the driver (it stops at the end of its input)."""
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=60)


def cheat_items(groups: dict[str, list[dict]], per_group: int, folder: Path) -> dict[str, list[dict]]:
    """``{"cheats: <group>": [item]}``: for the first ``per_group`` videos of each group,
    every cheat of ``verifiers/cheats.py`` built from its ground truth (``other_puzzle``
    from the next video of the group; on tangram also the pieces teleported one by one),
    written as MP4 at the ground truth's frame rate."""
    import av

    from gen_reason.puzzles import get_task
    from gen_reason.verifiers.cheats import CHEATS, make_cheat, tangram_teleport_video
    from gen_reason.video import read_video, write_mp4

    cheats: dict[str, list[dict]] = {}
    for name, items in groups.items():
        for index, item in enumerate(items[:per_group]):
            truth = read_video(item["path"])
            other = read_video(items[(index + 1) % len(items)]["path"])
            with av.open(str(item["path"])) as container:
                fps = float(container.streams.video[0].average_rate or 16)
            inst = item["instance"]
            videos = {cheat: make_cheat(cheat, truth, other=other) for cheat in CHEATS if len(items) > 1
                      or cheat != "other_puzzle"}
            if inst.task.startswith("tangram"):
                videos["one_by_one_teleport"] = tangram_teleport_video(get_task(inst.task, **inst.config), inst,
                                                                       len(truth))
            for cheat, video in videos.items():
                path = write_mp4(folder / f"cheat-{inst.uid}-{cheat}.mp4", video, fps=fps)
                cheats.setdefault(f"cheats: {name}", []).append(
                    {"instance": inst, "path": path, "frames": len(video), "cheat": cheat})
    return cheats


def requests(groups: dict[str, list[dict]], folder: Path) -> None:
    """Give every item its ``request``: the instance's JSON and first frame written once
    into ``folder`` (shared by the items of one instance), and the video."""
    written: dict[int, tuple[str, str]] = {}
    for name, items in groups.items():
        for index, item in enumerate(items):
            inst = item["instance"]
            if id(inst) not in written:
                stem = folder / f"instance-{len(written)}"
                stem.with_suffix(".json").write_text(json.dumps(inst.to_dict()))
                np.save(stem.with_suffix(".npy"), np.asarray(inst.first_frame), allow_pickle=False)
                written[id(inst)] = (str(stem.with_suffix(".json")), str(stem.with_suffix(".npy")))
            instance, frame = written[id(inst)]
            item["request"] = {"id": f"{name}/{index}", "video": str(item["path"]), "instance": instance,
                               "frame": frame}


def measure(sides: dict[str, Side], groups: dict[str, list[dict]], rounds: int) -> None:
    """Score every item on both sides, alternating, for one uncounted warm-up round and
    ``rounds`` counted ones; fill each item's ``answers[side]`` (the warm-up's verdicts),
    ``wall[side]`` / ``cpu[side]`` (per counted round, seconds of decode + rule +
    reference), ``score_wall[side]`` (rule + reference) and ``errors``."""
    items = [item for group in groups.values() for item in group]
    for item in items:
        item.update(answers={}, wall={s: [] for s in SIDES}, cpu={s: [] for s in SIDES},
                    score_wall={s: [] for s in SIDES}, errors={}, unstable=set())
    for round_ in range(-1, rounds):
        for index, item in enumerate(items):
            for side in SIDES if (round_ + index) % 2 == 0 else SIDES[::-1]:
                answer = sides[side].ask(item["request"])
                if "error" in answer:
                    item["errors"][side] = answer["error"]
                    continue
                if round_ < 0 or side not in item["answers"]:
                    item["answers"][side] = answer
                if round_ < 0:
                    continue
                if answer["verdicts"] != item["answers"][side]["verdicts"]:
                    item["unstable"].add(side)
                item["wall"][side].append(sum(answer["wall"][s] for s in STEPS))
                item["cpu"][side].append(sum(answer["cpu"][s] for s in STEPS))
                item["score_wall"][side].append(answer["wall"]["rule"] + answer["wall"]["reference"])
        if round_ >= 0:
            print(f"round {round_ + 1}/{rounds} done", flush=True)


def _verdict_words(verdict: dict) -> str:
    """``pass`` / ``fail (rule): reason``, for the list of differences."""
    if verdict["success"]:
        return "pass"
    return f"fail ({verdict['rule'] or 'no rule'}): {verdict['reason'][:160]}"


def _metric_changes(old: dict, new: dict) -> str:
    """The metrics that differ in words: ``name old -> new`` for a changed value, then the
    names only of those one side lacks (at most 8 each)."""
    def names(keys: list[str]) -> str:
        return ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")

    changed = [f"{k} {old[k]} -> {new[k]}" for k in sorted(set(old) & set(new)) if old[k] != new[k]]
    dropped, added = sorted(set(old) - set(new)), sorted(set(new) - set(old))
    words = ", ".join(changed)
    if dropped:
        words += ("; " if words else "") + f"only old has {names(dropped)}"
    if added:
        words += ("; " if words else "") + f"only new has {names(added)}"
    return words


def differences(groups: dict[str, list[dict]]) -> tuple[dict[str, tuple[int, int]], list[str], list[str], int]:
    """Per group, how many videos got a different verdict on the two sides (success or the
    first rule broken, on either verifier) and how many only different metrics; those
    verdicts in words; the metric changes in words (one line for the videos of a group
    whose change reads the same); and how many verdicts differ in the reason's wording alone."""
    counts, verdict_lines, metric_changes, wording = {}, [], {}, 0
    for name, items in groups.items():
        changed = metrics_only = 0
        for item in items:
            if set(item["answers"]) != set(SIDES):
                continue
            old, new = (item["answers"][s]["verdicts"] for s in SIDES)
            video = item.get("cheat") or Path(item["path"]).stem
            verdict_changed = metric_changed = False
            for kind in old:
                o, n = old[kind], new[kind]
                if (o["success"], o["rule"]) != (n["success"], n["rule"]):
                    verdict_changed = True
                    verdict_lines.append(f"- {name}, {video}, {kind} verifier: old {_verdict_words(o)}; "
                                         f"new {_verdict_words(n)}")
                elif o["metrics"] != n["metrics"]:
                    metric_changed = True
                    key = (name, kind, _verdict_words(n).split(":")[0], _metric_changes(o["metrics"], n["metrics"]))
                    metric_changes.setdefault(key, []).append(video)
                else:
                    wording += o["reason"] != n["reason"]
            changed += verdict_changed
            metrics_only += metric_changed and not verdict_changed
        counts[name] = (changed, metrics_only)
    metric_lines = [f"- {name}, {', '.join(videos)}, {kind} verifier ({verdict} on both): {change}"
                    for (name, kind, verdict, change), videos in metric_changes.items()]
    return counts, verdict_lines, metric_lines, wording


def _row(name: str, items: list[dict], changed: int, metrics_only: int) -> list:
    """The table row of ``items``: each side's seconds (median over the rounds of the
    items' total, wall and CPU), the new / old ratios (median of the per-round ratios) of
    wall time, CPU time and the scoring alone, the per-round ratios and the verdicts."""
    timed = [i for i in items if all(i["wall"][s] for s in SIDES)]
    if not timed:
        return [name, len(items), "", "", "", "", "", "", "", "", "", "failed on a side: see below"]
    rounds = min(len(i["wall"][s]) for i in timed for s in SIDES)

    def totals(key: str, side: str) -> list[float]:
        return [sum(i[key][side][r] for i in timed) for r in range(rounds)]

    def ratios(key: str) -> list[float]:
        return [n / o for o, n in zip(totals(key, "old"), totals(key, "new"))]

    verdicts = f"**{changed} of {len(items)} differ**" if changed else "same"
    if metrics_only:
        verdicts += f"; metrics differ on {metrics_only}"
    if len(timed) < len(items):
        verdicts += f"; {len(items) - len(timed)} failed on a side"
    seconds = [f"{statistics.median(totals(key, side)):.3f}" for key in ("wall", "cpu") for side in SIDES]
    return [name, len(timed), sum(i["answers"]["new"]["frames"] for i in timed), *seconds[:2],
            f"{statistics.median(ratios('wall')):.2f}x", *seconds[2:], f"{statistics.median(ratios('cpu')):.2f}x",
            f"{statistics.median(ratios('score_wall')):.2f}x",
            ", ".join(f"{w:.2f} / {c:.2f}" for w, c in zip(ratios("wall"), ratios("cpu"))), verdicts]


HEADER = ["videos", "n", "frames", "old s", "new s", "new / old", "old CPU s", "new CPU s", "new / old, CPU",
          "new / old, scoring alone", "per round (wall / CPU)", "verdicts"]


def rows_for(groups: dict[str, list[dict]], counts: dict[str, tuple[int, int]]) -> list[list]:
    """One table row per group (see :func:`_row`), then one of all the videos together."""
    rows = []
    for name, items in groups.items():
        rows.append(_row(name, items, *counts[name]))
        print(rows[-1], flush=True)
    every = [item for items in groups.values() for item in items]
    rows.append(_row("**all**", every, sum(c for c, _ in counts.values()), sum(m for _, m in counts.values())))
    print(rows[-1], flush=True)
    return rows


def run(args, ground_truth_items, fixture_items) -> None:
    """The before/after comparison for ``bench_referee.py --against REF`` (its options:
    ``--per-task``, ``--reps``, ``--tasks``, ``--cheats``, ``--no-fixtures``, ``--no-write``),
    on the videos of the referee bench's ``ground_truth_items`` and ``fixture_items``."""
    old_commit = commit_of(args.against)
    load_before = os.getloadavg()[0]
    if args.vrbench_repo:
        print("--vrbench-repo: not used with --against (VR-Bench's evaluator is the same on both sides)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-referee-against-"))
    sides: dict[str, Side] = {}
    try:
        groups = ground_truth_items(args.per_task, tmp, args.tasks.split(",") if args.tasks else None)
        if not args.no_fixtures:
            groups.update(fixture_items())
        if args.cheats > 0:
            groups.update(cheat_items(dict(groups), args.cheats, tmp))
        requests(groups, tmp)
        sides["old"] = Side("old", tree_at(old_commit, tmp / "old"))
        sides["new"] = Side("new", ROOT)
        measure(sides, groups, args.reps)
    finally:
        for side in sides.values():
            side.close()
        shutil.rmtree(tmp, ignore_errors=True)

    counts, lines, metric_lines, wording = differences(groups)
    rows = rows_for(groups, counts)
    errors = [f"- {name}, {item.get('cheat') or Path(item['path']).name}, {side} side: {error}"
              for name, items in groups.items() for item in items for side, error in item["errors"].items()]
    unstable = [f"- {name}, {item.get('cheat') or Path(item['path']).name}, {side} side"
                for name, items in groups.items() for item in items for side in sorted(item["unstable"])]
    entry = {side: ", ".join(f"`{where}`" for where in sides[side].ready["entry_points"].values()) for side in SIDES}
    n_videos = sum(len(items) for items in groups.values())
    body = (
        f"The referee of commit `{old_commit[:7]}` (old) and of {describe_head()} (new) on the same {n_videos} "
        "videos, each side in its own process (`bench/referee_driver.py` on that revision's source packages), "
        f"alternating video by video (old, new / new, old), {args.reps} round(s) after one uncounted warm-up round. "
        "The work timed per video is the referee bench's: decode as the reference verifier reads it, then the rule "
        "and the reference score of that decoded video. Videos: the ground truth of "
        f"{args.per_task} instance(s) each of easy and medium per task (seeds from 0), "
        + ("" if args.no_fixtures else "the VR-Bench fixture levels' ground truth, ")
        + (f"and the cheats of `verifiers/cheats.py` built from the first {args.cheats} video(s) of each of those "
           "rows (tangram: also its pieces teleported one by one); " if args.cheats > 0 else "")
        + "written once, the instances handed to both sides as JSON plus first frame. "
        "Seconds: the row's total per round (median of the rounds), wall time and CPU time of the side's process "
        "(all its threads: less sensitive than wall time to other work on a shared machine); the ratios are new / "
        "old, the median of the per-round ratios (below 1: the new code is faster), of wall time, CPU time and "
        "the scoring alone (rule + reference, wall time, without the decode). "
        "Verdicts: success and the first rule broken, by both verifiers, compared per "
        "video; then their metrics (PR, SD, EM, violation counts, ...).\n\n"
        f"Entry points, old: {entry['old']}; new: {entry['new']}.\n\n"
        + table(HEADER, rows)
        + "\n\nThe per-round ratios show the machine's noise: a difference smaller than their spread is not a "
        f"difference. Load average {load_before:.1f} when the bench started, on {os.cpu_count()} cores."
    )
    if lines:
        body += ("\n\n**Verdicts that differ** (a change of behaviour; old, then new):\n\n" + "\n".join(lines[:60])
                 + (f"\n- ... and {len(lines) - 60} more" if len(lines) > 60 else ""))
    else:
        body += "\n\nEvery verdict (success and first rule broken) is the same on both sides."
    if metric_lines:
        body += ("\n\nSame verdict, metrics that differ (old -> new):\n\n" + "\n".join(metric_lines[:60])
                 + (f"\n- ... and {len(metric_lines) - 60} more" if len(metric_lines) > 60 else ""))
    if wording:
        body += f"\n\n{wording} verdict(s) differ only in the reason's wording."
    if errors:
        body += "\n\n**Failed** (the side's code raised; not timed):\n\n" + "\n".join(errors[:40])
    if unstable:
        body += "\n\n**Verdicts that changed between rounds on one side:**\n\n" + "\n".join(unstable[:20])
    print(body)
    if not args.no_write:
        command = "python bench/bench_referee.py" + "".join(f" {a}" for a in sys.argv[1:])
        # one section per old revision: a8b1926 (before #18 and #19) and a later one can stand side by side
        print("wrote", write_section(f"referee-before-after-{old_commit[:7]}", f"The referee before and after: `{old_commit[:7]}` "
                                     "against the current code", body, command))
