"""Guidance on a limited interval of the steps (Kynkaanniemi et al. 2024; `sample.guidance_interval`).

Every stage gets it through the one sampling loop: inside the interval a step runs [uncond; cond] (2B rows),
outside it the conditional branch alone (B rows). [0, 1] is today's loop exactly; an empty interval is
guidance scale 1.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch
from PIL import Image

from pcdms.models import diffusion
from pcdms.config import load_config
from pcdms.models.encoders import build_encoders
from pcdms.errors import ConfigError, UserError
from pcdms.models.inpaint import InpaintModel
from pcdms.models.prior import PriorModel
from pcdms.models.refine import RefineModel
from pcdms.sampling.pipeline import PCDMsPipeline
from pcdms.pose import Pose

STAGES = ("prior", "inpaint", "refine")


@pytest.fixture(scope="module")
def pipe() -> PCDMsPipeline:
    torch.manual_seed(0)
    cfg = load_config("tiny")
    return PCDMsPipeline(build_encoders(cfg.encoders), InpaintModel(cfg.inpaint), PriorModel(cfg.prior),
                         RefineModel(cfg.refine), cfg.data.height, cfg.data.width, cfg.sample)


def _pose(seed: int) -> Pose:
    return Pose.from_normalized(np.random.default_rng(seed).uniform(0.15, 0.85, (18, 2)), 256, 176)


def _source() -> Image.Image:
    pixels = np.random.default_rng(7).integers(0, 255, (96, 64, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _generate(pipe: PCDMsPipeline, interval=(0.0, 1.0), steps: int = 3, **kwargs) -> np.ndarray:
    pipe.sample = dataclasses.replace(pipe.sample, guidance_interval=interval)
    out = pipe(_source(), _pose(1), _pose(2), num_inference_steps=steps, generator=torch.Generator().manual_seed(4),
               **kwargs)
    return np.stack([np.asarray(out.images[0]), np.asarray(out.coarse_images[0])]).astype(np.int16)


def _count_rows(monkeypatch, pipe: PCDMsPipeline) -> dict[str, list[int]]:
    """Rows of every network call (`denoise`, the per-step network of each stage), per stage."""
    rows: dict[str, list[int]] = {name: [] for name in STAGES}
    for name in STAGES:
        model = getattr(pipe, name)

        def counted(x, t, _name=name, _original=model.denoise, **conditions):
            rows[_name].append(x.shape[0])
            return _original(x, t, **conditions)

        monkeypatch.setattr(model, "denoise", counted)
    return rows


def test_the_interval_is_a_fraction_of_the_steps_counted_from_the_noisiest():
    def guided(steps, interval):
        return [i for i in range(steps) if diffusion.in_guidance_interval(i, steps, interval)]

    assert guided(20, (0.0, 1.0)) == list(range(20))
    assert guided(20, (0.0, 0.5)) == list(range(10))
    assert guided(20, (0.2, 0.8)) == list(range(4, 16))
    assert guided(20, (0.3, 0.3)) == [] and guided(20, (0.0, 0.0)) == []
    for steps in (1, 3, 5, 7):  # [lo, mid) and [mid, hi) split the steps with no step lost or doubled
        assert sorted(guided(steps, (0.0, 0.4)) + guided(steps, (0.4, 1.0))) == list(range(steps))


def test_limited_interval_saves_half_the_rows_on_the_unguided_steps(monkeypatch, pipe):
    rows = _count_rows(monkeypatch, pipe)
    _generate(pipe, (0.0, 0.5), steps=10)
    for name in STAGES:  # 5 guided steps of [uncond; cond], then 5 of cond alone, in every stage
        assert rows[name] == [2] * 5 + [1] * 5, name
    for name in STAGES:
        rows[name].clear()
    _generate(pipe, (0.2, 0.8), steps=5)  # steps 1, 2, 3 of 0..4
    assert all(rows[name] == [1, 2, 2, 2, 1] for name in STAGES)


def test_full_interval_is_the_loop_guided_on_every_step_bit_for_bit(pipe):
    """(0, 1) against the guided loop built by hand from its parts (what every stage ran before)."""
    prior = pipe.prior
    gen = torch.Generator().manual_seed(0)
    raw = {"source_embeds": torch.randn(2, prior.cfg.embed_dim, generator=gen),
           "source_keypoints": torch.rand(2, 18, 2, generator=gen),
           "target_keypoints": torch.rand(2, 18, 2, generator=gen)}
    latents = torch.randn(2, prior.cfg.embed_dim, generator=gen)
    guidance = diffusion.Guidance(2.0)
    with torch.no_grad():
        null = prior.prepare(**{k: torch.zeros_like(v) for k, v in raw.items()})
        conditions = guidance.batch(prior.prepare(**raw), null)
        scheduler = diffusion.make_scheduler("ddim", prior.cfg.schedule)
        by_hand = prior.denormalize(diffusion.sample_loop(
            lambda x, t: guidance(prior.denoise, x, t, conditions), scheduler, latents, 4))
    ours = prior.sample(**raw, guidance_scale=2.0, num_inference_steps=4, latents=latents, guidance_interval=(0.0, 1.0))
    assert torch.equal(ours, by_hand)
    assert np.array_equal(_generate(pipe, (0.0, 1.0)), _generate(pipe, (0, 1)))


def test_an_empty_interval_is_guidance_scale_one(pipe):
    unguided = _generate(pipe, (0.0, 1.0), guidance_scale=1.0)
    for interval in ((0.0, 0.0), (0.6, 0.6)):
        # the same conditional call on B rows either way, so not just close: identical
        assert np.array_equal(_generate(pipe, interval, guidance_scale=2.0), unguided)
    assert np.abs(_generate(pipe, (0.0, 1.0), guidance_scale=2.0) - unguided).max() > 1  # guidance does change it


def test_a_partial_interval_differs_from_full_and_from_no_guidance(pipe):
    full, none = _generate(pipe, (0.0, 1.0)), _generate(pipe, (0.0, 0.0))
    early = _generate(pipe, (0.0, 0.5))  # 3 steps: steps 0 and 1 guided, step 2 not
    assert not np.array_equal(early, full) and not np.array_equal(early, none)


@pytest.mark.parametrize("interval, named", [("[0.8,0.2]", "sample.guidance_interval"),
                                              ("[0.0,1.5]", "sample.guidance_interval[1]"),
                                              ("[-0.1,0.5]", "sample.guidance_interval[0]")])
def test_a_bad_interval_is_a_config_error_naming_the_key(interval, named):
    with pytest.raises(ConfigError, match=re.escape(f"'{named}' must be")):
        load_config("tiny", [f"sample.guidance_interval={interval}"])
    with pytest.raises(ConfigError, match="expects 2 items"):
        load_config("tiny", ["sample.guidance_interval=[0.5]"])


def test_the_authors_recipes_refuse_a_limited_interval(pipe):
    assert load_config("authors-512").sample.guidance_interval == (0.0, 1.0)
    with pytest.raises(ConfigError, match="sample.guidance_interval=.*needs sample.recipe=pcdms"):
        load_config("authors-512", ["sample.guidance_interval=[0.0,0.5]"])
    raw = {"source_embeds": torch.zeros(1, pipe.prior.cfg.embed_dim), "source_keypoints": torch.rand(1, 18, 2),
           "target_keypoints": torch.rand(1, 18, 2)}
    with pytest.raises(UserError, match="authors"):
        pipe.prior.sample(**raw, num_inference_steps=2, recipe="authors", guidance_interval=(0.0, 0.5))


def test_generate_and_refine_take_the_interval_as_a_sample_override_and_save_it(tmp_path, pipe, capsys):
    from pcdms.cli import main
    from pcdms.data.synth import generate as synth

    model = pipe.save_pretrained(tmp_path / "model", load_config("tiny"))
    data = tmp_path / "data"
    synth(data, train_identities=1, test_identities=1, poses_per_identity=2, height=64, width=48, seed=0)
    run = ["generate", "--model", str(model), "--dataset", str(data), "--split", "test", "--steps", "2",
           "--limit", "1", "--no-progress", "--device", "cpu"]
    assert main([*run, "--out", str(tmp_path / "out"), "sample.guidance_interval=[0.2,0.8]"]) == 0
    assert load_config(str(tmp_path / "out" / "config.yaml")).sample.guidance_interval == (0.2, 0.8)
    assert len(list((tmp_path / "out").glob("*_to_*.png"))) == 1
    refined = tmp_path / "refined"  # refine takes them too, also after its list of --images
    assert main(["refine", "--model", str(model), "--images", str(tmp_path / "out"), "--dataset", str(data),
                 "--split", "test", "--out", str(refined), "--steps", "2", "--no-progress", "--device", "cpu",
                 "sample.guidance_interval=[0.0,0.5]"]) == 0
    assert load_config(str(refined / "config.yaml")).sample.guidance_interval == (0.0, 0.5)
    assert len(list(refined.glob("*_to_*.png"))) == 1
    capsys.readouterr()
    for bad, says in (("sample.guidance_interval=[0.9,0.1]", "sample.guidance_interval"),
                      ("train.max_steps=3", "only sampling settings")):
        assert main([*run, "--out", str(tmp_path / "bad"), bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err
