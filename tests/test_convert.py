"""`pcdms convert`: the authors' DeepSpeed files (REFERENCE.md Sec. 3) -> our stage folders, read safely.

Each test writes a file in the authors' exact layout from a tiny model of ours: stage-1 keys as ours,
stages 2/3 with `image_proj_model_p.*` for our `image_proj.*`, weights under `module` beside DeepSpeed's
bookkeeping entries, in fp16 as their fp16 DeepSpeed runs saved them.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from pcdms.cli import main
from pcdms.config import load_config
from pcdms.models.convert import convert_authors_checkpoint, infer_architecture, read_checkpoint
from pcdms.errors import UserError
from pcdms.models import InpaintModel, PriorModel, RefineModel
from pcdms.models.blocks import without_pretrained_paths
from pcdms.sampling.pipeline import PCDMsPipeline
from pcdms.pose import Pose

CLASSES = {"prior": PriorModel, "inpaint": InpaintModel, "refine": RefineModel}
AUTHORS_NAME = "mp_rank_00_model_states.pt"
DEEPSPEED_EXTRAS = {"global_steps": 5, "dp_world_size": 8, "mp_world_size": 1, "ds_version": "0.10.0",
                    "optimizer": None, "lr_scheduler": {"last_epoch": 5}, "param_shapes": [{"w": torch.Size([2])}]}


def tiny_model(stage: str, seed: int = 0) -> torch.nn.Module:
    """A tiny stage whose every tensor holds distinct values (so each source tensor has one match)."""
    torch.manual_seed(seed)
    model = CLASSES[stage](getattr(load_config("tiny"), stage))
    gen = torch.Generator().manual_seed(seed + 1)
    state = {k: (torch.randn(v.shape, generator=gen) * 0.05).half().float() for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    return model.eval()


def authors_layout(state: dict[str, torch.Tensor], stage: str) -> dict[str, torch.Tensor]:
    """Our names -> the authors' (REFERENCE.md Sec. 3), written independently of the converter."""
    if stage == "prior":
        return dict(state)
    return {("image_proj_model_p." + k[len("image_proj."):] if k.startswith("image_proj.") else k): v
            for k, v in state.items()}


def write_authors_file(folder, stage: str, model: torch.nn.Module, **extra) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / AUTHORS_NAME
    state = {k: v.half() for k, v in authors_layout(model.state_dict(), stage).items()}
    torch.save({"module": state, **DEEPSPEED_EXTRAS, **extra}, path)
    return str(path)


def convert_cli(*args: str) -> int:
    return main(["convert", *args, "--config", "tiny"])


def inputs(stage: str, seed: int = 3) -> tuple:
    cfg = load_config("tiny")
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    if stage == "prior":
        d = cfg.prior.embed_dim
        return r(2, d), torch.tensor([10, 500]), r(2, d), torch.rand(2, 18, 2, generator=g), torch.rand(2, 18, 2, generator=g)
    c, h, w = cfg.inpaint.latent_channels, 8, 4  # a small latent keeps the CPU forward fast
    if stage == "inpaint":
        return (r(1, c, h, 2 * w), torch.tensor([500]), torch.ones(1, 1, h, 2 * w), r(1, c, h, 2 * w),
                torch.rand(1, 3, 4 * h, 8 * w, generator=g), r(1, 5, cfg.inpaint.image_token_dim), r(1, cfg.inpaint.global_embed_dim))
    return r(1, c, h, w), torch.tensor([500]), r(1, c, h, w), r(1, 5, cfg.refine.image_token_dim)


@pytest.mark.parametrize("stage", ["prior", "inpaint", "refine"])
def test_authors_file_converts_each_tensor_into_one_parameter_and_runs_the_same(tmp_path, stage):
    model = tiny_model(stage)
    source = write_authors_file(tmp_path / "ckpt", stage, model)
    authors = torch.load(source, weights_only=True)["module"]
    if stage != "prior":  # the layout really is the authors': their prefix, not ours
        assert any(k.startswith("image_proj_model_p.") for k in authors) and not any(k.startswith("image_proj.") for k in authors)

    assert convert_cli("--from-authors", source, "--stage", stage, "--out", str(tmp_path / stage)) == 0
    converted = CLASSES[stage].from_pretrained(tmp_path / stage)
    ours = converted.state_dict()
    assert len(ours) == len(authors)
    by_shape: dict[tuple, list[str]] = {}
    for k, v in ours.items():
        by_shape.setdefault(tuple(v.shape), []).append(k)
    for key, tensor in authors.items():  # values are distinct per tensor, so equality identifies the target
        hits = [k for k in by_shape.get(tuple(tensor.shape), []) if torch.equal(ours[k], tensor.float())]
        assert len(hits) == 1, f"{key} landed in {hits}"
    assert all(v.dtype == torch.float32 for v in ours.values())  # fp16 -> fp32 is exact
    with torch.no_grad():  # equal weights (above); float noise of memory layout only
        assert torch.allclose(converted(*inputs(stage)), model(*inputs(stage)), atol=1e-6)
    report = json.loads((tmp_path / stage / "conversion.json").read_text())
    assert report["tensors"] == len(authors) and report["source_dtypes"] == {"float16": len(authors)}
    assert {"global_steps", "dp_world_size"} <= set(report["ignored_entries"])


def _pose(seed: int) -> Pose:
    xy = np.random.default_rng(seed).uniform([10, 10], [166, 246], size=(18, 2)).astype(np.float32)
    return Pose.from_pixels(xy, 256, 176)


def test_converted_stages_assemble_into_a_folder_the_pipeline_runs(tmp_path, samples_dir, capsys):
    folders = {}
    for k, stage in enumerate(CLASSES):
        source = write_authors_file(tmp_path / "ckpt" / stage, stage, tiny_model(stage, seed=k))
        folders[stage] = tmp_path / "stages" / stage
        assert convert_cli("--from-authors", source, "--stage", stage, "--out", str(folders[stage])) == 0
    model_dir = tmp_path / "model"
    assert main(["assemble", "--out", str(model_dir), *[f"--{s}={folders[s]}" for s in CLASSES],
                 "--config", "tiny", "sample.num_inference_steps=2"]) == 0
    pipe = PCDMsPipeline.from_pretrained(model_dir)
    assert pipe.sample.recipe == "authors"  # converted from their files: sampled their way, whatever the preset
    source = Image.open(samples_dir / "img1.png")
    out = pipe(source, _pose(1), _pose(2), generator=torch.Generator().manual_seed(0))
    assert out.stages_run == ("prior", "inpaint", "refine") and out.images[0].size == source.size
    # the stages of a model folder are the converted weights, file for file
    for stage, folder in folders.items():
        assert (model_dir / stage / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    # converted stages whose widths do not fit the config's encoders are refused by name
    capsys.readouterr()
    assert main(["assemble", "--out", str(tmp_path / "m2"), f"--inpaint={folders['inpaint']}",
                 "--config", "authors-512"]) == 2
    assert "inpaint.latent_channels=48" in capsys.readouterr().err


def test_file_of_another_stage_is_refused_and_named(tmp_path, capsys):
    source = write_authors_file(tmp_path, "prior", tiny_model("prior"))
    assert convert_cli("--from-authors", source, "--stage", "inpaint", "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert "holds stage-1 (prior) weights" in err and "--stage prior" in err and "256 stage-2" in err
    assert not (tmp_path / "out").exists()


def test_truncated_file_is_a_clear_error(tmp_path):
    source = write_authors_file(tmp_path, "refine", tiny_model("refine"))
    data = open(source, "rb").read()
    cut = tmp_path / "cut" / AUTHORS_NAME
    cut.parent.mkdir()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"truncated or corrupt.*interrupted download"):
        convert_authors_checkpoint(cut, "refine", load_config("tiny"), tmp_path / "out")


class _Payload:
    """Runs a shell command when unpickled, as a malicious checkpoint would."""

    def __init__(self, sentinel: str) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return os.system, (f"touch {self.sentinel}",)


@pytest.mark.parametrize("zip_format", [True, False])
def test_file_carrying_code_is_refused_without_running_it(tmp_path, capsys, zip_format):
    sentinel = tmp_path / "SENTINEL"
    state = authors_layout(tiny_model("refine").state_dict(), "refine")
    path = tmp_path / AUTHORS_NAME
    torch.save({"module": state, "global_steps": 5, "client_state": _Payload(str(sentinel))}, path,
               _use_new_zipfile_serialization=zip_format)
    assert convert_cli("--from-authors", str(path), "--stage", "refine", "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "system" in err
    assert not sentinel.exists() and not (tmp_path / "out").exists()
    # and the payload is real: unrestricted unpickling would have run it
    pickle.loads(pickle.dumps(_Payload(str(sentinel))))
    assert sentinel.exists()


def test_deepspeed_objects_beside_the_weights_are_read_inert(tmp_path, monkeypatch):
    """DeepSpeed pickles its own classes into some files; they are read as placeholders, never run."""
    sentinel = tmp_path / "RAN"

    class LossScaler:
        def __init__(self, scale: float) -> None:
            self.cur_scale = scale

        def __setstate__(self, state):  # would run on an unrestricted load
            sentinel.write_text("ran")
            self.__dict__.update(state)

    for name in ("deepspeed", "deepspeed.runtime", "deepspeed.runtime.fp16", "deepspeed.runtime.fp16.loss_scaler"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    LossScaler.__module__, LossScaler.__qualname__ = "deepspeed.runtime.fp16.loss_scaler", "LossScaler"
    sys.modules["deepspeed.runtime.fp16.loss_scaler"].LossScaler = LossScaler
    source = write_authors_file(tmp_path, "refine", tiny_model("refine"), loss_scaler=LossScaler(1024.0))

    ckpt = read_checkpoint(source)
    assert ckpt.stand_ins == ["deepspeed.runtime.fp16.loss_scaler.LossScaler"] and not sentinel.exists()
    assert ckpt.ignored["loss_scaler"] == "DeepSpeed object, read inert" and ckpt.ignored["global_steps"] == "int"
    convert_authors_checkpoint(source, "refine", load_config("tiny"), tmp_path / "out")
    assert RefineModel.from_pretrained(tmp_path / "out") is not None and not sentinel.exists()


def test_a_checkpoint_of_another_size_converts_from_its_shapes_with_only_the_head_counts_given(tmp_path):
    """Issue 12: widths, layers, token and embedding sizes come from the file; the preset (here the paper-size
    authors-512) gives only what shapes cannot show, and a mismatch there names the key to set."""
    source = write_authors_file(tmp_path, "inpaint", tiny_model("inpaint"))
    with pytest.raises(UserError, match=r"inpaint\.unet\.attention_head_dim has 4 entries for 2 UNet blocks"):
        convert_authors_checkpoint(source, "inpaint", load_config("authors-512"), tmp_path / "refused")
    cfg = load_config("authors-512", ["inpaint.unet.attention_head_dim=[4,8]", "inpaint.unet.norm_num_groups=8"])
    report = convert_authors_checkpoint(source, "inpaint", cfg, tmp_path / "out")
    assert report.inferred["inpaint.unet.block_out_channels"] == [32, 64]
    assert report.inferred["inpaint.token_hidden_dim"] == 32 and report.inferred["inpaint.latent_channels"] == 48
    assert report.from_preset == {"inpaint.unet.attention_head_dim": [4, 8], "inpaint.unet.norm_num_groups": 8}
    converted = InpaintModel.from_pretrained(tmp_path / "out")
    assert converted.cfg.pose_image_range == "signed"  # the preset's input conventions are kept


def test_missing_and_unexpected_keys_are_listed_by_name(tmp_path):
    state = authors_layout(tiny_model("refine").state_dict(), "refine")
    del state["unet.conv_out.bias"]
    state["image_proj_model_p.extra.weight"] = torch.zeros(2)
    path = tmp_path / AUTHORS_NAME
    torch.save({"module": state}, path)
    with pytest.raises(UserError, match=r"missing 1 keys: unet\.conv_out\.bias.*unexpected 1 keys: image_proj\.extra\.weight"):
        convert_authors_checkpoint(path, "refine", load_config("tiny"), tmp_path / "out")


def test_output_folder_is_protected_unless_it_is_a_stage_folder(tmp_path):
    source = write_authors_file(tmp_path / "ckpt", "refine", tiny_model("refine"))
    cfg = load_config("tiny")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="already exists"):
        convert_authors_checkpoint(source, "refine", cfg, mine)
    with pytest.raises(UserError, match="not a PCDMs stage folder"):
        convert_authors_checkpoint(source, "refine", cfg, mine, overwrite=True)
    assert (mine / "notes.txt").read_text() == "keep me"
    convert_authors_checkpoint(source, "refine", cfg, tmp_path / "stage")
    convert_authors_checkpoint(source, "refine", cfg, tmp_path / "stage", overwrite=True)  # a stage folder: replaced
    assert sorted(p.name for p in (tmp_path / "stage").iterdir()) == ["config.json", "conversion.json", "model.safetensors"]


def test_authors_512_preset_builds_the_released_shapes():
    """Built on `meta`: the architecture a real authors' file must fit (REFERENCE.md Sec. 1 and 3)."""
    cfg = load_config("authors-512")
    assert (cfg.data.height, cfg.data.width, cfg.sample.num_inference_steps) == (512, 512, 20)
    assert (cfg.sample.inpaint_guidance_scale, cfg.sample.refine_guidance_scale) == (2.0, 2.0)
    assert cfg.sample.recipe == "authors" and cfg.sample.prior_scheduler == "unclip"
    assert cfg.sample.prior_guidance_scale <= 1  # their stage-1 script runs without guidance
    found = {}
    for stage, cls in CLASSES.items():
        with torch.device("meta"):
            found.update(infer_architecture(cls(without_pretrained_paths(getattr(cfg, stage))).state_dict(), stage))
    assert found["prior.width"] == 2048 and found["prior.num_layers"] == 20 and found["prior.num_keypoints"] == 18
    assert found["inpaint.latent_channels"] == 4 and found["inpaint.global_embed_dim"] == 1024
    assert found["inpaint.pose_embed_channels"] == [16, 32, 96, 256]
    assert (found["refine.image_token_dim"], found["refine.token_hidden_dim"]) == (1536, 768)
    assert found["inpaint.unet.block_out_channels"] == [320, 640, 1280, 1280]
