"""Inference fast paths (issue 16): each gives the plain path's images within its stated tolerance.

Tiny random-weight stages with a tiny SD-style KL VAE (so the VAE switches matter), the full three-stage
pipeline, two samples, on the CPU. `compile` is not run here (inductor compiles for minutes on 2 CPU
cores); `benchmarks/paper_scale.py` compares its images with the plain path's where it runs.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from pcdms.config import load_config
from pcdms.models.encoders import build_encoders
from pcdms.sampling.fastpaths import apply_fast_paths
from pcdms.models import InpaintModel, PriorModel, RefineModel
from pcdms.sampling.pipeline import PCDMsPipeline
from pcdms.pose import Pose

KL_VAE = ["encoders.autoencoder.kind=sd-vae", "encoders.autoencoder.pretrained_path=null",
          "encoders.autoencoder.block_out_channels=[32,32]", "inpaint.latent_channels=4", "refine.latent_channels=4",
          "inpaint.pose_embed_channels=[8,16]"]


@pytest.fixture(scope="module")
def setup(samples_dir):
    cfg = load_config("tiny", KL_VAE)
    torch.manual_seed(0)
    stages = InpaintModel(cfg.inpaint), PriorModel(cfg.prior), RefineModel(cfg.refine)
    encoders = build_encoders(cfg.encoders)
    source = Image.open(samples_dir / "img1.png").convert("RGB")
    xy = np.random.default_rng(1).uniform([20, 20], [156, 236], size=(18, 2)).astype(np.float32)
    pose = Pose.from_pixels(xy, 256, 176)

    def images(dtype: torch.dtype | None = None, **switches) -> tuple[list[np.ndarray], PCDMsPipeline]:
        pipe = PCDMsPipeline(copy.deepcopy(encoders).to(dtype=dtype), *[copy.deepcopy(s).to(dtype=dtype) for s in stages],
                             cfg.data.height, cfg.data.width, replace(cfg.sample, **switches))
        applied = apply_fast_paths(pipe, pipe.sample, dtype)
        out = pipe(source, pose, pose, num_inference_steps=2, num_samples=2, generator=torch.Generator().manual_seed(0))
        return [np.asarray(image, np.int16) for image in out.images], pipe, applied

    plain, _, applied = images()
    assert applied == []
    return images, plain


def grey_levels(images: list[np.ndarray], plain: list[np.ndarray]) -> tuple[int, float]:
    diffs = [np.abs(a - b) for a, b in zip(images, plain)]
    return max(int(d.max()) for d in diffs), float(np.mean([d.mean() for d in diffs]))


@pytest.mark.parametrize("switch, max_levels", [("channels_last", 1), ("vae_slicing", 1)])
def test_memory_layout_and_slicing_give_the_plain_images(setup, switch, max_levels):
    images, plain = setup
    out, pipe, applied = images(**{switch: True})
    assert applied == [switch]
    assert grey_levels(out, plain)[0] <= max_levels
    if switch == "channels_last":
        assert pipe.inpaint.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)


def test_vae_tiling_is_approximate_by_design(setup):
    """Tiles overlap and are blended: a few grey levels on average here (a random VAE's seams are its worst)."""
    images, plain = setup
    out, pipe, applied = images(vae_tiling=True)
    assert applied == ["vae_tiling"] and pipe.encoders.autoencoder.vae.use_tiling
    worst, mean = grey_levels(out, plain)
    assert mean <= 8.0, mean


@pytest.mark.parametrize("dtype, max_levels, mean_levels", [(torch.bfloat16, 8, 1.5), (torch.float16, 6, 1.0)])
def test_half_precision_keeps_the_vae_in_float32_and_stays_close(setup, dtype, max_levels, mean_levels):
    images, plain = setup
    out, pipe, applied = images(dtype)
    assert applied == ["vae_fp32_decode"] and pipe.encoders.autoencoder.vae.dtype == torch.float32
    assert pipe.inpaint.dtype == dtype
    worst, mean = grey_levels(out, plain)
    assert worst <= max_levels and mean <= mean_levels, (worst, mean)
