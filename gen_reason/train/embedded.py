"""Training the embedded default model (``genreason train embedded --config configs/embedded_maze.yaml``).

One run is one folder (:class:`~gen_reason.folders.RunFolder`, as every long command's):
``config.yaml`` (the resolved config; a rerun with another is refused), ``checkpoints/step-*/``
(every trainer's layout, :class:`~gen_reason.train.run_folder.RunCheckpoints`: the weights, EMA,
optimizer, RNG states, step, the open loss window; safetensors plus JSON, never a pickle;
a new one every few minutes, the newest ``checkpoints_keep`` kept), ``losses.jsonl``,
``validation.jsonl`` and ``validation.png`` (held-out success as the referee judges it,
over training). A folder of an older genreason, with one ``checkpoint.safetensors``,
resumes and exports too. Rerunning the same command resumes from the checkpoint, and the resumed
run is bit-identical to an uninterrupted one: each batch and each step's noise are pure
functions of ``(seed, step)``. The logs end up as an uninterrupted run's too: rows of
steps after the checkpoint (written before a kill) are dropped on resume and written again.

The steps run in the one training loop (:class:`gen_reason.train.loop.Trainer`, shared with
LoRA and full fine-tuning); this module gives it what is the embedded model's own: the UNet,
rendered batches, the denoising objective (:class:`~gen_reason.train.losses.DenoisingObjective`),
the learning-rate curve, validation, and the exported pipeline.

Run it as a module so the thread settings come before torch is imported::

    python -m gen_reason.train.embedded --config configs/embedded_maze.yaml --out runs/embedded
"""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting make every step ~25x slower on a shared 2-core
# machine; this must be set before torch is imported to take effect.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import dataclasses  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, ClassVar, Sequence  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gen_reason.errors import UserError  # noqa: E402
from gen_reason.models.embedded import EmbeddedVideoPipeline  # noqa: E402
from gen_reason.models.embedded_parts import make_scheduler, make_unet  # noqa: E402
from gen_reason.folders import JsonlLog, RunFolder  # noqa: E402
from gen_reason.train.checkpoint import STATE_FILE, Checkpoint, list_checkpoints, load_latest, load_state  # noqa: E402
from gen_reason.train.data import PAD_COLOR, MazeVideoData, batch_loader  # noqa: E402
from gen_reason.train.validation import load_referee, plot_embedded_validation, validate_model  # noqa: E402
from gen_reason.train.loop import Progress, Trainer, start_trackers  # noqa: E402
from gen_reason.train.settings import TrainingConfig, check_tracker  # noqa: E402
from gen_reason.train.run_folder import RunCheckpoints, open_run, training_logs  # noqa: E402
from gen_reason.train.losses import DenoisingObjective  # noqa: E402
from gen_reason.config import build, config_flags, read_yaml, rename_keys  # noqa: E402
from gen_reason.errors import check_writable  # noqa: E402
from gen_reason.config import ArgumentParser  # noqa: E402

#: The run folder's checkpoints (``step-*/`` folders, as every trainer's).
CHECKPOINTS = "checkpoints"
#: The single checkpoint file of an older genreason's run folder: still resumed and exported from.
CHECKPOINT = "checkpoint.safetensors"
#: The checkpoint an even older genreason wrote (a pickle): never loaded, only recognised.
OLD_CHECKPOINT = "checkpoint.pt"


@dataclass
class EmbeddedTrainConfig(TrainingConfig):
    """Every hyperparameter of an embedded-model run (``configs/embedded_maze.yaml``): the
    settings every trainer shares (:class:`~gen_reason.train.settings.TrainingConfig`, with this
    trainer's defaults) and the embedded model's own."""

    RESUMABLE: ClassVar[frozenset[str]] = TrainingConfig.RESUMABLE | {
        "validation_sizes", "validation_steps", "validation_eta", "data_workers", "sample_steps", "sample_eta"}

    # the shared settings, with this trainer's defaults
    max_steps: int | None = 8000  # must be set: rendered data never runs out
    batch_size: int = 32
    learning_rate: float = 8e-4
    lr_scheduler: str = "warmup_hold_decay"
    warmup_steps: int = 200  # linear warm-up from 0
    decay_steps: int = 1000  # then constant, then linear decay to 0 over the last decay_steps
    adam_beta2: float = 0.99
    weight_decay: float = 0.0
    ema_decay: float | None = 0.999  # must be set: validation and the exported pipeline use the EMA weights
    log_every: int = 50
    checkpoint_every: int = 0
    checkpoint_minutes: float | None = 3.0
    validate_every: int = 1000
    validation_count: int = 64
    # data: maze sizes (rooms per side) and their weights; frames and working size
    sizes: list[int] = field(default_factory=lambda: [3, 4, 5])
    size_weights: list[float] = field(default_factory=lambda: [0.15, 0.3, 0.55])
    num_frames: int = 16
    resolution: int = 32
    data_seed: int = 0
    frames_per_move: int | None = None  # None: whole solution over num_frames; k: one room per k frames, then hold
    data_workers: int = 1
    fresh_per_step: int = 32  # new videos per step; fewer than batch_size reuses videos from a pool
    pool_size: int = 1024  # videos kept for reuse when fresh_per_step < batch_size
    # model
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    layers_per_block: int = 1
    attention_levels: list[bool] = field(default_factory=lambda: [False, False, True])
    attention_head_dim: int = 32
    norm_num_groups: int = 16
    num_train_timesteps: int = 1000
    prediction_type: str = "sample"  # "sample" (clean video), "v_prediction" or "epsilon"
    # a second stage starts from these weights: a run folder or its checkpoint, or an exported pipeline folder
    init_from: str | None = None
    threads: int = 2
    # validation and the exported pipeline's sampler
    validation_sizes: list[int] = field(default_factory=lambda: [5])
    validation_steps: int = 50
    validation_eta: float = 0.0  # DDIM eta of validation samples (0 keeps the curves of earlier stages comparable)
    sample_steps: int = 50       # the exported pipeline's default DDIM steps (model_index.json: default_steps)
    sample_eta: float = 0.0      # and its default DDIM eta (default_eta)

    def validate(self) -> None:
        """Raise :class:`UserError` naming the first field of the wrong type or inconsistent value."""
        build(type(self), self.to_dict())  # every field's type, checked as a config file's are
        self.check_training()
        if self.max_steps is None:
            raise UserError("max_steps must be set: the embedded trainer renders data without end")
        if self.ema_decay is None:
            raise UserError("ema_decay must be set: validation and the exported pipeline use the EMA weights")
        if len(self.sizes) != len(self.size_weights) or not self.sizes:
            raise UserError("sizes and size_weights must be non-empty lists of the same length")
        if len(self.attention_levels) != len(self.block_out_channels):
            raise UserError("attention_levels needs one entry per block_out_channels entry")
        if self.resolution % (2 ** (len(self.block_out_channels) - 1)):
            raise UserError("resolution must be divisible by 2 ** (number of UNet levels - 1)")
        if self.prediction_type not in ("sample", "v_prediction", "epsilon"):
            raise UserError(f"prediction_type must be sample, v_prediction or epsilon; got {self.prediction_type!r}")
        if self.sample_eta < 0 or self.validation_eta < 0:
            raise UserError("sample_eta and validation_eta must be >= 0")
        for name in ("num_frames", "threads", "validation_steps", "sample_steps", "resolution", "layers_per_block",
                     "attention_head_dim", "norm_num_groups", "num_train_timesteps", "fresh_per_step", "pool_size"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"{name} must be >= 1; got {getattr(self, name)}")
        if not self.data_workers >= 0:
            raise UserError(f"data_workers must be >= 0; got {self.data_workers}")
        if any(s < 2 for s in self.sizes) or any(w < 0 for w in self.size_weights) or not sum(self.size_weights) > 0:
            raise UserError("sizes must be >= 2 rooms and size_weights >= 0 with a positive sum")

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict | None = None) -> "EmbeddedTrainConfig":
        """Load a YAML config; unknown keys, wrong types, an empty file or invalid YAML are a
        :class:`UserError` (a typo must not pass silently)."""
        data = read_yaml(path)
        if not data:
            raise UserError(f"config {path} is empty; it must hold the run's settings")
        data = rename_keys(cls, data)
        data.update(rename_keys(cls, overrides or {}))
        config = build(cls, data)
        config.validate()
        return config

    def to_dict(self) -> dict:
        """Plain dict (for ``config.yaml`` in the run folder)."""
        return dataclasses.asdict(self)

    @property
    def data(self) -> MazeVideoData:
        """The data description this config trains on."""
        return MazeVideoData(tuple(self.sizes), tuple(self.size_weights), self.num_frames, self.resolution,
                             self.data_seed, self.frames_per_move)

    def build_unet(self):
        """A freshly initialised UNet of this config's shape (seeded by ``seed``)."""
        torch.manual_seed(self.seed)
        return make_unet(self.num_frames, self.resolution, self.block_out_channels, self.layers_per_block,
                         self.attention_levels, self.attention_head_dim, self.norm_num_groups)


# -- checkpoints ------------------------------------------------------------------------------
def checkpoint_state(source: str | Path, parts: Sequence[str] | None = None) -> dict | None:
    """The newest checkpoint of a run, as one dict, or ``None`` when there is none.

    ``source``: a run folder (its newest ``checkpoints/step-*/``, else the single
    ``checkpoint.safetensors`` an older genreason kept), one ``checkpoints/step-*/`` folder,
    or such a file. The dict holds ``config``, ``step``, ``train_seconds`` and
    ``loss_window``, and the saved states by name: ``unet`` (the weights), ``ema``,
    ``optimizer`` and the rest (``parts``: only these, for a folder checkpoint). A
    checkpoint of an even older genreason (a pickle, never loaded) or a damaged one is a
    :class:`UserError`.
    """
    source = Path(source)
    if source.is_file():
        return load_state(source)
    folder = source if (source / STATE_FILE).is_file() else None
    if folder is None:
        latest = list_checkpoints(source / CHECKPOINTS)
        folder = latest[-1] if latest else None
    if folder is None:
        if (source / CHECKPOINT).is_file():
            return load_state(source / CHECKPOINT)
        if (source / OLD_CHECKPOINT).exists():
            raise UserError(f"{source} holds a {OLD_CHECKPOINT} written by an older genreason (a pickle, which is "
                            "never loaded); start over with --no-resume or use a new --out folder")
        return None
    checkpoint = Checkpoint(folder, json.loads((folder / STATE_FILE).read_text()))
    state = dict(checkpoint.state)
    for file in sorted(folder.glob("*.safetensors")):
        name = {"trainable": "unet"}.get(file.stem, file.stem)
        if parts is None or name in parts:
            state[name] = load_state(file)
    return state


def check_resumable(saved: dict, config: EmbeddedTrainConfig, step: int) -> None:
    """Refuse to resume a checkpoint under a config that would change the run.

    ``max_steps`` may move (to train longer or shorter) while the learning-rate decay has
    not begun at either end: until then the schedule is the same constant.
    """
    fixed = config.changed_since(saved)
    if fixed:
        raise UserError(f"the checkpoint was made with other values of {', '.join(fixed)}; "
                        "use a new --out folder or the same config")
    saved_steps = saved.get("max_steps", config.max_steps)
    if saved_steps != config.max_steps:
        config.check_length_change(step, saved_steps, config.max_steps)


def _step_generator(seed: int, step: int) -> torch.Generator:
    # Noise and timesteps of a step depend only on (seed, step): resume needs no RNG stream.
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, step]).generate_state(1)[0]))


# -- the pieces the training loop (gen_reason.train.loop) takes from this trainer ---------------
def restore_legacy(trainer: Trainer, state: dict, accumulation: int = 1) -> Progress:
    """Resume from the single ``checkpoint.safetensors`` an older genreason kept (its next
    checkpoint goes to ``checkpoints/``): ``state`` put back into ``trainer``; where the run stands."""
    trainer.unwrapped.load_state_dict(state["unet"])
    trainer.ema.load_state_dict(state["ema"])
    trainer.ema.to(trainer.accelerator.device)
    trainer.optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    np.random.set_state(state["numpy_rng"])
    random.setstate(state["python_rng"])
    step = int(state["step"])
    trainer.lr_scheduler.load_state_dict({"step": step})
    return Progress(step=step, position=step * accumulation, train_seconds=float(state["train_seconds"]),
                    window=[float(x) for x in state.get("loss_window", [])])


def rendered_batches(config: EmbeddedTrainConfig, first_position: int, end_position: int, device):
    """``data(position) -> (batch, generator)`` for the loop: freshly rendered maze videos (a
    worker renders ahead), and the micro-batch's noise generator, for data positions
    ``first_position .. end_position - 1`` (micro-batches; one per step without
    accumulation). Positions come in order."""
    loader = iter(batch_loader(config.data, config.batch_size, first_position, end_position, config.data_workers,
                               config.fresh_per_step, config.pool_size))

    def data(position: int):
        batch = next(loader)
        batch = {"video": batch["video"].to(device), "condition": batch["condition"].to(device)}
        return batch, _step_generator(config.seed, position)

    return data


def build_unet(config: EmbeddedTrainConfig, resuming: bool):
    """The UNet to train: fresh (seeded), or from ``init_from`` when a run starts from earlier weights."""
    unet = config.build_unet()
    if config.init_from and not resuming:
        try:
            unet.load_state_dict(initial_weights(config.init_from))
        except RuntimeError as exc:  # missing/unexpected keys or other shapes: another model's weights
            raise UserError(f"init_from {config.init_from} does not fit this config's UNet "
                            f"({str(exc).splitlines()[0]})") from None
    return unet


def validation_step(config: EmbeddedTrainConfig, trainer: Trainer, run_dir: Path, log: JsonlLog):
    """``validate(step)`` for the loop: the EMA weights sample held-out mazes, the referee
    scores them; a row in ``validation.jsonl`` and the redrawn ``validation.png``."""
    from tqdm.auto import tqdm

    referee_name, referee = load_referee()

    def validate(step: int) -> None:
        eval_unet = config.build_unet()
        trainer.ema.copy_to(eval_unet.parameters())
        eval_unet.eval()
        started = time.time()
        success = validate_model(eval_unet, config, referee)
        log.append({
            "step": step, "train_minutes": round(trainer.progress.train_seconds / 60, 2), "success": success,
            "sampling_steps": config.validation_steps, "eta": config.validation_eta, "count": config.validation_count,
            "referee": referee_name, "seconds": round(time.time() - started, 1)})
        plot_embedded_validation(run_dir)
        if trainer.tracker:
            trainer.accelerator.log({f"validation/success_{size}": value for size, value in success.items()}, step=step)
        tqdm.write(f"validation at step {step}: {success} ({referee_name})")

    return validate


def loss_row(step: int, window: list[float], lr: float, progress: Progress) -> dict:
    """A row of ``losses.jsonl``: the mean loss since the last row, the step's learning rate, minutes trained."""
    return {"step": step, "loss": float(np.mean(window)), "lr": lr, "train_minutes": round(progress.train_seconds / 60, 2)}


# -- training -------------------------------------------------------------------------------
def train_embedded(config: EmbeddedTrainConfig, out_dir: str | Path, resume: bool | None = None,
                   progress: bool = True, validate: bool = True, stop_after_steps: int | None = None) -> dict[str, Any]:
    """Train (or resume) a run in ``out_dir``; returns ``{"step", "loss", "train_seconds"}``.

    ``resume`` (``None``: the config's ``resume``) False starts over even if the folder holds a checkpoint.

    ``stop_after_steps`` ends this sitting early (after that many steps in total) without
    changing the run itself (the LR schedule still spans ``max_steps``), as a kill would.
    """
    # Everything a user can get wrong is checked before the run folder is touched.
    config.validate()
    if stop_after_steps is not None and stop_after_steps < 1:
        raise UserError(f"stop_after_steps must be >= 1; got {stop_after_steps}")
    run_dir = Path(out_dir)
    resume = config.resume if resume is None else resume
    latest = load_latest(run_dir / CHECKPOINTS) if resume else None
    legacy = checkpoint_state(run_dir) if resume and latest is None else None  # an older genreason's file
    if latest is not None or legacy is not None:
        saved = latest.state if latest is not None else legacy
        check_resumable(saved["config"], config, int(saved["step"]))
    tracker = check_tracker(config.trackers)
    torch.set_num_threads(config.threads)
    torch.set_flush_denormal(True)
    unet = build_unet(config, resuming=latest is not None or legacy is not None)
    check_writable(run_dir)

    run = open_run(run_dir, config, fresh=latest is None and legacy is None)
    logs: dict = {}
    try:
        done = _train(config, run, unet, latest, legacy, tracker, logs, progress, validate, stop_after_steps)
    except BaseException:
        if not list_checkpoints(run.checkpoints):  # a mistake found late leaves no config.yaml behind
            run.discard_if_empty(logs.values())
        raise
    finally:
        run.close()
    return {"step": done.step, "loss": float("nan") if done.loss is None else done.loss,
            "train_seconds": done.train_seconds}


def _train(config: EmbeddedTrainConfig, run: RunFolder, unet, latest: Checkpoint | None, legacy: dict | None,
           tracker: str | None, logs: dict, progress: bool, validate: bool, stop_after_steps: int | None) -> Progress:
    """The sitting in the held run folder ``run``: the trainer, resumed or fresh, through the loop."""
    from accelerate import Accelerator

    accelerator = Accelerator(mixed_precision=config.mixed_precision,
                              gradient_accumulation_steps=config.gradient_accumulation_steps, log_with=tracker,
                              project_dir=str(run.root / "logs") if tracker else None)
    # mkldnn convolutions run ~10 % faster on channels-last tensors (measured on 2 CPU cores).
    unet = unet.to(memory_format=torch.channels_last)
    trainer = config.make_trainer(accelerator, unet, unet.parameters(), config.max_steps, tracker=tracker)
    store = RunCheckpoints(run.checkpoints, config, unet, accelerator)
    if latest is not None:
        trainer.progress = store.restore(trainer, latest)
    elif legacy is not None:
        trainer.progress = restore_legacy(trainer, legacy, config.gradient_accumulation_steps)
    else:  # starting over: nothing of an earlier run in this folder may mix into this one
        store.discard()
        (run.root / CHECKPOINT).unlink(missing_ok=True)
        trainer.progress = Progress()
    logs.update(training_logs(run, None if latest is None and legacy is None else trainer.progress.step))
    start_trackers(accelerator, "genreason-embedded", config.to_dict())

    settings = config.loop_settings(
        config.max_steps, stop_after_steps, autocast=True, checkpoint_before_validation=True,
        checkpoint_when_sitting_ends=True, save_on_interrupt=True, desc="embedded", progress=progress)
    validation_log = logs["validation.jsonl"]

    def interrupted_validation(at: int) -> bool:  # a sitting killed during its checkpoint's validation redoes it
        return bool(at and config.validate_every and at % config.validate_every == 0
                    and at not in validation_log.values("step"))

    accumulation = config.gradient_accumulation_steps
    batches = rendered_batches(config, trainer.progress.position, settings.last_step * accumulation,
                               accelerator.device)
    done = trainer.run(settings, trainer.progress, batches,
                       DenoisingObjective(make_scheduler(config.num_train_timesteps, config.prediction_type)),
                       store, logs["losses.jsonl"], loss_row,
                       validate=validation_step(config, trainer, run.root, validation_log) if validate else None,
                       validate_now=interrupted_validation)
    if tracker:
        accelerator.end_training()
    return done


def initial_weights(source: str | Path) -> dict:
    """The UNet weights a second stage starts from: a run's checkpoint (its EMA weights: a
    run folder, one of its ``checkpoints/step-*/`` folders, or an older genreason's
    ``checkpoint.safetensors``), or an exported pipeline folder such as the shipped
    ``gen_reason/assets/embedded`` (safetensors), so training can continue in a later
    sitting that no longer has the first run's folder. Raises :class:`UserError` when
    ``source`` is none of these or cannot be read (a pickle is never loaded)."""
    source = Path(source)
    weights = source / "unet" / "diffusion_pytorch_model.safetensors"
    if source.is_dir() and weights.is_file():
        from safetensors.torch import load_file

        try:
            return load_file(str(weights))
        except Exception as exc:  # noqa: BLE001 - a truncated or foreign file
            raise UserError(f"init_from {weights} cannot be read as safetensors weights "
                            f"({' '.join(str(exc).split())[:200]})") from None
    if source.exists() and checkpoint_state(source, parts=()) is not None:
        return ema_unet(source)[0].state_dict()
    raise UserError(f"init_from must be a run folder, one of its checkpoints or an exported pipeline folder; "
                    f"got {source}")


def ema_unet(source: str | Path):
    """The EMA weights of a run's newest checkpoint (``source``: as :func:`checkpoint_state`
    takes), as a UNet ready for inference: ``(unet, config, state)``.

    A missing, older (pickle, never loaded) or damaged checkpoint is a :class:`UserError`."""
    state = checkpoint_state(source, parts=("ema",))
    if state is None:
        raise UserError(f"no checkpoint in {source} (train first, or give the run's --out folder)")
    if not isinstance(state, dict) or not {"config", "ema"} <= set(state):
        raise UserError(f"{source} is not a checkpoint of the embedded trainer")
    known = {f.name for f in dataclasses.fields(EmbeddedTrainConfig)}
    saved = rename_keys(EmbeddedTrainConfig, state["config"], warn=False)  # an older genreason's names too
    config = EmbeddedTrainConfig(**{k: v for k, v in saved.items() if k in known})
    unet = config.build_unet()
    from diffusers.training_utils import EMAModel

    ema = EMAModel(unet.parameters(), decay=config.ema_decay)
    ema.load_state_dict(state["ema"])
    ema.copy_to(unet.parameters())
    return unet.eval(), config, state


def model_settings(config: EmbeddedTrainConfig) -> dict:
    """The ``genreason.json`` of a model trained with ``config``: the puzzle settings it
    knows (tiny skin, thin walls, trail; room size and margin per maze size that fits the
    resolution), its frame count and its default difficulty, as ``genreason solve``,
    eval and probe read them (:func:`gen_reason.models.loading.model_task_defaults`)."""
    from gen_reason.train.data import maze_geometry

    by_size = {}
    for rooms in range(2, 8):
        try:
            by_size[f"{rooms}x{rooms}"] = maze_geometry(rooms, config.resolution)
        except ValueError:
            continue
    return {
        "note": "Puzzle settings the embedded model was trained on (gen_reason/train/data.py: maze_task); "
                "read by genreason solve, eval and probe.",
        "task": "maze/grid",
        "difficulty": f"{max(config.sizes)}x{max(config.sizes)}",
        "num_frames": config.num_frames,
        "trained_sizes": [f"{r}x{r}" for r in config.sizes],
        "task_config": {"skin": "tiny", "trail": True, "wall_style": "thin"},
        "task_config_by_difficulty": by_size,
    }


def export_pipeline(run_dir: str | Path, dest: str | Path, sampler: EmbeddedTrainConfig | None = None) -> Path:
    """Save a run's EMA model as a diffusers pipeline folder (safetensors) at ``dest``,
    with the ``genreason.json`` that tells solve/eval/probe which puzzles it knows. The
    pipeline's default sampler (``sample_steps``, ``sample_eta``) comes from ``sampler``
    when given (the config on the command line), else from the run's own config."""
    unet, config, _ = ema_unet(run_dir)
    source = sampler or config
    pipe = EmbeddedVideoPipeline(unet=unet, scheduler=make_scheduler(config.num_train_timesteps, config.prediction_type),
                                 pad_color=PAD_COLOR, default_steps=source.sample_steps, default_eta=source.sample_eta)
    dest = Path(dest)
    pipe.save_pretrained(dest, safe_serialization=True)
    (dest / "genreason.json").write_text(json.dumps(model_settings(config), indent=1, sort_keys=True) + "\n")
    return dest


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: train (resuming if the run folder has a checkpoint), optionally export.
    ``--train.FIELD VALUE`` overrides a field of the YAML config (``--train.max_steps 200``)."""
    parser = ArgumentParser(prog="genreason train embedded", description=__doc__.split("\n\n")[0],
                            epilog="--train.FIELD VALUE overrides a field of --config (e.g. --train.max_steps 200).")
    parser.add_argument("--config", default="configs/embedded_maze.yaml", help="YAML with every hyperparameter")
    parser.add_argument("--out", default="runs/embedded", help="run folder (checkpoint, logs, validation curve)")
    parser.add_argument("--no-resume", action="store_true", help="start over even if the run folder has a checkpoint")
    parser.add_argument("--stop-after-steps", type=int, default=None, help="end this sitting after this many steps")
    parser.add_argument("--export", default=None, help="after training, save the EMA pipeline to this folder")
    parser.add_argument("--export-only", action="store_true",
                        help="skip training; export the latest checkpoint to --export (default sampler from --config)")
    try:
        args, rest = parser.parse_known_args(argv)
        config = EmbeddedTrainConfig.from_yaml(args.config, config_flags(rest, ("train",)))
        if args.stop_after_steps is not None and args.stop_after_steps < 1:
            raise UserError(f"--stop-after-steps must be >= 1; got {args.stop_after_steps}")
        if args.export_only and not args.export:
            raise UserError("--export-only needs --export DIR (the folder to write the pipeline to)")
        if args.export_only and args.stop_after_steps is not None:
            raise UserError("--export-only trains nothing; drop --stop-after-steps")
        if args.export:
            check_writable(args.export)
        if args.export_only:
            ema_unet(args.out)  # a run folder with a readable checkpoint, before anything is written
        else:
            result = train_embedded(config, args.out, resume=False if args.no_resume else None,
                                    stop_after_steps=args.stop_after_steps)
            print(json.dumps(result))
        if args.export:
            print(f"exported to {export_pipeline(args.out, args.export, config)}")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
