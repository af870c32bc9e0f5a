"""Stage 2, the inpainting conditional diffusion model (paper Sec. 3.3, Eq. 5-6; REFERENCE.md Sec. 1 and 3).

A diffusers `UNet2DConditionModel` denoises the latent of the [source | target] canvas (H x 2W). Its input
has 2 x latent + 1 channels: [noisy canvas latent | mask | latent of [source | black]] (mask polarity:
`pcdms.data.canvas`). Conditions:
- pose: the [source pose | target pose] skeleton canvas through a ControlNet-style embedding (`pose_proj`),
  ADDED to the output of the UNet's first conv (`PoseAddedConvIn`; no fork of the UNet);
- source appearance: DINOv2 tokens of the source through `image_proj` (an MLP) as cross-attention tokens;
- target global feature: the stage-1 CLIP embedding, appended as one more cross-attention token and fed
  through the UNet's projection class embedding, which is added to the timestep embedding.
Training drops the DINOv2 tokens and the global embedding independently (zeros); guidance (paper Eq. 6)
keeps the pose, mask and masked image in its unconditional branch and zeroes the tokens as the sampling
recipe says (`pcdms.recipes`). With `global_embed_dim: null` this is the authors' simplified stage-2-only
model (their demo notebook's `pcdms_ckpt.pt`): DINOv2 tokens only, no class embedding.

Checkpoint keys: `unet.*`, `pose_proj.*` as the authors'; their `image_proj_model_p.*` (three-stage release)
and `image_proj_model.*` (simplified model) are our `image_proj.*`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from pcdms.models import diffusion
from pcdms.config import InpaintConfig
from pcdms.data.canvas import make_canvas, make_inpaint_mask, masked_canvas
from pcdms.models.encoders import Encoders
from pcdms.models.blocks import PoseAddedConvIn, PoseConditioningEmbedding, TokenMLP, build_unet, eval_mode
from pcdms.models.io import StageModel
from pcdms.recipes import Recipe, get_recipe


class InpaintModel(StageModel):
    """Stage-2 UNet with pose embedding, image-token MLP and global embedding; predicts noise (eps, the paper)
    or v, per `cfg.schedule.prediction_type`. `cfg.global_embed_dim` None: the authors' simplified model
    (no CLIP token, no class embedding; stage 2 alone)."""

    stage = "inpaint"
    encoder_roles = ("autoencoder", "clip", "dino")
    config_class = InpaintConfig
    authors_key_renames = {"image_proj_model_p.": "image_proj.", "image_proj_model.": "image_proj."}

    def __init__(self, cfg: InpaintConfig) -> None:
        super().__init__()
        c = cfg.latent_channels
        self.unet, unet_cfg = build_unet(cfg.unet, 2 * c + 1, c, cfg.global_embed_dim, "inpaint.unet.pretrained_path")
        self.cfg = dataclasses.replace(cfg, unet=unet_cfg)
        self.unet.conv_in = PoseAddedConvIn.replace(self.unet.conv_in)
        width = unet_cfg.cross_attention_dim
        self.pose_proj = PoseConditioningEmbedding(cfg.pose_embed_channels, unet_cfg.block_out_channels[0])
        self.image_proj = TokenMLP(cfg.image_token_dim, cfg.token_hidden_dim, width)
        # The paper's widths agree (1024): no extra layer, the authors' key set; a projection otherwise.
        self.global_proj = (nn.Identity() if cfg.global_embed_dim in (None, width)
                            else nn.Linear(cfg.global_embed_dim, width))

    @property
    def uses_global_embeds(self) -> bool:
        """False for the simplified model, which takes no stage-1 embedding."""
        return self.cfg.global_embed_dim is not None

    def forward(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        mask: torch.Tensor,
        masked_latents: torch.Tensor,
        pose_canvas: torch.Tensor,
        image_tokens: torch.Tensor,
        global_embeds: torch.Tensor | None,
    ) -> torch.Tensor:
        """Predicted noise (B, C, h, 2w).

        noisy_latents, masked_latents: (B, C, h, 2w); mask: (B, 1, h, 2w), 1 = source half; timesteps: (B,)
        or 0-d; pose_canvas: (B, 3, H, 2W) in [0, 1]; image_tokens: (B, N, image_token_dim) DINOv2;
        global_embeds: (B, global_embed_dim) CLIP embedding (unnormalised), None for the simplified model.
        """
        prepared = self.prepare(mask, masked_latents, pose_canvas, image_tokens, global_embeds)
        return self.denoise(noisy_latents, timesteps, **prepared)

    def prepare(self, mask: torch.Tensor, masked_latents: torch.Tensor, pose_canvas: torch.Tensor,
                image_tokens: torch.Tensor, global_embeds: torch.Tensor | None) -> dict[str, torch.Tensor | None]:
        """Everything that does not change between sampling steps (shapes as in `forward`):
        `static` (B, C+1+c0, h, 2w) = [mask | masked latents | pose embedding], `tokens` the cross-attention
        sequence (B, N(+1), width) and `class_labels` (B, global_embed_dim) or None."""
        dtype = self.dtype
        pose = self.pose_features(pose_canvas, masked_latents.shape[-2:])
        return {"static": torch.cat([mask.to(dtype), masked_latents.to(dtype), pose], dim=1),
                **self.token_conditions(image_tokens, global_embeds)}

    def pose_features(self, pose_canvas: torch.Tensor, latent_size: torch.Size) -> torch.Tensor:
        """`pose_proj` of the skeleton canvas (B, 3, H, 2W) in [0, 1] -> (B, c0, h, 2w)."""
        if self.cfg.pose_image_range == "signed":  # the authors' checkpoints saw the skeleton in [-1, 1]
            pose_canvas = pose_canvas * 2 - 1
        features = self.pose_proj(pose_canvas.to(self.dtype))
        if features.shape[-2:] != latent_size:
            raise ValueError(f"pose canvas {tuple(pose_canvas.shape[-2:])} gives features of size "
                             f"{tuple(features.shape[-2:])}, but the latent canvas is {tuple(latent_size)}")
        return features

    def token_conditions(self, image_tokens: torch.Tensor,
                         global_embeds: torch.Tensor | None) -> dict[str, torch.Tensor | None]:
        """The cross-attention `tokens` [projected DINOv2 tokens, global token] and the `class_labels`."""
        dtype = self.dtype
        tokens = self.image_proj(image_tokens.to(dtype))  # (B, N, width)
        if not self.uses_global_embeds:
            return {"tokens": tokens, "class_labels": None}
        global_embeds = global_embeds.to(dtype)
        tokens = torch.cat([tokens, self.global_proj(global_embeds)[:, None]], dim=1)  # (B, N + 1, width)
        return {"tokens": tokens, "class_labels": global_embeds}

    def denoise(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, static: torch.Tensor,
                tokens: torch.Tensor, class_labels: torch.Tensor | None) -> torch.Tensor:
        """The UNet on prepared conditions (`prepare`): predicted noise (B, C, h, 2w)."""
        sample = torch.cat([noisy_latents.to(static.dtype), static], dim=1)  # (B, 2C+1+c0, h, 2w)
        return self.unet(sample, timesteps, encoder_hidden_states=tokens, class_labels=class_labels).sample

    # ------------------------------------------------------------ conditions from images
    @torch.no_grad()
    def encode_conditions(
        self, encoders: Encoders, source_image: torch.Tensor, source_pose_image: torch.Tensor,
        target_pose_image: torch.Tensor, generator: diffusion.Generator = None,
    ) -> dict[str, torch.Tensor]:
        """Everything but the global embedding, from images: source (B, 3, H, W) in [-1, 1], pose renders
        (B, 3, H, W) in [0, 1]. Returns `mask`, `masked_latents`, `pose_canvas`, `image_tokens`. A VAE
        posterior is sampled with `generator`, or its mean without one (the same conditions every run)."""
        device, dtype = self.device, self.dtype
        masked = encoders.autoencoder.encode(masked_canvas(source_image).to(encoders.autoencoder.device), generator,
                                             deterministic=generator is None)
        return self._conditions(masked.to(device, dtype), make_canvas(source_pose_image, target_pose_image),
                                encoders.dino(source_image.to(encoders.dino.device)))

    def _conditions(self, masked_latents: torch.Tensor, pose_canvas: torch.Tensor,
                    image_tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        device, dtype = self.device, self.dtype
        b, _, h, w = masked_latents.shape
        return {"mask": make_inpaint_mask(b, h, w, device, dtype), "masked_latents": masked_latents.to(device, dtype),
                "pose_canvas": pose_canvas.to(device, dtype), "image_tokens": image_tokens.to(device, dtype)}

    # ------------------------------------------------------------ training
    def training_loss(self, batch: dict[str, Any], encoders: Encoders, generator: diffusion.Generator = None) -> torch.Tensor:
        """Noise MSE over the whole canvas (paper Eq. 5); encoders run once per batch under no_grad:
        the autoencoder on [canvas; masked canvas], DINOv2 on the sources, CLIP on the targets unless the
        batch brings its `global_embeds` (B, D) (a prior's samples: `train.prior_embeddings`).

        Condition dropout (DINOv2 tokens, global embedding) applies in training mode only.
        """
        device, dtype = self.device, self.dtype
        source, target = batch["source_image"], batch["target_image"]
        with torch.no_grad():
            ae = encoders.autoencoder
            both = torch.cat([make_canvas(source, target), masked_canvas(source)]).to(ae.device)
            latents, masked = ae.encode(both, generator).to(device, dtype).chunk(2)
            image_tokens = encoders.dino(source.to(encoders.dino.device))
            global_embeds = None
            if self.uses_global_embeds:
                given = batch.get("global_embeds")
                global_embeds = (given if given is not None else encoders.clip(target.to(encoders.clip.device))
                                 ).to(device, dtype)
        pose_canvas = make_canvas(batch["source_pose_image"], batch["target_pose_image"])
        conditions = self._conditions(masked, pose_canvas, image_tokens)
        conditions["global_embeds"] = global_embeds if self.uses_global_embeds else None
        return self.loss(latents, conditions, generator)

    def loss(self, latents: torch.Tensor, conditions: dict[str, torch.Tensor],
             generator: diffusion.Generator = None) -> torch.Tensor:
        """The loss on encoded tensors: canvas latents (B, C, h, 2w) and the `forward` conditions."""
        droppable = ("image_tokens", "global_embeds") if self.uses_global_embeds else ("image_tokens",)
        return self.conditional_loss(latents, conditions, droppable, generator)

    # ------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        masked_latents: torch.Tensor,
        pose_canvas: torch.Tensor,
        image_tokens: torch.Tensor,
        global_embeds: torch.Tensor | None,
        guidance_scale: float = 2.0,
        scheduler: str | Any = "ddim",
        num_inference_steps: int = 20,
        generator: diffusion.Generator = None,
        latents: torch.Tensor | None = None,
        callback: diffusion.StepCallback | None = None,
        mask: torch.Tensor | None = None,
        recipe: str | Recipe = "pcdms",
        guidance_interval: tuple[float, float] = diffusion.FULL_INTERVAL,
    ) -> torch.Tensor:
        """Denoised canvas latents (B, C, h, 2w), guided per paper Eq. 6; the target is the right half
        (`pcdms.data.canvas.split_canvas` after decoding). Shapes as in `forward`; `mask` is built when None.
        `latents`: optional standard-normal start noise; otherwise drawn from `generator`.

        The pose embedding, the projected tokens and the [mask | masked latents | pose] channels are computed
        once per call. The unconditional half keeps pose, mask and masked image; per `recipe.null_tokens` it
        zeroes the raw DINOv2 tokens and global embedding before the projections ("inputs": what dropout
        trained) or the whole projected token sequence ("projected": the authors' pipeline); the class label
        is zero either way.
        """
        recipe = get_recipe(recipe)
        raw = self._conditions(masked_latents, pose_canvas, image_tokens)
        if mask is not None:
            raw["mask"] = mask.to(self.device, self.dtype)
        if self.uses_global_embeds:
            global_embeds = global_embeds.to(self.device, self.dtype)
        if latents is None:
            latents = diffusion.randn(masked_latents.shape, generator, self.device, self.dtype)
        with eval_mode(self):
            cond = self.prepare(raw["mask"], raw["masked_latents"], raw["pose_canvas"], raw["image_tokens"],
                                global_embeds if self.uses_global_embeds else None)

            def uncond() -> dict[str, torch.Tensor | None]:
                zero = lambda x: None if x is None else torch.zeros_like(x)  # noqa: E731
                if recipe.null_tokens == "projected":
                    nulls = {"tokens": zero(cond["tokens"]), "class_labels": zero(cond["class_labels"])}
                else:
                    nulls = self.token_conditions(zero(raw["image_tokens"]), zero(cond["class_labels"]))
                return {**cond, **nulls}

            return self.guided_sample(scheduler, cond, uncond, latents, guidance_scale, num_inference_steps,
                                      generator, callback, recipe=recipe, guidance_interval=guidance_interval)
