"""Per-family training objectives: what the encoders make of a sample, and the loss.

An :class:`Objective` knows one pipeline family's recipe, mirroring how its diffusers
pipeline conditions the denoiser at inference, so a model trained here is used the
same way it was trained:

- :mod:`~gen_reason.train.losses.wan`: Wan 2.1 I2V, Wan 2.2 TI2V-5B and Wan 2.2 I2V-A14B
  (flow matching; A14B's two experts behind one router, :class:`WanExperts`);
- :mod:`~gen_reason.train.losses.ltx`: LTX-Video I2V (flow matching on packed tokens);
- :mod:`~gen_reason.train.losses.cogvideox`: CogVideoX I2V (DDPM, the scheduler's prediction type);
- :mod:`~gen_reason.train.losses.embedded`: the embedded pixel-space model, fine-tuned on a
  dataset (:class:`EmbeddedObjective`) or trained from scratch on rendered mazes
  (:class:`DenoisingObjective`, ``genreason train embedded``);
- :mod:`~gen_reason.train.losses.base`: what they share (:class:`Objective`, timestep
  sampling, the per-sample random sources, the losses' building blocks).

:func:`objective_for` gives a loaded pipeline the objective its family declares (``Family.objective``,
``"package.module:Class"``): a plugin family names its own the same way.

Flow matching: ``x_t = (1 - s) x0 + s n``, target ``n - x0``, the transformer's timestep
``1000 s``; ``s`` from ``compute_density_for_timestep_sampling`` (logit-normal by
default) pushed through the scheduler's shift ``s' = k s / (1 + (k - 1) s)`` (LTX with
dynamic shifting: ``k = exp(mu(sequence length))``), weighted by
``compute_loss_weighting_for_sd3``.

Every random draw of a sample (latent sample, timestep, noise) comes from that sample's
own CPU ``torch.Generator``, so a sample's loss is the same whichever process or batch
it lands in, and a resumed run draws exactly what an uninterrupted one would.

Encoders return tensors without a batch dimension, on the CPU (the cache keeps them
there); :meth:`Objective.loss` gets them stacked and moved to the model's device.
"""

from __future__ import annotations

from gen_reason.errors import UserError
from gen_reason.models.families import Family, Geometry
from gen_reason.registry import import_target
from gen_reason.train.losses.base import (MAX_TIMESTEP_DRAWS, SCHEMES, NoiseSettings, Objective, draw_latents,
                                          masked_mse, sample_generator, stack_batch)
from gen_reason.train.losses.cogvideox import CogVideoXObjective
from gen_reason.train.losses.embedded import DenoisingObjective, EmbeddedObjective, diffusion_loss
from gen_reason.train.losses.ltx import LTXObjective
from gen_reason.train.losses.wan import EXPERTS, WanExperts, WanObjective

__all__ = ["CogVideoXObjective", "DenoisingObjective", "EXPERTS", "EmbeddedObjective", "LTXObjective",
           "MAX_TIMESTEP_DRAWS", "NoiseSettings", "Objective", "SCHEMES", "WanExperts", "WanObjective",
           "diffusion_loss", "draw_latents", "masked_mse", "objective_for", "sample_generator", "stack_batch"]


def objective_for(pipe, family: Family, geometry: Geometry, noise: NoiseSettings | None = None,
                  experts: str = "both") -> Objective:
    """The objective the loaded pipeline's family declares (:attr:`Family.objective`), or a
    one-line :class:`UserError` for a family that declares none.

    ``experts`` picks which of Wan 2.2 A14B's experts train (``both``, ``high``, ``low``); an
    objective that takes it says so with ``takes_experts = True``; other models have one
    network and take only ``both``.
    """
    target = getattr(family, "objective", None)
    if target is None:
        raise UserError(f"training is not supported for {type(pipe).__name__} (family {family.name}: it declares "
                        "no objective); supported: Wan 2.1 I2V, Wan 2.2 TI2V-5B and I2V-A14B, CogVideoX I2V, "
                        "LTX-Video I2V, the embedded model")
    objective_cls = import_target(target)
    if getattr(objective_cls, "takes_experts", False):
        return objective_cls(pipe, family, geometry, noise, experts=experts)
    if experts != "both":
        raise UserError(f"experts: {experts} applies to Wan 2.2 A14B (two experts); this model has one network, "
                        "so leave experts at both")
    return objective_cls(pipe, family, geometry, noise)
