"""The authors' released models give the authors' numbers: their forward passes and their sampling loops.

`$PCDMS_AUTHORS_REFERENCE` (default: the copy vendored in `tests/data/authors_reference`) holds tiny checkpoints in the authors' exact
layouts and what the authors' own classes and pipelines computed from them (diffusers 0.24, float32, CPU).
Every checkpoint goes through `pcdms convert` (the user's path), is loaded from the converted folder, and is
run through the pipeline's own stage samplers (`PCDMsPipeline.sample_prior/sample_inpaint/sample_refine`)
with the converted model's config: no sampler is copied here. Every case file found in `sampling/` and
`simplified/` is checked, so cases added later are checked without a code change.

What shapes cannot show is given as overrides, as a user of another size would: the tiny UNets have 8 heads
per block and 8 norm groups, the tiny prior 2 heads.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from conftest import DATA
from pcdms.cli import main
from pcdms.config import load_config
from pcdms.models import InpaintModel, PriorModel, RefineModel
from pcdms.sampling.pipeline import PCDMsPipeline

REF = Path(os.environ.get("PCDMS_AUTHORS_REFERENCE", DATA / "authors_reference"))
TINY_UNET = ["unet.attention_head_dim=[8,8]", "unet.norm_num_groups=8"]
OVERRIDES = {"prior": ["prior.num_heads=2"], "inpaint": [f"inpaint.{o}" for o in TINY_UNET],
             "refine": [f"refine.{o}" for o in TINY_UNET]}
FOLDERS = {"prior": "stage1", "inpaint": "stage2", "refine": "stage3"}


def case_files(folder: str) -> list[Path]:
    """Every sampling case file: all safetensors but the shared inputs and components."""
    skip = {"inputs.safetensors", "outputs.safetensors", "sampling_inputs.safetensors", "tiny_vae.safetensors"}
    return sorted(p for p in (REF / folder).glob("*.safetensors") if p.name not in skip)


def load(path: Path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in load_file(str(path)).items()}  # cloned: aligned memory, as recorded


def meta(path: Path) -> dict:
    with safe_open(str(path), "pt") as f:
        return json.loads((f.metadata() or {}).get("meta", "{}"))


def number(pattern: str, text: str, default: float) -> float:
    found = re.search(pattern, text)
    return float(found.group(1)) if found else default


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, Path]:
    """Each reference checkpoint converted with `pcdms convert`, as a user would."""
    assert REF.is_dir(), f"expected the authors' reference fixtures at {REF} (set PCDMS_AUTHORS_REFERENCE)"
    root = tmp_path_factory.mktemp("converted")
    out = {}
    for stage, folder in FOLDERS.items():
        out[stage] = root / stage
        assert main(["convert", "--from-authors", str(REF / folder / "mp_rank_00_model_states.pt"),
                     "--stage", stage, "--out", str(out[stage]), *OVERRIDES[stage]]) == 0
    out["simplified"] = root / "simplified"
    assert main(["convert", "--from-authors", str(REF / "simplified" / "pcdms_ckpt.pt"), "--out",
                 str(out["simplified"]), *OVERRIDES["inpaint"]]) == 0
    return out


def pipeline(converted: dict[str, Path], config: str = "authors-512", **sample) -> PCDMsPipeline:
    """The converted stages behind a pipeline with the preset's sampling settings (no encoders needed:
    the fixtures give encoded tensors)."""
    cfg = load_config(config)
    stages = {name: cls.from_pretrained(converted[name]) for name, cls in
              (("prior", PriorModel), ("inpaint", InpaintModel), ("refine", RefineModel))}
    if config == "authors-simplified":
        stages = {"inpaint": InpaintModel.from_pretrained(converted["simplified"] / "inpaint")}
    return PCDMsPipeline(None, stages["inpaint"], stages.get("prior"), stages.get("refine"),
                         sample=replace(cfg.sample, **sample))


# ---------------------------------------------------------------- forward passes (atol 1e-5)
def test_converted_prior_forward_equals_the_authors(converted):
    x, y = load(REF / "stage1" / "inputs.safetensors"), load(REF / "stage1" / "outputs.safetensors")
    model = PriorModel.from_pretrained(converted["prior"])
    with torch.no_grad():
        out = model(x["hidden_states"][:, 0], x["timestep"], x["proj_embedding"][:, 0],
                    x["encoder_hidden_states"].view(-1, 18, 2), x["encoder_hidden_states1"].view(-1, 18, 2))
    assert torch.allclose(out, y["predicted_image_embedding"], atol=1e-5), (out - y["predicted_image_embedding"]).abs().max()


def test_converted_inpaint_forward_equals_the_authors(converted):
    x, y = load(REF / "stage2" / "inputs.safetensors"), load(REF / "stage2" / "outputs.safetensors")
    model = InpaintModel.from_pretrained(converted["inpaint"])
    canvas = x["noisy_latents"]
    with torch.no_grad():  # their skeleton canvas is in [-1, 1]; ours in [0, 1], mapped back by pose_image_range
        out = model(canvas[:, :4], x["timesteps"], canvas[:, 4:5], canvas[:, 5:], (x["pose_f"] + 1) / 2,
                    x["simg_f_p"], x["timg_f_g"][:, 0])
    assert torch.allclose(out, y["pred_noise"], atol=1e-5), (out - y["pred_noise"]).abs().max()


def test_converted_refine_forward_equals_the_authors(converted):
    x, y = load(REF / "stage3" / "inputs.safetensors"), load(REF / "stage3" / "outputs.safetensors")
    model = RefineModel.from_pretrained(converted["refine"])
    noisy = next(v for k, v in x.items() if v.ndim == 4)  # (2, 8, h, w): [noisy | coarse latents]
    tokens = next(v for k, v in x.items() if v.ndim == 3)
    timesteps = next(v for k, v in x.items() if v.ndim == 1)
    reference = next(v for k, v in y.items() if not k.startswith("debug."))
    with torch.no_grad():
        out = model(noisy[:, :4], timesteps, noisy[:, 4:], tokens)
    assert torch.allclose(out, reference, atol=1e-5), (out - reference).abs().max()


def test_converted_simplified_forward_equals_the_authors(converted):
    x, y = load(REF / "simplified" / "inputs.safetensors"), load(REF / "simplified" / "outputs.safetensors")
    model = InpaintModel.from_pretrained(converted["simplified"] / "inpaint")
    assert not model.uses_global_embeds
    canvas = x["noisy_latents"]
    with torch.no_grad():
        out = model(canvas[:, :4], x["timesteps"], canvas[:, 4:5], canvas[:, 5:], (x["pose_canvas"] + 1) / 2,
                    x["dino_tokens"], None)
    assert torch.allclose(out, y["pred_noise"], atol=1e-5), (out - y["pred_noise"]).abs().max()


# ---------------------------------------------------------------- sampling loops, every case file
def run_case(converted: dict[str, Path], path: Path) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Our final latents for a recorded case, the reference ones and the timesteps our loop visited."""
    case, name = load(path), path.stem.removesuffix("_fp16aswritten")
    info = {**meta(path.with_name(f"{name}.safetensors")), **meta(path)} if path.with_name(
        f"{name}.safetensors").exists() else meta(path)
    call = info.get("call", "")
    scale = number(r"guidance_scale=([\d.]+)", call, number(r"gs(\d+)", name, 1.0))
    steps = len(case["timesteps"]) if "timesteps" in case else int(number(r"steps(\d+)", name, 20))
    init = case["init_latents"].float()
    seen: list[int] = []
    run = {"num_inference_steps": steps, "guidance_scale": scale, "callback": lambda i, t, x, x0: seen.append(int(t))}
    if path.parent.name == "simplified":
        x = load(REF / "simplified" / "sampling_inputs.safetensors")
        pipe = pipeline(converted, "authors-simplified")
        ours = pipe.sample_inpaint(x["simg_mask_latents"], (x["pose_canvas"] + 1) / 2, x["dino_tokens"], None, init,
                                   **run)
        return ours, case["final_latents"], seen
    x = load(REF / "sampling" / "inputs.safetensors")
    stage = int(info.get("stage", name[5]))
    n = init.shape[0]
    rows = lambda t: t.repeat_interleave(n, dim=0)  # noqa: E731 - the conditions of each of the n samples
    if stage == 1:  # their variance noise came from the global RNG after torch.manual_seed(seed): a CPU
        # generator with that seed draws the same sequence, and our loop takes it from the generator
        seed = int(info.get("global_seed", number(r"seed(\d+)", name, 0)))
        pipe = pipeline(converted)
        embeds = pipe.sample_prior(rows(x["stage1.s_embed"][:, 0]), rows(x["stage1.s_pose"].view(-1, 18, 2)),
                                   rows(x["stage1.t_pose"].view(-1, 18, 2)), init,
                                   generator=torch.Generator().manual_seed(seed), **run)
        return pipe.prior.normalize(embeds), case["final_latents"], seen
    if stage == 2:
        pipe = pipeline(converted)
        masked = case.get("masked_latents", None)
        if masked is None:  # the as-written files keep only latents: the VAE sample of the float32 run
            masked = load(path.with_name(f"{name}.safetensors"))["masked_latents"]
        ours = pipe.sample_inpaint(rows(masked), rows((x["stage2.pose_canvas"] + 1) / 2), rows(x["stage2.dino_tokens"]),
                                   rows(x["stage2.pred_t_img_embed"][:, 0]), init, **run)
        return ours, case["final_latents"], seen
    rescale = number(r"guidance_rescale=([\d.]+)", call, number(r"rescale(\d+)", name, 0.0))
    pipe = pipeline(converted, refine_guidance_rescale=rescale)
    coarse = case.get("gen_latents", None)
    if coarse is None:
        coarse = load(path.with_name(f"{name}.safetensors"))["gen_latents"]
    ours = pipe.sample_refine(rows(coarse), rows(x["stage3.dino_tokens"]), init, **run)
    return ours, case["final_latents"], seen


# A missing folder or one with no case files is a collection error (pytest's empty_parameter_set_mark), never
# a silent skip: the exactness checks must run on every clone.
CASES = [p for folder in ("sampling", "simplified") for p in case_files(folder)]


@pytest.mark.parametrize("path", [p for p in CASES if "fp16aswritten" not in p.name], ids=lambda p: p.stem)
def test_sampling_reproduces_the_authors_final_latents(converted, path):
    ours, reference, seen = run_case(converted, path)
    assert seen == load(path)["timesteps"].tolist()  # their scheduler's timesteps, in order
    if path.name.startswith("stage1"):
        assert torch.allclose(ours, reference, atol=1e-5), (ours - reference).abs().max()
    else:
        assert torch.allclose(ours, reference, rtol=1e-5, atol=1e-4), (ours - reference).abs().max()


@pytest.mark.parametrize("path", [p for p in CASES if "fp16aswritten" in p.name], ids=lambda p: p.stem)
def test_their_float16_runs_are_within_their_own_float16_error_of_ours(converted, path):
    """The `*_fp16aswritten` files are the same calls run in float16 on the CPU. Our float32 run stays
    within the error their own float16 run has against their float32 run (recorded beside it)."""
    ours, reference, _ = run_case(converted, path)
    name = path.stem.removesuffix("_fp16aswritten")
    recorded = meta(path.with_name(f"{name}.safetensors")).get("as_written_fp16", {}) or meta(path)
    bound = recorded.get("max_abs_diff_final_vs_fp32")
    assert bound is not None, f"{path.name}: no recorded float16 error to compare with"
    assert (ours - reference.float()).abs().max() <= bound * 1.01 + 1e-4


def test_the_preset_samples_the_prior_with_unclip_without_guidance_and_stages_2_3_with_unipc(converted):
    pipe = pipeline(converted)
    assert type(pipe.scheduler_for("prior")).__name__ == "UnCLIPScheduler" and pipe.sample.prior_guidance_scale <= 1
    assert type(pipe.scheduler_for("inpaint")).__name__ == "UniPCMultistepScheduler"
    report = json.loads((converted["inpaint"] / "conversion.json").read_text())
    assert report["from_preset"] == {"inpaint.unet.attention_head_dim": [8, 8], "inpaint.unet.norm_num_groups": 8}
    assert report["inferred"]["inpaint.unet.block_out_channels"] == [32, 64]


def test_generate_runs_the_converted_simplified_model_on_a_photo_and_a_pose(tmp_path, monkeypatch, capsys):
    """`pcdms convert` + `pcdms generate` on the simplified model write an image. The encoders are a tiny
    DINOv2 and the fixtures' VAE, named at conversion as a user names local weights."""
    from diffusers import AutoencoderKL
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(hidden_size=48, num_hidden_layers=1, num_attention_heads=2, intermediate_size=96,
                             image_size=56, patch_size=14)).save_pretrained(tmp_path / "dino")
    vae_kwargs = json.loads((REF / "sampling" / "tiny_vae_config.json").read_text())
    vae = AutoencoderKL(**vae_kwargs.get("constructor_kwargs", vae_kwargs))
    vae.load_state_dict(load_file(str(REF / "sampling" / "tiny_vae.safetensors")))
    vae.save_pretrained(tmp_path / "vae")
    model = tmp_path / "model"
    # a model folder loads wherever it is copied: an absolute encoder path is refused when it is written
    assert main(["convert", "--from-authors", str(REF / "simplified" / "pcdms_ckpt.pt"), "--out", str(model),
                 *OVERRIDES["inpaint"], f"encoders.dino.pretrained_path={tmp_path / 'dino'}"]) == 2
    assert "encoders.dino.pretrained_path" in capsys.readouterr().err and not model.exists()
    monkeypatch.setenv("PCDMS_MODEL_DIR", str(tmp_path))  # where a user keeps DINOv2 and SD's VAE
    assert main(["convert", "--from-authors", str(REF / "simplified" / "pcdms_ckpt.pt"), "--out", str(model),
                 *OVERRIDES["inpaint"], "encoders.dino.pretrained_path=${PCDMS_MODEL_DIR}/dino",
                 "encoders.dino.image_size=56",
                 "encoders.autoencoder.pretrained_path=${PCDMS_MODEL_DIR}/vae", "data.height=64", "data.width=64"]) == 0
    inputs = Path(__file__).resolve().parents[1] / "src" / "pcdms" / "assets" / "demo" / "inputs"
    source, target = inputs / "id00161_00_front-full", inputs / "id00161_02_three-quarter-full"
    out = tmp_path / "out"
    assert main(["generate", "--model", str(model), "--source", f"{source}.png", "--source-pose", f"{source}.json",
                 "--target-pose", f"{target}.json", "--out", str(out), "--steps", "3", "--name", "result"]) == 0
    assert not (model / "prior").exists() and not (model / "refine").exists()  # stage 2 alone
    image = Image.open(out / "result.png")
    assert image.size == Image.open(f"{source}.png").size
    # the target as one of the authors' own DWPose demo pictures, as their notebook takes it
    picture = REF / "inputs" / "pose_images" / "pose1.png"
    assert main(["generate", "--model", str(model), "--source", f"{source}.png", "--source-pose", f"{source}.json",
                 "--target-pose", str(picture), "--out", str(out), "--steps", "3", "--name", "from_picture"]) == 0
    assert Image.open(out / "from_picture.png").size == image.size
    assert load_config(str(out / "config.yaml")).sample.recipe == "authors-notebook"
