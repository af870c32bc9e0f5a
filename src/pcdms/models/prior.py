"""Stage 1, the prior conditional diffusion model (paper Sec. 3.2, Eq. 3-4; REFERENCE.md Sec. 1 and 3).

A non-causal transformer predicts the clean (x0) CLIP image embedding of the target from the source and
target keypoints and the source CLIP embedding. Token sequence, in order:

    [source pose, target pose, source embedding, timestep, noisy target embedding, learned query]

plus a learned positional embedding; the output is the last token -> LayerNorm -> Linear to `embed_dim`.
Embeddings are diffused in normalised form, (e + embed_shift) / embed_scale (scalar: 0.016, 0.415).

Module names equal the authors' checkpoint keys (`pose_encoder`, `pose_encoder1`, `encoder_hidden_states_proj`,
`encoder_hidden_states_proj1`, ...). The time embedding, projections and transformer blocks are those of
diffusers' `PriorTransformer` (same keys), so a Kandinsky-2.2 prior can initialise them (`pretrained_path`).
Keypoints: (B, K, 2) of (x / width, y / height), missing joints (-1, -1) fed as such (see `pcdms.pose`).
Dropped conditions (training, prob `cond_drop_prob` each) and the unconditional branch of guidance are zeros.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.utils.checkpoint
from diffusers import PriorTransformer
from torch import nn

from pcdms.models import diffusion
from pcdms.config import PriorConfig, require_folder
from pcdms.models.encoders import Encoders
from pcdms.errors import UserError
from pcdms.models.blocks import PoseMLP, eval_mode
from pcdms.models.io import StageModel
from pcdms.recipes import Recipe

NUM_TOKENS = 6  # 2 condition tokens ("num_embeddings" in the authors' code) + 4 additional


class PriorModel(StageModel):
    """Stage-1 transformer; `forward` predicts the normalised target embedding x0 (B, embed_dim)."""

    stage = "prior"
    encoder_roles = ("clip",)  # CLIP of the source and target images
    config_class = PriorConfig

    def __init__(self, cfg: PriorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        width, heads = cfg.width, cfg.num_heads
        base = PriorTransformer(
            num_attention_heads=heads, attention_head_dim=width // heads, num_layers=cfg.num_layers,
            embedding_dim=cfg.embed_dim, num_embeddings=NUM_TOKENS - 4, additional_embeddings=4,
            dropout=cfg.dropout, encoder_hid_proj_type=None,
        )
        # Borrow diffusers' blocks under the same attribute names (= checkpoint keys); `base` is dropped.
        self.time_proj, self.time_embedding = base.time_proj, base.time_embedding
        self.proj_in, self.embedding_proj = base.proj_in, base.embedding_proj
        self.positional_embedding, self.prd_embedding = base.positional_embedding, base.prd_embedding
        self.transformer_blocks = base.transformer_blocks
        self.norm_out, self.proj_to_clip_embeddings = base.norm_out, base.proj_to_clip_embeddings
        in_dim = 2 * cfg.num_keypoints
        self.pose_encoder = PoseMLP(in_dim, cfg.pose_hidden_dims, cfg.dropout)  # source pose
        self.pose_encoder1 = PoseMLP(in_dim, cfg.pose_hidden_dims, cfg.dropout)  # target pose
        self.encoder_hidden_states_proj = nn.Linear(cfg.pose_hidden_dims[1], width)
        self.encoder_hidden_states_proj1 = nn.Linear(cfg.pose_hidden_dims[1], width)
        # diffusers starts both at zero, which leaves all six tokens' roles to their content alone.
        nn.init.normal_(self.positional_embedding, std=0.02)
        nn.init.normal_(self.prd_embedding, std=0.02)
        if cfg.pretrained_path is not None:
            self._init_from_kandinsky(cfg.pretrained_path)

    checkpointing = False

    def enable_gradient_checkpointing(self) -> None:
        """Training recomputes each transformer block's activations in the backward pass."""
        self.checkpointing = True

    # ------------------------------------------------------------ embedding normalisation
    def normalize(self, embeds: torch.Tensor) -> torch.Tensor:
        """CLIP embedding -> the diffused space: (e + shift) / scale."""
        return (embeds + self.cfg.embed_shift) / self.cfg.embed_scale

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of `normalize`."""
        return x * self.cfg.embed_scale - self.cfg.embed_shift

    # ------------------------------------------------------------ network
    def forward(
        self,
        noisy_embeds: torch.Tensor,
        timesteps: torch.Tensor,
        source_embeds: torch.Tensor,
        source_keypoints: torch.Tensor,
        target_keypoints: torch.Tensor,
    ) -> torch.Tensor:
        """Predicted normalised x0 (B, D) from noisy normalised embeddings (B, D), timesteps (B,) or 0-d,
        the source CLIP embedding (B, D, unnormalised) and keypoints (B, K, 2)."""
        return self.denoise(noisy_embeds, timesteps, **self.prepare(source_embeds, source_keypoints, target_keypoints))

    def prepare(self, source_embeds: torch.Tensor, source_keypoints: torch.Tensor,
                target_keypoints: torch.Tensor) -> dict[str, torch.Tensor]:
        """The condition tokens, which do not change between sampling steps: `condition_tokens` (B, 3, W) =
        [source pose, target pose, source embedding], each projected to the transformer width."""
        dtype = self.dtype
        source_pose = self.encoder_hidden_states_proj(self.pose_encoder(source_keypoints.to(dtype).flatten(1)))
        target_pose = self.encoder_hidden_states_proj1(self.pose_encoder1(target_keypoints.to(dtype).flatten(1)))
        source = self.embedding_proj(source_embeds.to(dtype))
        return {"condition_tokens": torch.stack([source_pose, target_pose, source], dim=1)}

    def denoise(self, noisy_embeds: torch.Tensor, timesteps: torch.Tensor,
                condition_tokens: torch.Tensor) -> torch.Tensor:
        """The transformer on prepared conditions (`prepare`): predicted normalised x0 (B, D)."""
        batch = noisy_embeds.shape[0]
        t = timesteps.reshape(-1).expand(batch) if timesteps.numel() == 1 else timesteps
        time = self.time_embedding(self.time_proj(t).to(condition_tokens.dtype))  # (B, W)
        tokens = torch.cat(
            [condition_tokens, time[:, None], self.proj_in(noisy_embeds.to(condition_tokens.dtype))[:, None],
             self.prd_embedding.to(condition_tokens.dtype).expand(batch, -1, -1)],
            dim=1,
        ) + self.positional_embedding  # (B, 6, W)
        for block in self.transformer_blocks:  # no attention mask: every token sees every other
            if self.checkpointing and torch.is_grad_enabled():
                tokens = torch.utils.checkpoint.checkpoint(block, tokens, use_reentrant=False)
            else:
                tokens = block(tokens)
        return self.proj_to_clip_embeddings(self.norm_out(tokens[:, -1]))  # (B, D)

    # ------------------------------------------------------------ training
    def training_loss(self, batch: dict[str, Any], encoders: Encoders, generator: diffusion.Generator = None) -> torch.Tensor:
        """x0 MSE (paper Eq. 3) on a training batch; CLIP runs once on [sources; targets] under no_grad.

        Condition dropout applies in training mode only, so an eval-mode loss is the conditional loss.
        """
        device = self.device
        with torch.no_grad():
            images = torch.cat([batch["source_image"], batch["target_image"]]).to(encoders.clip.device)
            source_embeds, target_embeds = encoders.clip(images).to(device).chunk(2)
        return self.loss(source_embeds, target_embeds, batch["source_keypoints"].to(device),
                         batch["target_keypoints"].to(device), generator)

    def loss(self, source_embeds: torch.Tensor, target_embeds: torch.Tensor, source_keypoints: torch.Tensor,
             target_keypoints: torch.Tensor, generator: diffusion.Generator = None) -> torch.Tensor:
        """The loss on already-encoded CLIP embeddings (B, D) and keypoints (B, K, 2)."""
        conditions = {"source_embeds": source_embeds, "source_keypoints": source_keypoints,
                      "target_keypoints": target_keypoints}
        return self.conditional_loss(self.normalize(target_embeds.to(self.dtype)), conditions, tuple(conditions),
                                     generator)

    # ------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        source_embeds: torch.Tensor,
        source_keypoints: torch.Tensor,
        target_keypoints: torch.Tensor,
        guidance_scale: float = 2.0,
        scheduler: str | Any = "ddim",
        num_inference_steps: int = 20,
        generator: diffusion.Generator = None,
        latents: torch.Tensor | None = None,
        callback: diffusion.StepCallback | None = None,
        recipe: str | Recipe = "pcdms",
        guidance_interval: tuple[float, float] = diffusion.FULL_INTERVAL,
    ) -> torch.Tensor:
        """The target's CLIP embedding (B, D), UNnormalised (ready for stage 2), guided per paper Eq. 4.

        The null condition zeroes the raw inputs (source embedding, both keypoint sets), as condition dropout
        does in training. `latents`: optional start noise (B, D), standard normal; otherwise drawn from
        `generator` (one generator per sample reproduces single calls); stochastic schedulers (unclip, ddpm)
        draw their step noise from `generator` too. The callback sees normalised latents.
        """
        raw = {"source_embeds": source_embeds, "source_keypoints": source_keypoints,
               "target_keypoints": target_keypoints}
        raw = {k: v.to(self.device, self.dtype) for k, v in raw.items()}
        shape = (source_embeds.shape[0], self.cfg.embed_dim)
        if latents is None:
            latents = diffusion.randn(shape, generator, self.device, self.dtype)
        with eval_mode(self):
            cond = self.prepare(**raw)
            x0 = self.guided_sample(scheduler, cond, lambda: self.prepare(**{k: torch.zeros_like(v) for k, v in raw.items()}),
                                    latents, guidance_scale, num_inference_steps, generator, callback, recipe=recipe,
                                    guidance_interval=guidance_interval)
        return self.denormalize(x0)

    # ------------------------------------------------------------ initialisation
    def _init_from_kandinsky(self, path: str) -> None:
        """Copy every weight of a diffusers prior (Kandinsky 2.2) whose name and shape match ours.

        The transformer blocks must all match; input/output projections and the positional embedding
        usually differ in shape (1280-d embeddings, 81 tokens) and keep their random init, as in the
        authors' `ignore_mismatched_sizes=True`.
        """
        folder = require_folder(path, "prior to initialise from", "prior.pretrained_path")
        sub = "prior" if (folder / "prior" / "config.json").is_file() else None
        try:
            base = PriorTransformer.from_pretrained(str(folder), subfolder=sub, local_files_only=True)
        except (OSError, ValueError) as err:
            raise UserError(f"cannot load a diffusers PriorTransformer from '{folder}' "
                            f"(prior.pretrained_path): {err}") from None
        theirs, ours = base.state_dict(), self.state_dict()
        usable = {k: v for k, v in theirs.items() if k in ours and ours[k].shape == v.shape}
        blocks = [k for k in ours if k.startswith("transformer_blocks.")]
        absent = [k for k in blocks if k not in usable]
        if absent:
            raise UserError(f"the prior at '{folder}' does not match prior.width/num_layers/num_heads: "
                            f"{len(absent)} transformer keys missing or of another shape, e.g. {absent[0]}")
        self.load_state_dict(usable, strict=False)
        self.initialised_keys = sorted(usable)
