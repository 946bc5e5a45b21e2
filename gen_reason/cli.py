"""The ``genreason`` command line: one command, one subcommand per job.

Every subcommand turns a user mistake (a :class:`~gen_reason.errors.UserError`) into one
line on stderr and exit code 2; anything else is a bug and keeps its traceback. Dotted
flags (``--task.skin dark``, ``--task.cell_px 16``) override fields of the task config.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gen_reason.config import ArgumentParser
from gen_reason.errors import UserError, writable_dir
from gen_reason.models.options import add_model_arguments


def parse_dotted(extra: list[str], sections: tuple[str, ...]) -> dict[str, dict]:
    """Turn ``["--task.skin", "dark", "--task.trail=true"]`` into ``{"task": {"skin": "dark", "trail": True}}``.

    The one dotted flag grammar (:func:`gen_reason.config.parse_flags`): values are YAML
    scalars (numbers, booleans, null, lists); anything that is not ``--<section>.<field>
    value`` for a known section is a :class:`UserError`.
    """
    from gen_reason.config import nest, parse_flags

    return {section: {} for section in sections} | nest(parse_flags(extra, sections))


def _int_in(low: int, high: int | None = None):
    """An argparse type: an integer in ``[low, high]`` (no upper bound when ``high`` is None)."""
    bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer {bounds}, got {value!r}") from None
        if number < low or (high is not None and number > high):
            raise argparse.ArgumentTypeError(f"expected an integer {bounds}, got {number}")
        return number

    parse.__name__ = "integer"
    return parse


def _fraction(value: str) -> float:
    """An argparse type: a number in ``[0, 1)``."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value!r}") from None
    if not 0.0 <= number < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value}")
    return number


_count = _int_in(1)  # --n, --instances, --seeds, --steps, --every, --workers
_seed = _int_in(0)


def _frames(value: str) -> int | None:
    """An argparse type: a frame count in [1, 2000], or ``natural`` (None: the puzzle's own timing)."""
    if value in ("natural", "none", "None"):
        return None
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in [1, 2000] or 'natural', got {value!r}") from None
    if not 1 <= number <= 2000:
        raise argparse.ArgumentTypeError(f"expected an integer in [1, 2000] or 'natural', got {number}")
    return number


def cmd_tasks(args, extra) -> int:
    """List registered tasks and their difficulties."""
    from gen_reason.puzzles import TASKS

    for name in TASKS.names():
        task_cls = TASKS.get(name)
        print(f"{name:22s} difficulties: {', '.join(task_cls.difficulties)}")
    return 0


def cmd_puzzle(args, extra) -> int:
    """Make one puzzle and write its image, ground-truth video and JSON."""
    from gen_reason.puzzles import get_task
    from gen_reason.video import filmstrip, write_gif, write_image, write_mp4

    overrides = parse_dotted(extra, ("task",))
    task = get_task(args.task, **overrides["task"])
    instance = task.generate(args.seed, args.difficulty)
    out = writable_dir(Path(args.out or f"out/puzzle/{instance.uid}"))
    video = instance.solution_video(args.frames)
    write_image(out / "puzzle.png", instance.first_frame)
    write_mp4(out / "solution.mp4", video, fps=task.config.fps)
    write_gif(out / "solution.gif", video, fps=task.config.fps)
    write_image(out / "solution_strip.png", filmstrip(video, 8))
    (out / "instance.json").write_text(json.dumps(instance.to_dict(), indent=1, sort_keys=True))
    print(f"{instance.task} seed={instance.seed} difficulty={instance.difficulty}: "
          f"{len(instance.solution.get('path', [])) - 1 if isinstance(instance.solution, dict) and 'path' in instance.solution else '?'} moves, "
          f"video {video.shape[0]} frames of {video.shape[2]}x{video.shape[1]}")
    print(f"prompt: {instance.prompt}")
    print(f"wrote {out}/puzzle.png, solution.mp4, solution.gif, solution_strip.png, instance.json")
    return 0


def cmd_make_dataset(args, extra) -> int:
    """Write a dataset of puzzles (first frames, solution videos, metadata), in our layout or an anchor's."""
    from gen_reason.datasets import DatasetSpec, make_dataset

    overrides = parse_dotted(extra, ("task",))
    frames = args.frames
    if frames == -1:  # not given: 49 frames, or VR-Bench's own timing for --format vrbench
        frames = None if args.format == "vrbench" else 49
    spec = DatasetSpec(
        task=args.task,
        n=args.n,
        difficulties=tuple(d for d in args.difficulty.split(",") if d),
        seed=args.seed,
        num_frames=frames,
        video=not args.no_video,
        test_fraction=args.test_fraction,
        dedupe=args.dedupe,
        task_config=overrides["task"],
        crf=args.crf,
        lossless=args.lossless,
    )
    if args.format == "vrbench":
        from gen_reason.interop.vrbench_write import make_vrbench_dataset

        out = make_vrbench_dataset(spec, args.out, workers=args.workers, progress=not args.quiet)
        print(f"wrote {spec.n} instances of {spec.task} to {out} in VR-Bench's layout "
              "(<game>/<skin>/<difficulty>/{states,images,videos}, metadata.csv)")
        return 0
    if args.format == "diffsynth":
        from gen_reason.interop.vrbench_write import make_diffsynth_dataset

        out = make_diffsynth_dataset(spec, args.out, workers=args.workers, progress=not args.quiet)
        print(f"wrote {spec.n} instances of {spec.task} to {out} (metadata.csv: video,prompt,input_image)")
        return 0
    out = make_dataset(spec, args.out, workers=args.workers, progress=not args.quiet)
    print(f"wrote {spec.n} instances of {spec.task} to {out} (metadata.jsonl, metadata.csv)")
    return 0


def cmd_solve(args, extra) -> int:
    """Make a puzzle, generate its solution video with a model, referee it."""
    from gen_reason.runs.solve import solve

    from gen_reason.models.options import model_options_from_args

    overrides = parse_dotted(extra, ("task", "solver", "model"))
    result = solve(args.task, difficulty=args.difficulty, seed=args.seed, model=args.model, lora=args.lora,
                   solver=args.solver, solver_params=overrides["solver"], frames=args.frames, steps=args.steps,
                   out=args.out, task_config=overrides["task"], vlm=args.vlm,
                   **model_options_from_args(args, overrides["model"]))
    print(result.summary())
    return 0


def cmd_score(args, extra) -> int:
    """Referee generated videos: one against an instance, or a folder against a dataset or VR-Bench levels."""
    from gen_reason.runs.scoring import score_folder, score_one, score_vrbench

    target = Path(args.video)
    if sum(bool(x) for x in (args.instance, args.dataset, args.vrbench)) > 1:
        raise UserError("give only one of --instance, --dataset, --vrbench")
    if args.vrbench:
        rows = score_vrbench(target, Path(args.vrbench), kind=args.kind, out=Path(args.out) if args.out else None)
    elif args.instance:
        rows = [score_one(target, Path(args.instance), kind=args.kind, out=Path(args.out) if args.out else None)]
    elif args.dataset:
        rows = score_folder(target, Path(args.dataset), kind=args.kind, out=Path(args.out or target / "scores"))
    else:
        raise UserError("give --instance INSTANCE.json (one video), --dataset DIR or --vrbench DIR (a folder of videos)")
    from gen_reason.runs.score_rows import print_table

    print_table(rows)
    return 0


def cmd_compare_referees(args, extra) -> int:
    """Our referee beside VR-Bench's lenient success (and VR-Bench's own evaluator, given a checkout)."""
    from gen_reason.runs.compare import compare_referees, print_report

    report = compare_referees(args.videos, args.levels, args.vrbench_repo, tracker=args.tracker, out=args.out)
    print_report(report)
    return 0


def cmd_eval(args, extra) -> int:
    """Run an evaluation from a config (resumable)."""
    from gen_reason.runs.config import load_config
    from gen_reason.runs.runner import Shard, run_eval

    from gen_reason.config import parse_flags

    overrides = parse_flags(extra, ("data", "model", "solvers", "budget"))  # --model.steps 30, --solvers.0.params.n 8
    if args.out:
        overrides["out"] = args.out
    if args.vlm:
        overrides["vlm"] = args.vlm
    from gen_reason.config import read_yaml

    if not read_yaml(args.config):  # an empty file would run the built-in defaults: surely not what was meant
        raise UserError(f"config {args.config} is empty; start from one in configs/ (e.g. configs/embedded_quick.yaml)")
    config = load_config(args.config, overrides)
    shard = Shard.detect()  # under `accelerate launch`: this process's share of the items
    run = run_eval(config, progress=not args.quiet, shard=shard)
    if shard.rank != 0:
        return 0  # rank 0 waits for every shard, merges them and prints the summary once
    from gen_reason.runs.report import summarise, markdown_table
    from gen_reason.runs.store import load_results

    rows = summarise(load_results(run))
    print(markdown_table(rows, ["task", "difficulty", "solver", "n", "success", "exact_match", "precision_rate"]))
    print(f"run folder: {run}")
    return 0


def cmd_report(args, extra) -> int:
    """Write the Markdown/HTML report and plots of one or more runs."""
    from gen_reason.runs.report import write_report

    path = write_report(args.runs, args.out)
    print(f"wrote {path} and {path.with_suffix('.html')}")
    return 0


def cmd_probe(args, extra) -> int:
    """Run the chain-of-steps probe: x0 at every step, emergence curve, layer probes."""
    from gen_reason.models.options import model_options_from_args
    from gen_reason.probe.run import run_probe

    overrides = parse_dotted(extra, ("task", "probe", "model"))
    model_options = model_options_from_args(args, overrides["model"])
    # an unknown --probe.FIELD is refused by the one config builder (ProbeConfig), with "did you mean"
    flagged = {"task", "model", "out", "difficulty", "instances", "seeds", "steps", "every", "lora", "layer_probe",
               "interventions", "task_config", *model_options}
    twice = sorted(set(overrides["probe"]) & flagged)
    if twice:  # the named flag is the one way to set these (and is range-checked)
        raise UserError(f"--probe.{twice[0]}: set it with its own flag (see genreason probe --help)")
    summary = run_probe(args.task, args.model, args.out, difficulty=args.difficulty, instances=args.instances,
                        seeds=args.seeds, steps=args.steps, every=args.every, lora=args.lora,
                        layer_probe=not args.no_layers, interventions=not args.no_interventions,
                        task_config=overrides["task"] or None, **{**model_options, **overrides["probe"]})
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, (list, dict))}, indent=1))
    print(f"wrote {args.out}")
    return 0


def cmd_inspect_model(args, extra) -> int:
    """Describe a model folder from its configs; exit 2 when files are missing or half-downloaded."""
    if extra:
        raise UserError(f"unrecognised argument {extra[0]!r} (see --help)")
    from gen_reason.models.inspect import IncompleteModel, format_report, inspect_model
    from gen_reason.models.options import parse_size

    gpu_memory = None
    if args.gpu_memory is not None:
        try:
            gpu_memory = float(args.gpu_memory)
        except ValueError:
            raise UserError(f"--gpu-memory must be a number of GiB; got {args.gpu_memory!r}") from None
    if args.frames is not None and args.frames < 1:
        raise UserError(f"--frames must be at least 1; got {args.frames}")
    try:
        report = inspect_model(args.path, gpu_memory_gib=gpu_memory, size=parse_size(args.size),
                               num_frames=args.frames)
    except IncompleteModel as exc:  # too incomplete to describe: one line per problem
        for problem in exc.problems:
            print(f"genreason: error: {args.path}: {problem}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_json(), indent=1) if args.json else format_report(report))
    for problem in report.problems:
        print(f"genreason: error: {report.path}: {problem}", file=sys.stderr)
    return 2 if report.problems else 0


def cmd_train(args, extra) -> int:
    """Train the embedded model or a LoRA; the trainer's own flags follow the kind."""
    rest = list(args.rest) + list(extra)
    if args.kind == "embedded":
        from gen_reason.train.embedded import main as train_embedded_main

        return train_embedded_main(rest)
    from gen_reason.train.lora import main as train_lora_main

    return train_lora_main(rest)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = ArgumentParser(
        prog="genreason",
        description="Reasoning via video generation: make puzzles, generate solution videos, referee them.",
        epilog="Dotted flags override config fields, e.g. --task.skin dark --task.wall_style thin.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_tasks, _add_puzzle, _add_make_dataset, _add_solve, _add_score, _add_compare_referees, _add_eval,
                _add_probe, _add_train, _add_inspect_model, _add_report):
        add(sub)
    return parser


def _add_tasks(sub) -> None:
    """Add ``genreason tasks`` and its flags to the subcommands ``sub``."""
    p = sub.add_parser("tasks", help="list the puzzle tasks")
    p.set_defaults(func=cmd_tasks)


def _add_puzzle(sub) -> None:
    """Add ``genreason puzzle`` and its flags to the subcommands ``sub``."""
    p = sub.add_parser("puzzle", help="make one puzzle and write its image and ground-truth video",
                       description="Make one puzzle; writes puzzle.png, solution.mp4/.gif, a filmstrip and instance.json.")
    p.add_argument("--task", default="maze/grid", help="task name (see `genreason tasks`); default maze/grid")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--difficulty", default="easy", help="easy, medium, hard, or a size such as 5x5 for grid mazes")
    p.add_argument("--frames", type=_frames, default=None, help="total frames of the solution video (default: natural)")
    p.add_argument("--out", default=None, help="output folder (default out/puzzle/<uid>)")
    p.set_defaults(func=cmd_puzzle, dotted=True)


def _add_make_dataset(sub) -> None:
    """Add ``genreason make-dataset`` and its flags to the subcommands ``sub``."""
    p = sub.add_parser("make-dataset", help="write a reproducible dataset of puzzles",
                       description="Write first-frame PNGs, solution MP4s, metadata.jsonl and metadata.csv. "
                                   "Parallel, resumable, byte-identical for the same arguments.")
    p.add_argument("--task", default="maze/grid")
    p.add_argument("--n", type=_count, required=True, help="number of instances")
    p.add_argument("--difficulty", default="easy", help="comma-separated difficulties, taken round-robin")
    p.add_argument("--seed", type=_seed, default=0, help="item i uses seed SEED + i")
    p.add_argument("--frames", type=_frames, default=-1,
                   help="frames per solution video, or 'natural' (default 49; natural for --format vrbench)")
    p.add_argument("--format", default="genreason", choices=["genreason", "vrbench", "diffsynth"],
                   help="genreason (default), vrbench (VR-Bench's <game>/<skin>/<difficulty> tree and state "
                        "files, maze family only) or diffsynth (metadata.csv with video,prompt,input_image)")
    p.add_argument("--no-video", action="store_true", help="write first frames and metadata only")
    p.add_argument("--test-fraction", type=_fraction, default=0.0, help="share of puzzles in the test split (by canonical hash)")
    p.add_argument("--dedupe", action="store_true", help="drop repeated puzzles (same canonical hash)")
    p.add_argument("--crf", type=_int_in(0, 51), default=18, help="H.264 quality of the videos (lower is better)")
    p.add_argument("--lossless", action="store_true",
                   help="RGB H.264 whose frames decode bit for bit (training data; fewer players show "
                        "it; --crf does not apply)")
    p.add_argument("--workers", type=_count, default=None, help="processes (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_make_dataset, dotted=True)


def _add_solve(sub) -> None:
    """Add ``genreason solve`` and its flags to the subcommands ``sub``."""
    p = sub.add_parser("solve", help="solve one puzzle with a video model and referee the video",
                       description="Make a puzzle, generate the video of its solution, score it, write "
                                   "generated.mp4, side_by_side.gif, puzzle.png and score.json.")
    p.add_argument("--task", default="maze", help="task name (default maze = maze/grid)")
    p.add_argument("--difficulty", default=None, help="default: what the model was trained for")
    p.add_argument("--seed", type=_seed, default=None, help="instance seed (default: a fresh random one)")
    p.add_argument("--model", default="embedded", help="'embedded' (shipped) or a local diffusers model folder")
    p.add_argument("--lora", default=None, help="a LoRA folder to load on top of the model")
    from gen_reason.solvers.registry import solver_names  # the registry, plugins included: no copied list

    p.add_argument("--solver", default="single", help=f"one of {', '.join(solver_names())} (default single)")
    p.add_argument("--vlm", default=None, metavar="URL_OR_FOLDER",
                   help="the VLM of videotpo, closed-loop and best-of-n's selector: an OpenAI-compatible server "
                        "(vLLM, SGLang, llama.cpp: http://host:8000[/v1][#MODEL]; the model is asked of /v1/models) "
                        "or a local transformers VLM folder (Qwen2.5-VL, Qwen3-VL, Gemma 3, ...); with closed-loop "
                        "the VLM plans and judges (--solver.planner/--solver.judge override)")
    p.add_argument("--frames", type=_int_in(1, 2000), default=None, help="frames to generate (default: the model's)")
    p.add_argument("--steps", type=_count, default=None, help="denoising steps (default: the model's)")
    p.add_argument("--out", default="out/solve", help="output folder (default out/solve)")
    add_model_arguments(p)
    p.set_defaults(func=cmd_solve, dotted=True)


def _add_score(sub) -> None:
    """Add ``genreason score`` and its flags to the subcommands ``sub``."""
    p = sub.add_parser("score", help="referee generated videos",
                       description="Score one video against an instance JSON, or a folder of videos against a "
                                   "dataset (files named <uid>*.mp4) or VR-Bench levels (files named "
                                   "<difficulty>_<NNNN>[_*].mp4). Prints a table; writes scores.json and a "
                                   "debug strip per video.")
    p.add_argument("video", help="a video file, or a folder of videos")
    p.add_argument("--instance", default=None, help="instance JSON (from `genreason puzzle` or a dataset record)")
    p.add_argument("--dataset", default=None, help="dataset folder the videos answer")
    p.add_argument("--vrbench", default=None, metavar="DIR",
                   help="VR-Bench levels the videos answer (<game>/<skin>/<difficulty>/{states,images,videos})")
    from gen_reason.verifiers.registry import KINDS

    p.add_argument("--kind", default="reference", choices=list(KINDS))
    p.add_argument("--out", default=None,
                   help="run folder for config.yaml, scores.jsonl, scores.json and debug strips (a folder of "
                        "videos: default VIDEO/scores); a rerun resumes it, with other flags it is refused")
    p.set_defaults(func=cmd_score)


def _add_compare_referees(sub) -> None:
    """Add ``genreason compare-referees`` and its flags to the subcommands ``sub``."""
    p = sub.add_parser("compare-referees", help="where our referee and VR-Bench's disagree, and why",
                       description="Score videos named after VR-Bench levels with our referee and report strict "
                                   "success beside VR-Bench's lenient success; with --vrbench-repo, also run "
                                   "VR-Bench's own evaluator from that local checkout and report disagreements.")
    p.add_argument("--videos", required=True, help="a video or a folder of videos (<difficulty>_<NNNN>[_*].mp4)")
    p.add_argument("--levels", required=True, help="VR-Bench levels (<game>/<skin>/<difficulty>/states/*.json)")
    p.add_argument("--vrbench-repo", default=None, help="a local VR-Bench checkout to run its evaluator from")
    p.add_argument("--tracker", default="ncc", choices=["ncc", "csrt", "optical_flow"],
                   help="VR-Bench's tracker (default ncc, its default)")
    p.add_argument("--out", default=None, help="where compare.json goes")
    p.set_defaults(func=cmd_compare_referees)


def _add_eval(sub) -> None:
    """Add ``genreason eval`` and its flags to the subcommands ``sub``."""
    p = sub.add_parser("eval", help="run an evaluation (resumable)",
                       description="Run instances x solvers from a YAML config; every field can be overridden "
                                   "(--data.n 50 --model.steps 30). Rerunning the same config resumes. Several "
                                   "GPUs: `accelerate launch --multi_gpu --num_processes N -m gen_reason eval ...` "
                                   "(each process takes every N-th item on its own GPU; rank 0 merges).")
    p.add_argument("--config", required=True, help="YAML config (see configs/)")
    p.add_argument("--out", default=None, help="run folder (overrides the config's out)")
    p.add_argument("--vlm", default=None, metavar="URL_OR_FOLDER",
                   help="the VLM of the config's VLM solvers (overrides the config's vlm): a server URL or a model folder")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_eval, dotted=True)


def _add_probe(sub) -> None:
    """Add ``genreason probe`` and its flags to the subcommands ``sub``."""
    p = sub.add_parser("probe", help="chain-of-steps probe: what the model 'thinks' at every step and layer",
                       description="Decode the predicted clean video at every denoising step, score it with the "
                                   "referee (emergence curve), measure exploration across seeds, run "
                                   "interventions, and train per-layer linear probes. Writes figures, tensors "
                                   "(safetensors) and summary.json. More options: --probe.FIELD VALUE.")
    p.add_argument("--task", default="maze")
    p.add_argument("--model", default="embedded")
    p.add_argument("--lora", default=None)
    p.add_argument("--difficulty", default=None)
    p.add_argument("--instances", type=_count, default=8, help="puzzles to probe")
    p.add_argument("--seeds", type=_count, default=4, help="seeds per puzzle (one batch)")
    p.add_argument("--steps", type=_count, default=None, help="denoising steps (default: the model's)")
    p.add_argument("--every", type=_count, default=4, help="decode x0 every k-th step")
    p.add_argument("--no-layers", action="store_true", help="skip the layer probe")
    p.add_argument("--no-interventions", action="store_true", help="skip the interventions")
    p.add_argument("--out", default="out/probe",
                   help="run folder: a rerun with the same settings resumes it (probes only the puzzles not "
                        "stored yet); other settings are refused")
    add_model_arguments(p)
    p.set_defaults(func=cmd_probe, dotted=True)


def _add_train(sub) -> None:
    """Add ``genreason train`` and its flags to the subcommands ``sub``."""
    p = sub.add_parser("train", help="train the embedded model or a LoRA (resumable)",
                       description="`genreason train embedded --config configs/embedded_maze.yaml` or "
                                   "`genreason train lora --model PATH --data DIR --config configs/lora_wan.yaml`; "
                                   "`genreason train KIND --help` lists the trainer's flags.",
                       add_help=True)
    p.add_argument("kind", choices=["embedded", "lora"])
    p.add_argument("rest", nargs=argparse.REMAINDER, help="the trainer's own flags")
    p.set_defaults(func=cmd_train, dotted=True)


def _add_inspect_model(sub) -> None:
    """Add ``genreason inspect-model`` and its flags to the subcommands ``sub``."""
    p = sub.add_parser("inspect-model", help="what a model folder is, whether it is complete, what memory it needs",
                       description="Read a diffusers model folder's configs (no weights needed): family, pipeline, "
                                   "components and the dtype each loads in, default size and frames, missing or "
                                   "half-downloaded files (exit 2), and the estimated peak GPU memory with and "
                                   "without offload and VAE tiling, and the largest batch that fits.")
    p.add_argument("path", help="a local diffusers model folder")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--gpu-memory", default=None, metavar="GIB",
                   help="the GPU to plan for, in GiB (default: the visible GPU, else 80)")
    p.add_argument("--size", default=None, metavar="HxW", help="plan for this video size (default: the model's)")
    p.add_argument("--frames", type=int, default=None, help="plan for this many frames (default: the model's)")
    p.set_defaults(func=cmd_inspect_model)


def _add_report(sub) -> None:
    """Add ``genreason report`` and its flags to the subcommands ``sub``."""
    p = sub.add_parser("report", help="write the report of one or more runs")
    p.add_argument("runs", nargs="+", help="run folders")
    p.add_argument("--out", default=None, help="report folder (default: the run folder, or ./report for several)")
    p.set_defaults(func=cmd_report)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``genreason`` console script."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if not getattr(args, "func", None):
            if extra:  # `genreason --bogus`: a mistake, said in one line
                parser.error(f"unrecognised argument {extra[0]!r}; give a command first")
            parser.print_help()
            return 2
        if extra and not getattr(args, "dotted", False):
            raise UserError(f"unrecognised argument {extra[0]!r} (see genreason {args.command} --help)")
        code = int(args.func(args, extra) or 0)
        sys.stdout.flush()  # inside the handlers: a reader that left is met here, not at exit
        return code
    except UserError as exc:
        print(f"genreason: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genreason: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `genreason solve | head -1`: the reader left; stop quietly, as Unix tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141


if __name__ == "__main__":
    sys.exit(main())
