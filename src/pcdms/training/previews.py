"""Periodic previews during training: what a person checks to see a run is learning.

Every stage writes `<run>/samples/step-<step>.png`:
- prior: source | target pose | target (ground truth) | the training image whose CLIP embedding is nearest to
  the target's | the one nearest to the sampled embedding. When the prior works, the last two columns agree
  (or look alike). Captions: the sampled embedding's cosine to the true target's ("pred") and, under the
  source, the cosine of the source's own embedding to it ("copy": the baseline a useful prior beats).
  Neighbours are found by cosine after subtracting the training images' mean embedding, the component all
  images share (large for the demo's random-weight CLIP, where any two images have cosine ~0.99);
- inpaint: source | target pose | generated | ground truth, from the true target embedding;
- refine: source | coarse input | refined | ground truth.
The same few pairs every time (the first of the test split when there is one: held out), sampled with a
fixed seed through the pipeline's own stage samplers (`preview_pipeline`), so with the recipe, schedulers,
guidance interval and refine settings `pcdms generate` uses. The returned scalars go to TensorBoard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image

from pcdms.config import RunConfig
from pcdms.data.canvas import split_canvas
from pcdms.framing import to_pil
from pcdms.visualize import image_grid

GALLERY_SIZE = 256  # training images the prior's predictions are matched against


def preview_batch(cfg: RunConfig, stage: str, count: int = 4, encoders: Any = None) -> dict[str, Any] | None:
    """A fixed batch of `count` pairs, or None when the dataset has too few. For the prior, with `encoders`,
    also `gallery_entries` and `gallery_embeds` (K, D): up to GALLERY_SIZE training images and their CLIP
    embeddings."""
    from torch.utils.data import default_collate

    from pcdms.data.dataset import PairDataset
    from pcdms.data.formats import available_splits

    split = cfg.data.test_split if cfg.data.test_split in available_splits(cfg.data.root, cfg.data.format) else cfg.data.train_split
    if stage == "refine":
        split = cfg.data.train_split  # coarse images exist for the training pairs
    dataset = PairDataset(cfg.data.root, split, cfg.data.height, cfg.data.width, format=cfg.data.format,
                          coarse_dir=cfg.data.coarse_dir if stage == "refine" else None, skeleton=cfg.data.skeleton)
    if len(dataset) == 0:
        return None
    step = max(1, len(dataset) // count)
    batch = default_collate([dataset[i] for i in range(0, min(len(dataset), step * count), step)])
    if stage == "prior" and encoders is not None:
        batch["gallery_entries"], batch["gallery_embeds"] = _gallery(cfg, encoders)
    return batch


@torch.no_grad()
def _gallery(cfg: RunConfig, encoders: Any, batch_size: int = 32) -> tuple[list[Any], torch.Tensor]:
    """Up to GALLERY_SIZE training images, spread over the split, and their CLIP embeddings (K, D) on the CPU."""
    from pcdms.data.dataset import image_to_tensor, load_person_image
    from pcdms.data.formats import load_split

    entries = [e for e in load_split(cfg.data.root, cfg.data.train_split, cfg.data.format).images.values()
               if e.path is not None]
    if len(entries) > GALLERY_SIZE:
        entries = [entries[i * len(entries) // GALLERY_SIZE] for i in range(GALLERY_SIZE)]
    embeds = []
    for start in range(0, len(entries), batch_size):
        pixels = torch.stack([image_to_tensor(load_person_image(e, cfg.data.height, cfg.data.width))
                              for e in entries[start:start + batch_size]])
        embeds.append(encoders.clip(pixels.to(encoders.clip.device)).float().cpu())
    return entries, torch.cat(embeds) if embeds else torch.zeros(0, 1)


def nearest(queries: torch.Tensor, gallery: torch.Tensor, centre: torch.Tensor | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query (B, D): the index of the gallery row (K, D) with the highest cosine, and that cosine;
    `centre` (D,) is subtracted from both first."""
    if centre is not None:
        queries, gallery = queries - centre, gallery - centre
    sims = torch.nn.functional.normalize(queries.float(), dim=-1) @ torch.nn.functional.normalize(gallery.float(), dim=-1).T
    best = sims.max(dim=1)
    return best.indices, best.values


def preview_pipeline(stage: str, model: Any, encoders: Any, cfg: RunConfig) -> Any:
    """The stage being trained behind a pipeline with the run's sampling settings, so a preview samples as
    `pcdms generate` will (scheduler and spacing of the recipe, null handling, guidance interval, refine
    strength and guidance rescale): one builder of a stage's sampler arguments, `PCDMsPipeline._run`."""
    from pcdms.sampling.pipeline import PCDMsPipeline

    stages = {"prior": None, "inpaint": None, "refine": None, stage: model}
    return PCDMsPipeline(encoders, stages["inpaint"], stages["prior"], stages["refine"], cfg.data.height,
                         cfg.data.width, cfg.sample, cfg.data.fit, cfg.data.skeleton)


@torch.no_grad()
def preview_samples(stage: str, model: Any, encoders: Any, batch: dict[str, Any], cfg: RunConfig,
                    target_embeds: torch.Tensor | None = None) -> torch.Tensor:
    """What the stage samples for the preview batch with seed 0: the target embedding (B, D) for the prior,
    the canvas latents (B, C, h, 2w) for inpaint, the refined latents (B, C, h, w) for refine."""
    pipe = preview_pipeline(stage, model, encoders, cfg)
    generator = torch.Generator(device=model.device).manual_seed(0)

    def noise(*shape: int) -> torch.Tensor:  # drawn first from the generator, as the models' own samplers do
        from pcdms.models.diffusion import randn

        return randn(shape, generator, model.device, model.dtype)

    if stage == "prior":
        source_embeds = encoders.clip(batch["source_image"].to(encoders.clip.device)).to(model.device)
        return pipe.sample_prior(source_embeds, batch["source_keypoints"], batch["target_keypoints"],
                                 noise(len(source_embeds), model.cfg.embed_dim), generator=generator)
    if stage == "inpaint":
        cond = model.encode_conditions(encoders, batch["source_image"], batch["source_pose_image"],
                                       batch["target_pose_image"])
        masked = cond["masked_latents"]
        return pipe.sample_inpaint(masked, cond["pose_canvas"], cond["image_tokens"], target_embeds,
                                   noise(*masked.shape), generator=generator)
    cond = model.encode_conditions(encoders, batch["source_image"], batch["coarse_image"])
    coarse = cond["coarse_latents"]
    return pipe.sample_refine(coarse, cond["image_tokens"], noise(*coarse.shape), generator=generator)


@torch.no_grad()
def write_preview(stage: str, model: Any, encoders: Any, batch: dict[str, Any], cfg: RunConfig,
                  path: Path) -> dict[str, float]:
    """Sample the preview batch with `model`; write the grid to `path`; return scalars to log."""
    if stage == "refine" or not getattr(model, "uses_global_embeds", True):
        target_embeds = None  # stage 3 takes no global embedding (and trains without CLIP); nor the simplified model
    else:
        target_embeds = encoders.clip(batch["target_image"].to(encoders.clip.device)).to(model.device)
    if stage == "prior":
        return _prior_preview(model, encoders, batch, cfg, path, target_embeds)
    sampled = preview_samples(stage, model, encoders, batch, cfg, target_embeds)
    if stage == "inpaint":
        made = split_canvas(encoders.autoencoder.decode(sampled.to(encoders.autoencoder.device)))[1]
        second = to_pil(batch["target_pose_image"] * 2 - 1)
        labels = ["source", "target pose", "generated", "ground truth"]
    else:
        made = encoders.autoencoder.decode(sampled.to(encoders.autoencoder.device))
        second = to_pil(batch["coarse_image"])
        labels = ["source", "coarse", "refined", "ground truth"]
    columns = [to_pil(batch["source_image"]), second, to_pil(made), to_pil(batch["target_image"])]
    _save_grid(columns, labels, path)
    error = (made.float().cpu() - batch["target_image"].float()).abs().mean()
    return {"preview/l1_to_ground_truth": float(error)}


def _prior_preview(model: Any, encoders: Any, batch: dict[str, Any], cfg: RunConfig, path: Path,
                   target_embeds: torch.Tensor) -> dict[str, float]:
    from pcdms.data.dataset import load_person_image

    source_embeds = encoders.clip(batch["source_image"].to(encoders.clip.device))
    sampled = preview_samples("prior", model, encoders, batch, cfg)
    cosine = torch.nn.functional.cosine_similarity
    predicted = cosine(sampled.float(), target_embeds.float()).cpu()
    copied = cosine(source_embeds.float(), target_embeds.float()).cpu()  # "copy the source": a useful prior beats it
    scalars = {"preview/embedding_cosine": float(predicted.mean()), "preview/source_copy_cosine": float(copied.mean())}
    if "gallery_embeds" not in batch or len(batch["gallery_entries"]) == 0:
        return scalars
    gallery = batch["gallery_embeds"]
    neighbours = []
    for query in (target_embeds, sampled):
        index, _ = nearest(query.float().cpu(), gallery, centre=gallery.mean(dim=0))
        neighbours.append([load_person_image(batch["gallery_entries"][int(i)], cfg.data.height, cfg.data.width)
                           for i in index])
    columns = [to_pil(batch["source_image"]), to_pil(batch["target_pose_image"] * 2 - 1),
               to_pil(batch["target_image"]), *neighbours]
    captions = [[f"copy {c:.3f}", None, None, None, f"pred {p:.3f}"] for c, p in zip(copied, predicted)]
    _save_grid(columns, ["source", "target pose", "target", "NN of target", "NN of pred"], path, captions)
    return scalars


def _save_grid(columns: list[list[Image.Image]], labels: list[str], path: Path,
               captions: list[list[str | None]] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = columns[0][0].size
    zoom = max(1, -(-96 // width))  # small CPU-scale images are enlarged to be seen
    image_grid([list(row) for row in zip(*columns)], labels, cell=(width * zoom, height * zoom),
               captions=captions).save(path)
