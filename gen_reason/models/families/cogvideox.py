"""CogVideoX 1.0 and 1.5 image-to-video: latents ``[B, F, C, h, w]``, v-prediction, DDIM.

CogVideoX-5b-I2V's learned positional embeddings fix its size (480x720); CogVideoX 1.5
takes ``16k+1`` frames and pads its latent frames up to its temporal patch.
"""

from __future__ import annotations

from gen_reason.models.families.base import Family, FamilyDefaults, Geometry, Limits

#: ``_class_name`` -> pipeline class.
PIPELINE_CLASSES = {"CogVideoXImageToVideoPipeline": "diffusers:CogVideoXImageToVideoPipeline"}


class CogVideoXFamily(Family):
    """CogVideoX 1.0 / 1.5 image-to-video: latents ``[B, F, C, h, w]``, v-prediction.

    Attention: PyTorch SDPA only. Its attention processor calls SDPA directly (diffusers'
    attention backends do not reach it) and xformers attention breaks generation
    (https://github.com/zai-org/CogVideo/issues/617).
    """

    objective = "gen_reason.train.losses.cogvideox:CogVideoXObjective"

    extra_options = ("dynamic_cfg",)
    attention_backends = ("sdpa",)
    auto_attention = ()
    def __init__(self, name: str, defaults: FamilyDefaults, *, frame_multiple: int | None = None) -> None:
        super().__init__(name, defaults)
        self.frame_multiple = frame_multiple

    def limits(self, configs: dict[str, dict]) -> Limits:
        vae, transformer = configs.get("vae", {}), configs.get("transformer", {})
        spatial = 2 ** (len(vae.get("block_out_channels", (128, 256, 256, 512))) - 1)
        step = self.frame_multiple or int(vae.get("temporal_compression_ratio", 4))
        fixed = None
        if transformer.get("use_learned_positional_embeddings"):
            fixed = (int(transformer["sample_height"]) * spatial, int(transformer["sample_width"]) * spatial)
        return Limits(size_multiple=spatial * int(transformer.get("patch_size", 2)), frame_step=step, fixed_size=fixed)

    def fixed_size(self, pipe) -> tuple[int, int] | None:
        config = pipe.transformer.config
        if not config.get("use_learned_positional_embeddings"):
            return None
        spatial = int(pipe.vae_scale_factor_spatial)
        return int(config.sample_height) * spatial, int(config.sample_width) * spatial

    def native_options(self, pipe) -> dict:
        # A model whose positional embeddings fix its size runs at that size by default.
        fixed = self.fixed_size(pipe)
        return {} if fixed is None else {"size": fixed}

    def frame_step(self, pipe) -> int:
        return self.frame_multiple or super().frame_step(pipe)

    def latent_channels(self, pipe) -> int:
        return int(pipe.transformer.config.in_channels) // 2

    def latent_shape(self, pipe, geometry: Geometry) -> tuple[int, int, int, int]:
        # frame_step is the frame-count rule (16 on 1.5); the VAE compresses time 4x either way.
        spatial, temporal = int(pipe.vae_scale_factor_spatial), int(pipe.vae_scale_factor_temporal)
        frames = (geometry.num_frames - 1) // temporal + 1
        height, width = geometry.height // spatial, geometry.width // spatial
        return self.latent_channels(pipe), frames + self._padding(pipe, frames), height, width

    @staticmethod
    def _padding(pipe, latent_frames: int) -> int:
        # CogVideoX 1.5 pads the latent frames up to a multiple of its temporal patch.
        patch_t = pipe.transformer.config.patch_size_t
        if patch_t is None or latent_frames % patch_t == 0:
            return 0
        return patch_t - latent_frames % patch_t

    def call_kwargs(self, pipe, options: FamilyDefaults) -> dict:
        # The learned positional embeddings cover exactly this many text tokens.
        kwargs = {"max_sequence_length": int(pipe.transformer.config.max_text_seq_length)}
        if options.dynamic_cfg is not None:
            kwargs["use_dynamic_cfg"] = bool(options.dynamic_cfg)
        return kwargs

    def to_canonical(self, pipe, latents, geometry):
        return latents.permute(0, 2, 1, 3, 4)

    def from_canonical(self, pipe, latents, geometry):
        return latents.permute(0, 2, 1, 3, 4)

    def x0_to_canonical(self, pipe, x0, latents, prepared):
        return x0.permute(0, 2, 1, 3, 4)

    def output_latents(self, pipe, latents, geometry):
        latents = self.to_canonical(pipe, latents, geometry)
        return self.trim_latents(pipe, latents, geometry.num_frames)

    def trim_latents(self, pipe, latents, num_frames):
        wanted = (num_frames - 1) // int(pipe.vae_scale_factor_temporal) + 1
        return latents[:, :, latents.shape[2] - wanted :] if latents.shape[2] > wanted else latents

    def replace_noise(self, pipe, prepared, noise, geometry):
        latents, image_latents = prepared
        noise = noise.permute(0, 2, 1, 3, 4) * pipe.scheduler.init_noise_sigma
        return noise.to(latents.device, latents.dtype), image_latents

    def decode(self, pipe, latents, generator, options=None):
        latents = latents.to(dtype=pipe.vae.dtype).permute(0, 2, 1, 3, 4)
        return pipe.decode_latents(latents)


# Defaults below follow each model's own documentation; the URL on each says where.
COGVIDEOX_I2V = CogVideoXFamily(
    "cogvideox-i2v",
    # https://huggingface.co/THUDM/CogVideoX-5b-I2V: 720x480 only, 49 frames at 8 fps, 50 steps, guidance 6.
    # use_dynamic_cfg stays off: the shipped scheduler is DDIM and CogVideo's inference/cli_demo.py
    # (https://github.com/zai-org/CogVideo) turns dynamic CFG on for the DPM scheduler only.
    FamilyDefaults(size=(480, 720), num_frames=49, fps=8, steps=50, guidance=6.0, dynamic_cfg=False),
)
COGVIDEOX15_I2V = CogVideoXFamily(
    "cogvideox1.5-i2v",
    # https://huggingface.co/THUDM/CogVideoX1.5-5B-I2V and
    # https://huggingface.co/docs/diffusers/api/pipelines/cogvideox:
    # 1360x768 (any width 768-1360, sides divisible by 16), 81 or 161 frames (16N+1) at 16 fps, 50 steps, guidance 6.
    FamilyDefaults(size=(768, 1360), num_frames=81, fps=16, steps=50, guidance=6.0, dynamic_cfg=False),
    frame_multiple=16,
)

#: Every CogVideoX family, in the order :data:`gen_reason.models.families.FAMILIES` lists them.
FAMILIES = (COGVIDEOX_I2V, COGVIDEOX15_I2V)


def choose(class_name: str, model_index: dict, configs: dict[str, dict], folder_name: str) -> Family:
    """CogVideoX 1.5 when the transformer has a temporal patch size, else CogVideoX 1.0."""
    if configs.get("transformer", {}).get("patch_size_t") is not None:
        return COGVIDEOX15_I2V
    return COGVIDEOX_I2V
