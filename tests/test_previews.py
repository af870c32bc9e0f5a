"""Training previews sample as `pcdms generate` does (issue 29): through the pipeline's own stage samplers, so
with the recipe's spacing and unconditional inputs, the prior's scheduler, the refine strength and guidance
rescale of the run's config. Before, previews built their own scheduler and ignored all of these, so the preview
of an authors-recipe model or an `unclip` prior showed something `generate` would not make."""

from __future__ import annotations

import pytest
import torch

from helpers_models import make_batch
from pcdms.config import load_config
from pcdms.models.diffusion import make_scheduler, randn
from pcdms.models import InpaintModel, PriorModel, RefineModel
from pcdms.sampling.pipeline import PCDMsPipeline
from pcdms.training.previews import preview_samples

RECIPE = ["sample.recipe=authors", "sample.prior_scheduler=unclip", "sample.refine_strength=0.5",
          "sample.refine_guidance_rescale=0.7", "sample.num_inference_steps=3"]


@pytest.fixture(scope="module")
def setup(samples_dir, tmp_path_factory):
    """Tiny stages saved and loaded back the user's way (`from_stages`), and a preview batch."""
    cfg = load_config("tiny", RECIPE)
    root = tmp_path_factory.mktemp("stages")
    for name, cls in (("prior", PriorModel), ("inpaint", InpaintModel), ("refine", RefineModel)):
        torch.manual_seed(0)
        cls(getattr(cfg, name)).save_pretrained(root / name)
    pipe = PCDMsPipeline.from_stages(cfg, root / "inpaint", root / "prior", root / "refine")
    batch = make_batch(samples_dir, batch_size=2, height=cfg.data.height, width=cfg.data.width)
    batch["coarse_image"] = (batch["target_image"] * 0.8).clamp(-1, 1)
    return cfg, pipe, batch


def _noise(model, *shape: int) -> tuple[torch.Tensor, torch.Generator]:
    generator = torch.Generator().manual_seed(0)
    return randn(shape, generator, model.device, model.dtype), generator


@pytest.mark.parametrize("stage", ["prior", "inpaint", "refine"])
def test_preview_equals_the_pipelines_stage_sampler_with_the_authors_recipe(setup, stage):
    cfg, pipe, batch = setup
    enc, model = pipe.encoders, getattr(pipe, stage)
    target_embeds = enc.clip(batch["target_image"]) if stage == "inpaint" else None
    ours = preview_samples(stage, model, enc, batch, cfg, target_embeds)
    if stage == "prior":
        source_embeds = enc.clip(batch["source_image"])
        noise, generator = _noise(model, 2, model.cfg.embed_dim)
        theirs = pipe.sample_prior(source_embeds, batch["source_keypoints"], batch["target_keypoints"], noise,
                                   generator=generator)
        old = model.sample(source_embeds, batch["source_keypoints"], batch["target_keypoints"],
                           scheduler=make_scheduler(cfg.sample.scheduler, model.cfg.schedule),
                           num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    elif stage == "inpaint":
        cond = model.encode_conditions(enc, batch["source_image"], batch["source_pose_image"],
                                       batch["target_pose_image"])
        noise, generator = _noise(model, *cond["masked_latents"].shape)
        theirs = pipe.sample_inpaint(cond["masked_latents"], cond["pose_canvas"], cond["image_tokens"],
                                     target_embeds, noise, generator=generator)
        old = model.sample(cond["masked_latents"], cond["pose_canvas"], cond["image_tokens"], target_embeds,
                           scheduler=make_scheduler(cfg.sample.scheduler, model.cfg.schedule),
                           num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    else:
        cond = model.encode_conditions(enc, batch["source_image"], batch["coarse_image"])
        noise, generator = _noise(model, *cond["coarse_latents"].shape)
        theirs = pipe.sample_refine(cond["coarse_latents"], cond["image_tokens"], noise, generator=generator)
        old = model.sample(cond["coarse_latents"], cond["image_tokens"],
                           scheduler=make_scheduler(cfg.sample.scheduler, model.cfg.schedule),
                           num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ours, theirs)
    # the recipe, the unclip prior and the refine settings change the result: a preview without them differs
    assert not torch.allclose(ours, old, atol=1e-4)
