"""The authors' presets make the authors' stage-2 inputs from files: every preprocessing case of
`inputs/cases.json` (`$PCDMS_AUTHORS_REFERENCE`, default the vendored `tests/data/authors_reference`; its
`inputs/README.md` says how each was recorded with their notebook's code).

A case is a photo, its keypoints and a target pose *picture* (one of their DWPose demo renders). Under
`authors-512` (and `authors-simplified`, which inherits its data and encoder settings) the pipeline must give:
- the VAE canvas [photo squashed bicubic to 512 x 512 | black], pixel for pixel;
- the pose canvas [source keypoints drawn by `draw_bodypose` | the target picture resized bicubic], pixel for
  pixel (the picture is used as given, not read and drawn again);
- the CLIP/DINOv2 pixel values of `CLIPImageProcessor`, within 0.031 (two grey levels after CLIP's
  normalisation; Pillow and transformers versions resize a little differently).
Every case in the file runs; none is listed here. The encoders are tiny random ones built from the preset:
only their preprocessing is under test.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from pcdms.config import load_config
from pcdms.models.encoders import ClipImageEncoder, DinoEncoder
from pcdms.imageio import load_image
from pcdms.sampling.pipeline import PCDMsPipeline
from pcdms.pose import read_openpose_json
from pcdms.pose.picture import read_skeleton_picture

DATA = Path(__file__).resolve().parent / "data"
REF = Path(os.environ.get("PCDMS_AUTHORS_REFERENCE", DATA / "authors_reference")) / "inputs"
CASES = json.loads((REF / "cases.json").read_text())["preprocess"] if (REF / "cases.json").is_file() else []
# tiny random encoders with the preset's preprocessing (image size, normalisation, processor)
TINY = {"pretrained_path": None, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}


def eight_bit(tensor: torch.Tensor, signed: bool) -> np.ndarray:
    """(1, 3, H, W) in [-1, 1] (signed) or [0, 1] -> uint8 (H, W, 3), exactly invertible for 8-bit inputs."""
    unit = (tensor[0] + 1) / 2 if signed else tensor[0]
    return (unit.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@pytest.fixture(scope="module", params=["authors-512", "authors-simplified"])
def preset(request):
    cfg = load_config(request.param)
    pipe = PCDMsPipeline(None, None, height=cfg.data.height, width=cfg.data.width, sample=cfg.sample,
                         fit=cfg.data.fit, skeleton=cfg.data.skeleton)
    torch.manual_seed(0)
    clip = replace(cfg.encoders.clip, intermediate_size=64, projection_dim=16, **TINY)
    return pipe, ClipImageEncoder(clip), DinoEncoder(replace(cfg.encoders.dino, **TINY))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["case"])
def test_stage2_inputs_are_the_authors(preset, case):
    pipe, clip, dino = preset
    folder = REF / case["case"]
    assert (pipe.height, pipe.width) == tuple(case["image_size"])
    source_pose = read_openpose_json(REF / case["source_keypoints"])
    picture = load_image(REF / case["target_pose_image"])
    target_pose = read_skeleton_picture(picture, case["target_pose_image"]).pose
    images = pipe.stage2_images(load_image(REF / case["photo"]), target_pose, source_pose)

    vae_canvas = np.asarray(Image.open(folder / "vae_canvas.png").convert("RGB"))
    np.testing.assert_array_equal(eight_bit(images["masked_canvas"], signed=True), vae_canvas)
    pose_canvas = np.asarray(Image.open(folder / "st_pose.png").convert("RGB"))
    np.testing.assert_array_equal(eight_bit(images["pose_canvas"], signed=False), pose_canvas)

    want = load_file(str(folder / "tensors.safetensors"))["clip_pixel_values"]
    for encoder in (clip, dino):
        pixels = encoder.pixels(images["source"])
        assert pixels.shape == want.shape
        assert (pixels - want).abs().max() <= 0.031, (type(encoder).__name__, (pixels - want).abs().max())


def test_the_project_recipe_draws_a_picture_again():
    """Under a project preset ("scaled" skeletons) a pose picture's keypoints are drawn again: the target half
    of the pose canvas is a fresh render, not the resized file."""
    case = CASES[0]
    cfg = load_config("deepfashion-512")
    assert cfg.data.skeleton == "scaled"
    pipe = PCDMsPipeline(None, None, height=cfg.data.height, width=cfg.data.width, fit="stretch")
    picture = load_image(REF / case["target_pose_image"])
    target_pose = read_skeleton_picture(picture, "pose").pose
    images = pipe.stage2_images(load_image(REF / case["photo"]), target_pose,
                                read_openpose_json(REF / case["source_keypoints"]))
    target_half = eight_bit(images["pose_canvas"], signed=False)[:, cfg.data.width:]
    redrawn = target_pose.resized(cfg.data.height, cfg.data.width).render()
    np.testing.assert_array_equal(target_half, redrawn)
    given = np.asarray(picture.resize((cfg.data.width, cfg.data.height), Image.Resampling.BICUBIC))
    assert np.abs(target_half.astype(int) - given).max() > 100  # their DWPose hands are not drawn, for one
