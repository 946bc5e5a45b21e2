"""CogVideoX image-to-video: DDPM noise at a uniform integer timestep, the image latents
(from a slightly noised image, as diffusers' I2V LoRA example) concatenated on channels,
and the target the scheduler's ``prediction_type`` names (``get_velocity`` for
v-prediction)."""

from __future__ import annotations

import math

import torch

from gen_reason.errors import UserError
from gen_reason.train.losses.base import Objective, ddpm_draws, ddpm_target, draw_latents, masked_mse


class CogVideoXObjective(Objective):
    """CogVideoX image-to-video: DDPM noising, the scheduler's prediction type, image latents on channels."""

    name = "cogvideox"
    targets = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2")
    #: log-normal noise put on the image before encoding it (diffusers' I2V LoRA example)
    image_noise_log_mean, image_noise_log_std = -3.0, 0.5

    def __init__(self, pipe, family, geometry, noise=None) -> None:
        super().__init__(pipe, family, geometry, noise)
        patch_t = pipe.transformer.config.patch_size_t
        step = pipe.vae_scale_factor_temporal
        if patch_t is not None and ((geometry.num_frames - 1) // step + 1) % patch_t:
            # The 1.5 pipeline pads such latents at inference; training here needs none.
            raise UserError(f"CogVideoX 1.5 trains on latent frame counts divisible by {patch_t}: "
                            f"choose num_frames = {step}k + 1 with k + 1 divisible by {patch_t} (e.g. 85)")
        self.prediction_type = pipe.scheduler.config.get("prediction_type", "epsilon")
        if self.prediction_type not in ("v_prediction", "epsilon", "sample"):
            raise UserError(f"unsupported CogVideoX prediction_type {self.prediction_type!r}")

    def encode_prompt(self, prompt):
        embeds, _ = self.pipe.encode_prompt(prompt=[prompt], do_classifier_free_guidance=False,
                                            max_sequence_length=self.pipe.transformer.config.max_text_seq_length,
                                            device=self.device)
        return {"prompt_embeds": embeds[0].float().cpu()}

    def _scale(self, image: bool) -> float:
        vae = self.pipe.vae
        if image and vae.config.get("invert_scale_latents", False):
            return 1.0 / vae.config.scaling_factor  # as the pipeline (the authors' training quirk)
        return float(vae.config.scaling_factor)

    def encode_image(self, image, pixels, sample_seed):
        generator = torch.Generator().manual_seed(int(sample_seed))
        sigma = math.exp(self.image_noise_log_mean + self.image_noise_log_std * float(torch.randn(1, generator=generator)))
        noisy = pixels + sigma * torch.randn(pixels.shape, generator=generator)
        dist = self._vae_encode(noisy[None, :, None])
        scale = self._scale(image=True)
        return {"image_mean": dist.mean[0].float().cpu() * scale, "image_std": dist.std[0].float().cpu() * scale}

    def encode_video(self, pixels):
        dist = self._vae_encode(pixels[None])
        scale = self._scale(image=False)
        return {"latent_mean": dist.mean[0].float().cpu() * scale, "latent_std": dist.std[0].float().cpu() * scale}

    def loss(self, model, batch, generators):
        pipe, g = self.pipe, self.geometry
        scheduler = pipe.scheduler
        x0 = draw_latents(batch["latent_mean"], batch["latent_std"], generators).permute(0, 2, 1, 3, 4)  # [B,F,C,h,w]
        image = draw_latents(batch["image_mean"], batch["image_std"], generators).permute(0, 2, 1, 3, 4)
        image = torch.cat([image, image.new_zeros(image.shape[0], x0.shape[1] - 1, *image.shape[2:])], dim=1)
        timesteps, noise = ddpm_draws(scheduler, generators, x0.shape[1:], x0.device)
        noisy = scheduler.add_noise(x0, noise, timesteps)
        config = pipe.transformer.config
        rotary = None
        if config.use_rotary_positional_embeddings:
            rotary = pipe._prepare_rotary_positional_embeddings(g.height, g.width, x0.shape[1], x0.device)
        ofs = None if config.ofs_embed_dim is None else x0.new_full((1,), fill_value=2.0)
        dtype = pipe.transformer.dtype
        prediction = model(
            hidden_states=torch.cat([noisy, image], dim=2).to(dtype),
            encoder_hidden_states=batch["prompt_embeds"].to(dtype),
            timestep=timesteps,
            ofs=ofs,
            image_rotary_emb=rotary,
            return_dict=False,
        )[0]
        # v-prediction: equal to diffusers' example (x0 = get_velocity(pred, noisy, t), weight 1 / (1 - alpha_bar)).
        return masked_mse(prediction, ddpm_target(scheduler, self.prediction_type, x0, noise, timesteps))


