"""Convert the authors' released PCDMs checkpoints into pcdms stage folders (REFERENCE.md Sec. 3; issues 8, 12).

The authors (tencent-ailab/PCDMs) released one DeepSpeed file per stage, `mp_rank_00_model_states.pt`, with
the weights under `module` beside DeepSpeed's bookkeeping (`global_steps`, `ds_config`, ...), and a simplified
stage-2-only model, `pcdms_ckpt.pt` (their demo notebook's). Their key layout against ours:
- stage 1 (prior): identical (`pose_encoder.*`, `transformer_blocks.*`, `prd_embedding`, ...);
- stages 2 and 3: `image_proj_model_p.*` -> `image_proj.*`; `unet.*` and `pose_proj.*` identical;
- simplified model: `image_proj_model.*` -> `image_proj.*`; a 9-channel `unet.*` without class embedding.
(`StageModel.authors_key_renames` is the one home of these renames.)

Files are read safely (`pcdms.checkpoints`). The architecture is inferred from the tensor shapes (widths,
channels, layer counts, block types, token and embedding sizes); what shapes cannot show (attention head
counts, norm groups) comes from the config preset, and the report says which values those were. The model
is built on the `meta` device (no random init), checked tensor by tensor against the file, and written with
`StageModel.save_pretrained` (`config.json` + `model.safetensors`) plus `conversion.json` (provenance).
`pcdms.models.folder.assemble_model` (re-exported here) puts converted stages and a run config together into the
folder `PCDMsPipeline.from_pretrained` reads; the simplified model converts straight into such a folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pcdms import configio
from pcdms.checkpoints import Checkpoint, find_checkpoint_file, read_checkpoint  # noqa: F401 (re-exported)
from pcdms.checkpoints import names as _names
from pcdms.config import RunConfig
from pcdms.errors import ConfigError, UserError
from pcdms.models import STAGES, StageModel
from pcdms.models.blocks import without_pretrained_paths
from pcdms.models.folder import (REPORT_NAME, assemble_model, check_out, check_self_contained,  # noqa: F401
                              read_stage_config, replace_folder)

STAGE_TITLES = {"prior": "stage-1 (prior)", "inpaint": "stage-2 (inpaint)", "refine": "stage-3 (refine)",
                "simplified": "simplified stage-2-only model"}
# Keys (ours and the authors') that only one stage's file can hold.
STAGE_MARKERS = {
    "prior": ("pose_encoder.", "pose_encoder1.", "prd_embedding", "proj_to_clip_embeddings.", "transformer_blocks."),
    "inpaint": ("pose_proj.", "unet.class_embedding."),
}
# Config values the shapes cannot show: taken from the preset, and named in the report.
FROM_PRESET = {"prior": ("num_heads",), "inpaint": ("unet.attention_head_dim", "unet.norm_num_groups"),
               "refine": ("unet.attention_head_dim", "unet.norm_num_groups")}


# ---------------------------------------------------------------- stage and architecture
def is_simplified(state: Mapping[str, torch.Tensor]) -> bool:
    """The authors' simplified stage-2-only model: a pose branch but no class embedding (no CLIP input)."""
    return (any(k.startswith("pose_proj.") for k in state)
            and not any(k.startswith("unet.class_embedding.") for k in state))


def detect_stage(state: Mapping[str, torch.Tensor]) -> tuple[str | None, list[str]]:
    """Which stage's weights a state dict (ours or the authors' names) holds, and the keys that say so."""
    for stage, markers in STAGE_MARKERS.items():
        evidence = [m + "*" if m.endswith(".") else m for m in markers if any(k.startswith(m) for k in state)]
        if evidence:
            return stage, evidence
    if any(k.startswith("unet.") for k in state):
        conv = state.get("unet.conv_in.weight")
        if conv is not None and conv.ndim == 4 and conv.shape[1] % 2 == 1:  # 2C + 1 mask channel: stage 2
            return "inpaint", [f"unet.conv_in.weight with {conv.shape[1]} input channels"]
        return "refine", ["unet.* without pose_proj.* or unet.class_embedding.*"]
    return None, []


def infer_architecture(state: Mapping[str, torch.Tensor], stage: str) -> dict[str, Any]:
    """Config values (dotted key -> value) that the shapes of a state dict in OUR names determine.

    Works on real and `meta` tensors alike, so the same function reads a file and a config's model.
    Attention head counts and norm groups are not visible in shapes and are left out (`FROM_PRESET`).
    """
    def shape(key: str) -> tuple[int, ...] | None:
        return tuple(state[key].shape) if key in state else None

    found: dict[str, Any] = {}

    def put(name: str, value: Any) -> None:
        if value is not None:
            found[f"{stage}.{name}"] = value

    if stage == "prior":
        first, second = shape("pose_encoder.net.0.weight"), shape("pose_encoder.net.4.weight")
        put("embed_dim", (shape("proj_to_clip_embeddings.weight") or (None,))[0])
        put("width", (shape("proj_in.weight") or (None,))[0])
        blocks = {k.split(".")[1] for k in state if k.startswith("transformer_blocks.")}
        put("num_layers", len(blocks) or None)
        put("num_keypoints", first[1] // 2 if first else None)
        put("pose_hidden_dims", [first[0], second[0]] if first and second else None)
        return found
    conv_out = shape("unet.conv_out.weight")
    put("latent_channels", conv_out[0] if conv_out else None)
    for name, value in _unet_architecture(state, shape).items():
        put(f"unet.{name}", value)
    proj = shape("image_proj.net.0.weight")
    put("image_token_dim", proj[1] if proj else None)
    put("token_hidden_dim", proj[0] if proj else None)
    if stage == "inpaint":
        if any(k.startswith("unet.") for k in state):
            found["inpaint.global_embed_dim"] = (shape("unet.class_embedding.linear_1.weight") or (None, None))[1]
        steps = sorted({int(k.split(".")[2]) for k in state if k.startswith("pose_proj.blocks.")})
        pose = [shape("pose_proj.conv_in.weight")] + [shape(f"pose_proj.blocks.{i}.weight") for i in steps if i % 2]
        put("pose_embed_channels", [p[0] for p in pose] if all(pose) else None)
    return found


def _unet_architecture(state: Mapping[str, torch.Tensor], shape: Any) -> dict[str, Any]:
    """`UNetConfig` fields from the `unet.*` shapes: widths, layers, block types, cross-attention width."""
    found: dict[str, Any] = {}
    levels = sorted({int(k.split(".")[2]) for k in state if k.startswith("unet.down_blocks.")})
    widths = [shape(f"unet.down_blocks.{i}.resnets.0.conv1.weight") for i in levels]
    if widths and all(widths):
        found["block_out_channels"] = [w[0] for w in widths]
    resnets = {k.split(".")[4] for k in state if k.startswith("unet.down_blocks.0.resnets.")}
    if resnets:
        found["layers_per_block"] = len(resnets)

    def has_attention(kind: str, i: int) -> bool:
        return any(k.startswith(f"unet.{kind}.{i}.attentions.") for k in state)

    if levels:
        found["down_block_types"] = ["CrossAttnDownBlock2D" if has_attention("down_blocks", i) else "DownBlock2D"
                                     for i in levels]
        found["up_block_types"] = ["CrossAttnUpBlock2D" if has_attention("up_blocks", i) else "UpBlock2D"
                                   for i in levels]
    cross = next((shape(k) for k in state if k.startswith("unet.") and k.endswith("attn2.to_k.weight")), None)
    if cross:
        found["cross_attention_dim"] = cross[1]
    proj_in = next((shape(k) for k in state if k.startswith("unet.") and ".attentions." in k
                    and k.endswith("proj_in.weight")), None)
    if proj_in:
        found["use_linear_projection"] = len(proj_in) == 2
    return found


def stage_config(state: Mapping[str, torch.Tensor], stage: str, preset: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The stage config that fits `state` (our names): the preset's stage section with every value the
    shapes determine replaced. Returns (config, inferred values, values taken from the preset)."""
    inferred = infer_architecture(state, stage)
    raw = configio.to_dict(without_pretrained_paths(preset))
    for dotted, value in inferred.items():
        node = raw
        *parents, leaf = dotted.split(".")[1:]
        for part in parents:
            node = node[part]
        node[leaf] = value
    kept = {f"{stage}.{key}": _dotted_get(raw, key) for key in FROM_PRESET[stage]}
    try:
        cfg = configio.from_dict(STAGES[stage].config_class, raw, prefix=stage)
        if stage != "prior":
            _check_heads(cfg.unet, stage)
    except ConfigError as err:
        raise UserError(f"the checkpoint's shapes do not fit the preset's {', '.join(kept)}: {err}; "
                        f"set them with overrides, e.g. {stage}.unet.attention_head_dim=[...]") from None
    if stage == "prior" and cfg.width % cfg.num_heads:
        raise UserError(f"the checkpoint's transformer width {cfg.width} does not divide by prior.num_heads="
                        f"{cfg.num_heads} from the preset: set prior.num_heads=N")
    return cfg, inferred, kept


def _dotted_get(raw: Mapping[str, Any], key: str) -> Any:
    for part in key.split("."):
        raw = raw[part]
    return raw


def _check_heads(unet: Any, stage: str) -> None:
    blocks, heads = len(unet.block_out_channels), len(unet.attention_head_dim)
    if heads != blocks:
        raise ConfigError(f"{stage}.unet.attention_head_dim has {heads} entries for {blocks} UNet blocks")
    groups = unet.norm_num_groups
    if any(c % groups for c in unet.block_out_channels):
        raise ConfigError(f"{stage}.unet.norm_num_groups={groups} does not divide the widths {unet.block_out_channels}")


def _check_fit(model: StageModel, state: Mapping[str, torch.Tensor], stage: str, source: Path) -> None:
    """Raise a UserError naming every missing/unexpected key and each shape mismatch (file vs config)."""
    ours = model.state_dict()
    missing = [k for k in ours if k not in state]
    unexpected = sorted(k for k in state if k not in ours)
    wrong = [f"{k}: file {tuple(state[k].shape)}, config {tuple(ours[k].shape)}"
             for k in ours if k in state and tuple(state[k].shape) != tuple(ours[k].shape)]
    if not (missing or unexpected or wrong):
        return
    parts = [f"{source} does not fit the {stage} config"]
    theirs, config = infer_architecture(state, stage), infer_architecture(ours, stage)
    differ = [f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in theirs.items() if config.get(k) != v]
    if differ:
        parts.append("the file's shapes say " + " ".join(differ))
    if wrong:
        parts.append(f"{len(wrong)} tensors of another shape: {_names(wrong)}")
    if missing:
        parts.append(f"missing {len(missing)} keys: {_names(missing)}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} keys: {_names(unexpected)}")
    raise UserError("; ".join(parts))


# ---------------------------------------------------------------- conversion
@dataclass
class ConversionReport:
    """What a conversion did: `tensors` source tensors, each copied into one parameter; `inferred`: config
    values read from the shapes; `from_preset`: values the shapes cannot show, taken from the config."""

    source: str
    stage: str
    out: str
    tensors: int
    parameters: int
    source_dtypes: dict[str, int]
    saved_dtype: str
    renamed: dict[str, str]
    ignored_entries: dict[str, str]
    deepspeed_stand_ins: list[str]
    source_sha256: str
    inferred: dict[str, Any] = field(default_factory=dict)
    from_preset: dict[str, Any] = field(default_factory=dict)
    recipe: str = "authors"

    def summary(self) -> str:
        ignored = f"; ignored non-weight entries: {', '.join(self.ignored_entries)}" if self.ignored_entries else ""
        preset = ", ".join(f"{k}={json.dumps(v)}" for k, v in self.from_preset.items())
        return (f"converted {STAGE_TITLES[self.stage]} from {self.source}: {self.tensors} tensors, "
                f"{self.parameters / 1e6:.1f} M parameters ({', '.join(self.source_dtypes)} -> {self.saved_dtype}), "
                f"no missing or unexpected keys{ignored}\n"
                f"architecture read from the tensor shapes ({len(self.inferred)} values); from the config, as shapes "
                f"cannot show them: {preset}\nsampling recipe of the model folder: {self.recipe}\n"
                f"wrote {self.out}")


def convert_authors_checkpoint(
    source: str | Path | Checkpoint, stage: str | None, cfg: RunConfig, out: str | Path,
    dtype: torch.dtype = torch.float32, overwrite: bool = False,
) -> ConversionReport:
    """Convert one of the authors' stage files (or any file in their key layout) into a stage folder, or
    their simplified model (`pcdms_ckpt.pt`) into a model folder (`config.yaml` + `inpaint/`).

    `stage`: the stage the file must hold, or None to take what it holds. The architecture is inferred
    from the shapes over `cfg.<stage>` (the preset gives head counts and norm groups; no base model is
    read). Floating tensors are cast to `dtype` (float32 is exact for fp16 files). Writes atomically:
    `config.json`, `model.safetensors`, `conversion.json`.
    """
    if stage is not None and stage not in STAGES:
        raise UserError(f"--stage must be one of {', '.join(STAGES)}, got '{stage}'")
    out = Path(out)
    ckpt = source if isinstance(source, Checkpoint) else read_checkpoint(source)
    held, evidence = detect_stage(ckpt.state)
    if held is None:
        raise UserError(f"'{ckpt.path}' holds no PCDMs stage weights (first keys: {_names(sorted(ckpt.state))})")
    if stage is not None and held != stage:
        known = " (a known mix-up: the authors' 256 stage-2 release holds stage-1 weights)" if held == "prior" else ""
        raise UserError(f"'{ckpt.path}' holds {STAGE_TITLES[held]} weights ({', '.join(evidence[:4])}), not "
                        f"{STAGE_TITLES[stage]} weights{known}; convert it with --stage {held} if that is what you want")
    simplified = held == "inpaint" and is_simplified(ckpt.state)
    if simplified:
        return _convert_simplified(ckpt, cfg, out, dtype, overwrite)
    check_out(out, overwrite)
    report = _write_stage(ckpt, held, getattr(cfg, held), out, dtype)
    report.recipe = cfg.sample.recipe
    return report


def _write_stage(ckpt: Checkpoint, stage: str, preset: Any, out: Path, dtype: torch.dtype) -> ConversionReport:
    """Build the stage from the file's shapes, copy every tensor, write `out/` atomically."""
    cls = STAGES[stage]
    state = cls.from_authors_names(ckpt.state)
    stage_cfg, inferred, kept = stage_config(state, stage, preset)
    with torch.device("meta"):  # no random init: every tensor comes from the file
        model = cls(stage_cfg)
    _check_fit(model, state, stage, ckpt.path)
    # copy=True: no view into the memory-mapped file, and no tensors sharing storage (safetensors refuses them)
    state = {k: v.to(dtype=dtype if v.is_floating_point() else v.dtype, copy=True) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    report = ConversionReport(
        source=str(ckpt.path), stage=stage, out=str(out), tensors=len(state),
        parameters=sum(v.numel() for v in state.values()),
        source_dtypes=dict(Counter(str(v.dtype).removeprefix("torch.") for v in ckpt.state.values())),
        saved_dtype=str(dtype).removeprefix("torch."), renamed=dict(cls.authors_key_renames),
        ignored_entries=ckpt.ignored, deepspeed_stand_ins=ckpt.stand_ins, source_sha256=_sha256(ckpt.path),
        inferred=inferred, from_preset=kept,
    )
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.eval().save_pretrained(tmp)
    (tmp / REPORT_NAME).write_text(json.dumps(report.__dict__, indent=2) + "\n")
    replace_folder(tmp, out)
    return report


def _convert_simplified(ckpt: Checkpoint, cfg: RunConfig, out: Path, dtype: torch.dtype,
                        overwrite: bool) -> ConversionReport:
    """The simplified model is a whole model: `out/config.yaml` (cfg, stage 2 alone) and `out/inpaint/`."""
    if cfg.sample.recipe != "authors-notebook":
        raise UserError(f"'{ckpt.path}' is the authors' simplified stage-2-only model: convert it with "
                        f"--config authors-simplified (its sampler and input conventions), not {cfg.name}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out '{out}' is a file: give a folder for the model")
    check_self_contained(cfg)
    inpaint = out / "inpaint"
    if (out / "config.yaml").exists() and not overwrite:
        raise UserError(f"'{out}' already holds a model (config.yaml): choose another --out, or --overwrite")
    check_out(inpaint, overwrite)
    report = _write_stage(ckpt, "inpaint", cfg.inpaint, inpaint, dtype)
    report.stage, report.out, report.recipe = "simplified", str(out), cfg.sample.recipe
    raw = configio.to_dict(cfg)
    raw["inpaint"] = configio.to_dict(read_stage_config(inpaint, "inpaint"))
    # the DINOv2 that feeds these tokens has their width: the file says which
    width = raw["inpaint"]["image_token_dim"]
    raw["encoders"]["dino"]["hidden_size"] = report.inferred["encoders.dino.hidden_size"] = width
    raw["refine"]["image_token_dim"] = width  # no stage 3 here; kept consistent for the config's checks
    try:
        cfg = configio.from_dict(RunConfig, raw)
    except ConfigError as err:
        raise UserError(f"the simplified model does not fit the config's encoders/data: {err}") from None
    assemble_model(out, cfg, {"inpaint": inpaint})
    return report


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


