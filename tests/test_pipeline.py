"""PCDMsPipeline end to end on tiny random weights: stages, ablations, shapes, determinism, UNet calls."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pcdms.config import load_config
from pcdms.models.encoders import build_encoders
from pcdms.errors import UserError
from pcdms.models.inpaint import InpaintModel
from pcdms.models.prior import PriorModel
from pcdms.models.refine import RefineModel
from pcdms.sampling.pipeline import PCDMsPipeline
from pcdms.pose import Pose


def _pose(seed: int, height: int = 256, width: int = 176) -> Pose:
    rng = np.random.default_rng(seed)
    xy = rng.uniform([20, 20], [width - 20, height - 20], size=(18, 2)).astype(np.float32)
    xy[17] = -1  # one missing joint, as real annotations have
    return Pose.from_pixels(xy, height, width)


@pytest.fixture(scope="module")
def pipe() -> PCDMsPipeline:
    torch.manual_seed(0)
    cfg = load_config("tiny")
    stages = PriorModel(cfg.prior), InpaintModel(cfg.inpaint), RefineModel(cfg.refine)
    return PCDMsPipeline(build_encoders(cfg.encoders), stages[1], stages[0], stages[2],
                         cfg.data.height, cfg.data.width, cfg.sample)


@pytest.fixture(scope="module")
def source(samples_dir) -> Image.Image:
    return Image.open(samples_dir / "img1.png").convert("RGB")


def _spy(monkeypatch, pipe: PCDMsPipeline) -> dict[str, int]:
    calls = {"prior": 0, "inpaint": 0, "refine": 0}
    for name in calls:
        model = getattr(pipe, name)
        original = model.sample

        def counted(*args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(model, "sample", counted)
    return calls


@pytest.mark.parametrize(
    "mode, expected",
    [("B1", {"inpaint"}), ("B2", {"prior", "inpaint"}), ("B3", {"inpaint", "refine"}),
     ("full", {"prior", "inpaint", "refine"})],
)
def test_each_ablation_calls_exactly_its_stages(monkeypatch, pipe, source, mode, expected):
    calls = _spy(monkeypatch, pipe)
    out = pipe(source, _pose(1), _pose(2), stages=mode, num_inference_steps=2,
               generator=torch.Generator().manual_seed(0))
    assert {name for name, n in calls.items() if n} == expected
    assert all(n <= 1 for n in calls.values())
    assert set(out.stages_run) == expected
    assert (out.target_embeds is not None) == ("prior" in expected)


def test_outputs_come_back_at_the_source_size_and_are_seeded(pipe, source):
    kwargs = dict(num_inference_steps=2, num_samples=2)
    a = pipe(source, _pose(1), _pose(2), generator=torch.Generator().manual_seed(3), **kwargs)
    b = pipe(source, _pose(1), _pose(2), generator=torch.Generator().manual_seed(3), **kwargs)
    assert len(a.images) == 2 and len(a.coarse_images) == 2
    assert all(im.size == source.size for im in a.images + a.coarse_images)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a.images, b.images))
    assert a.target_embeds.shape == (2, pipe.prior.cfg.embed_dim)


def test_fed_inputs_skip_their_stages(monkeypatch, pipe, source):
    calls = _spy(monkeypatch, pipe)
    embeds = torch.randn(pipe.prior.cfg.embed_dim)
    out = pipe(source, _pose(1), _pose(2), target_embeds=embeds, num_inference_steps=2)
    assert calls == {"prior": 0, "inpaint": 1, "refine": 1}
    assert torch.equal(out.target_embeds[0], embeds)
    out = pipe(source, _pose(1), stages="refine", coarse_image=source.resize((88, 128)), num_inference_steps=2)
    assert calls == {"prior": 0, "inpaint": 1, "refine": 2}
    assert out.images[0].size == source.size


def test_one_unet_call_per_step_per_stage_with_guidance(monkeypatch, pipe, source):
    counts = {"inpaint": 0, "refine": 0}
    for name in counts:
        unet = getattr(pipe, name).unet
        original = unet.forward

        def counted(*args, _name=name, _original=original, **kwargs):
            counts[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(unet, "forward", counted)
    pipe(source, _pose(1), _pose(2), num_inference_steps=3, guidance_scale=2.0)
    assert counts == {"inpaint": 3, "refine": 3}


def test_diffusion_process_strip_and_callback(pipe, source):
    seen = []
    out = pipe(source, _pose(1), _pose(2), num_inference_steps=4, return_process=True, process_frames=3,
               callback=lambda stage, i, t, latents, x0: seen.append((stage, i)))
    assert [s for s in seen if s[0] == "inpaint"] == [("inpaint", i) for i in range(4)]
    assert {s[0] for s in seen} == {"prior", "inpaint", "refine"}
    strip = out.process[0]
    assert strip.size == (pipe.width * 6, pipe.height)  # 3 frames of stage 2, then 3 of stage 3


def test_bad_requests_are_user_errors(pipe, source):
    with pytest.raises(UserError, match="B4"):
        pipe(source, _pose(1), _pose(2), stages="B4")
    with pytest.raises(UserError, match="coarse_image"):
        pipe(source, _pose(1), _pose(2), stages=("prior",))


def test_stretch_fit_squashes_like_the_authors_and_returns_the_input_size(pipe, source):
    pipe.stretch = True
    try:
        out = pipe(source, _pose(1), _pose(2), num_inference_steps=1)
    finally:
        pipe.stretch = False
    assert out.images[0].size == source.size


def _pixels(images: list[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(im, np.int16) for im in images])


def test_a_batch_of_pairs_gives_each_pair_what_a_single_call_gives(monkeypatch, pipe, samples_dir):
    # Several pairs in one pass (what `generate` and `export-coarse` do): each pair's samples come from its own
    # generator, so batching changes the speed, not the pictures.
    sources = [Image.open(samples_dir / name).convert("RGB") for name in ("img1.png", "img2.png")]
    targets, poses = [_pose(1), _pose(2)], [_pose(3), _pose(4)]
    singles = [pipe(s, t, p, num_samples=2, num_inference_steps=2, generator=torch.Generator().manual_seed(10 + i))
               for i, (s, t, p) in enumerate(zip(sources, targets, poses))]
    calls = _spy(monkeypatch, pipe)
    batched = pipe.batch(sources, targets, poses, num_samples=2, num_inference_steps=2,
                         generators=[torch.Generator().manual_seed(10), torch.Generator().manual_seed(11)])
    assert calls == {"prior": 1, "inpaint": 1, "refine": 1}  # every stage once for all 4 samples
    for one, many, src in zip(singles, batched, sources):
        assert len(many.images) == 2 and many.images[0].size == src.size
        assert np.abs(_pixels(one.images) - _pixels(many.images)).max() <= 1  # float reordering at most
        assert np.abs(_pixels(one.coarse_images) - _pixels(many.coarse_images)).max() <= 1
        assert torch.allclose(one.target_embeds, many.target_embeds, atol=1e-4)
    # stage 3 over given images: one coarse image per pair
    refined = pipe.batch(sources, [None, None], stages="refine", coarse_images=sources[::-1], num_inference_steps=2,
                         generators=[torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)])
    alone = pipe(sources[1], None, stages="refine", coarse_image=sources[0], num_inference_steps=2,
                 generator=torch.Generator().manual_seed(1))
    assert np.abs(_pixels(refined[1].images) - _pixels(alone.images)).max() <= 1


def test_a_source_given_for_many_frames_is_encoded_once(pipe, source):
    """The frames of an animation share one source: CLIP, DINOv2 and the masked-canvas VAE run once for it
    (and stage 3 reuses stage 2's DINOv2 tokens), and the frames equal separate calls."""
    calls = {"clip": 0, "dino": 0}
    originals = {name: getattr(pipe.encoders, name).forward for name in calls}

    def counting(name):
        def forward(images):
            calls[name] += images.shape[0]
            return originals[name](images)
        return forward

    poses = [_pose(1), _pose(2), _pose(3)]
    try:
        for name in calls:
            getattr(pipe.encoders, name).forward = counting(name)
        frames = pipe.batch([source] * 3, poses, [_pose(0)] * 3, num_inference_steps=2,
                            generators=[torch.Generator().manual_seed(5) for _ in range(3)])
    finally:
        for name, forward in originals.items():
            getattr(pipe.encoders, name).forward = forward
    assert calls == {"clip": 1, "dino": 1}
    single = pipe(source, poses[2], _pose(0), num_inference_steps=2, generator=torch.Generator().manual_seed(5))
    assert np.abs(np.asarray(frames[2].images[0], np.int16) - np.asarray(single.images[0], np.int16)).max() <= 1


def test_zero_steps_is_refused_not_replaced_by_the_default(pipe, source):
    with pytest.raises(UserError, match="num_inference_steps must be at least 1, got 0"):
        pipe(source, _pose(1), _pose(0), num_inference_steps=0)


@pytest.mark.parametrize("stages,strength", [("full", 1.0), ("full", 0.5), ("B1", 1.0), ("B3", 0.3)])
def test_plan_counts_the_steps_each_stage_runs(pipe, source, stages, strength):
    """`plan` is what a progress bar counts: the steps each stage's callback reports, stage 3 fewer when it
    starts part-way (refine_strength < 1)."""
    job = pipe.with_sample(refine_strength=strength)
    seen: dict[str, int] = {}
    job(source, _pose(1), _pose(2), stages=stages, num_inference_steps=5, generator=torch.Generator().manual_seed(0),
        callback=lambda stage, *rest: seen.__setitem__(stage, seen.get(stage, 0) + 1))
    assert job.plan(stages, 5) == seen
    assert list(job.plan(stages, 5)) == [s for s in ("prior", "inpaint", "refine") if s in seen]
