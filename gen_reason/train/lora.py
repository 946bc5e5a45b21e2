"""LoRA (or full) fine-tuning of image-to-video generators on puzzle datasets.

``genreason train lora --model PATH --data DIR --config configs/lora_wan.yaml`` runs
:func:`train_lora`: peft LoRA adapters on the pipeline's transformer (Wan 2.1 I2V,
Wan 2.2 TI2V-5B, CogVideoX I2V, LTX-Video I2V) or the embedded model's UNet, with the
base model frozen and the family's own objective (:mod:`gen_reason.train.losses`). The
recipe defaults are VR-Bench's: rank 32 on attention q/k/v/o and the feed-forward,
learning rate 1e-4, a few epochs.

Wan 2.2 I2V-A14B (``configs/lora_wan22_a14b.yaml``) has two experts: ``transformer``
denoises high-noise timesteps (``t >= boundary_ratio * 1000``), ``transformer_2`` the
rest. ``experts: both`` (default) puts an adapter on each; every sample draws its
timestep from the whole schedule and trains the expert that owns that timestep at
inference, a batch with samples on both sides being split between them (so only that
expert's adapter gets the sample's gradient; an expert with no sample in a step is not
stepped). ``experts: high`` / ``low`` trains one adapter and draws only its timesteps.

One run is one folder (``output_dir``)::

    config.yaml                         the resolved config (gen_reason.folders.RunFolder, as every
                                        long command's: a rerun resumes under the same settings)
    pytorch_lora_weights.safetensors    the LoRA, diffusers format (pipe.load_lora_weights(dir))
                                        or, with ``lora: false``, the whole fine-tuned model folder;
                                        on Wan 2.2 A14B the high-noise expert's (pipe.transformer)
    transformer_2/pytorch_lora_weights.safetensors
                                        A14B: the low-noise expert's LoRA, same format
                                        (pipe.load_lora_weights(dir/transformer_2, load_into_transformer_2=True))
    lora_experts.json                   A14B: which expert each LoRA file belongs to (what
                                        DiffusersVideoGenerator / genreason solve --lora read)
    README.md                           a model card: base model, data, recipe, validation
    losses.jsonl                        loss, learning rate and seconds since the run began (over
                                        every sitting) per optimizer step; after a resume, as an
                                        uninterrupted run's (rows past the checkpoint are redone)
    validation.jsonl / validation.png   held-out success (the referee) over training
    validation/step-*/                  a few validation videos
    checkpoints/step-*/                 trained weights + optimizer + LR schedule + EMA + RNG + step +
                                        data position (every trainer's layout: run_folder.RunCheckpoints)

The steps run in the one training loop (:class:`gen_reason.train.loop.Trainer`, shared with
the embedded model's trainer); this module runs a fine-tuning job and gives the loop its
pieces, each from the module whose one job it is: the settings (``lora_config.py``), the
pipeline's trainable parameters (``adapters.py``), the dataset's encode-once cache and the
geometry (``conditioning.py``), which samples each step takes (``data_order.py``), the
family's objective (``losses/``), the checkpoint folders (here), validation
(``validation.py``) and the saved weights (``outputs.py``).

Rerunning the same command resumes from the newest checkpoint, and the resumed run ends
with the weights an uninterrupted run would have: each sample's noise and timestep are
pure functions of (seed, data position, batch slot), the epoch order of (seed, epoch),
and the global random states (dropout) are saved per process.

Scale: ``accelerate launch --multi_gpu --num_processes N -m gen_reason.train.lora --config ...``
(also on a CPU-only machine, where the processes talk over gloo) shards every global batch (``batch_size`` per process) across processes; with the same
global batch the result equals a one-process run's up to float rounding. Mixed
precision, gradient accumulation, gradient checkpointing and trackers (tensorboard,
wandb) come from accelerate and diffusers.
"""

from __future__ import annotations

import os

# Idle OpenMP threads spin on a busy CPU and slow every step many times over;
# this only takes effect before torch is imported (running as a module or under accelerate).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import dataclasses  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Sequence  # noqa: E402

import torch  # noqa: E402

from gen_reason.config import ArgumentParser  # noqa: E402
from gen_reason.errors import UserError, check_writable  # noqa: E402
from gen_reason.models.families import Geometry  # noqa: E402
from gen_reason.models.options import MODEL_OPTIONS, add_model_arguments  # noqa: E402
from gen_reason.folders import JsonlLog, RunFolder, read_jsonl  # noqa: E402
from gen_reason.train.adapters import make_trainable  # noqa: E402
from gen_reason.train.checkpoint import list_checkpoints, rng_state, set_rng_state  # noqa: E402
from gen_reason.train.conditioning import ConditioningCache, Sample, load_samples, resolve_geometry  # noqa: E402
from gen_reason.train.data_order import DataOrder, dataset_batches, total_steps  # noqa: E402
from gen_reason.train.lora_config import LoraTrainConfig, load_lora_config, parse_overrides  # noqa: E402
from gen_reason.train.loop import MIXED_PRECISION, Progress, Trainer, start_trackers  # noqa: E402
from gen_reason.train.settings import check_tracker  # noqa: E402
from gen_reason.train.run_folder import RunCheckpoints, open_run, training_logs  # noqa: E402
from gen_reason.train.losses import objective_for  # noqa: E402
# Model cards written before the split tell users to import this from here.
from gen_reason.train.outputs import load_embedded_lora, save_outputs, write_model_card  # noqa: E402,F401
from gen_reason.train.validation import Validator, plot_curves  # noqa: E402

# -- pieces of a run ----------------------------------------------------------------------------
def _has_two_experts(model: Path) -> bool:
    """Whether the model folder is a two-expert pipeline (Wan 2.2 A14B: a ``transformer_2``)."""
    from gen_reason.models.diffusers_backend import read_model_index

    return (read_model_index(model).get("transformer_2") or [None])[0] is not None


def _cpu_data_parallel() -> bool:
    """True for several processes on a machine without GPUs: accelerate then needs ``cpu=True`` to use gloo.

    (``accelerate launch --multi_gpu --num_processes N`` starts the processes through
    torchrun on any machine; without this they would each train alone.)
    """
    xpu = getattr(torch, "xpu", None)
    has_gpu = torch.cuda.is_available() or bool(xpu is not None and xpu.is_available())
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not has_gpu


# -- the pieces the training loop (gen_reason.train.loop) takes from this trainer ---------------
def validation_step(config: LoraTrainConfig, trainer: Trainer, pipe, family, geometry: Geometry, out: Path,
                    cache: ConditioningCache, offload: bool):
    """``validate(step)`` for the loop: held-out puzzles generated with the current weights and
    scored by the referee on the main process (the others wait); the training's random
    streams and the cache's device placement are left as they were."""
    accelerator = trainer.accelerator
    validator = None
    if config.validate_every and accelerator.is_main_process:
        dataset_puzzles = {row.get("canonical_hash") for row in read_jsonl(Path(config.data) / "metadata.jsonl")}
        validator = Validator(config, pipe, family, geometry, out, dataset_puzzles - {None})

    def validate(step: int) -> None:
        if validator is not None:
            saved = rng_state()  # generation must not move the training's random streams
            trainer.unwrapped.eval()
            if offload:
                cache.move_idle(accelerator.device)
            row = validator.run(step)
            if offload:
                cache.move_idle("cpu")
            trainer.unwrapped.train()
            set_rng_state(saved)
            if trainer.tracker:
                accelerator.log({f"validation/{k}": v for k, v in {"success": row["success"], **row["metrics"]}.items()
                                 if v is not None}, step=step)
        accelerator.wait_for_everyone()

    return validate


def loss_row(step: int, window: list[float], lr: float, progress: Progress) -> dict:
    """A row of ``losses.jsonl``: the step's loss and learning rate, seconds since the run began."""
    return {"step": step, "loss": progress.loss, "lr": lr, "seconds": round(progress.elapsed, 3)}


# -- the run ------------------------------------------------------------------------------------
def resolve_config(config: LoraTrainConfig, stop_after_steps: int | None) -> tuple[LoraTrainConfig, dict]:
    """A checked copy of ``config`` with absolute paths (the model name resolved) and its model options."""
    from gen_reason.models.loading import resolve_model_path
    from gen_reason.models.options import MODEL_OPTIONS, check_model_options

    config = dataclasses.replace(config)
    config.validate()
    model_options = check_model_options(**{name: getattr(config, name) for name in MODEL_OPTIONS})
    if "size" in model_options:
        config.height = config.height or model_options["size"][0]
        config.width = config.width or model_options["size"][1]
    if stop_after_steps is not None and stop_after_steps < 1:
        raise UserError(f"stop_after_steps must be >= 1; got {stop_after_steps}")
    config.output_dir = str(Path(config.output_dir).expanduser().resolve())
    check_writable(config.output_dir)  # before anything loads; leaves nothing behind
    config.model = str(resolve_model_path(config.model).resolve())  # a name such as `embedded`, or a folder
    config.data = str(Path(config.data).expanduser().resolve())
    return config, model_options


def make_accelerator(config: LoraTrainConfig, model_options: dict, tracker: str | None):
    """The run's accelerator: mixed precision, accumulation, trackers, gloo on a CPU-only machine."""
    from accelerate import Accelerator

    handlers = []
    if config.experts == "both" and _has_two_experts(Path(config.model)):
        from accelerate.utils import DistributedDataParallelKwargs

        # A process's micro-batch may route every sample to one expert; the other's adapter is then unused.
        handlers.append(DistributedDataParallelKwargs(find_unused_parameters=True))
    return Accelerator(mixed_precision=config.mixed_precision,
                       gradient_accumulation_steps=config.gradient_accumulation_steps,
                       log_with=tracker, project_dir=str(Path(config.output_dir) / "logs"),
                       cpu=_cpu_data_parallel() or model_options.get("device") == "cpu",
                       kwargs_handlers=handlers)


def load_pipeline(config: LoraTrainConfig, model_options: dict, accelerator):
    """The pipeline on the accelerator's device in the frozen weights' dtype, and its family."""
    from gen_reason.models.loading import load_generator

    weight_dtype = MIXED_PRECISION[config.mixed_precision]
    if "dtype" in model_options:
        weight_dtype = getattr(torch, model_options["dtype"])
    generator = load_generator(  # the one loader every command uses
        config.model, device=accelerator.device, dtype=weight_dtype, offload="none",
        **{k: v for k, v in model_options.items() if k in ("vae_tiling", "attention", "compile", "max_batch")})
    return generator.pipeline, generator.family


def make_trainer(config: LoraTrainConfig, model: torch.nn.Module, accelerator, max_steps: int,
                 tracker: str | None) -> Trainer:
    """The loop's trainer over ``model``'s trainable parameters: AdamW and the config's LR schedule."""
    return config.make_trainer(accelerator, model, [p for p in model.parameters() if p.requires_grad], max_steps,
                               tracker=tracker)


def start_run(config: LoraTrainConfig, trainer: Trainer,
              store: RunCheckpoints) -> tuple[RunFolder, Progress, dict[str, JsonlLog]]:
    """Open the run folder (config.yaml checked against a rerun) and resume from its newest
    checkpoint or start over; the logs to match (main process only) and the trackers
    started. Returns the held folder, where the run stands and the logs."""
    accelerator = trainer.accelerator
    latest = store.latest() if config.resume else None
    if latest is not None:
        config.check_resumable(latest.state["config"], latest.step, f"{config.output_dir} holds a run",
                               "use another output_dir, the same settings, or resume: false to start over")
    run = open_run(Path(config.output_dir), config, fresh=latest is None, rank=accelerator.process_index)
    try:
        progress = store.restore(trainer, latest) if latest is not None else Progress()
        logs = {}
        if accelerator.is_main_process:  # resuming, rows of steps after the checkpoint were lost with the kill
            if latest is None:
                store.discard()
            logs = training_logs(run, None if latest is None else progress.step)
    except BaseException:
        run.close()
        raise
    start_trackers(accelerator, "genreason-lora", config.to_dict())
    return run, progress, logs


def fill_cache(config: LoraTrainConfig, objective, samples: Sequence[Sample], accelerator,
               progress: bool) -> tuple[ConditioningCache, bool]:
    """Encode the dataset once (what the config caches); ``(cache, offload)``, where ``offload``
    says the encoders whose outputs are all cached wait on the CPU (a GPU run)."""
    cache = ConditioningCache(objective, samples, cache_conditioning=config.cache_conditioning,
                              cache_latents=config.cache_latents, seed=config.seed)
    cache.fill(progress=progress and accelerator.is_main_process)
    offload = accelerator.device.type != "cpu"
    if offload:
        cache.move_idle("cpu")
    return cache, offload


def train_lora(config: LoraTrainConfig, progress: bool = True, *, stop_after_steps: int | None = None) -> Path:
    """Train (or resume) the run ``config`` describes; return the output folder.

    ``stop_after_steps`` ends this sitting after that many optimizer steps in total,
    without final outputs, as a kill would (for tests of resumption).
    """
    from accelerate.utils import set_seed

    from gen_reason.models.diffusers_backend import check_fixed_size

    # Everything a user can get wrong is checked before the model loads.
    config, model_options = resolve_config(config, stop_after_steps)
    out = Path(config.output_dir)
    samples = load_samples(config.data, config.split)
    tracker = check_tracker(config.trackers)
    # A model that runs at one size only (CogVideoX-5b-I2V) refuses any other before it loads.
    check_fixed_size(config.model, config.height or samples[0].first_frame.shape[0],
                     config.width or samples[0].first_frame.shape[1])

    accelerator = make_accelerator(config, model_options, tracker)
    pipe, family = load_pipeline(config, model_options, accelerator)
    geometry = resolve_geometry(pipe, family, samples, config)
    objective = objective_for(pipe, family, geometry, config.noise, experts=config.experts)
    lora_config, targets = make_trainable(pipe, objective, config)
    # Dropout differs per process (as data-parallel training should); everything else is seeded per sample.
    set_seed(config.seed, device_specific=True)
    order = DataOrder(len(samples), config.batch_size, accelerator.num_processes, accelerator.process_index,
                      config.seed)
    max_steps = total_steps(config, order)
    trainer = make_trainer(config, objective.model, accelerator, max_steps, tracker)
    store = RunCheckpoints(out / "checkpoints", config, objective.model, accelerator)
    run, start, logs = start_run(config, trainer, store)
    try:
        cache, offload = fill_cache(config, objective, samples, accelerator, progress)
        settings = config.loop_settings(max_steps, stop_after_steps, log_last=True, progress=progress,
                                        desc="train lora" if config.lora else "fine-tune")
        done = trainer.run(settings, start, dataset_batches(cache, order, accelerator.device), objective,
                           store, logs.get("losses.jsonl"), loss_row,
                           validate=validation_step(config, trainer, pipe, family, geometry, out, cache, offload),
                           validate_now=lambda step: step == 0)  # the untrained baseline opens the curve
        if done.step >= max_steps:  # else a sitting cut short: the checkpoints carry the run on
            save_results(config, trainer, pipe, objective, lora_config, family.name, geometry, done, len(samples),
                         targets)
    except BaseException:
        if accelerator.is_main_process and not list_checkpoints(run.checkpoints):
            run.discard_if_empty(logs.values())  # a mistake found late leaves no config.yaml behind
        raise
    finally:
        run.close()
    accelerator.end_training()
    return out


def save_results(config: LoraTrainConfig, trainer: Trainer, pipe, objective, lora_config, family_name: str,
                 geometry: Geometry, done: Progress, num_samples: int, targets) -> None:
    """The finished run's weights (the EMA's, if kept), model card and curves (main process)."""
    out = Path(config.output_dir)
    accelerator = trainer.accelerator
    if trainer.ema is not None:
        trainer.ema.copy_to(trainer.parameters)  # the averaged weights are the ones saved
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_outputs(out, pipe, objective, trainer.unwrapped, lora_config)
        write_model_card(out, config, family_name, geometry, done.step, num_samples, done.loss, targets)
        plot_curves(out)
    accelerator.wait_for_everyone()


# -- command line (``python -m gen_reason.train.lora``, ``accelerate launch -m gen_reason.train.lora``) --
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``--config FILE --model PATH --data DIR --out DIR [--lora.FIELD value ...]``."""
    parser = ArgumentParser(prog="genreason train lora", description=__doc__.split("\n\n")[0],
                            epilog="--lora.FIELD VALUE (or --train.FIELD) overrides any field of --config "
                                   "(e.g. --lora.rank 16, --train.max_steps 200); --model.FIELD a model option "
                                   "(--model.offload model).")
    parser.add_argument("--config", help="YAML config (configs/lora_wan.yaml, ...)")
    parser.add_argument("--model", help="diffusers model folder")
    parser.add_argument("--data", help="dataset folder made by genreason make-dataset")
    parser.add_argument("--out", dest="output_dir", help="run folder (output_dir)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--stop-after-steps", type=int, default=None,
                        help="end this sitting after this many optimizer steps (rerun the command to resume)")
    add_model_arguments(parser)  # --offload, --vae-tiling, ...: the model options every command takes
    try:
        args, rest = parser.parse_known_args(argv)
        overrides = parse_overrides(rest)
        for name in MODEL_OPTIONS:  # a flag and its --model.FIELD spelling are one option
            value = getattr(args, name, None)
            if value is not None:
                if name in overrides:
                    raise UserError(f"--model.{name} and --{name.replace('_', '-')} both given; give one")
                overrides[name] = value
        overrides.update({k: v for k, v in (("model", args.model), ("data", args.data),
                                            ("output_dir", args.output_dir)) if v})
        out = train_lora(load_lora_config(args.config, overrides), progress=not args.quiet,
                         stop_after_steps=args.stop_after_steps)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
