"""Stage 3, the refining conditional diffusion model (paper Sec. 3.4, Eq. 7-8; REFERENCE.md Sec. 1 and 3).

A diffusers `UNet2DConditionModel` with 2 x latent input channels, [noisy target latent | latent of the
coarse stage-2 image], one image (not a canvas). The source's DINOv2 tokens enter by cross-attention
through `image_proj` (an MLP). No pose, no CLIP embedding.

Training drops the DINOv2 tokens (zeros) with probability `cond_drop_prob`; the coarse image is never
dropped. Guidance (paper Eq. 8) in this project's recipe therefore keeps the coarse latent in the
unconditional branch: a branch without it was never trained. The authors' recipe (`pcdms.recipes`) zeroes the
projected tokens and the coarse latents, like their sampler and the literal Eq. 8, and may rescale the guided
output (`guidance_rescale`).

Checkpoint keys: `unet.*` as the authors'; their `image_proj_model_p.*` is our `image_proj.*`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from pcdms.models import diffusion
from pcdms.config import RefineConfig
from pcdms.models.encoders import Encoders
from pcdms.errors import UserError
from pcdms.models.blocks import TokenMLP, build_unet, eval_mode
from pcdms.models.io import StageModel
from pcdms.recipes import Recipe, get_recipe


class RefineModel(StageModel):
    """Stage-3 UNet conditioned on the coarse image (channel concat) and DINOv2 tokens; predicts noise (eps, the
    paper) or v, per `cfg.schedule.prediction_type`."""

    stage = "refine"
    encoder_roles = ("autoencoder", "dino")  # no target embedding in stage 3
    config_class = RefineConfig
    authors_key_renames = {"image_proj_model_p.": "image_proj."}

    def __init__(self, cfg: RefineConfig) -> None:
        super().__init__()
        c = cfg.latent_channels
        self.unet, unet_cfg = build_unet(cfg.unet, 2 * c, c, None, "refine.unet.pretrained_path")
        self.cfg = dataclasses.replace(cfg, unet=unet_cfg)
        self.image_proj = TokenMLP(cfg.image_token_dim, cfg.token_hidden_dim, unet_cfg.cross_attention_dim)

    def forward(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        coarse_latents: torch.Tensor,
        image_tokens: torch.Tensor,
    ) -> torch.Tensor:
        """Predicted noise (B, C, h, w) from noisy latents and coarse latents (B, C, h, w), timesteps (B,) or
        0-d, and DINOv2 tokens of the source (B, N, image_token_dim)."""
        return self.denoise(noisy_latents, timesteps, **self.prepare(coarse_latents, image_tokens))

    def prepare(self, coarse_latents: torch.Tensor, image_tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """What does not change between sampling steps: `coarse` latents and the projected `tokens`."""
        dtype = self.dtype
        return {"coarse": coarse_latents.to(dtype), "tokens": self.image_proj(image_tokens.to(dtype))}

    def denoise(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, coarse: torch.Tensor,
                tokens: torch.Tensor) -> torch.Tensor:
        """The UNet on prepared conditions (`prepare`): predicted noise (B, C, h, w)."""
        sample = torch.cat([noisy_latents.to(coarse.dtype), coarse], dim=1)  # (B, 2C, h, w)
        return self.unet(sample, timesteps, encoder_hidden_states=tokens).sample

    @torch.no_grad()
    def encode_conditions(self, encoders: Encoders, source_image: torch.Tensor, coarse_image: torch.Tensor,
                          generator: diffusion.Generator = None,
                          image_tokens: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """`coarse_latents` and `image_tokens` from the source and the coarse image, (B, 3, H, W) in [-1, 1].
        A VAE posterior is sampled with `generator`, or its mean without one (the same conditions every run).
        `image_tokens`: the source's DINOv2 tokens when already computed (stage 2 has them): not recomputed."""
        coarse = encoders.autoencoder.encode(coarse_image.to(encoders.autoencoder.device), generator,
                                             deterministic=generator is None)
        tokens = image_tokens if image_tokens is not None else encoders.dino(source_image.to(encoders.dino.device))
        return {"coarse_latents": coarse.to(self.device, self.dtype), "image_tokens": tokens.to(self.device, self.dtype)}

    def training_loss(self, batch: dict[str, Any], encoders: Encoders, generator: diffusion.Generator = None) -> torch.Tensor:
        """Noise MSE (paper Eq. 7). The batch needs `coarse_image` (stage-2 outputs for its pairs); the
        autoencoder runs once on [targets; coarse images], DINOv2 once on the sources, under no_grad."""
        if "coarse_image" not in batch:
            raise UserError("stage-3 training batches need 'coarse_image' (stage-2 outputs for the training pairs); "
                            "generate them with the trained inpainting model first")
        device, dtype = self.device, self.dtype
        with torch.no_grad():
            ae = encoders.autoencoder
            both = torch.cat([batch["target_image"], batch["coarse_image"]]).to(ae.device)
            latents, coarse = ae.encode(both, generator).to(device, dtype).chunk(2)
            tokens = encoders.dino(batch["source_image"].to(encoders.dino.device)).to(device, dtype)
        return self.loss(latents, {"coarse_latents": coarse, "image_tokens": tokens}, generator)

    def loss(self, latents: torch.Tensor, conditions: dict[str, torch.Tensor],
             generator: diffusion.Generator = None) -> torch.Tensor:
        """The loss on encoded tensors: target latents (B, C, h, w) and the `forward` conditions."""
        return self.conditional_loss(latents, conditions, ("image_tokens",), generator)

    @torch.no_grad()
    def sample(
        self,
        coarse_latents: torch.Tensor,
        image_tokens: torch.Tensor,
        guidance_scale: float = 2.0,
        scheduler: str | Any = "ddim",
        num_inference_steps: int = 20,
        generator: diffusion.Generator = None,
        latents: torch.Tensor | None = None,
        callback: diffusion.StepCallback | None = None,
        strength: float = 1.0,
        recipe: str | Recipe = "pcdms",
        guidance_rescale: float = 0.0,
        guidance_interval: tuple[float, float] = diffusion.FULL_INTERVAL,
    ) -> torch.Tensor:
        """Refined latents (B, C, h, w), guided per paper Eq. 8 (see the module docstring for what the
        unconditional half holds under each recipe). `latents`: optional standard-normal start noise.
        `strength`: 1 starts from pure noise (the paper); below 1 starts from the coarse latent noised that
        far up the schedule and runs only that fraction of the steps (image-to-image).
        `guidance_rescale`: diffusers' rescale of the guided output (0: off)."""
        recipe = get_recipe(recipe)
        coarse = coarse_latents.to(self.device, self.dtype)
        tokens = image_tokens.to(self.device, self.dtype)
        if latents is None:
            latents = diffusion.randn(coarse_latents.shape, generator, self.device, self.dtype)
        with eval_mode(self):
            cond = self.prepare(coarse, tokens)

            def uncond() -> dict[str, torch.Tensor]:
                null_tokens = (torch.zeros_like(cond["tokens"]) if recipe.null_tokens == "projected"
                               else self.prepare(coarse, torch.zeros_like(tokens))["tokens"])
                return {"coarse": torch.zeros_like(coarse) if recipe.null_coarse else coarse, "tokens": null_tokens}

            return self.guided_sample(scheduler, cond, uncond, latents, guidance_scale, num_inference_steps,
                                      generator, callback, init=coarse, strength=strength, recipe=recipe,
                                      guidance_rescale=guidance_rescale, guidance_interval=guidance_interval)
