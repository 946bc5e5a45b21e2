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

from gen_reason.errors import UserError


def parse_dotted(extra: list[str], sections: tuple[str, ...]) -> dict[str, dict]:
    """Turn ``["--task.skin", "dark", "--task.trail=true"]`` into ``{"task": {"skin": "dark", "trail": True}}``.

    Values are parsed as YAML scalars (numbers, booleans, null, lists). Anything that is
    not ``--<section>.<field> value`` for a known section is a :class:`UserError`.
    """
    import yaml

    out: dict[str, dict] = {s: {} for s in sections}
    i = 0
    while i < len(extra):
        arg = extra[i]
        if not arg.startswith("--") or "." not in arg:
            raise UserError(f"unrecognised argument {arg!r} (see --help)")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(extra):
                raise UserError(f"{arg} needs a value")
            value = extra[i + 1]
            i += 1
        section, _, name = key.partition(".")
        if section not in out or not name:
            raise UserError(f"unrecognised argument {arg!r}; dotted flags are --{{{','.join(sections)}}}.FIELD")
        out[section][name.replace("-", "_")] = yaml.safe_load(value)
        i += 1
    return out


def _frames(value: str) -> int | None:
    if value in ("natural", "none", "None"):
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'natural', got {value!r}") from None


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
    out = _writable_dir(Path(args.out or f"out/puzzle/{instance.uid}"))
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
    """Write a dataset of puzzles (first frames, solution videos, metadata)."""
    from gen_reason.datasets import DatasetSpec, make_dataset

    overrides = parse_dotted(extra, ("task",))
    spec = DatasetSpec(
        task=args.task,
        n=args.n,
        difficulties=tuple(d for d in args.difficulty.split(",") if d),
        seed=args.seed,
        num_frames=args.frames,
        video=not args.no_video,
        test_fraction=args.test_fraction,
        dedupe=args.dedupe,
        task_config=overrides["task"],
        crf=args.crf,
    )
    out = make_dataset(spec, args.out, workers=args.workers, progress=not args.quiet)
    print(f"wrote {spec.n} instances of {spec.task} to {out} (metadata.jsonl, metadata.csv)")
    return 0


def _writable_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to {path}: {exc.strerror or exc}") from None
    return path


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="genreason",
        description="Reasoning via video generation: make puzzles, generate solution videos, referee them.",
        epilog="Dotted flags override config fields, e.g. --task.skin dark --task.wall_style thin.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("tasks", help="list the puzzle tasks")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("puzzle", help="make one puzzle and write its image and ground-truth video",
                       description="Make one puzzle; writes puzzle.png, solution.mp4/.gif, a filmstrip and instance.json.")
    p.add_argument("--task", default="maze/grid", help="task name (see `genreason tasks`); default maze/grid")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--difficulty", default="easy", help="easy, medium, hard, or a size such as 5x5 for grid mazes")
    p.add_argument("--frames", type=_frames, default=None, help="total frames of the solution video (default: natural)")
    p.add_argument("--out", default=None, help="output folder (default out/puzzle/<uid>)")
    p.set_defaults(func=cmd_puzzle)

    p = sub.add_parser("make-dataset", help="write a reproducible dataset of puzzles",
                       description="Write first-frame PNGs, solution MP4s, metadata.jsonl and metadata.csv. "
                                   "Parallel, resumable, byte-identical for the same arguments.")
    p.add_argument("--task", default="maze/grid")
    p.add_argument("--n", type=int, required=True, help="number of instances")
    p.add_argument("--difficulty", default="easy", help="comma-separated difficulties, taken round-robin")
    p.add_argument("--seed", type=int, default=0, help="item i uses seed SEED + i")
    p.add_argument("--frames", type=_frames, default=49, help="frames per solution video, or 'natural' (default 49)")
    p.add_argument("--no-video", action="store_true", help="write first frames and metadata only")
    p.add_argument("--test-fraction", type=float, default=0.0, help="share of puzzles in the test split (by canonical hash)")
    p.add_argument("--dedupe", action="store_true", help="drop repeated puzzles (same canonical hash)")
    p.add_argument("--crf", type=int, default=18, help="H.264 quality of the videos (lower is better)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_make_dataset)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``genreason`` console script."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args, extra) or 0)
    except UserError as exc:
        print(f"genreason: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genreason: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
