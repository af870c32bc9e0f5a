"""The global embedding stage 2 trains on when `train.prior_embeddings` names a trained prior.

The paper trains stage 2 on the target's own CLIP embedding and samples it with the prior's prediction; where
the prior predicts badly (people unlike its training set) stage 2 follows the wrong embedding. With this, each
training batch's embedding is what the prior samples from the source image and both poses with the run's
sampling settings (`sample.*`, the pipeline's own `sample_prior`), as generation gives it, so stage 2 learns
how far to trust it: what `pcdms export-coarse --prior` does for stage 3. The prior is frozen and in eval mode;
its start noise comes from the training step's generator, so a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pcdms.config import RunConfig
from pcdms.errors import UserError

SETTING = "train.prior_embeddings"


class PriorEmbeddings:
    """`embeddings(batch, generator)` -> (B, D) global embeddings sampled by a frozen prior for a training batch."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe  # a PCDMsPipeline holding the prior and the run's encoders and sampling settings

    @staticmethod
    def check(stage: str, cfg: RunConfig) -> None:
        """The setting against the stage it feeds and the folder it names, before a run writes anything."""
        from pcdms.validation import check_weight_files

        folder = Path(cfg.train.prior_embeddings)
        if stage != "inpaint":
            raise UserError(f"{SETTING} feeds stage 2 (--stage inpaint) only, not --stage {stage}: "
                            f"leave it unset ({SETTING}=null)")
        if cfg.inpaint.global_embed_dim is None:
            raise UserError(f"{SETTING}: this stage 2 takes no global embedding (inpaint.global_embed_dim is null, "
                            "the authors' simplified model), so there is nothing for a prior to give it")
        if not (folder / "config.json").is_file():
            raise UserError(f"{SETTING}={folder}: not a trained stage-1 folder (expected {folder / 'config.json'}); "
                            "pass the prior run's model/ folder (`pcdms train --stage prior ... --out RUN`: RUN/model)")
        check_weight_files(folder, SETTING)

    @classmethod
    def load(cls, cfg: RunConfig, encoders: Any, device: Any) -> PriorEmbeddings:
        """The prior of `cfg.train.prior_embeddings` (`check`ed first), frozen, behind the run's sampling settings."""
        from pcdms.models.prior import PriorModel
        from pcdms.training.previews import preview_pipeline

        folder = Path(cfg.train.prior_embeddings)
        try:
            prior = PriorModel.from_pretrained(folder, device=device)
        except UserError as err:  # e.g. a stage-2 folder: say which setting named it
            raise UserError(f"{SETTING}={folder}: {err}") from None
        if prior.cfg.embed_dim != cfg.inpaint.global_embed_dim:
            raise UserError(f"{SETTING}={folder}: the prior predicts {prior.cfg.embed_dim}-wide embeddings, this "
                            f"stage 2 takes {cfg.inpaint.global_embed_dim} (inpaint.global_embed_dim)")
        prior.requires_grad_(False)
        return cls(preview_pipeline("prior", prior, encoders, cfg))

    @torch.no_grad()
    def __call__(self, batch: dict[str, Any], generator: torch.Generator | None) -> torch.Tensor:
        from pcdms.models.diffusion import randn

        prior, clip = self.pipe.prior, self.pipe.encoders.clip
        source_embeds = clip(batch["source_image"].to(clip.device)).to(prior.device)
        noise = randn((len(source_embeds), prior.cfg.embed_dim), generator, prior.device, prior.dtype)
        return self.pipe.sample_prior(source_embeds, batch["source_keypoints"], batch["target_keypoints"], noise,
                                      generator=generator)
