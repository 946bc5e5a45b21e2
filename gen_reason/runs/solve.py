"""Solve one puzzle end to end: make it, ask the model, referee the video, write the files.

This is what ``genreason solve`` runs, and the three-line notebook version::

    from gen_reason import solve
    result = solve("maze")          # the embedded model, a fresh 5x5 maze
    result                          # shows the verdict and the side-by-side video inline
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gen_reason.errors import UserError, check_writable
from gen_reason.puzzles import Instance


@dataclass
class SolveResult:
    """What one solve produced: the instance, the attempt, both verdicts and the files."""

    instance: Instance
    attempt: object
    rule_score: object
    reference_score: object
    files: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def success(self) -> bool:
        """Strict success: goal reached with no rule broken (the reference verdict)."""
        return bool(self.reference_score.success)

    def summary(self) -> str:
        """A few lines: verdict, key metrics, reason, where the files are."""
        m = self.reference_score.metrics
        verdict = "SOLVED" if self.success else "FAILED"
        keys = ("success_lenient", "exact_match", "precision_rate", "step_deviation", "maze_fidelity")
        metrics = ", ".join(f"{k}={m[k]:.3f}" for k in keys if k in m and m[k] == m[k])
        lines = [f"{verdict}: {self.instance.task} {self.instance.difficulty} seed {self.instance.seed} "
                 f"({self.seconds:.1f} s, solver {getattr(self.attempt, 'solver', '?')})"]
        if metrics:
            lines.append(f"  {metrics}")
        if self.reference_score.reason:
            lines.append(f"  reason: {self.reference_score.reason}")
        if self.files:
            lines.append(f"  files: {Path(self.files['video']).parent}/ (" + ", ".join(Path(p).name for p in self.files.values()) + ")")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import base64
        import html

        body = f"<pre>{html.escape(self.summary())}</pre>"
        gif = self.files.get("side_by_side")
        if gif and Path(gif).exists():
            data = base64.b64encode(Path(gif).read_bytes()).decode()
            body += f'<img src="data:image/gif;base64,{data}" style="image-rendering:pixelated;width:480px">'
        return body

    def __repr__(self) -> str:
        return self.summary()


def upscale(video: np.ndarray, min_side: int = 256) -> np.ndarray:
    """Nearest-neighbour upscale of a small video so people can see it (integer factor)."""
    factor = max(1, int(np.ceil(min_side / max(video.shape[1:3]))))
    return np.repeat(np.repeat(video, factor, axis=-3), factor, axis=-2) if factor > 1 else video


def solve(task: str = "maze", *, difficulty: str | None = None, seed: int | None = None, model: str = "embedded",
          lora: str | None = None, solver: str = "single", solver_params: dict | None = None,
          frames: int | None = None, steps: int | None = None, out: str | Path | None = "out/solve",
          task_config: dict | None = None, generator=None, vlm=None, size=None, dtype: str | None = None,
          device: str | None = None, offload: str | None = None, vae_tiling=None, attention: str | None = None,
          compile: bool | None = None, max_batch=None) -> SolveResult:
    """Make a puzzle, have the model solve it, referee the video, and write the files.

    ``size`` (``"480x832"`` or ``(480, 832)``), ``dtype``, ``device``, ``offload``,
    ``vae_tiling``, ``attention``, ``compile``, ``max_batch``: the model options every
    command shares (:mod:`gen_reason.models.options`; ``None``: the model's default or
    the memory planner's choice), checked before anything loads.

    ``vlm``: a server URL or model folder (``--vlm``, see :func:`gen_reason.vlm.load_vlm`)
    or a :class:`gen_reason.vlm.VLM`, for the solvers that use one (see :func:`solver_vlm`).
    ``seed=None`` draws a fresh random instance. Files in ``out``: ``generated.mp4``,
    ``side_by_side.gif`` (generated | ground truth, with the extracted track drawn),
    ``puzzle.png``, ``score.json``, ``config.yaml`` (the resolved settings, the seed drawn
    included). ``out=None`` writes nothing.
    """
    from gen_reason.models.options import check_model_options

    model_options = check_model_options(size=size, dtype=dtype, device=device, offload=offload, vae_tiling=vae_tiling,
                                        attention=attention, compile=compile, max_batch=max_batch)
    _check_before_work(frames=frames, steps=steps, model=model, lora=lora, out=out, generator=generator)
    started = time.perf_counter()
    instance, defaults = _make_instance(task, difficulty, seed, task_config, model, generator)
    vlm, solver_params = solver_vlm(solver, vlm, solver_params or {})
    from gen_reason.solvers.registry import get_solver

    solver_obj = get_solver(solver, vlm=vlm, **solver_params)
    if generator is None:
        from gen_reason.models.loading import load_generator

        num_frames = frames if frames is not None else defaults.get("num_frames")
        generator = load_generator(model, lora=lora, steps=steps, num_frames=num_frames, **model_options)
    result = _solve_and_referee(instance, solver_obj, generator, started)
    if out is not None:
        resolved = {"task": instance.task, "difficulty": instance.difficulty, "seed": instance.seed,
                    "task_config": instance.config, "model": str(model), "lora": None if lora is None else str(lora),
                    "solver": solver, "solver_params": solver_params, "frames": len(result.attempt.video),
                    "steps": steps, "model_options": model_options,
                    "vlm": vlm if vlm is None or isinstance(vlm, str) else type(vlm).__name__}
        result.files = _write_files(Path(out), result, fps=getattr(generator, "fps", 8), config=resolved)
    return result


def _check_before_work(*, frames, steps, model, lora, out, generator) -> None:
    """One-line errors for a bad count, a missing model or LoRA, or an unwritable ``out``,
    before anything is made (the generation takes a while)."""
    for name, value in (("frames", frames), ("steps", steps)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise UserError(f"{name} must be a positive integer; got {value!r}")
    if generator is None:
        from gen_reason.models.loading import check_model

        check_model(model, lora)
    if out is not None:
        check_writable(out)


def _make_instance(task: str, difficulty: str | None, seed: int | None, task_config: dict | None, model: str,
                   generator) -> tuple[Instance, dict]:
    """The puzzle (a fresh random seed when ``seed`` is None) with the model folder's
    puzzle settings under the caller's, and those settings (none for a generator in hand)."""
    from gen_reason.models.loading import model_task_defaults, resolve_model_path, task_for_model

    defaults = model_task_defaults(resolve_model_path(model)) if generator is None else {}
    difficulty = difficulty or defaults.get("difficulty", "easy")
    task_obj = task_for_model(defaults, task, difficulty, task_config, model=model)
    seed = random.SystemRandom().randrange(1_000_000, 2**31) if seed is None else seed
    return task_obj.generate(seed, difficulty), defaults


def _solve_and_referee(instance: Instance, solver_obj, generator, started: float) -> SolveResult:
    """The solver's attempt (it may consult the rule verifier) and both verdicts on its video:
    the rule one the solver saw for the chosen candidate (else the reference), the reference one."""
    from gen_reason.verifiers.registry import verifier_for

    attempt = solver_obj.solve(instance, generator, verifier_for(instance.task, "rule"), None)
    reference = verifier_for(instance.task, "reference").score(instance, attempt.video)
    rule = next((c.score for c in attempt.candidates if c.video is attempt.video), None) \
        if hasattr(attempt, "candidates") else None
    return SolveResult(instance, attempt, rule or reference, reference, seconds=time.perf_counter() - started)


def _write_files(out: Path, result: SolveResult, fps: int, config: dict | None = None) -> dict[str, str]:
    """``generated.mp4``, ``side_by_side.gif`` (the tracked video | the ground truth),
    ``puzzle.png``, ``score.json`` and ``config.yaml`` (the resolved settings: the seed drawn,
    the task settings the model supplied, the model options) in ``out``; returns their paths."""
    from gen_reason.config import dump_yaml
    from gen_reason.folders import write_atomic
    from gen_reason.video import side_by_side, write_gif, write_image, write_mp4

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write to {out}: {exc.strerror or exc}") from None
    instance, attempt, reference = result.instance, result.attempt, result.reference_score
    video = attempt.video
    truth = instance.solution_video(len(video))
    tracked = draw_track(video, reference.to_dict()["trace"], instance.spec["image_size"])
    files = {
        "video": str(write_mp4(out / "generated.mp4", video, fps=fps)),
        "side_by_side": str(write_gif(out / "side_by_side.gif", upscale(side_by_side(tracked, truth)), fps=4)),
        "puzzle": str(write_image(out / "puzzle.png", upscale(instance.first_frame[None])[0])),
        "score": str(out / "score.json"),
    }
    if config is not None:
        files["config"] = str(write_atomic(out / "config.yaml", dump_yaml(config)))
    (out / "score.json").write_text(json.dumps({
        "instance": instance.to_dict(), "reference": reference.to_dict(),
        "attempt": attempt.to_dict() if hasattr(attempt, "to_dict") else {},
        "seconds": result.seconds}, indent=1, sort_keys=True))
    return files


#: Line colours of the tracks :func:`draw_track` draws (RGB), each over a black outline.
TRACK_COLOURS = {"agent": (255, 140, 0), "box": (0, 170, 255), "piece": (255, 0, 255)}


def trace_tracks(trace: dict) -> list[tuple[list, tuple[int, int, int]]]:
    """The per-frame tracks a referee trace holds, each with its line colour: the agent's
    and the sokoban box's (``agent_positions``, ``box_positions``: maze family) and every
    piece's (``piece_positions``: tangram). Positions are ``[x, y]`` or ``None`` (lost)."""
    tracks = []
    for key, colour in (("agent_positions", "agent"), ("box_positions", "box")):
        if trace.get(key):
            tracks.append((trace[key], TRACK_COLOURS[colour]))
    for positions in (trace.get("piece_positions") or {}).values():
        tracks.append((positions, TRACK_COLOURS["piece"]))
    return tracks


def solver_vlm(solver: str, vlm, params: dict) -> tuple[object, dict]:
    """The VLM for ``solver`` (loaded from a ``--vlm`` URL or folder) and its params with the VLM's roles on.

    ``vlm=None`` changes nothing. A solver that takes no VLM refuses one (a user mistake,
    said before anything loads). A solver's ``vlm_roles`` (closed-loop: the VLM plans and
    judges) apply unless ``params`` set them.
    """
    if vlm is None:
        return None, params
    from gen_reason.solvers.base import VLMSolverConfig
    from gen_reason.solvers.registry import SOLVERS, solver_names

    solver_class = SOLVERS.get(solver)
    if not issubclass(solver_class.Config, VLMSolverConfig):
        users = [name for name in solver_names() if issubclass(SOLVERS.get(name).Config, VLMSolverConfig)]
        raise UserError(f"solver {solver} uses no VLM; drop --vlm, or pick one that does: {', '.join(users)}")
    params = {**getattr(solver_class, "vlm_roles", {}), **params}
    if isinstance(vlm, (str, Path)):
        from gen_reason.vlm import load_vlm

        vlm = load_vlm(str(vlm))
    return vlm, params


def draw_track(video: np.ndarray, trace: dict, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """The video with the referee's extracted tracks (:func:`trace_tracks`) drawn as lines
    that grow frame by frame. Positions are in the puzzle's pixels: ``image_size`` (H, W),
    by default the trace's own ``image_size``, else the video's size."""
    import cv2

    tracks = trace_tracks(trace)
    if not tracks:
        return video
    h, w = video.shape[1:3]
    size_h, size_w = image_size or trace.get("image_size") or (h, w)
    sx, sy = w / size_w, h / size_h
    thick = max(1, int(round(min(h, w) / 160)))
    video = video.copy()
    for positions, colour in tracks:
        pts = [None if p is None else (int(round((p[0] + 0.5) * sx - 0.5)), int(round((p[1] + 0.5) * sy - 0.5)))
               for p in positions]
        for t in range(min(len(video), len(pts))):
            seen = [p for p in pts[: t + 1] if p is not None]
            if len(seen) > 1:
                line = [np.array(seen, np.int32).reshape(-1, 1, 2)]
                cv2.polylines(video[t], line, False, (0, 0, 0), thick + 2)
                cv2.polylines(video[t], line, False, colour, thick)
    return video
