"""Stage 1, the prior: shapes, gradients, save/load, checkpoint keys, oracle sampling, guidance, seeds, batching."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from diffusers import PriorTransformer

from helpers_models import MISSING, make_batch, oracle, overfit, seeds, tiny_config, tiny_encoders, trainable_without_grad
from pcdms.errors import UserError
from pcdms.models import InpaintModel, PriorModel


def build(**changes) -> PriorModel:
    torch.manual_seed(0)
    return PriorModel(dataclasses.replace(tiny_config().prior, **changes))


def conditions(batch_size: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    keypoints = torch.rand(2, batch_size, 18, 2, generator=gen)
    keypoints[:, :, -2:] = MISSING  # missing joints are fed as (-1, -1)
    return torch.randn(batch_size, 32, generator=gen) * 0.4, keypoints[0], keypoints[1]


def test_forward_predicts_one_embedding_per_sample_and_sample_returns_unnormalised_embeddings():
    model = build(dropout=0.5).eval()  # dropout in the MLPs and blocks: sampling must switch it off
    source, skp, tkp = conditions(3)
    assert model(torch.randn(3, 32), torch.tensor([1, 500, 999]), source, skp, tkp).shape == (3, 32)
    assert model(torch.randn(3, 32), torch.tensor(10), source, skp, tkp).shape == (3, 32)  # 0-d timestep
    out = model.sample(source, skp, tkp, num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 32) and torch.isfinite(out).all()
    model.train()  # sampling mid-training runs without dropout and hands the model back in training mode
    assert torch.equal(model.sample(source, skp, tkp, num_inference_steps=3, generator=seeds(0)[0]), out)
    assert model.training


def test_embedding_normalisation_is_the_papers_scalar_and_inverts():
    model = build()
    e = torch.randn(4, 32)
    assert torch.allclose(model.normalize(e), (e + 0.016) / 0.415)
    assert torch.allclose(model.denormalize(model.normalize(e)), e, atol=1e-6)


def test_module_names_are_the_authors_checkpoint_keys():
    keys = build().state_dict().keys()
    for name in ("positional_embedding", "prd_embedding", "time_embedding.linear_1.weight", "time_embedding.linear_2.bias",
                 "proj_in.weight", "embedding_proj.weight", "encoder_hidden_states_proj.weight",
                 "encoder_hidden_states_proj1.weight", "norm_out.weight", "proj_to_clip_embeddings.weight",
                 "transformer_blocks.0.attn1.to_q.weight", "transformer_blocks.1.ff.net.2.weight"):
        assert name in keys
    for i in (0, 3, 4, 6):  # Linear, LayerNorm, Linear, LayerNorm of the pose MLPs
        assert f"pose_encoder.net.{i}.weight" in keys and f"pose_encoder1.net.{i}.weight" in keys
    assert build().positional_embedding.shape == (1, 6, 64)


def test_an_authors_deepspeed_file_loads_by_identical_keys(tmp_path):
    model, other = build().eval(), build()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p))
    torch.save({"module": other.state_dict(), "epoch": 3}, tmp_path / "mp_rank_00_model_states.pt")
    model.load_authors_checkpoint(tmp_path / "mp_rank_00_model_states.pt")
    args = (torch.randn(2, 32), torch.tensor(5), *conditions())
    assert torch.equal(model(*args), other.eval()(*args))
    inpaint = InpaintModel(tiny_config().inpaint)
    with pytest.raises(UserError, match="holds stage-1 \\(prior\\) weights"):
        inpaint.load_authors_checkpoint(tmp_path / "mp_rank_00_model_states.pt")


def test_the_transformer_initialises_from_a_diffusers_prior_folder(tmp_path):
    cfg = tiny_config().prior
    torch.manual_seed(1)
    kandinsky_like = PriorTransformer(num_attention_heads=4, attention_head_dim=16, num_layers=2, embedding_dim=48,
                                      num_embeddings=77, additional_embeddings=4)
    kandinsky_like.save_pretrained(tmp_path / "prior")  # the Kandinsky-2.2 repo keeps it in prior/
    model = PriorModel(dataclasses.replace(cfg, pretrained_path=str(tmp_path)))
    theirs = kandinsky_like.state_dict()
    for key in ("transformer_blocks.0.attn1.to_k.weight", "time_embedding.linear_1.weight", "norm_out.weight"):
        assert torch.equal(model.state_dict()[key], theirs[key])
    assert "proj_in.weight" not in model.initialised_keys  # 48-d vs 32-d embeddings: left random
    with pytest.raises(UserError, match="does not match prior.width"):
        PriorModel(dataclasses.replace(cfg, pretrained_path=str(tmp_path), num_layers=3))


def test_gradients_reach_every_trainable_parameter_and_no_encoder(samples_dir):
    model, enc = build(cond_drop_prob=0.0).train(), tiny_encoders()
    model.training_loss(make_batch(samples_dir), enc, torch.Generator().manual_seed(0)).backward()
    assert trainable_without_grad(model) == []
    assert all(p.grad is None for p in enc.clip.parameters())


def test_save_then_load_gives_identical_outputs(tmp_path):
    model = build().eval()
    folder = model.save_pretrained(tmp_path / "prior")
    saved = json.loads((folder / "config.json").read_text())
    assert saved["stage"] == "prior" and saved["config"]["pretrained_path"] is None
    loaded = PriorModel.from_pretrained(folder)
    args = (torch.randn(2, 32), torch.tensor([3, 700]), *conditions())
    assert torch.equal(loaded(*args), model(*args))
    with pytest.raises(UserError, match="holds a 'prior' model, not a 'inpaint' model"):
        InpaintModel.from_pretrained(folder)
    with pytest.raises(UserError, match="not a saved PCDMs prior model"):
        PriorModel.from_pretrained(tmp_path / "nothing")


def test_an_oracle_x0_network_makes_the_sampler_return_the_target_embedding():
    model = build()
    target = torch.randn(2, 32) * 0.4
    model.denoise = oracle(model.noise_scheduler, model.normalize(target))
    out = model.sample(*conditions(), guidance_scale=2.0, num_inference_steps=5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, target, atol=1e-4)


def test_guidance_one_is_the_conditional_model_and_other_scales_differ():
    model = build()
    noise = torch.randn(2, 32, generator=torch.Generator().manual_seed(3))
    cond_only = model.sample(*conditions(), guidance_scale=1.0, num_inference_steps=4, latents=noise)
    calls, denoise = [], model.denoise
    model.denoise = lambda x, t, **kw: calls.append(x.shape[0]) or denoise(x, t, **kw)
    again = model.sample(*conditions(), guidance_scale=1.0, num_inference_steps=4, latents=noise)
    assert torch.equal(again, cond_only) and calls == [2] * 4  # no unconditional half at w = 1
    calls.clear()
    guided = model.sample(*conditions(), guidance_scale=2.0, num_inference_steps=4, latents=noise)
    assert calls == [4] * 4  # [uncond; cond] in one call per step
    assert not torch.allclose(guided, cond_only)


def test_the_same_seed_gives_the_same_embedding_and_another_seed_does_not():
    model = build()
    run = lambda s: model.sample(*conditions(), num_inference_steps=3, scheduler="ddpm", generator=seeds(s)[0])  # noqa: E731
    assert torch.equal(run(0), run(0))
    assert not torch.allclose(run(0), run(1))


def test_a_batch_of_two_equals_two_single_calls():
    model = build()
    source, skp, tkp = conditions()
    pair = model.sample(source, skp, tkp, num_inference_steps=3, scheduler="ddpm", generator=seeds(7, 8))
    one = model.sample(source[:1], skp[:1], tkp[:1], num_inference_steps=3, scheduler="ddpm", generator=seeds(7))
    two = model.sample(source[1:], skp[1:], tkp[1:], num_inference_steps=3, scheduler="ddpm", generator=seeds(8))
    assert torch.allclose(pair, torch.cat([one, two]), atol=1e-5)


def test_the_prior_overfits_one_batch(samples_dir):
    model, enc, batch = build(), tiny_encoders(), make_batch(samples_dir)
    first, last = overfit(model, lambda g: model.training_loss(batch, enc, g), steps=60)
    assert last < 0.05 * first, (first, last)
