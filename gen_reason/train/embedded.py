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

import json  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Sequence  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gen_reason.errors import UserError  # noqa: E402
from gen_reason.models.embedded_parts import make_scheduler  # noqa: E402
from gen_reason.folders import JsonlLog, RunFolder  # noqa: E402
from gen_reason.train.checkpoint import Checkpoint, list_checkpoints, load_latest  # noqa: E402
from gen_reason.train.data import batch_loader  # noqa: E402
from gen_reason.train.validation import load_referee, plot_embedded_validation, validate_model  # noqa: E402
from gen_reason.train.loop import Progress, Trainer, start_trackers  # noqa: E402
from gen_reason.train.settings import check_tracker  # noqa: E402
from gen_reason.train.run_folder import RunCheckpoints, open_run, training_logs  # noqa: E402
from gen_reason.train.losses import DenoisingObjective  # noqa: E402
from gen_reason.config import config_flags  # noqa: E402
from gen_reason.errors import check_writable  # noqa: E402
from gen_reason.config import ArgumentParser  # noqa: E402
from gen_reason.train.embedded_config import EmbeddedTrainConfig  # noqa: E402
from gen_reason.train.embedded_weights import (CHECKPOINT, CHECKPOINTS, checkpoint_state, ema_unet,  # noqa: E402
                                               export_pipeline, initial_weights)


# -- checkpoints ------------------------------------------------------------------------------


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
        # max_steps may move while the learning-rate decay has begun at neither length.
        config.check_resumable(saved["config"], int(saved["step"]), "the checkpoint was",
                               "use a new --out folder or the same config")
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
