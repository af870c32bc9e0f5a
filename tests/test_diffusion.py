"""Schedulers, training targets, condition dropout, guidance and the shared sampling loop."""

from __future__ import annotations

import pytest
import torch

from helpers_models import oracle, seeds
from pcdms.models import diffusion
from pcdms.config import ScheduleConfig
from pcdms.errors import UserError

EPS = ScheduleConfig()  # SD: scaled-linear betas, noise prediction (stages 2 and 3)
X0 = ScheduleConfig(beta_schedule="squaredcos_cap_v2", prediction_type="sample")  # stage 1
V = ScheduleConfig(prediction_type="v_prediction")


# unclip samples squared-cosine x0 priors only (its refusal of the others is tested below)
SAMPLER_SCHEDULES = [pytest.param(name, schedule, id=f"{kind}-{name}") for name in diffusion.SCHEDULERS
                     for schedule, kind in ((EPS, "eps"), (X0, "x0"), (V, "v")) if name != "unclip" or schedule is X0]


@pytest.mark.parametrize("steps", [6, 8])  # 1000 / 6 is not whole: DDIM's last step would stop at t = 0
@pytest.mark.parametrize("name,schedule", SAMPLER_SCHEDULES)
def test_an_exact_denoiser_makes_every_sampler_return_the_clean_sample(name, schedule, steps):
    clean = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(0))
    train = diffusion.make_scheduler("ddpm", schedule)
    exact = oracle(train, clean)
    if schedule.prediction_type == "v_prediction":  # v = sqrt(abar) eps - sqrt(1 - abar) x0
        eps_oracle = oracle(diffusion.make_scheduler("ddpm", EPS), clean)

        def exact(x, t):  # noqa: F811 - the v oracle, from the eps oracle of the same betas
            abar = train.alphas_cumprod[int(t)]
            return abar.sqrt() * eps_oracle(x, t) - (1 - abar).sqrt() * clean

    sched = diffusion.make_scheduler(name, schedule)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    out = diffusion.sample_loop(exact, sched, noise, steps, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(out, clean, atol=1e-3), (out - clean).abs().max()


def test_unclip_refuses_a_schedule_it_cannot_sample():
    with pytest.raises(UserError, match="unclip scheduler needs a squaredcos_cap_v2"):
        diffusion.make_scheduler("unclip", EPS)


def test_the_authors_spacing_gives_their_timesteps_and_ours_starts_from_pure_noise():
    # shared/authors_reference/sampling/README.md (UniPC, UnCLIP) and simplified/README.md (DDIM, 20 steps)
    expected = {"unipc": [999, 949, 899, 849, 799, 749, 699, 649, 599, 549, 500, 450, 400, 350, 300, 250, 200,
                          150, 100, 50],
                "ddim": list(range(951, 0, -50))}
    for name, want in expected.items():
        sched = diffusion.make_scheduler(name, EPS, spacing="authors")
        sched.set_timesteps(20)
        assert sched.timesteps.tolist() == want, name
        ours = diffusion.make_scheduler(name, EPS)
        ours.set_timesteps(20)
        assert ours.timesteps[0] == 999 and ours.timesteps[-1] == 49
    unclip = diffusion.make_scheduler("unclip", X0)
    unclip.set_timesteps(20)
    assert unclip.timesteps.tolist()[:4] == [999, 946, 894, 841] and unclip.timesteps[-1] == 0


def test_inference_schedulers_share_the_training_betas():
    for name in diffusion.SCHEDULERS:
        sched = diffusion.make_scheduler(name, X0)
        assert torch.allclose(sched.alphas_cumprod, diffusion.make_scheduler("ddpm", X0).alphas_cumprod)
        assert sched.config.prediction_type == "sample"
    with pytest.raises(UserError, match="unknown scheduler 'plms'"):
        diffusion.make_scheduler("plms", EPS)


def test_a_scheduler_of_another_prediction_type_is_refused():
    with pytest.raises(UserError, match="predicts 'epsilon'"):
        diffusion.as_scheduler(diffusion.make_scheduler("ddim", EPS), X0)


def test_callback_sees_every_step_with_the_predicted_clean_sample():
    clean = torch.randn(1, 3, 4, 4)
    seen = []
    sched = diffusion.make_scheduler("dpm", EPS)  # its step output has no x0: computed by the loop
    out = diffusion.sample_loop(oracle(sched, clean), sched, torch.randn(1, 3, 4, 4), 5,
                                callback=lambda i, t, x, x0: seen.append((i, int(t), x0)))
    assert [s[0] for s in seen] == list(range(5))
    assert seen[0][1] == 999 and seen[-1][1] < seen[0][1]  # trailing spacing starts from pure noise
    assert all(torch.allclose(s[2], clean, atol=1e-3) for s in seen)
    assert torch.allclose(out, clean, atol=1e-3)


def test_training_targets_follow_the_prediction_type():
    clean, noise, t = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4), torch.tensor([0, 500, 999])
    assert torch.equal(diffusion.training_target(diffusion.make_scheduler("ddpm", EPS), clean, noise, t), noise)
    assert torch.equal(diffusion.training_target(diffusion.make_scheduler("ddpm", X0), clean, noise, t), clean)
    sched = diffusion.make_scheduler("ddpm", V)
    abar = sched.alphas_cumprod[t].view(-1, 1, 1, 1)
    v = diffusion.training_target(sched, clean, noise, t)
    assert torch.allclose(v, abar.sqrt() * noise - (1 - abar).sqrt() * clean, atol=1e-6)


def test_offset_noise_shifts_each_sample_and_channel_by_one_constant():
    like = torch.zeros(2, 3, 5, 4)
    plain = diffusion.make_noise(like, 0.0, torch.Generator().manual_seed(0))
    offset = diffusion.make_noise(like, 0.5, torch.Generator().manual_seed(0))
    shift = offset - plain
    assert torch.allclose(shift, shift[..., :1, :1].expand_as(shift))
    assert shift[:, :, 0, 0].abs().min() > 0
    vector = diffusion.make_noise(torch.zeros(4, 16), 0.5, torch.Generator().manual_seed(0))
    shift = vector - diffusion.make_noise(torch.zeros(4, 16), 0.0, torch.Generator().manual_seed(0))
    assert torch.allclose(shift, shift[:, :1].expand_as(shift))  # one shift per embedding


def test_condition_dropout_is_independent_per_sample_and_per_condition():
    conds = {"a": torch.ones(4000, 3), "b": torch.ones(4000, 2, 2)}
    out = diffusion.drop_conditions(conds, 0.1, torch.Generator().manual_seed(0))
    dropped_a = out["a"].sum(1) == 0
    dropped_b = out["b"].flatten(1).sum(1) == 0
    assert torch.all(out["a"][~dropped_a] == 1) and torch.all(out["b"][~dropped_b] == 1)  # kept rows intact
    assert 0.07 < dropped_a.float().mean() < 0.13 and 0.07 < dropped_b.float().mean() < 0.13
    both = (dropped_a & dropped_b).float().mean()
    assert 0.003 < both < 0.02  # about 0.1 x 0.1: independent draws
    again = diffusion.drop_conditions(conds, 0.1, torch.Generator().manual_seed(0))
    assert torch.equal(again["a"], out["a"])  # seeded
    assert diffusion.drop_conditions(conds, 0.0)["a"] is conds["a"]


def guidance_case():
    """A model x * c that records its batch sizes, inputs, and cond (c = 2) / uncond (c = 5) conditions."""
    calls = []

    def model(x, t, c):
        calls.append(x.shape[0])
        return x * c

    return calls, model, torch.randn(3, 2), torch.tensor(7), {"c": torch.full((3, 1), 2.0)}, {"c": torch.full((3, 1), 5.0)}


def test_guidance_batches_cond_and_uncond_in_one_call_and_mixes_them():
    calls, model, x, t, cond, uncond = guidance_case()

    def guided(w: float) -> torch.Tensor:  # this project's guidance: on whenever w != 1
        guidance = diffusion.Guidance(w)
        return guidance(model, x, t, guidance.batch(cond, uncond))

    assert torch.equal(guided(1.0), x * 2)
    assert calls == [3]  # w = 1: the conditional half only
    for w in (0.0, 0.5, 2.0, 7.5):
        calls.clear()
        out = guided(w)
        assert calls == [6]  # one call on [uncond; cond]
        assert torch.allclose(out, w * (x * 2) + (1 - w) * (x * 5))


def test_the_authors_guidance_runs_only_above_one_and_concatenates_once():
    calls, model, x, t, cond, uncond = guidance_case()
    for w in (0.0, 0.5, 1.0):  # diffusers' convention: scale <= 1 is the conditional model alone
        guidance = diffusion.Guidance(w, above_one=True)
        assert not guidance.enabled and torch.equal(guidance(model, x, t, guidance.batch(cond, uncond)), x * 2)
    guidance = diffusion.Guidance(2.0, above_one=True)
    both = guidance.batch(cond, uncond)
    assert both["c"].shape[0] == 6 and torch.equal(both["c"][:3], uncond["c"])  # [uncond; cond], built once
    assert torch.allclose(guidance(model, x, t, both), x * 5 + 2.0 * (x * 2 - x * 5))


def test_guidance_rescale_matches_the_std_of_the_conditional_output():
    g = torch.Generator().manual_seed(0)
    guided, cond = torch.randn(2, 4, 3, 3, generator=g) * 3, torch.randn(2, 4, 3, 3, generator=g)
    assert torch.equal(diffusion.rescale_guidance(guided, cond, 0.0), guided)
    full = diffusion.rescale_guidance(guided, cond, 1.0)
    assert torch.allclose(full.flatten(1).std(dim=1), cond.flatten(1).std(dim=1))
    # r = 2 (the authors' driver): 2 * rescaled - guided, exactly the diffusers formula
    assert torch.allclose(diffusion.rescale_guidance(guided, cond, 2.0), 2 * full - guided)


def test_a_list_of_generators_draws_each_sample_from_its_own_seed():
    batch = diffusion.randn((2, 3, 4), seeds(5, 6))
    singles = torch.cat([diffusion.randn((1, 3, 4), seeds(5)), diffusion.randn((1, 3, 4), seeds(6))])
    assert torch.equal(batch, singles)
    with pytest.raises(ValueError, match="2 generators for a batch of 3"):
        diffusion.randn((3, 4), seeds(1, 2))


def test_zero_inference_steps_is_a_user_error():
    with pytest.raises(UserError, match="at least 1"):
        diffusion.sample_loop(lambda x, t: x, diffusion.make_scheduler("ddim", EPS), torch.zeros(1, 2), 0)


def test_latent_clip_bounds_each_predicted_clean_sample():
    """`sample.latent_clip`: every step's x0 is clipped to [-v, v] (pixel-like latents); ddim/ddpm only."""
    sched = diffusion.make_scheduler("ddim", EPS, clip_range=0.5)
    assert sched.config.clip_sample and sched.config.clip_sample_range == 0.5
    wild = lambda x, t: torch.full_like(x, -40.0)  # noqa: E731 - a network whose x0 estimates explode
    out = diffusion.sample_loop(wild, sched, torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0)), 5)
    assert out.abs().max() <= 0.5 + 1e-5
    assert not diffusion.make_scheduler("ddim", EPS).config.clip_sample
    with pytest.raises(UserError, match="latent_clip"):
        diffusion.make_scheduler("unipc", EPS, clip_range=1.0)


@pytest.mark.parametrize("name", ["ddim", "unipc", "euler"])
def test_strength_starts_part_way_from_init_and_runs_only_that_share_of_steps(name):
    clean = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    sched = diffusion.make_scheduler(name, EPS)
    calls = []
    exact = oracle(sched, clean)

    def counted(x, t):
        calls.append(int(t))
        return exact(x, t)

    out = diffusion.sample_loop(counted, sched, torch.randn(1, 3, 4, 4), 10, init=clean, strength=0.3)
    assert len(calls) == 3 and calls[0] < 999  # 3 of 10 steps, starting below pure noise
    assert torch.allclose(out, clean, atol=1e-3)  # an exact denoiser from noised init returns init
    with pytest.raises(UserError, match=r"strength must be in \(0, 1\]"):
        diffusion.sample_loop(counted, sched, clean, 10, init=clean, strength=0.0)



def test_sampling_keeps_no_autograd_graph():
    """The one sampling loop runs in inference mode, so a network called in it keeps no activations for a
    backward pass (memory at 512 x 1024), whoever calls it."""
    seen = []

    def denoise(x, t):
        seen.append(torch.is_inference_mode_enabled())
        return torch.zeros_like(x)

    out = diffusion.sample_loop(denoise, diffusion.make_scheduler("ddim", EPS), torch.randn(1, 2, 3, 3), 3)
    assert seen == [True, True, True] and not out.requires_grad
