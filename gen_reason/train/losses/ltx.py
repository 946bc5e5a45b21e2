"""LTX-Video image-to-video: flow matching on packed tokens; latent frame 0 is the clean
image latent with timestep 0, and the loss skips it."""

from __future__ import annotations

import torch

from gen_reason.train.losses.base import Objective, draw_latents, masked_mse, sample_noise


class LTXObjective(Objective):
    """LTX-Video image-to-video: flow matching on packed tokens, frame 0 the clean image."""

    name = "ltx"
    targets = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2")
    max_sequence_length = 128  # LTXImageToVideoPipeline's default

    def encode_prompt(self, prompt):
        embeds, mask, _, _ = self.pipe.encode_prompt(prompt=[prompt], do_classifier_free_guidance=False,
                                                     max_sequence_length=self.max_sequence_length, device=self.device)
        return {"prompt_embeds": embeds[0].float().cpu(), "prompt_attention_mask": mask[0].cpu()}

    def _normalized(self, dist) -> dict[str, torch.Tensor]:
        # As LTXImageToVideoPipeline.prepare_latents normalises the image latent.
        vae = self.pipe.vae
        mean = vae.latents_mean.view(-1, 1, 1, 1).float().cpu()
        std = vae.latents_std.view(-1, 1, 1, 1).float().cpu()
        return {"mean": (dist.mean[0].float().cpu() - mean) / std, "std": dist.std[0].float().cpu() / std}

    def encode_image(self, image, pixels, sample_seed):
        stats = self._normalized(self._vae_encode(pixels[None, :, None]))
        return {"image_mean": stats["mean"], "image_std": stats["std"]}

    def encode_video(self, pixels):
        stats = self._normalized(self._vae_encode(pixels[None]))
        return {"latent_mean": stats["mean"], "latent_std": stats["std"]}

    def loss(self, model, batch, generators):
        pipe = self.pipe
        x0 = draw_latents(batch["latent_mean"], batch["latent_std"], generators)
        image = draw_latents(batch["image_mean"], batch["image_std"], generators)
        batch_size, _, frames, height, width = x0.shape
        x0 = torch.cat([image, x0[:, :, 1:]], dim=2)
        noise = sample_noise(x0.shape[1:], generators, x0.device)
        patch, patch_t = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
        sequence_length = frames * height * width
        sigmas = self.flow_sigmas(generators, sequence_length)
        s = sigmas.view(-1, 1, 1, 1, 1)
        noisy = (1 - s) * x0 + s * noise
        noisy = torch.cat([x0[:, :, :1], noisy[:, :, 1:]], dim=2)  # the image frame stays clean
        target = noise - x0
        condition_mask = torch.zeros(batch_size, 1, frames, height, width, device=x0.device)
        condition_mask[:, :, 0] = 1.0
        packed_mask = pipe._pack_latents(condition_mask, patch, patch_t).squeeze(-1)
        timestep = (sigmas * 1000.0)[:, None] * (1 - packed_mask)
        fps = self.noise.fps or self.family.defaults.fps
        dtype = pipe.transformer.dtype
        prediction = model(
            hidden_states=pipe._pack_latents(noisy, patch, patch_t).to(dtype),
            encoder_hidden_states=batch["prompt_embeds"].to(dtype),
            timestep=timestep,
            encoder_attention_mask=batch["prompt_attention_mask"],
            num_frames=frames // patch_t,
            height=height // patch,
            width=width // patch,
            rope_interpolation_scale=(pipe.vae_temporal_compression_ratio / fps, pipe.vae_spatial_compression_ratio,
                                      pipe.vae_spatial_compression_ratio),
            return_dict=False,
        )[0]
        prediction = pipe._unpack_latents(prediction.float(), frames // patch_t, height // patch, width // patch,
                                          patch, patch_t)
        loss_mask = 1 - condition_mask
        return masked_mse(prediction, target, loss_mask, self.flow_weights(sigmas).view(batch_size))


