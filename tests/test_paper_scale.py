"""The paper-scale preset builds the real SD-2.1-base, DINOv2-giant, OpenCLIP ViT-H/14 and prior shapes from
config alone. Built on the `meta` device: shapes and parameter counts without memory or time."""

from __future__ import annotations

import pytest
import torch

from pcdms.config import load_config
from pcdms.models.encoders import Autoencoder, ClipImageEncoder, DinoEncoder
from pcdms.models import InpaintModel, PriorModel, RefineModel

RANDOM = [f"{key}.pretrained_path=null" for key in
          ("inpaint.unet", "refine.unet", "encoders.clip", "encoders.dino", "encoders.autoencoder")]


@pytest.fixture(scope="module")
def cfg():
    return load_config("deepfashion-256", RANDOM)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_stage_two_is_an_sd21_base_unet_with_nine_inputs_and_a_1024_wide_class_embedding(cfg):
    with torch.device("meta"):
        model = InpaintModel(cfg.inpaint)
    unet = model.unet
    assert 860e6 < count(unet) < 872e6  # SD-2.1-base: 865.9 M, plus 5 input channels and the class embedding
    assert unet.conv_in.weight.shape == (320, 9, 3, 3)
    assert unet.config.cross_attention_dim == 1024
    assert unet.class_embedding.linear_1.in_features == 1024 and unet.class_embedding.linear_2.out_features == 1280
    assert model.image_proj.net[0].in_features == 1536 and model.image_proj.net[4].out_features == 1024
    assert model.pose_proj.conv_out.out_channels == 320 and model.pose_proj.downsample == 8
    # 256 x 176 images: a 32 x 44 latent canvas, whose width does not divide by the UNet's x8
    x = torch.empty(1, 4, 32, 44, device="meta")
    out = model(x, torch.tensor(10), torch.empty(1, 1, 32, 44, device="meta"), x,
                torch.empty(1, 3, 256, 352, device="meta"), torch.empty(1, 257, 1536, device="meta"),
                torch.empty(1, 1024, device="meta"))
    assert out.shape == (1, 4, 32, 44)


def test_stage_three_is_an_sd21_base_unet_with_eight_inputs(cfg):
    with torch.device("meta"):
        model = RefineModel(cfg.refine)
    assert 860e6 < count(model.unet) < 870e6
    assert model.unet.conv_in.weight.shape == (320, 8, 3, 3) and model.unet.class_embedding is None


def test_stage_one_is_a_20_block_2048_wide_prior(cfg):
    with torch.device("meta"):
        model = PriorModel(cfg.prior)
    assert len(model.transformer_blocks) == 20 and model.positional_embedding.shape == (1, 6, 2048)
    assert model.transformer_blocks[0].attn1.heads == 32
    assert model.pose_encoder.net[0].in_features == 36 and model.encoder_hidden_states_proj.in_features == 1024
    assert model.proj_to_clip_embeddings.out_features == 1024
    assert 0.95e9 < count(model) < 1.1e9


def test_encoders_have_the_vit_h14_dinov2_giant_and_sd_vae_shapes(cfg):
    images = torch.empty(1, 3, 256, 176, device="meta")
    with torch.device("meta"):
        clip, dino = ClipImageEncoder(cfg.encoders.clip), DinoEncoder(cfg.encoders.dino)
        vae = Autoencoder(cfg.encoders.autoencoder)
        assert clip(images).shape == (1, 1024)
        assert dino(images).shape == (1, 257, 1536)
        assert vae.encode(images, deterministic=True).shape == (1, 4, 32, 22)
    assert 625e6 < count(clip) < 640e6  # OpenCLIP ViT-H/14 vision tower + projection: 632 M
    assert 1.12e9 < count(dino) < 1.15e9  # DINOv2-giant: 1.136 B
    assert 83e6 < count(vae) < 84e6
