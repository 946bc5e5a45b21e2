"""Referee throughput: frames/s of decoding alone vs decoding + scoring, and beside VR-Bench's.

(a) On our ground-truth videos of every maze task and on the VR-Bench fixture videos
(``../shared/fixtures/vrbench``): frames/s of ``read_video`` alone, of ``read_video`` + the
rule verifier and of ``read_video`` + the reference verifier, measured side by side
(interleaved, median of ``--reps``), and the scoring alone (reference minus decode).
(b) Our referee (decode + reference score) on the fixture videos beside VR-Bench's
evaluator: its published figures on 2 cores (NCC 145-404 frames/s, CSRT 17-43, from the
fixtures README) and, with ``--vrbench-repo PATH`` (a local checkout), its NCC tracker
measured here in the same run (``CSRTTracker(state, "ncc").extract``: decode + one
tracking pass over the generated video, less than its evaluator does per video).

    nice -n 5 python bench/bench_referee.py [--vrbench-repo PATH]   # writes the "referee" section
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import table, write_section  # noqa: E402

from gen_reason.interop.vrbench_read import load_levels  # noqa: E402
from gen_reason.puzzles import TASKS, get_task  # noqa: E402
from gen_reason.verifiers.registry import verifier_for  # noqa: E402
from gen_reason.video import read_video, write_mp4  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "vrbench"
PUBLISHED = {"ncc": (145.0, 404.0), "csrt": (17.0, 43.0)}  # VR-Bench evaluator, frames/s on 2 cores


def load_average() -> float:
    """The 1-minute load average (0 where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def vrbench_ncc(repo: Path):
    """VR-Bench's trajectory extractor, imported from a local checkout (its package
    ``__init__`` pulls in its VLM client, which tracking does not use: bypassed)."""
    sys.path.insert(0, str(repo))
    package = types.ModuleType("evaluation")
    package.__path__ = [str(repo / "evaluation")]
    sys.modules["evaluation"] = package
    from evaluation.videomodel_eval.extractor import CSRTTracker

    def extract(video: Path, state: Path, size: tuple[int, int]) -> int:
        trajectory, *_ = CSRTTracker(str(state), tracker_type="ncc", search_margin=50).extract(
            str(video), target_size=size, frame_step=1)
        return len(trajectory)

    return extract


def time_call(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(items: list[dict], reps: int, ncc=None) -> None:
    """Fill each item's ``seconds`` (median over ``reps`` interleaved runs) per mode."""
    for item in items:
        item["times"] = {mode: [] for mode in ("decode", "rule", "reference", "ncc")}
    rule_cache: dict = {}
    for _ in range(reps):
        for item in items:
            inst, path = item["instance"], item["path"]
            for kind in ("rule", "reference"):
                rule_cache.setdefault((inst.task, kind), verifier_for(inst.task, kind))
            item["times"]["decode"].append(time_call(lambda: read_video(path)))
            for kind in ("rule", "reference"):
                verifier = rule_cache[(inst.task, kind)]
                item["times"][kind].append(time_call(lambda: verifier.score(inst, read_video(path))))
            if ncc is not None and item.get("state") is not None:
                h, w = item["size"]
                item["times"]["ncc"].append(time_call(lambda: ncc(path, item["state"], (w, h))))
    for item in items:
        item["seconds"] = {m: statistics.median(v) for m, v in item["times"].items() if v}


def rows_for(groups: dict[str, list[dict]]) -> list[list]:
    """Table (a): frames/s per group of videos."""
    rows = []
    for name, items in groups.items():
        frames = sum(i["frames"] for i in items)
        s = {m: sum(i["seconds"][m] for i in items) for m in ("decode", "rule", "reference")}
        sizes = sorted({f"{i['size'][1]}x{i['size'][0]}" for i in items}, key=lambda x: int(x.split("x")[0]))
        score_alone = frames / max(1e-9, s["reference"] - s["decode"])
        rows.append([name, len(items), frames, " / ".join([sizes[0], sizes[-1]] if len(sizes) > 1 else sizes),
                     f"{frames / s['decode']:.0f}", f"{frames / s['rule']:.0f}", f"{frames / s['reference']:.0f}",
                     f"{score_alone:.0f}", f"{score_alone / (frames / s['decode']):.2f}x"])
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-task", type=int, default=2, help="instances per task and difficulty (easy, medium)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions (median)")
    parser.add_argument("--vrbench-repo", default=None, help="a local VR-Bench checkout: time its NCC tracker too")
    args = parser.parse_args()
    load_before = load_average()

    tmp = Path(tempfile.mkdtemp(prefix="bench-referee-"))
    try:
        ours: dict[str, list[dict]] = {}
        for name in TASKS.names():
            if not name.startswith("maze/"):
                continue
            task = get_task(name)
            for difficulty in ("easy", "medium"):
                for seed in range(args.per_task):
                    inst = task.generate(seed, difficulty)
                    video = task.solution_video(inst)
                    path = write_mp4(tmp / f"{inst.uid}.mp4", video, fps=task.config.fps)
                    ours.setdefault(name, []).append({"instance": inst, "path": path, "frames": len(video),
                                                      "size": video.shape[1:3]})
        fixtures: dict[str, list[dict]] = {}
        if FIXTURES.is_dir():
            loaded, _ = load_levels(FIXTURES)
            for inst, level in loaded:
                path = level.gt_videos()[0]
                video = read_video(path)
                fixtures.setdefault(f"VR-Bench {level.game}", []).append(
                    {"instance": inst, "path": path, "frames": len(video), "size": video.shape[1:3],
                     "state": level.state})
                del video
        ncc = vrbench_ncc(Path(args.vrbench_repo).resolve()) if args.vrbench_repo else None
        for items in ours.values():
            measure(items, args.reps)
        for items in fixtures.values():
            measure(items, args.reps, ncc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    header = ["videos", "n", "frames", "size (px)", "decode fps", "decode+rule fps", "decode+reference fps",
              "reference scoring alone fps", "scoring alone / decode"]
    rows = rows_for({**ours, **fixtures})

    cmp_rows = []
    met_ncc = met_csrt = True
    for name, items in fixtures.items():
        frames = sum(i["frames"] for i in items)
        fps = frames / sum(i["seconds"]["reference"] for i in items)
        lo, hi = PUBLISHED["ncc"]
        clo, chi = PUBLISHED["csrt"]
        here = "-"
        if ncc is not None:
            ncc_fps = frames / sum(i["seconds"]["ncc"] for i in items)
            here = f"{ncc_fps:.0f} ({fps / ncc_fps:.1f}x)"
        met_ncc &= fps >= 2 * hi
        met_csrt &= fps >= 10 * chi
        cmp_rows.append([name, frames, f"{fps:.0f}", here, f"{fps / hi:.1f}x - {fps / lo:.1f}x",
                         f"{fps / chi:.0f}x - {fps / clo:.0f}x"])
        print(cmp_rows[-1], flush=True)

    load_after = load_average()
    cores = os.cpu_count() or 1
    shared = max(load_before, load_after) > 0.75 * cores
    machine_note = (
        f"Load average {load_before:.1f} before and {load_after:.1f} after on {cores} cores: "
        + ("**the machine was shared** (another job, an embedded-model training run, used most of the CPU; the "
           "bench ran under `nice -n 5`), so absolute frames/s are lower than on an idle machine; the side-by-side "
           "ratios were measured in the same conditions." if shared else "the machine was otherwise idle.")
    )
    body = (
        "(a) Frames/s of decoding alone and of decoding + scoring, side by side (interleaved, median of "
        f"{args.reps} runs; H.264 MP4s decoded with PyAV). Our rows: ground-truth videos of each maze task at its "
        f"natural timing ({args.per_task} instances each of easy and medium); VR-Bench rows: the fixture levels' "
        "ground-truth videos (maze3d is not supported by the adapter). *Scoring alone* is decode+reference minus "
        "decode; at or above 1.00x the referee keeps pace with the decoder.\n\n"
        + table(header, rows)
        + "\n\n(b) Our referee (decode + reference score: tracking, every rule, PR/SD/EM/MF) on VR-Bench's own "
        "fixture videos, beside VR-Bench's evaluator. Published: NCC 145-404 frames/s, CSRT 17-43 frames/s on 2 "
        "cores (fixtures README); the ratio columns divide our frames/s by the top and the bottom of each range. "
        + ("\"NCC here\" is VR-Bench's NCC tracker (decode + one tracking pass) timed in the same run on the same "
           "videos." if ncc is not None else "VR-Bench was not timed here (no --vrbench-repo).")
        + "\n\n" + table(["videos", "frames", "ours fps", "VR-Bench NCC here fps (ours/NCC)",
                          "ours / published NCC", "ours / published CSRT"], cmp_rows)
        + f"\n\nTargets (against the top of the published ranges): >= 2x NCC: **{'met' if met_ncc else 'not met'}**; "
        f">= 10x CSRT: **{'met' if met_csrt else 'not met'}**.\n\n" + machine_note
    )
    write_section("referee", "Referee throughput: decode vs decode + score, and beside VR-Bench's evaluator", body)


if __name__ == "__main__":
    main()
