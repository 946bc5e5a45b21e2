"""Referee throughput: frames/s of decoding alone vs decoding + scoring, and beside VR-Bench's.

(a) On our ground-truth videos of every maze task and tangram, and on the VR-Bench fixture videos
(the shared VR-Bench fixtures folder beside the repository): frames/s of decoding alone, at full size (``read_video``)
and straight to the referee's working size (``work.read_work_video``: the decoder's
scaler shrinks the frames so the agent is 8-16 px wide, full-size frames are never
materialised); of that decode + the rule verifier and + the reference verifier, measured
side by side (interleaved, median of ``--reps``); and the scoring alone.
(c) Where the scoring time goes, CPU time per frame: for the maze referee preparing the
working copy, tracking, the movement rules, the scene check (``maze_redrawn``) and the
rest (reference metrics); for the draw and tangram referees their own stages.
(b) Our referee (decode + reference score) on the fixture videos beside VR-Bench's
evaluator: its published figures on 2 cores (NCC 145-404 frames/s, CSRT 17-43, from the
fixtures README) and, with ``--vrbench-repo PATH`` (a local checkout), measured here in
the same run: its evaluator per video (``evaluate_single_video`` with its defaults, NCC)
and its NCC tracker alone (``CSRTTracker(state, "ncc").extract``: decode + one pass).

    nice -n 5 python bench/bench_referee.py [--vrbench-repo PATH]   # writes the "referee" section

With ``--against REF``: the same decode + scoring work done by git revision REF's referee and
by the current one, side by side, and their verdicts compared (bench/referee_before_after.py;
writes the "referee-before-after" section):

    python bench/bench_referee.py --against a8b1926
    python bench/bench_referee.py --against a8b1926 --tasks maze/grid --per-task 1 --reps 1 --no-fixtures --no-write
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

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import table, write_section  # noqa: E402

from gen_reason.errors import UserError  # noqa: E402
from gen_reason.interop.vrbench_read import load_levels  # noqa: E402
from gen_reason.puzzles import TASKS, get_task  # noqa: E402
from gen_reason.runs.scoring import read_for  # noqa: E402
from gen_reason.verifiers.draw import _morph_frames, red_mask  # noqa: E402
from gen_reason.verifiers.parallel import chunk_bounds, workers  # noqa: E402
from gen_reason.verifiers.registry import verifier_for  # noqa: E402
from gen_reason.verifiers.tangram import _resize_to, find_pieces, segment_pieces, track_piece_centroids  # noqa: E402
from gen_reason.verifiers.rules import check_rules  # noqa: E402
from gen_reason.verifiers.track import track_objects  # noqa: E402
from gen_reason.verifiers.work import prepare_video  # noqa: E402
from gen_reason.video import read_video, write_mp4  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "vrbench"
PUBLISHED = {"ncc": (145.0, 404.0), "csrt": (17.0, 43.0)}  # VR-Bench evaluator, frames/s on 2 cores
STAGES = ("prepare", "track", "rules", "scene", "rest")
DRAW_STAGES = ("red test", "erosion", "rest")
TANGRAM_STAGES = ("segment", "pieces", "track", "rest")


def load_average() -> float:
    """The 1-minute load average (0 where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def vrbench_ncc(repo: Path, scratch: Path):
    """VR-Bench's evaluator and its tracker alone, imported from a local checkout (its
    package ``__init__`` pulls in its VLM client, which video scoring does not use:
    bypassed). Both with its defaults: NCC, search margin 50, eps 0.01, 100 samples."""
    sys.path.insert(0, str(repo))
    package = types.ModuleType("evaluation")
    package.__path__ = [str(repo / "evaluation")]
    sys.modules["evaluation"] = package
    from evaluation.videomodel_eval.batch_evaluate import evaluate_single_video
    from evaluation.videomodel_eval.extractor import CSRTTracker

    def evaluate(video: Path, level_folder: Path) -> None:
        result = evaluate_single_video((str(video), str(level_folder), 0.01, 100, str(scratch), 5, 1, "ncc", 50))
        if result.get("status") != "success":
            raise RuntimeError(f"VR-Bench's evaluator failed on {video}: {result.get('error')}")

    def track(video: Path, state: Path, size: tuple[int, int]) -> None:
        CSRTTracker(str(state), tracker_type="ncc", search_margin=50).extract(str(video), target_size=size,
                                                                              frame_step=1)

    return evaluate, track


def time_call(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def draw_stage_seconds(instance, video) -> dict[str, float]:
    """CPU seconds of the draw referee's stages on one decoded video: the red test, the
    erosion of every red mask (on the chunks of frames the referee gives each core), and
    the rest (wall-touch and erased counts per frame, the final-frame rules), i.e. its
    whole score minus the two."""
    clock = time.process_time
    chunks = chunk_bounds(len(video), workers(), 16)
    t0 = clock()
    reds = [red_mask(video[lo:hi]) for lo, hi in chunks]
    t1 = clock()
    for red in reds:
        _morph_frames(red, cv2.erode, True)
    t2 = clock()
    verifier_for(instance.task, "reference").score(instance, video)
    t3 = clock()
    return dict(zip(DRAW_STAGES, (t1 - t0, t2 - t1, max(0.0, (t3 - t2) - (t2 - t0)))))


def tangram_stage_seconds(instance, video) -> dict[str, float]:
    """CPU seconds of the tangram referee's stages on one decoded video: the colour
    segmentation of the final frame, every piece's mask and pose search, every piece's
    position in every frame (the start and slide rules), and the rest (matching pieces
    to targets, silhouette IoU, bookkeeping)."""
    spec = instance.spec
    clock = time.process_time
    t0 = clock()
    labels = segment_pieces(spec, _resize_to(video[-1], tuple(spec["image_size"])))
    t1 = clock()
    find_pieces(spec, labels)
    t2 = clock()
    track_piece_centroids(spec, video)
    t3 = clock()
    verifier_for(instance.task, "reference").score(instance, video)
    t4 = clock()
    return dict(zip(TANGRAM_STAGES, (t1 - t0, t2 - t1, t3 - t2, max(0.0, (t4 - t3) - (t3 - t0)))))


def stage_seconds(instance, video) -> dict[str, float]:
    """CPU seconds of each scoring stage on one decoded video (``rest``: the reference
    verifier's whole score minus the stages, i.e. its metrics and bookkeeping)."""
    if instance.task.startswith("maze/draw"):
        return draw_stage_seconds(instance, video)
    if instance.task.startswith("tangram"):
        return tangram_stage_seconds(instance, video)
    spec = instance.spec
    clock = time.process_time
    t0 = clock()
    work = prepare_video(video, spec)
    t1 = clock()
    track = track_objects(work, spec)
    t2 = clock()
    check_rules(track, spec, check_scene_changes=False)
    t3 = clock()
    check_rules(track, spec)
    t4 = clock()
    verifier_for(instance.task, "reference").score(instance, video)
    t5 = clock()
    scored = {"prepare": t1 - t0, "track": t2 - t1, "rules": t3 - t2, "scene": (t4 - t3) - (t3 - t2)}
    scored["rest"] = max(0.0, (t5 - t4) - sum(scored.values()))
    return scored


def measure(items: list[dict], reps: int, ncc=None) -> None:
    """Fill each item's ``seconds`` (median over ``reps`` interleaved runs) per mode: decoding
    at full and at working size, rule and reference scoring of the working-size video,
    VR-Bench's evaluator and tracker; and its ``stages`` (CPU seconds, median)."""
    for item in items:
        item["times"] = {mode: [] for mode in ("decode_full", "decode", "rule", "reference", "vrbench", "ncc")}
        item["stage_times"] = {}
    verifiers = {(i["instance"].task, kind): verifier_for(i["instance"].task, kind)
                 for i in items for kind in ("rule", "reference")}
    for _ in range(reps):
        for item in items:
            inst, path = item["instance"], item["path"]
            item["times"]["decode_full"].append(time_call(lambda: read_video(path)))
            start = time.perf_counter()
            video = read_for(verifiers[inst.task, "reference"], inst, path)
            item["times"]["decode"].append(time.perf_counter() - start)
            for kind in ("rule", "reference"):
                verifier = verifiers[inst.task, kind]
                item["times"][kind].append(time_call(lambda: verifier.score(inst, video)))
            for stage, seconds in stage_seconds(inst, video).items():
                item["stage_times"].setdefault(stage, []).append(seconds)
            video = None
            if ncc is not None and item.get("state") is not None:
                evaluate, track = ncc
                h, w = item["size"]
                try:
                    item["times"]["vrbench"].append(time_call(lambda: evaluate(path, item["state"].parent.parent)))
                    item["times"]["ncc"].append(time_call(lambda: track(path, item["state"], (w, h))))
                except Exception as exc:  # its evaluator on a game it cannot take: say so, keep timing ours
                    item["vrbench_error"] = f"{type(exc).__name__}: {exc}"[:120]
                    print(f"VR-Bench failed on {path}: {item['vrbench_error']}", flush=True)
    for item in items:
        item["seconds"] = {m: statistics.median(v) for m, v in item["times"].items() if v}
        item["stages"] = {m: statistics.median(v) for m, v in item["stage_times"].items()}


def rows_for(groups: dict[str, list[dict]]) -> tuple[list[list], dict[tuple, list[list]], bool]:
    """Table (a), the rows of table (c) per set of stages (the maze referee's, the draw
    referee's), and whether reference scoring kept pace with decoding everywhere."""
    rows, stage_rows, kept_pace = [], {}, True
    for name, items in groups.items():
        frames = sum(i["frames"] for i in items)
        s = {m: sum(i["seconds"][m] for i in items) for m in ("decode_full", "decode", "rule", "reference")}
        sizes = sorted({f"{i['size'][1]}x{i['size'][0]}" for i in items}, key=lambda x: int(x.split("x")[0]))
        work = sorted({f"{i['work_size'][1]}x{i['work_size'][0]}" for i in items},
                      key=lambda x: int(x.split("x")[0]))
        pace = s["decode"] / s["reference"]
        kept_pace &= pace >= 1.0
        rows.append([name, len(items), frames, " / ".join([sizes[0], sizes[-1]] if len(sizes) > 1 else sizes),
                     " / ".join([work[0], work[-1]] if len(work) > 1 else work),
                     f"{frames / s['decode_full']:.0f}", f"{frames / s['decode']:.0f}",
                     f"{frames / (s['decode'] + s['rule']):.0f}", f"{frames / (s['decode'] + s['reference']):.0f}",
                     f"{frames / s['reference']:.0f}", f"**{pace:.2f}x**" if pace >= 1.0 else f"{pace:.2f}x"])
        names = tuple(items[0]["stages"])
        stages = {m: sum(i["stages"][m] for i in items) for m in names}
        total = sum(stages.values())
        stage_rows.setdefault(names, []).append(
            [name] + [f"{1000 * stages[m] / frames:.3f} ({100 * stages[m] / total:.0f} %)" for m in names]
            + [f"{1000 * total / frames:.3f}"])
        print(rows[-1], stage_rows[names][-1], flush=True)
    return rows, stage_rows, kept_pace


def ground_truth_items(per_task: int, folder: Path, tasks: list[str] | None = None) -> dict[str, list[dict]]:
    """``{task: [item]}``: the ground-truth videos of every maze task and tangram (or of
    ``tasks``), ``per_task`` instances each of easy and medium (seeds from 0), written into
    ``folder`` as MP4 at the task's timing. An item holds its ``instance``, ``path``,
    ``frames`` and ``size``."""
    ours: dict[str, list[dict]] = {}
    names = [TASKS.canonical(n) for n in tasks] if tasks else \
        [n for n in TASKS.names() if n.startswith(("maze/", "tangram"))]
    for name in names:
        task = get_task(name)
        for difficulty in ("easy", "medium"):
            for seed in range(per_task):
                inst = task.generate(seed, difficulty)
                video = task.solution_video(inst)
                path = write_mp4(folder / f"{inst.uid}.mp4", video, fps=task.config.fps)
                ours.setdefault(name, []).append({"instance": inst, "path": path, "frames": len(video),
                                                  "size": video.shape[1:3]})
    return ours


def fixture_items() -> dict[str, list[dict]]:
    """``{"VR-Bench <game>": [item]}``: the VR-Bench fixture levels' ground-truth videos
    (none where the fixtures folder is absent); an item holds its ``instance``, ``path``,
    ``frames`` and the level's ``state`` file."""
    fixtures: dict[str, list[dict]] = {}
    if FIXTURES.is_dir():
        loaded, _ = load_levels(FIXTURES)
        for inst, level in loaded:
            path = level.gt_videos()[0]
            video = read_video(path, downscale=8)  # frame count and size only
            fixtures.setdefault(f"VR-Bench {level.game}", []).append(
                {"instance": inst, "path": path, "frames": len(video), "state": level.state})
    return fixtures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-task", type=int, default=2, help="instances per task and difficulty (easy, medium)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions (median)")
    parser.add_argument("--vrbench-repo", default=None, help="a local VR-Bench checkout: time its NCC tracker too")
    parser.add_argument("--against", metavar="REF", default=None,
                        help="instead: time the same scoring with git revision REF's referee and the current one, "
                             "side by side, and compare their verdicts (bench/referee_before_after.py)")
    parser.add_argument("--tasks", default=None,
                        help="with --against: comma-separated tasks (default: every maze task and tangram)")
    parser.add_argument("--cheats", type=int, default=1,
                        help="with --against: puzzles per task (and VR-Bench game) whose cheat videos are scored too")
    parser.add_argument("--no-fixtures", action="store_true", help="with --against: leave the VR-Bench fixtures out")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = parser.parse_args()
    if args.per_task < 1 or args.reps < 1:
        raise SystemExit("--per-task and --reps must be >= 1")
    for name in args.tasks.split(",") if args.tasks else []:
        try:
            TASKS.canonical(name)
        except UserError as exc:
            raise SystemExit(f"--tasks: {exc}") from None
    if args.against:
        from referee_before_after import run

        run(args, ground_truth_items, fixture_items)
        return
    load_before = load_average()

    tmp = Path(tempfile.mkdtemp(prefix="bench-referee-"))
    try:
        ours = ground_truth_items(args.per_task, tmp)
        fixtures = fixture_items()
        for item in [i for items in (*ours.values(), *fixtures.values()) for i in items]:
            work = read_for(verifier_for(item["instance"].task, "reference"), item["instance"], item["path"])
            item["work_size"] = work.shape[1:3]
            item.setdefault("size", read_video(item["path"], max_frames=1).shape[1:3])
            del work
        ncc = vrbench_ncc(Path(args.vrbench_repo).resolve(), tmp / "vrbench") if args.vrbench_repo else None
        for items in ours.values():
            measure(items, args.reps)
        for items in fixtures.values():
            measure(items, args.reps, ncc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    header = ["videos", "n", "frames", "size (px)", "working size (px)", "decode fps, full size",
              "decode fps, working size", "decode+rule fps", "decode+reference fps", "reference scoring alone fps",
              "scoring speed / decode speed"]
    rows, stage_rows, kept_pace = rows_for({**ours, **fixtures})

    cmp_rows = []
    met_ncc = met_csrt = met_ncc_here = True
    for name, items in fixtures.items():
        frames = sum(i["frames"] for i in items)
        fps = frames / sum(i["seconds"]["decode"] + i["seconds"]["reference"] for i in items)
        fps_full = frames / sum(i["seconds"]["decode_full"] + i["seconds"]["reference"] for i in items)
        lo, hi = PUBLISHED["ncc"]
        clo, chi = PUBLISHED["csrt"]
        here = tracker = "-"
        if ncc is not None and any(i.get("vrbench_error") for i in items):
            here = tracker = "failed: " + next(i["vrbench_error"] for i in items if i.get("vrbench_error"))
        elif ncc is not None:
            eval_fps = frames / sum(i["seconds"]["vrbench"] for i in items)
            ncc_fps = frames / sum(i["seconds"]["ncc"] for i in items)
            here = f"{eval_fps:.0f} ({fps / eval_fps:.1f}x)"
            tracker = f"{ncc_fps:.0f} ({fps / ncc_fps:.1f}x)"
            met_ncc_here &= fps >= 2 * ncc_fps
        met_ncc &= fps >= 2 * hi
        met_csrt &= fps >= 10 * chi
        cmp_rows.append([name, frames, f"{fps:.0f}", f"{fps_full:.0f}", here, tracker,
                         f"{fps / hi:.1f}x - {fps / lo:.1f}x", f"{fps / chi:.0f}x - {fps / clo:.0f}x"])
        print(cmp_rows[-1], flush=True)

    load_after = load_average()
    cores = os.cpu_count() or 1
    niceness = os.nice(0)
    # The load after includes the bench's own threads; the load before says whether other
    # work was running.
    shared = load_before > 0.5 * cores
    machine_note = (
        f"Load average {load_before:.1f} before and {load_after:.1f} after (the bench's own threads included) on "
        f"{cores} cores: "
        + ("**other work was running when the bench started** (the bench ran under "
           f"`nice -n {niceness}`), so absolute frames/s are lower than on an idle machine and vary from run to run; "
           "the side-by-side ratios were measured in the same conditions."
           if shared else "nothing else was running when the bench started.")
    )
    body = (
        "(a) Frames/s of decoding alone and of decoding + scoring, side by side (interleaved, median of "
        f"{args.reps} runs; H.264 MP4s decoded with PyAV into one array, then scored from memory; decode+score "
        "is the sum). Two decodes: at full size (`read_video`) and straight to the referee's working size "
        "(`work.read_work_video`: where the agent is at least 16 px wide, the decoder's scaler averages each "
        "f x f block (f <= 4) while converting to RGB so the agent ends 8-16 px wide, and the full-size frames "
        "are never materialised; a video with a smaller agent is decoded as it is). Both sides may use every core: "
        "the decoder runs FFmpeg's frame threads, the referee runs its per-pixel OpenCV work one chunk of frames "
        "per core (`verifiers/parallel.py`, as many threads as `cv2.getNumThreads()`). Scoring is measured on the "
        "working-size video; the last column divides the working-size decode time by the reference scoring "
        "time (at or above 1.00x, in bold, scoring alone keeps pace with decoding). Our rows: ground-truth "
        f"videos of each maze task and of tangram (draw and tangram are decoded whole, as `genreason score` reads "
        f"them: their working-size column is that decode) at its natural timing ({args.per_task} instances each of easy and medium); "
        "VR-Bench rows: the fixture levels' "
        "ground-truth videos.\n\n"
        + table(header, rows)
        + "\n\n(b) Our referee (working-size decode + reference score: tracking, every rule, PR/SD/EM/MF) on "
        "VR-Bench's own fixture videos, beside VR-Bench's evaluator. Published: NCC 145-404 frames/s, CSRT 17-43 "
        "frames/s on 2 cores (fixtures README); the ratio columns divide our frames/s by the top and the bottom "
        "of each range. "
        + ("Measured here in the same run on the same videos: VR-Bench's evaluator as its batch script runs it per "
           "video (`evaluate_single_video`, NCC: it tracks the generated video and the ground-truth video, then "
           "computes its metrics and draws its trajectory image), and its NCC tracker alone (decode + one tracking "
           "pass); frames/s count the generated video's frames. CSRT needs opencv-contrib, not installed here."
           if ncc is not None else "VR-Bench was not timed here (no --vrbench-repo).")
        + "\n\n" + table(["videos", "frames", "ours fps", "ours, full-size decode fps",
                          "VR-Bench evaluator here fps (ours/it)", "VR-Bench NCC tracker alone fps (ours/it)",
                          "ours / published NCC", "ours / published CSRT"], cmp_rows)
        + "\n\n(c) Where the scoring time goes: CPU milliseconds per frame (share of the total) of each stage of "
        "the reference score on the working-size video (median of the runs; CPU time of all threads, so a stage "
        "split across cores counts in full). Maze referee: `prepare` = validation, shrinking "
        "and brightness-drift correction (`work.prepare_video`); `track` = colour classification, connected "
        "components and following the agent (`track.track_objects`); `rules` = the movement rules "
        "(`rules.check_rules` without the scene check); `scene` = the `maze_redrawn` scene check "
        "(`scene.check_scene`); `rest` = the reference metrics and bookkeeping.\n\n"
        + table(["videos", *STAGES, "total"], stage_rows.get(STAGES, []))
        + "\n\nDraw referee (`verifiers/draw.py`, no tracking): `red test` = VideoThinkBench's red-pixel test on "
        "every frame (`draw.red_mask`); `erosion` = the 3x3 erosion of every red mask; `rest` = the wall-touch, "
        "red and erased counts per frame and the final-frame rules.\n\n"
        + table(["videos", *DRAW_STAGES, "total"], stage_rows.get(DRAW_STAGES, []))
        + "\n\nTangram referee (`verifiers/tangram.py`): `segment` = every pixel's nearest reference colour in "
        "the final frame (`tangram.segment_pieces`); `pieces` = each piece's mask and pose search "
        "(`tangram.estimate_pose`); `track` = every piece's position in every frame (`tangram."
        "track_piece_centroids`: the start and slide rules); `rest` = matching pieces to their targets, the "
        "silhouette IoU and the bookkeeping.\n\n"
        + table(["videos", *TANGRAM_STAGES, "total"], stage_rows.get(TANGRAM_STAGES, []))
        + "\n\nTargets. #4, reference scoring alone at least as fast as decoding on every row of (a): "
        f"**{'met' if kept_pace else 'not met'}**. #11, against the top of the published ranges: >= 2x NCC: "
        f"**{'met' if met_ncc else 'not met'}**; >= 10x CSRT: **{'met' if met_csrt else 'not met'}**"
        + (f"; against VR-Bench's NCC tracker measured here, >= 2x: **{'met' if met_ncc_here else 'not met'}**"
           if ncc is not None else "")
        + ".\n\n" + machine_note
    )
    command = ("nice -n %d " % niceness if niceness > 0 else "") + "python " + " ".join(sys.argv)
    if args.vrbench_repo:
        body += ("\n\nThe VR-Bench checkout was FoundationAgents/VR-Bench at commit 89b29a9 (the fixtures' "
                 "commit); only its `evaluation/` and `core/` folders are needed.")
    if args.no_write:
        print(body)
        return
    write_section("referee", "Referee throughput: decode vs decode + score, and beside VR-Bench's evaluator", body,
                  command=command)


if __name__ == "__main__":
    main()
