"""Stage 2, inpainting: shapes, pose injection, widening a pretrained UNet, gradients, save/load, oracle
sampling, guidance (Eq. 6 keeps pose, mask and masked image), seeds, batching, overfitting."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from diffusers import UNet2DConditionModel

from helpers_models import make_batch, oracle, overfit, seeds, tiny_config, tiny_encoders, trainable_without_grad
from pcdms.models import diffusion
from pcdms.data.canvas import make_canvas, split_canvas
from pcdms.errors import UserError
from pcdms.models import InpaintModel


def build(**changes) -> InpaintModel:
    torch.manual_seed(0)
    return InpaintModel(dataclasses.replace(tiny_config().inpaint, **changes))


def conditions(samples_dir, batch_size: int = 2, height: int = 64, width: int = 48) -> dict:
    batch = make_batch(samples_dir, batch_size, height, width)
    model = build()
    cond = model.encode_conditions(tiny_encoders(), batch["source_image"], batch["source_pose_image"],
                                   batch["target_pose_image"])
    cond["global_embeds"] = tiny_encoders().clip(batch["target_image"])
    return cond


def sample_args(cond: dict) -> tuple:
    return cond["masked_latents"], cond["pose_canvas"], cond["image_tokens"], cond["global_embeds"]


@pytest.mark.parametrize("height,width", [(64, 48), (32, 44)])  # 32x44: latent 8x11, odd for the UNet
def test_output_is_the_canvas_latent_for_any_autoencoder_multiple(samples_dir, height, width):
    model, cond = build().eval(), conditions(samples_dir, height=height, width=width)
    h, w = height // 4, width // 4
    assert cond["masked_latents"].shape == (2, 48, h, 2 * w) and cond["mask"].shape == (2, 1, h, 2 * w)
    assert cond["pose_canvas"].shape == (2, 3, height, 2 * width)
    eps = model(torch.randn(2, 48, h, 2 * w), torch.tensor([1, 999]), **cond)
    assert eps.shape == (2, 48, h, 2 * w)
    out = model.sample(*sample_args(cond), num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 48, h, 2 * w) and torch.isfinite(out).all()


def test_unet_layout_matches_the_authors():
    model = build()
    assert model.unet.conv_in.weight.shape[1] == 2 * 48 + 1  # noisy | mask | masked latent
    assert model.unet.config.class_embed_type == "projection"
    assert model.unet.class_embedding.linear_1.in_features == 32  # global_embed_dim
    keys = model.state_dict().keys()
    assert "unet.conv_in.weight" in keys and "pose_proj.conv_out.weight" in keys and "pose_proj.blocks.3.weight" in keys
    assert "image_proj.net.4.weight" in keys


def test_the_pose_branch_starts_with_no_effect_and_then_changes_the_output(samples_dir):
    model, cond = build().eval(), conditions(samples_dir)
    x, t = torch.randn(2, 48, 16, 24), torch.tensor(300)
    other_pose = {**cond, "pose_canvas": torch.rand_like(cond["pose_canvas"])}
    assert torch.equal(model(x, t, **cond), model(x, t, **other_pose))  # zero-initialised output conv
    with torch.no_grad():
        model.pose_proj.conv_out.weight.normal_(std=0.1)
    assert not torch.allclose(model(x, t, **cond), model(x, t, **other_pose))


def test_a_pretrained_four_channel_unet_is_widened_by_zero_extending_conv_in(tmp_path):
    torch.manual_seed(0)
    unet_cfg = tiny_config().inpaint.unet
    kwargs = dict(in_channels=4, out_channels=4, block_out_channels=unet_cfg.block_out_channels, layers_per_block=1,
                  down_block_types=unet_cfg.down_block_types, up_block_types=unet_cfg.up_block_types,
                  attention_head_dim=unet_cfg.attention_head_dim, cross_attention_dim=32, use_linear_projection=True,
                  norm_num_groups=8)
    base = UNet2DConditionModel(**kwargs)
    base.save_pretrained(tmp_path / "sd" / "unet")  # an SD folder: the UNet lives in unet/
    cfg = dataclasses.replace(tiny_config().inpaint, latent_channels=4,
                              unet=dataclasses.replace(unet_cfg, pretrained_path=str(tmp_path / "sd")))
    model = InpaintModel(cfg)
    weight = model.unet.conv_in.weight
    assert weight.shape[1] == 9
    assert torch.equal(weight[:, :4], base.conv_in.weight) and torch.all(weight[:, 4:] == 0)
    x = torch.randn(1, 9, 8, 8)  # the widened conv ignores mask and masked latent until trained
    assert torch.allclose(torch.nn.functional.conv2d(x, weight, model.unet.conv_in.bias, padding=1),
                          base.conv_in(x[:, :4]), atol=1e-6)
    theirs = base.state_dict()
    same = [k for k, v in model.unet.state_dict().items() if k in theirs and k != "conv_in.weight"]
    assert same and all(torch.equal(model.unet.state_dict()[k], theirs[k]) for k in same)
    assert model.cfg.unet.pretrained_path == str(tmp_path / "sd")
    with pytest.raises(UserError, match="inpaint.unet.pretrained_path"):
        InpaintModel(dataclasses.replace(cfg, unet=dataclasses.replace(unet_cfg, pretrained_path=str(tmp_path / "x"))))
    UNet2DConditionModel(**kwargs, upcast_attention=True).save_pretrained(tmp_path / "odd")
    with pytest.raises(UserError, match="upcast_attention=True"):  # a saved stage could not rebuild it
        InpaintModel(dataclasses.replace(cfg, unet=dataclasses.replace(unet_cfg, pretrained_path=str(tmp_path / "odd"))))


def test_gradients_reach_every_trainable_parameter_and_no_encoder(samples_dir):
    model, enc = build(cond_drop_prob=0.0).train(), tiny_encoders()
    with torch.no_grad():  # zero-initialised by design, which blocks gradients to the earlier pose convs at step 0
        model.pose_proj.conv_out.weight.normal_(std=0.01)
    model.training_loss(make_batch(samples_dir), enc, torch.Generator().manual_seed(0)).backward()
    assert trainable_without_grad(model) == []
    assert all(p.grad is None for p in [*enc.clip.parameters(), *enc.dino.parameters()])


def test_save_then_load_gives_identical_outputs(tmp_path, samples_dir):
    model, cond = build().eval(), conditions(samples_dir)
    with torch.no_grad():
        model.pose_proj.conv_out.weight.normal_(std=0.1)  # so the pose branch is part of the comparison
    folder = model.save_pretrained(tmp_path / "inpaint")
    saved = json.loads((folder / "config.json").read_text())
    assert saved["stage"] == "inpaint" and saved["config"]["unet"]["pretrained_path"] is None
    loaded = InpaintModel.from_pretrained(folder)
    x, t = torch.randn(2, 48, 16, 24), torch.tensor([5, 600])
    assert torch.equal(loaded(x, t, **cond), model(x, t, **cond))


def test_authors_keys_load_with_the_image_proj_rename(tmp_path, samples_dir):
    model, other, cond = build().eval(), build(), conditions(samples_dir)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.01 * torch.randn_like(p))
    state = {k.replace("image_proj.", "image_proj_model_p."): v for k, v in other.state_dict().items()}
    torch.save({"module": state}, tmp_path / "mp_rank_00_model_states.pt")
    model.load_authors_checkpoint(tmp_path / "mp_rank_00_model_states.pt")
    x, t = torch.randn(2, 48, 16, 24), torch.tensor(40)
    assert torch.equal(model(x, t, **cond), other.eval()(x, t, **cond))


def test_an_oracle_noise_network_makes_the_sampler_return_the_clean_canvas(samples_dir):
    model, cond = build(), conditions(samples_dir)
    batch = make_batch(samples_dir)
    clean = tiny_encoders().autoencoder.encode(make_canvas(batch["source_image"], batch["target_image"]))
    model.denoise = oracle(model.noise_scheduler, clean)
    out = model.sample(*sample_args(cond), guidance_scale=2.0, num_inference_steps=5, generator=seeds(0)[0])
    assert torch.allclose(out, clean, atol=1e-3)
    _, target = split_canvas(tiny_encoders().autoencoder.decode(out))
    assert torch.allclose(target, batch["target_image"], atol=1e-3)


def test_guidance_drops_only_the_tokens_and_class_label_as_the_recipe_says(samples_dir):
    """Paper Eq. 6: the unconditional half keeps pose, mask and masked image. pcdms zeroes the raw DINOv2
    tokens and embedding before the projections (the trained null); the authors' pipeline zeroes the whole
    projected sequence (CLIP token included). The class label is zero in both."""
    model, cond = build(), conditions(samples_dir)
    seen, denoise = [], model.denoise
    model.denoise = lambda x, t, **kw: seen.append(kw) or denoise(x, t, **kw)
    for recipe in ("pcdms", "authors"):
        model.sample(*sample_args(cond), guidance_scale=2.0, num_inference_steps=1, generator=seeds(0)[0],
                     recipe=recipe)
    prepared = model.prepare(*(cond[k] for k in ("mask", "masked_latents", "pose_canvas", "image_tokens",
                                                  "global_embeds")))
    null = model.token_conditions(torch.zeros_like(cond["image_tokens"]), torch.zeros_like(cond["global_embeds"]))
    for inputs, recipe in zip(seen, ("pcdms", "authors")):
        uncond = {k: v[:2] for k, v in inputs.items()}
        conditional = {k: v[2:] for k, v in inputs.items()}
        assert torch.equal(uncond["static"], conditional["static"])  # mask, masked latents, pose embedding
        assert torch.allclose(conditional["static"], prepared["static"], atol=1e-6)
        assert torch.equal(conditional["tokens"], prepared["tokens"])
        assert torch.all(uncond["class_labels"] == 0) and torch.equal(conditional["class_labels"], cond["global_embeds"])
        if recipe == "pcdms":
            assert torch.equal(uncond["tokens"], null["tokens"]) and uncond["tokens"].abs().sum() > 0
        else:
            assert torch.all(uncond["tokens"] == 0)


def test_the_pose_embedding_and_token_projection_run_once_per_sampling_call(samples_dir):
    """Issue 19: what does not depend on the noisy latents or the timestep is computed once per call."""
    model, cond = build(), conditions(samples_dir)
    calls = {"pose_proj": 0, "image_proj": 0, "unet": 0}
    for name in calls:
        getattr(model, name).register_forward_pre_hook(lambda m, a, name=name: calls.__setitem__(name, calls[name] + 1))
    model.sample(*sample_args(cond), guidance_scale=2.0, num_inference_steps=5, generator=seeds(0)[0])
    assert calls == {"pose_proj": 1, "image_proj": 2, "unet": 5}  # image_proj: cond and the null tokens


def test_guidance_one_is_the_conditional_model(samples_dir):
    model, cond = build(), conditions(samples_dir)
    noise = torch.randn(2, 48, 16, 24, generator=torch.Generator().manual_seed(0))
    sched = diffusion.make_scheduler("ddim", model.cfg.schedule)
    by_hand = diffusion.sample_loop(lambda x, t: model(x, t, **cond), sched, noise, 3)
    w1 = model.sample(*sample_args(cond), guidance_scale=1.0, num_inference_steps=3, latents=noise)
    assert torch.allclose(w1, by_hand, atol=1e-6)
    w3 = model.sample(*sample_args(cond), guidance_scale=3.0, num_inference_steps=3, latents=noise)
    assert not torch.allclose(w3, by_hand, atol=1e-4)


def test_the_same_seed_gives_the_same_canvas_and_a_batch_equals_single_calls(samples_dir):
    model, cond = build(), conditions(samples_dir)
    run = lambda gens, sl=slice(None): model.sample(  # noqa: E731
        *(a[sl] for a in sample_args(cond)), num_inference_steps=2, scheduler="ddpm", generator=gens)
    assert torch.equal(run(seeds(0)[0]), run(seeds(0)[0]))
    assert not torch.allclose(run(seeds(0)[0]), run(seeds(1)[0]))
    pair = run(seeds(3, 4))
    singles = torch.cat([run(seeds(3), slice(0, 1)), run(seeds(4), slice(1, 2))])
    assert torch.allclose(pair, singles, rtol=1e-5, atol=1e-4)  # latents of a random eps UNet reach ~30


def test_stage_two_overfits_one_batch(samples_dir):
    model, enc, batch = build(), tiny_encoders(), make_batch(samples_dir, height=32, width=24)
    first, last = overfit(model, lambda g: model.training_loss(batch, enc, g), steps=100, lr=2e-3)
    assert last < 0.05 * first, (first, last)


def test_signed_pose_range_feeds_the_skeleton_in_minus_one_to_one(samples_dir):
    """`pose_image_range: signed` (authors' checkpoints) equals the unit-range model given 2 * pose - 1."""
    cond = conditions(samples_dir)
    unit, signed = build(), build(pose_image_range="signed")
    torch.nn.init.normal_(unit.pose_proj.conv_out.weight, std=0.1)  # non-zero pose branch: the range matters
    signed.load_state_dict(unit.state_dict())
    x, t = torch.randn_like(cond["masked_latents"]), torch.tensor([500, 20])
    args = {k: cond[k] for k in ("mask", "masked_latents", "image_tokens", "global_embeds")}
    with torch.no_grad():
        expected = unit(x, t, pose_canvas=cond["pose_canvas"] * 2 - 1, **args)
        assert torch.allclose(signed(x, t, pose_canvas=cond["pose_canvas"], **args), expected, atol=1e-6)
        assert not torch.allclose(unit(x, t, pose_canvas=cond["pose_canvas"], **args), expected, atol=1e-6)
