"""Referee robustness: does the strict referee judge real-looking videos right?

For every registered task, ground-truth videos are put through what generated videos go
through (speed 0.25x-4x, a pause, a held tail, blur, noise, low-quality H.264 and JPEG,
resizing, stretching and letterboxing to 16:9, colour jitter, a camera shifted by a few
pixels: ``verifiers/degrade.py``'s ``ROBUSTNESS``) and must still pass strict success;
the shortcuts of ``verifiers/cheats.py`` (static, end state only, reversed, stopped
halfway, another puzzle's video, and on tangram pieces teleported one by one) must fail
it. With ``--vrbench-levels DIR`` (VR-Bench's own ``<game>/<skin>/<difficulty>`` tree,
made by its generator), every level's ground-truth replay must pass, per game and skin.

    python bench/bench_referee_robustness.py [--instances 3] [--vrbench-levels DIR ...]

Writes the "Referee robustness" section of docs/BENCHMARKS.md (``--no-write``: print only).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import table, write_section  # noqa: E402

from gen_reason.puzzles import TASKS, get_task  # noqa: E402
from gen_reason.verifiers.cheats import CHEATS, make_cheat, tangram_teleport_video  # noqa: E402
from gen_reason.verifiers.degrade import ROBUSTNESS  # noqa: E402
from gen_reason.verifiers.registry import verifier_for  # noqa: E402


def instances(name: str, count: int, seed: int):
    """``count`` instances of task ``name``, difficulties in turn, seeds from ``seed``."""
    task = get_task(name)
    return task, [task.generate(seed + i, task.difficulties[i % len(task.difficulties)]) for i in range(count)]


def task_rows(names: list[str], count: int, seed: int) -> tuple[dict, list]:
    """``{(case, task): [right, total]}`` and the wrong verdicts as (task, seed, case, reason)."""
    tally: dict = defaultdict(lambda: [0, 0])
    wrong: list = []
    for name in names:
        task, cases = instances(name, count, seed)
        verifier = verifier_for(name, "reference")
        short = name.rsplit("-v", 1)[0]
        for index, instance in enumerate(cases):
            truth = instance.solution_video()
            other = cases[(index + 1) % len(cases)].solution_video() if len(cases) > 1 else \
                task.generate(seed + count, instance.difficulty).solution_video()
            videos = [("ground truth", truth, True)]
            videos += [(transform, apply(truth), True) for transform, apply in ROBUSTNESS.items()]
            videos += [(f"cheat: {cheat}", make_cheat(cheat, truth, other=other), False) for cheat in CHEATS]
            if short == "tangram":
                videos.append(("cheat: pieces teleported one by one",
                               tangram_teleport_video(task, instance, len(truth)), False))
            for case, video, legal in videos:
                score = verifier.score(instance, video)
                right = bool(score.success) == legal
                tally[case, short][0] += right
                tally[case, short][1] += 1
                if not right:
                    wrong.append((short, instance.seed, case, score.reason))
    return tally, wrong


def vrbench_rows(folders: list[Path]) -> tuple[dict, list]:
    """``{(game, skin): [passed, total]}`` over VR-Bench's ground-truth replays, and the failures."""
    from gen_reason.verifiers.maze import MazeReferenceVerifier
    from gen_reason.verifiers.vrbench import SUPPORTED, load_level
    from gen_reason.video import read_video

    verifier = MazeReferenceVerifier()
    tally: dict = defaultdict(lambda: [0, 0])
    failed: list = []
    for folder in folders:
        for state in sorted(folder.glob("*/*/*/states/*.json")):
            game, skin = state.relative_to(folder).parts[:2]
            video_path = state.parent.parent / "videos" / (state.stem + ".mp4")
            if game not in SUPPORTED or not video_path.exists():
                continue
            score = verifier.score(load_level(state), read_video(video_path))
            tally[game, skin][0] += bool(score.success)
            tally[game, skin][1] += 1
            if not score.success:
                failed.append((game, skin, state.stem, score.reason))
    return tally, failed


def share(right: int, total: int) -> str:
    """``"100 % (9/9)"``."""
    return f"{100.0 * right / total:.0f} % ({right}/{total})" if total else "n/a"


def main(argv: list[str] | None = None) -> int:
    """Run the matrix, print it, and write its section of docs/BENCHMARKS.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=3, help="puzzles per task (difficulties in turn)")
    parser.add_argument("--seed", type=int, default=5000, help="first instance seed")
    parser.add_argument("--tasks", default=None, help="comma-separated tasks (default: every registered task)")
    parser.add_argument("--vrbench-levels", type=Path, action="append", default=[],
                        help="a VR-Bench levels tree (<game>/<skin>/<difficulty>/{states,videos}); repeatable")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    if args.instances < 1:
        parser.error("--instances must be at least 1")
    names = args.tasks.split(",") if args.tasks else TASKS.names()
    started = time.perf_counter()
    tally, wrong = task_rows([TASKS.canonical(n) for n in names], args.instances, args.seed)
    tasks = sorted({task for _, task in tally})
    cases = list(dict.fromkeys(case for case, _ in tally))
    rows = [[case, *(share(*tally[case, task]) if (case, task) in tally else "" for task in tasks)] for case in cases]
    totals = [sum(tally[c, t][0] for c in cases if (c, t) in tally) for t in tasks], \
             [sum(tally[c, t][1] for c in cases if (c, t) in tally) for t in tasks]
    rows.append(["**all**", *(f"**{share(r, n)}**" for r, n in zip(*totals))])
    body = ("Share judged right by the strict (reference) referee: transformed ground truth must pass, "
            f"cheats must fail. {args.instances} puzzles per task (its difficulties in turn, seeds from "
            f"{args.seed}); natural-length ground truth.\n\n" + table(["case", *tasks], rows))
    if wrong:
        body += "\n\nJudged wrong (task, seed, case: the referee's reason):\n\n" + "\n".join(
            f"- {task} seed {seed}, {case}: {reason}" for task, seed, case, reason in wrong[:40])
        if len(wrong) > 40:
            body += f"\n- ... and {len(wrong) - 40} more"
    levels = [folder for folder in args.vrbench_levels if folder.is_dir()]
    if levels:
        vr, failed = vrbench_rows(levels)
        body += ("\n\nVR-Bench's own ground-truth replays (levels and videos made by its generator), "
                 "judged solved by our strict referee, per game and skin:\n\n" +
                 table(["game", "skin", "solved"], [[g, s, share(*vr[g, s])] for g, s in sorted(vr)]))
        if failed:
            body += "\n\n" + "\n".join(f"- {g} skin {s} {stem}: {reason}" for g, s, stem, reason in failed[:20])
    else:
        body += "\n\nVR-Bench skins: not run (give `--vrbench-levels DIR`, levels made by VR-Bench's generator)."
    body += f"\n\nWall time {time.perf_counter() - started:.0f} s."
    print(body)
    if not args.no_write:
        print(f"wrote {write_section('referee-robustness', 'Referee robustness', body)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
