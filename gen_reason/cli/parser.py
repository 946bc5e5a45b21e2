"""The flags of every ``genreason`` subcommand (:func:`build_parser`); what each subcommand then
does is in :mod:`gen_reason.cli.commands`.
"""

from __future__ import annotations

import argparse

from gen_reason.cli.commands import cmd_compare_referees, cmd_eval, cmd_inspect_model, cmd_make_dataset, cmd_probe, cmd_puzzle, cmd_report, cmd_score, cmd_solve, cmd_tasks, cmd_train
from gen_reason.config import ArgumentParser
from gen_reason.models.options import add_model_arguments


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


def _add_generation_flags(p) -> None:
    """The flags ``solve`` and ``probe`` share: which puzzles (``--task``, ``--difficulty``) and
    which model generates them (``--model``, ``--lora``, ``--steps``)."""
    p.add_argument("--task", default="maze", help="task name (default maze = maze/grid)")
    p.add_argument("--difficulty", default=None, help="default: what the model was trained for")
    p.add_argument("--model", default="embedded", help="'embedded' (shipped) or a local diffusers model folder")
    p.add_argument("--lora", default=None, help="a LoRA folder to load on top of the model")
    p.add_argument("--steps", type=_count, default=None, help="denoising steps (default: the model's)")


def _add_solve(sub) -> None:
    """Add ``genreason solve`` and its flags to the subcommands ``sub``."""
    p = sub.add_parser("solve", help="solve one puzzle with a video model and referee the video",
                       description="Make a puzzle, generate the video of its solution, score it, write "
                                   "generated.mp4, side_by_side.gif, puzzle.png and score.json.")
    _add_generation_flags(p)
    p.add_argument("--seed", type=_seed, default=None, help="instance seed (default: a fresh random one)")
    from gen_reason.solvers.registry import solver_names  # the registry, plugins included: no copied list

    p.add_argument("--solver", default="single", help=f"one of {', '.join(solver_names())} (default single)")
    p.add_argument("--vlm", default=None, metavar="URL_OR_FOLDER",
                   help="the VLM of videotpo, closed-loop and best-of-n's selector: an OpenAI-compatible server "
                        "(vLLM, SGLang, llama.cpp: http://host:8000[/v1][#MODEL]; the model is asked of /v1/models) "
                        "or a local transformers VLM folder (Qwen2.5-VL, Qwen3-VL, Gemma 3, ...); with closed-loop "
                        "the VLM plans and judges (--solver.planner/--solver.judge override)")
    p.add_argument("--frames", type=_int_in(1, 2000), default=None, help="frames to generate (default: the model's)")
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
    _add_generation_flags(p)
    p.add_argument("--instances", type=_count, default=8, help="puzzles to probe")
    p.add_argument("--seeds", type=_count, default=4, help="seeds per puzzle (one batch)")
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
    p.add_argument("--frames", type=_count, default=None, help="plan for this many frames (default: the model's)")
    p.set_defaults(func=cmd_inspect_model)


def _add_report(sub) -> None:
    """Add ``genreason report`` and its flags to the subcommands ``sub``."""
    p = sub.add_parser("report", help="write the report of one or more runs")
    p.add_argument("runs", nargs="+", help="run folders")
    p.add_argument("--out", default=None, help="report folder (default: the run folder, or ./report for several)")
    p.set_defaults(func=cmd_report)
