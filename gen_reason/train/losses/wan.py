"""Wan 2.1 I2V, Wan 2.2 TI2V-5B and Wan 2.2 I2V-A14B (two experts): flow matching.

The transformer sees ``cat([x_t, mask (4 ch), image latent (16 ch)])`` (2.1 and A14B, the
condition made by ``pipe.prepare_latents`` itself) or, with ``expand_timesteps``
(TI2V-5B), ``x_t`` whose first latent frame is the clean image latent and a per-token
timestep that is 0 there; the loss skips that frame. A14B has two experts
(:class:`WanExperts`): each sample goes to the expert that denoises its timestep at
inference, ``pipe.transformer`` for ``t >= boundary_ratio * num_train_timesteps`` (high
noise), ``pipe.transformer_2`` below; a batch that mixes both is split, each part run
through its own expert, so only that expert's adapter gets the sample's gradient.
"""

from __future__ import annotations

import numpy as np
import torch

from gen_reason.errors import UserError
from gen_reason.train.losses.base import Objective, masked_mse, sample_noise

#: Which Wan 2.2 A14B experts train: both, only ``transformer`` (high noise) or only ``transformer_2`` (low noise).
EXPERTS = ("both", "high", "low")


class WanExperts(torch.nn.Module):
    """Wan 2.2 A14B's two experts as one network: each sample runs through the expert that owns its timestep.

    As ``WanImageToVideoPipeline`` switches at inference: ``transformer`` (high noise) for
    ``timestep >= boundary_timestep`` (``boundary_ratio * num_train_timesteps``),
    ``transformer_2`` (low noise) below. A batch whose samples fall on both sides is
    split, each part goes through its own expert, and the predictions come back in the
    batch's order; an expert with no sample in the batch does not run (its weights get
    no gradient). One module, one forward call per micro-batch: what data-parallel
    training (DDP, with ``find_unused_parameters``) expects.
    """

    def __init__(self, transformer: torch.nn.Module, transformer_2: torch.nn.Module, boundary_timestep: float) -> None:
        super().__init__()
        self.transformer = transformer
        self.transformer_2 = transformer_2
        self.boundary_timestep = float(boundary_timestep)

    def is_high_noise(self, timestep: torch.Tensor) -> torch.Tensor:
        """Per sample: True where ``transformer`` (the high-noise expert) denoises this timestep."""
        return timestep >= self.boundary_timestep

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                encoder_hidden_states_image: torch.Tensor | None = None, return_dict: bool = False):
        """The experts' predictions for the batch, as a one-element tuple (as ``return_dict=False``)."""
        if timestep.ndim != 1:
            raise ValueError("WanExperts routes whole samples: it takes one timestep per sample, shape [B]")
        high = self.is_high_noise(timestep)
        parts, order = [], []
        for expert, chosen in ((self.transformer, high), (self.transformer_2, ~high)):
            index = chosen.nonzero().flatten()
            if index.numel() == 0:
                continue
            image = None if encoder_hidden_states_image is None else encoder_hidden_states_image[index]
            parts.append(expert(hidden_states=hidden_states[index], timestep=timestep[index],
                                encoder_hidden_states=encoder_hidden_states[index],
                                encoder_hidden_states_image=image, return_dict=False)[0])
            order.append(index)
        return (torch.cat(parts)[torch.argsort(torch.cat(order))],)  # back in the batch's order


class WanObjective(Objective):
    """Wan 2.1 I2V, Wan 2.2 TI2V-5B (``expand_timesteps``) and Wan 2.2 I2V-A14B (two experts): flow matching.

    ``experts`` (A14B only): ``both`` trains an adapter on each expert, each sample going
    to the expert that owns its timestep; ``high`` / ``low`` trains only
    ``transformer`` / ``transformer_2`` and draws only the timesteps that expert owns
    (the logit-normal density, shifted, restricted to its side of the boundary).
    """

    takes_experts = True  # objective_for passes ``experts`` on

    name = "wan"
    targets = ("to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2")
    image_components = ("vae", "image_encoder")
    max_sequence_length = 512  # what WanImageToVideoPipeline.__call__ pads the prompt to

    def __init__(self, pipe, family, geometry, noise=None, experts: str = "both") -> None:
        super().__init__(pipe, family, geometry, noise)
        if experts not in EXPERTS:
            raise UserError(f"experts must be one of {', '.join(EXPERTS)}; got {experts!r}")
        self.expand_timesteps = bool(pipe.config.get("expand_timesteps", False))
        self.experts = experts
        self.mixture: WanExperts | None = None
        if getattr(pipe, "transformer_2", None) is not None:
            boundary_ratio = pipe.config.get("boundary_ratio")
            if boundary_ratio is None or getattr(pipe, "transformer", None) is None:
                raise UserError("this Wan pipeline has a transformer_2 but not both experts and a boundary_ratio; "
                                "training needs the Wan 2.2 A14B layout (transformer, transformer_2, boundary_ratio)")
            boundary = float(boundary_ratio) * float(pipe.scheduler.config.get("num_train_timesteps", 1000))
            self.mixture = WanExperts(pipe.transformer, pipe.transformer_2, boundary)
        elif experts != "both":
            raise UserError(f"experts: {experts} applies to Wan 2.2 A14B (two experts); this model has one "
                            "transformer, so leave experts at both")

    @property
    def model(self) -> torch.nn.Module:
        """The transformer, or on A14B both experts behind one router (:class:`WanExperts`)."""
        return self.pipe.transformer if self.mixture is None else self.mixture

    @property
    def trained_modules(self) -> dict[str, torch.nn.Module]:
        if self.mixture is None:
            return {"transformer": self.pipe.transformer}
        chosen = {"both": ("transformer", "transformer_2"), "high": ("transformer",), "low": ("transformer_2",)}
        return {name: getattr(self.pipe, name) for name in chosen[self.experts]}

    def accepts_timestep(self, timestep):
        # One expert trains: draw only timesteps it owns (the other expert could learn nothing from the rest).
        if self.mixture is None or self.experts == "both":
            return True
        high = bool(self.mixture.is_high_noise(timestep).all())
        return high if self.experts == "high" else not high

    def timestep_range_text(self):
        if self.mixture is None or self.experts == "both":
            return "every timestep"
        sign = ">=" if self.experts == "high" else "<"
        return f"the {self.experts}-noise expert's timesteps (t {sign} {self.mixture.boundary_timestep:g})"

    def _latent_stats(self):
        vae = self.pipe.vae
        z_dim = vae.config.z_dim
        mean = torch.tensor(vae.config.latents_mean).view(z_dim, 1, 1, 1)
        inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(z_dim, 1, 1, 1)
        return mean, inv_std

    def encode_prompt(self, prompt):
        embeds, _ = self.pipe.encode_prompt(prompt=[prompt], do_classifier_free_guidance=False,
                                            max_sequence_length=self.max_sequence_length, device=self.device)
        return {"prompt_embeds": embeds[0].float().cpu()}

    def encode_image(self, image, pixels, sample_seed):
        from PIL import Image

        pipe, g = self.pipe, self.geometry
        out = {}
        if pipe.transformer.config.image_dim is not None:  # only Wan 2.1 I2V takes CLIP image tokens
            out["image_embeds"] = pipe.encode_image(Image.fromarray(np.ascontiguousarray(image)), self.device)[0]
        # The pipeline's own prepare_latents builds the condition (mask + image latent, or
        # the TI2V first-frame latent); zero "noise" latents skip its random draw.
        shape = (1, *self.family.latent_shape(pipe, g))
        prepared = pipe.prepare_latents(pixels[None].to(self.device), 1, pipe.vae.config.z_dim, g.height, g.width,
                                        g.num_frames, torch.float32, self.device, None, torch.zeros(shape))
        out["condition"] = prepared[1][0]
        return {key: value.float().cpu() for key, value in out.items()}

    def encode_video(self, pixels):
        mean, inv_std = self._latent_stats()
        latents = self._vae_encode(pixels[None]).mode()[0].float().cpu()  # as the pipeline's "argmax"
        return {"latent_mean": (latents - mean) * inv_std}

    def loss(self, model, batch, generators):
        x0 = batch["latent_mean"].float()
        batch_size = x0.shape[0]
        _, frames, height, width = x0.shape[1:]
        patch = self.pipe.transformer.config.patch_size
        sequence_length = frames * (height // patch[1]) * (width // patch[2])
        noise = sample_noise(x0.shape[1:], generators, x0.device)
        sigmas = self.flow_sigmas(generators, sequence_length)
        s = sigmas.view(-1, 1, 1, 1, 1)
        noisy = (1 - s) * x0 + s * noise
        target = noise - x0
        timesteps = sigmas * 1000.0
        mask = None
        if self.expand_timesteps:
            # TI2V-5B: latent frame 0 is the clean image and has timestep 0 (as the pipeline).
            mask = torch.ones(1, 1, frames, height, width, device=x0.device)
            mask[:, :, 0] = 0
            condition = batch["condition"].float()
            model_input = (1 - mask) * condition + mask * noisy
            per_token = mask[0, 0][:, :: patch[1], :: patch[2]].flatten()
            timestep = per_token[None] * timesteps[:, None]
        else:
            model_input = torch.cat([noisy, batch["condition"].float()], dim=1)
            timestep = timesteps
        dtype = self.pipe.transformer.dtype
        prediction = model(
            hidden_states=model_input.to(dtype),
            timestep=timestep,
            encoder_hidden_states=batch["prompt_embeds"].to(dtype),
            encoder_hidden_states_image=batch["image_embeds"].to(dtype) if "image_embeds" in batch else None,
            return_dict=False,
        )[0]
        return masked_mse(prediction, target, mask, self.flow_weights(sigmas).view(batch_size))


