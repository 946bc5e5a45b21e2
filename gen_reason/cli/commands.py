"""What each ``genreason`` subcommand does, given its parsed flags (``args``) and its dotted
flags (``extra``); :mod:`gen_reason.cli.parser` says which flags each takes. A user mistake is
a :class:`~gen_reason.errors.UserError`, which :func:`gen_reason.cli.main` prints in one line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gen_reason.errors import UserError, writable_dir


def parse_dotted(extra: list[str], sections: tuple[str, ...]) -> dict[str, dict]:
    """Turn ``["--task.skin", "dark", "--task.trail=true"]`` into ``{"task": {"skin": "dark", "trail": True}}``.

    The one dotted flag grammar (:func:`gen_reason.config.parse_flags`): values are YAML
    scalars (numbers, booleans, null, lists); anything that is not ``--<section>.<field>
    value`` for a known section is a :class:`UserError`.
    """
    from gen_reason.config import nest, parse_flags

    return {section: {} for section in sections} | nest(parse_flags(extra, sections))


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

    target, out = Path(args.video), Path(args.out) if args.out else None  # None: each mode's default
    if sum(bool(x) for x in (args.instance, args.dataset, args.vrbench)) > 1:
        raise UserError("give only one of --instance, --dataset, --vrbench")
    if args.vrbench:
        rows = score_vrbench(target, Path(args.vrbench), kind=args.kind, out=out)
    elif args.instance:
        rows = [score_one(target, Path(args.instance), kind=args.kind, out=out)]
    elif args.dataset:
        rows = score_folder(target, Path(args.dataset), kind=args.kind, out=out)
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
