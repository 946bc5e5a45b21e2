"""The embedded trainer's weights out of its run folder: its checkpoints in either layout
(:func:`checkpoint_state`: ``checkpoints/step-*/``, or an older genreason's single
``checkpoint.safetensors``), the EMA UNet (:func:`ema_unet`), the weights a further stage
starts from (:func:`initial_weights`), and the exported pipeline folder with the
``genreason.json`` solve, eval and probe read (:func:`export_pipeline`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

from gen_reason.config import rename_keys
from gen_reason.errors import UserError
from gen_reason.models.embedded import EmbeddedVideoPipeline
from gen_reason.models.embedded_parts import make_scheduler
from gen_reason.train.checkpoint import STATE_FILE, load_latest, load_state, read_checkpoint
from gen_reason.train.data import PAD_COLOR
from gen_reason.train.embedded_config import EmbeddedTrainConfig


#: The run folder's checkpoints (``step-*/`` folders, as every trainer's).
CHECKPOINTS = "checkpoints"


#: The single checkpoint file of an older genreason's run folder: still resumed and exported from.
CHECKPOINT = "checkpoint.safetensors"


#: The checkpoint an even older genreason wrote (a pickle): never loaded, only recognised.
OLD_CHECKPOINT = "checkpoint.pt"


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
    checkpoint = read_checkpoint(source) if (source / STATE_FILE).is_file() else load_latest(source / CHECKPOINTS)
    if checkpoint is None:
        if (source / CHECKPOINT).is_file():
            return load_state(source / CHECKPOINT)
        if (source / OLD_CHECKPOINT).exists():
            raise UserError(f"{source} holds a {OLD_CHECKPOINT} written by an older genreason (a pickle, which is "
                            "never loaded); start over with --no-resume or use a new --out folder")
        return None
    state = dict(checkpoint.state)
    for file in sorted(checkpoint.path.glob("*.safetensors")):
        name = {"trainable": "unet"}.get(file.stem, file.stem)
        if parts is None or name in parts:
            state[name] = load_state(file)
    return state


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
