"""Periodic previews during training: what a person checks to see a run is learning.

- prior: cosine similarity between the sampled and the true target CLIP embedding, beside that of the
  source's own embedding, the baseline a useful prior beats (logged; no image);
- inpaint: a grid source | target pose | generated | ground truth, from the true target embedding;
- refine: a grid source | coarse input | refined | ground truth.
The same few pairs every time (the first of the test split when there is one), sampled with a fixed seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pcdms.config import RunConfig
from pcdms.data.canvas import split_canvas
from pcdms.framing import to_pil
from pcdms.visualize import image_grid


def preview_batch(cfg: RunConfig, stage: str, count: int = 4) -> dict[str, Any] | None:
    """A fixed batch of `count` pairs, or None when the dataset has too few."""
    from torch.utils.data import default_collate

    from pcdms.data.dataset import PairDataset
    from pcdms.data.formats import available_splits

    split = cfg.data.test_split if cfg.data.test_split in available_splits(cfg.data.root, cfg.data.format) else cfg.data.train_split
    if stage == "refine":
        split = cfg.data.train_split  # coarse images exist for the training pairs
    dataset = PairDataset(cfg.data.root, split, cfg.data.height, cfg.data.width, format=cfg.data.format,
                          coarse_dir=cfg.data.coarse_dir if stage == "refine" else None)
    if len(dataset) == 0:
        return None
    step = max(1, len(dataset) // count)
    return default_collate([dataset[i] for i in range(0, min(len(dataset), step * count), step)])


@torch.no_grad()
def write_preview(stage: str, model: Any, encoders: Any, batch: dict[str, Any], cfg: RunConfig,
                  path: Path) -> dict[str, float]:
    """Sample the preview batch with `model`; write the grid to `path` (inpaint/refine); return scalars to log."""
    generator = torch.Generator(device=model.device).manual_seed(0)
    from pcdms.diffusion import make_scheduler

    steps = cfg.sample.num_inference_steps
    scheduler = make_scheduler(cfg.sample.scheduler, model.cfg.schedule,
                               None if stage == "prior" else cfg.sample.latent_clip)
    scale = getattr(cfg.sample, f"{stage}_guidance_scale")
    target_embeds = encoders.clip(batch["target_image"].to(encoders.clip.device)).to(model.device)
    if stage == "prior":
        source_embeds = encoders.clip(batch["source_image"].to(encoders.clip.device))
        sampled = model.sample(source_embeds, batch["source_keypoints"], batch["target_keypoints"],
                               guidance_scale=scale, scheduler=scheduler, num_inference_steps=steps, generator=generator)
        cosine = torch.nn.functional.cosine_similarity
        # the baseline is "copy the source's embedding": a useful prior beats it
        return {"preview/embedding_cosine": float(cosine(sampled.float(), target_embeds.float()).mean()),
                "preview/source_copy_cosine": float(cosine(source_embeds.float(), target_embeds.float()).mean())}
    if stage == "inpaint":
        cond = model.encode_conditions(encoders, batch["source_image"], batch["source_pose_image"],
                                       batch["target_pose_image"])
        canvas = model.sample(cond["masked_latents"], cond["pose_canvas"], cond["image_tokens"], target_embeds,
                              guidance_scale=scale, scheduler=scheduler, num_inference_steps=steps, generator=generator)
        made = split_canvas(encoders.autoencoder.decode(canvas.to(encoders.autoencoder.device)))[1]
        second = to_pil(batch["target_pose_image"] * 2 - 1)
        labels = ["source", "target pose", "generated", "ground truth"]
    else:
        cond = model.encode_conditions(encoders, batch["source_image"], batch["coarse_image"])
        latents = model.sample(cond["coarse_latents"], cond["image_tokens"], guidance_scale=scale,
                               scheduler=scheduler, num_inference_steps=steps, generator=generator)
        made = encoders.autoencoder.decode(latents.to(encoders.autoencoder.device))
        second = to_pil(batch["coarse_image"])
        labels = ["source", "coarse", "refined", "ground truth"]
    columns = [to_pil(batch["source_image"]), second, to_pil(made), to_pil(batch["target_image"])]
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = columns[0][0].size
    zoom = max(1, -(-96 // width))  # small CPU-scale images are enlarged to be seen
    image_grid([list(row) for row in zip(*columns)], labels, cell=(width * zoom, height * zoom)).save(path)
    error = (made.float().cpu() - batch["target_image"].float()).abs().mean()
    return {"preview/l1_to_ground_truth": float(error)}
