"""Stage 3, refining: shapes, gradients, save/load, oracle sampling, guidance (Eq. 8), seeds, batching,
overfitting, and the batch it needs."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from helpers_models import make_batch, oracle, overfit, seeds, tiny_config, tiny_encoders, trainable_without_grad
from pcdms.models import diffusion
from pcdms.errors import UserError
from pcdms.models import RefineModel


def build(**changes) -> RefineModel:
    torch.manual_seed(0)
    return RefineModel(dataclasses.replace(tiny_config().refine, **changes))


def stage3_batch(samples_dir, batch_size: int = 2, height: int = 64, width: int = 48) -> dict:
    batch = make_batch(samples_dir, batch_size, height, width)
    batch["coarse_image"] = (batch["target_image"] * 0.8).clamp(-1, 1)  # stands in for a stage-2 output
    return batch


def conditions(samples_dir, **kwargs) -> dict:
    batch = stage3_batch(samples_dir, **kwargs)
    return build().encode_conditions(tiny_encoders(), batch["source_image"], batch["coarse_image"])


@pytest.mark.parametrize("height,width", [(64, 48), (32, 44)])  # 32x44: latent 8x11, odd for the UNet
def test_output_is_one_image_latent(samples_dir, height, width):
    model, cond = build().eval(), conditions(samples_dir, height=height, width=width)
    h, w = height // 4, width // 4
    assert cond["coarse_latents"].shape == (2, 48, h, w) and cond["image_tokens"].shape == (2, 17, 32)
    assert model(torch.randn(2, 48, h, w), torch.tensor([0, 999]), **cond).shape == (2, 48, h, w)
    out = model.sample(cond["coarse_latents"], cond["image_tokens"], num_inference_steps=2, generator=seeds(0)[0])
    assert out.shape == (2, 48, h, w) and torch.isfinite(out).all()
    assert model.unet.conv_in.weight.shape[1] == 2 * 48 and model.unet.class_embedding is None


def test_gradients_reach_every_trainable_parameter_and_no_encoder(samples_dir):
    model, enc = build(cond_drop_prob=0.0).train(), tiny_encoders()
    model.training_loss(stage3_batch(samples_dir), enc, seeds(0)[0]).backward()
    assert trainable_without_grad(model) == []
    assert all(p.grad is None for p in enc.dino.parameters())


def test_training_needs_coarse_images(samples_dir):
    with pytest.raises(UserError, match="coarse_image"):
        build().training_loss(make_batch(samples_dir), tiny_encoders())


def test_save_then_load_gives_identical_outputs(tmp_path, samples_dir):
    model, cond = build().eval(), conditions(samples_dir)
    folder = model.save_pretrained(tmp_path / "refine")
    assert json.loads((folder / "config.json").read_text())["config"]["unet"]["pretrained_path"] is None
    loaded = RefineModel.from_pretrained(folder)
    x, t = torch.randn(2, 48, 16, 12), torch.tensor([9, 400])
    assert torch.equal(loaded(x, t, **cond), model(x, t, **cond))


def test_an_oracle_noise_network_makes_the_sampler_return_the_clean_target(samples_dir):
    model, cond = build(), conditions(samples_dir)
    batch = stage3_batch(samples_dir)
    clean = tiny_encoders().autoencoder.encode(batch["target_image"])
    model.denoise = oracle(model.noise_scheduler, clean)
    for name in ("ddim", "unipc"):
        out = model.sample(cond["coarse_latents"], cond["image_tokens"], num_inference_steps=6, scheduler=name)
        assert torch.allclose(tiny_encoders().autoencoder.decode(out), batch["target_image"], atol=1e-3)


def test_the_unconditional_half_follows_the_recipe(samples_dir):
    """pcdms: raw tokens zeroed before the projection, coarse image kept (what dropout trained); authors:
    the projected tokens and the coarse latents zeroed (their sampler, `shared/authors_reference`)."""
    model, cond = build(), conditions(samples_dir)
    seen, denoise = [], model.denoise
    model.denoise = lambda x, t, **kw: seen.append(kw) or denoise(x, t, **kw)
    for recipe in ("pcdms", "authors"):
        model.sample(cond["coarse_latents"], cond["image_tokens"], num_inference_steps=1, recipe=recipe)
    prepared = model.prepare(cond["coarse_latents"], cond["image_tokens"])
    null_tokens = model.prepare(cond["coarse_latents"], torch.zeros_like(cond["image_tokens"]))["tokens"]
    for inputs, recipe in zip(seen, ("pcdms", "authors")):
        assert torch.equal(inputs["tokens"][2:], prepared["tokens"]) and torch.equal(inputs["coarse"][2:], cond["coarse_latents"])
        uncond_tokens, uncond_coarse = inputs["tokens"][:2], inputs["coarse"][:2]
        if recipe == "pcdms":
            assert torch.equal(uncond_tokens, null_tokens) and uncond_tokens.abs().sum() > 0
            assert torch.equal(uncond_coarse, cond["coarse_latents"])
        else:
            assert torch.all(uncond_tokens == 0) and torch.all(uncond_coarse == 0)


def test_guidance_one_is_the_conditional_model(samples_dir):
    model, cond = build(), conditions(samples_dir)
    noise = torch.randn(2, 48, 16, 12, generator=seeds(0)[0])
    sched = diffusion.make_scheduler("ddim", model.cfg.schedule)
    by_hand = diffusion.sample_loop(lambda x, t: model(x, t, **cond), sched, noise, 3)
    w1 = model.sample(cond["coarse_latents"], cond["image_tokens"], guidance_scale=1.0, num_inference_steps=3, latents=noise)
    assert torch.allclose(w1, by_hand, atol=1e-6)
    w3 = model.sample(cond["coarse_latents"], cond["image_tokens"], guidance_scale=3.0, num_inference_steps=3, latents=noise)
    assert not torch.allclose(w3, by_hand, atol=1e-4)


def test_the_same_seed_gives_the_same_image_and_a_batch_equals_single_calls(samples_dir):
    model, cond = build(), conditions(samples_dir)
    run = lambda gens, sl=slice(None): model.sample(  # noqa: E731
        cond["coarse_latents"][sl], cond["image_tokens"][sl], num_inference_steps=2, scheduler="ddpm", generator=gens)
    assert torch.equal(run(seeds(0)[0]), run(seeds(0)[0]))
    assert not torch.allclose(run(seeds(0)[0]), run(seeds(1)[0]))
    pair = run(seeds(3, 4))
    singles = torch.cat([run(seeds(3), slice(0, 1)), run(seeds(4), slice(1, 2))])
    assert torch.allclose(pair, singles, rtol=1e-5, atol=1e-4)  # latents of a random eps UNet reach ~30


def test_stage_three_overfits_one_batch(samples_dir):
    model, enc, batch = build(), tiny_encoders(), stage3_batch(samples_dir, height=32, width=24)
    first, last = overfit(model, lambda g: model.training_loss(batch, enc, g), steps=60, lr=3e-3)
    assert last < 0.05 * first, (first, last)


def test_strength_refines_the_coarse_image_in_part_of_the_steps(samples_dir):
    model, cond = build(), conditions(samples_dir)
    calls = []
    handle = model.unet.register_forward_hook(lambda module, args, output: calls.append(1))
    try:
        full = model.sample(cond["coarse_latents"], cond["image_tokens"], num_inference_steps=4, generator=seeds(0)[0])
        assert len(calls) == 4
        calls.clear()
        half = model.sample(cond["coarse_latents"], cond["image_tokens"], num_inference_steps=4, strength=0.5,
                            generator=seeds(0)[0])
        assert len(calls) == 2
    finally:
        handle.remove()
    # Starting from the coarse latent (noised halfway) keeps it closer than starting from pure noise.
    coarse = cond["coarse_latents"]
    assert (half - coarse).abs().mean() < (full - coarse).abs().mean()


def test_conditions_from_a_kl_vae_are_its_mean_without_a_generator(samples_dir):
    # Sampling must not depend on global RNG state: without a generator the VAE's posterior mean is used.
    from pcdms.config import AutoencoderConfig
    from pcdms.models.encoders import Autoencoder

    torch.manual_seed(0)
    # a copy: tiny_encoders() is shared by every test of the run (setting its autoencoder here gave later
    # stage-2 tests a 4-channel VAE)
    encoders = dataclasses.replace(tiny_encoders(), autoencoder=Autoencoder(AutoencoderConfig(
        kind="sd-vae", pretrained_path=None, block_out_channels=(32, 32, 32))))
    model = build(latent_channels=4)
    batch = make_batch(samples_dir)
    first = model.encode_conditions(encoders, batch["source_image"], batch["target_image"])
    torch.manual_seed(123)  # another global RNG state
    again = model.encode_conditions(encoders, batch["source_image"], batch["target_image"])
    assert torch.equal(first["coarse_latents"], again["coarse_latents"])
    mean = encoders.autoencoder.encode(batch["target_image"], deterministic=True)
    assert torch.equal(first["coarse_latents"], mean)
    drawn = model.encode_conditions(encoders, batch["source_image"], batch["target_image"],
                                    generator=torch.Generator().manual_seed(0))
    assert not torch.equal(drawn["coarse_latents"], mean)  # with a generator: a posterior sample
