"""Convert the authors' released PCDMs checkpoints into pcdms stage folders (REFERENCE.md Sec. 3; issue 8).

The authors (tencent-ailab/PCDMs) released one DeepSpeed file per stage, `mp_rank_00_model_states.pt`, with
the weights under `module` beside DeepSpeed's bookkeeping (`global_steps`, `ds_config`, ...). Their key
layout (REFERENCE.md Sec. 3) against ours:
- stage 1 (prior): identical (`pose_encoder.*`, `transformer_blocks.*`, `prd_embedding`, ...);
- stages 2 and 3: `image_proj_model_p.*` -> `image_proj.*`; `unet.*` and `pose_proj.*` identical
  (`StageModel.authors_key_renames` is the one home of these renames).

Reading is safe: a torch file is opened with `torch.load(weights_only=True)`, which builds tensors and plain
containers only. DeepSpeed classes pickled beside the weights (a config enum, a loss scaler) are read as inert
placeholders that record their arguments and run nothing; any other global (`os.system`, `builtins.eval`,
...) refuses the whole file before anything is unpickled. The converted model is built on the `meta` device
(no random init), checked tensor by tensor against the file, and written with `StageModel.save_pretrained`
(`config.json` + `model.safetensors`) plus `conversion.json` (provenance). `assemble_model` puts converted
stages and a run config together into the folder `PCDMsPipeline.from_pretrained` reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import zipfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from pcdms import configio
from pcdms.config import RunConfig, save_config
from pcdms.errors import ConfigError, UserError
from pcdms.models import InpaintModel, PriorModel, RefineModel, StageModel
from pcdms.models.blocks import without_pretrained_paths
from pcdms.models.io import CONFIG_NAME, WEIGHTS_NAME

AUTHORS_FILE = "mp_rank_00_model_states.pt"
REPORT_NAME = "conversion.json"
STAGE_CLASSES: dict[str, type[StageModel]] = {"prior": PriorModel, "inpaint": InpaintModel, "refine": RefineModel}
STAGE_TITLES = {"prior": "stage-1 (prior)", "inpaint": "stage-2 (inpaint)", "refine": "stage-3 (refine)"}
# Keys (ours and the authors') that only one stage's file can hold.
STAGE_MARKERS = {
    "prior": ("pose_encoder.", "pose_encoder1.", "prd_embedding", "proj_to_clip_embeddings.", "transformer_blocks."),
    "inpaint": ("pose_proj.", "unet.class_embedding."),
}
# Globals that may appear beside the weights and are read as inert placeholders (never imported or called).
STAND_IN_PREFIXES = ("deepspeed.",)
SHOW = 8  # names listed per category in an error


class _Inert:
    """A DeepSpeed object read from a checkpoint: keeps what the file says and runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state


@dataclass
class Checkpoint:
    """The weights of a checkpoint file. `ignored`: other top-level entries (name -> type), not weights;
    `stand_ins`: DeepSpeed globals read as inert placeholders."""

    path: Path
    state: dict[str, torch.Tensor]
    ignored: dict[str, str] = field(default_factory=dict)
    stand_ins: list[str] = field(default_factory=list)


def _names(keys: list[str]) -> str:
    more = f" and {len(keys) - SHOW} more" if len(keys) > SHOW else ""
    return ", ".join(keys[:SHOW]) + more


# ---------------------------------------------------------------- reading
def find_checkpoint_file(path: str | Path) -> Path:
    """`path` itself, or the DeepSpeed model file inside a checkpoint folder (searched two levels deep)."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        found = sorted(path.glob(AUTHORS_FILE)) + sorted(path.glob(f"*/{AUTHORS_FILE}")) + sorted(path.glob(f"*/*/{AUTHORS_FILE}"))
        if len(found) == 1:
            return found[0]
        if found:
            raise UserError(f"'{path}' holds several {AUTHORS_FILE} files ({_names([str(f) for f in found])}): name one")
        raise UserError(f"'{path}' is a folder without {AUTHORS_FILE}: give the checkpoint file itself")
    raise UserError(f"checkpoint '{path}' not found")


def read_checkpoint(path: str | Path) -> Checkpoint:
    """The tensors of a DeepSpeed/torch file (`module` entry or a plain state dict) or a safetensors file.

    Refuses, with a UserError and without running anything, a file that references code, a truncated or
    corrupt file, and a file that holds no tensors.
    """
    file = find_checkpoint_file(path)
    size = file.stat().st_size
    if file.suffix == ".safetensors":
        try:
            return Checkpoint(file, load_file(str(file), device="cpu"))
        except Exception as err:  # safetensors raises its own error types for bad headers
            raise UserError(f"cannot read '{file}' ({size} bytes) as safetensors: {err} (truncated download?)") from None
    stand_ins: list[str] = []
    if zipfile.is_zipfile(file):
        stand_ins = _check_globals(file)
    try:
        with torch.serialization.safe_globals([(_Inert, name) for name in stand_ins]):
            data = torch.load(str(file), map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(file))
    except Exception as err:  # never retried without weights_only
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        code = re.search(r"GLOBAL ([\w.]+)", str(err))
        if code:  # a legacy-format file: its globals are only found while unpickling, and refused there
            raise UserError(f"refused '{file}': it asks to run code when loaded ({code.group(1)}), which a weights "
                            "file never needs; nothing in it was executed") from None
        if not zipfile.is_zipfile(file):
            raise UserError(f"cannot read '{file}' ({size} bytes): it is not a complete torch zip file (truncated "
                            f"or corrupt, e.g. an interrupted download) and not a legacy torch file: {first}") from None
        raise UserError(f"cannot read '{file}' safely as tensors (torch.load weights_only=True): {first}") from None
    state, ignored = _weights_of(data, file)
    return Checkpoint(file, state, ignored, stand_ins)


def _check_globals(file: Path) -> list[str]:
    """The DeepSpeed globals a zip checkpoint names; refuse it when it names any other code."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(file))
    except Exception as err:
        raise UserError(f"cannot read '{file}': its pickle is corrupt or truncated ({err})") from None
    foreign = sorted(n for n in names if not n.startswith(STAND_IN_PREFIXES))
    if foreign:
        raise UserError(f"refused '{file}': it asks to run code when loaded ({', '.join(foreign)}), which a weights "
                        "file never needs; nothing in it was executed. Get the checkpoint from its original source")
    return sorted(names)


def _weights_of(data: Any, file: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    ignored: dict[str, str] = {}
    if isinstance(data, Mapping):
        for entry in ("module", "state_dict", "model"):
            if isinstance(data.get(entry), Mapping):
                ignored = {str(k): "DeepSpeed object, read inert" if isinstance(v, _Inert) else type(v).__name__
                           for k, v in data.items() if k != entry}
                data = data[entry]
                break
    if not isinstance(data, Mapping) or not data:
        raise UserError(f"'{file}' holds no state dict (expected a DeepSpeed file with 'module', or a dict of tensors)")
    not_tensors = sorted(str(k) for k, v in data.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise UserError(f"'{file}': the state dict has entries that are not tensors: {_names(not_tensors)}")
    keys = [str(k) for k in data]
    prefix = "module." if all(k.startswith("module.") for k in keys) else ""  # a DDP-wrapped model
    return {k.removeprefix(prefix): v for k, v in zip(keys, data.values())}, ignored


# ---------------------------------------------------------------- stage and architecture
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


def rename_authors_keys(state: Mapping[str, torch.Tensor], stage: str) -> dict[str, torch.Tensor]:
    """The authors' key names -> ours, by the stage class's documented prefix renames."""
    renames = STAGE_CLASSES[stage].authors_key_renames
    out = {}
    for key, value in state.items():
        for old, new in renames.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out


def infer_architecture(state: Mapping[str, torch.Tensor], stage: str) -> dict[str, Any]:
    """Config values (dotted key -> value) that the shapes of a state dict in OUR names determine.

    Works on real and `meta` tensors alike, so the same function reads a file and a config's model.
    Attention head counts are not visible in shapes and are left out.
    """
    def shape(key: str) -> tuple[int, ...] | None:
        return tuple(state[key].shape) if key in state else None

    def put(name: str, value: Any) -> None:
        if value is not None:
            found[f"{stage}.{name}"] = value

    found: dict[str, Any] = {}
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
    levels = sorted({int(k.split(".")[2]) for k in state if k.startswith("unet.down_blocks.")})
    widths = [shape(f"unet.down_blocks.{i}.resnets.0.conv1.weight") for i in levels]
    put("unet.block_out_channels", [w[0] for w in widths] if widths and all(widths) else None)
    resnets = {k.split(".")[4] for k in state if k.startswith("unet.down_blocks.0.resnets.")}
    put("unet.layers_per_block", len(resnets) or None)
    cross = next((shape(k) for k in state if k.startswith("unet.") and k.endswith("attn2.to_k.weight")), None)
    put("unet.cross_attention_dim", cross[1] if cross else None)
    proj = shape("image_proj.net.0.weight")
    put("image_token_dim", proj[1] if proj else None)
    put("token_hidden_dim", proj[0] if proj else None)
    if stage == "inpaint":
        put("global_embed_dim", (shape("unet.class_embedding.linear_1.weight") or (None, None))[1])
        steps = sorted({int(k.split(".")[2]) for k in state if k.startswith("pose_proj.blocks.")})
        pose = [shape("pose_proj.conv_in.weight")] + [shape(f"pose_proj.blocks.{i}.weight") for i in steps if i % 2]
        put("pose_embed_channels", [p[0] for p in pose] if all(pose) else None)
    return found


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
        parts.append("the file's shapes say " + " ".join(differ) + " (the authors' files fit --config authors-512)")
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
    """What `convert_authors_checkpoint` did: `tensors` source tensors, each copied into one parameter."""

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

    def summary(self) -> str:
        ignored = f"; ignored non-weight entries: {', '.join(self.ignored_entries)}" if self.ignored_entries else ""
        return (f"converted {STAGE_TITLES[self.stage]} from {self.source}: {self.tensors} tensors, "
                f"{self.parameters / 1e6:.1f} M parameters ({', '.join(self.source_dtypes)} -> {self.saved_dtype}), "
                f"no missing or unexpected keys{ignored}\nwrote {self.out}")


def convert_authors_checkpoint(
    source: str | Path, stage: str, cfg: RunConfig, out: str | Path,
    dtype: torch.dtype = torch.float32, overwrite: bool = False,
) -> ConversionReport:
    """Convert one of the authors' stage files (or any file in their key layout) into a stage folder.

    The architecture comes from `cfg.<stage>` (every `pretrained_path` ignored: no base model is read) and
    must fit the file exactly. Floating tensors are cast to `dtype` (float32 is exact for their fp16 files).
    Writes `out/` atomically: `config.json`, `model.safetensors`, `conversion.json`.
    """
    if stage not in STAGE_CLASSES:
        raise UserError(f"--stage must be one of {', '.join(STAGE_CLASSES)}, got '{stage}'")
    out = Path(out)
    _check_out(out, overwrite)
    ckpt = read_checkpoint(source)
    held, evidence = detect_stage(ckpt.state)
    if held is None:
        raise UserError(f"'{ckpt.path}' holds no PCDMs stage weights (first keys: {_names(sorted(ckpt.state))})")
    if held != stage:
        known = " (a known mix-up: the authors' 256 stage-2 release holds stage-1 weights)" if held == "prior" else ""
        raise UserError(f"'{ckpt.path}' holds {STAGE_TITLES[held]} weights ({', '.join(evidence[:4])}), not "
                        f"{STAGE_TITLES[stage]} weights{known}; convert it with --stage {held} if that is what you want")
    state = rename_authors_keys(ckpt.state, stage)
    with torch.device("meta"):  # no random init: every tensor comes from the file
        model = STAGE_CLASSES[stage](without_pretrained_paths(getattr(cfg, stage)))
    _check_fit(model, state, stage, ckpt.path)
    # copy=True: no view into the memory-mapped file, and no tensors sharing storage (safetensors refuses them)
    state = {k: v.to(dtype=dtype if v.is_floating_point() else v.dtype, copy=True) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    report = ConversionReport(
        source=str(ckpt.path), stage=stage, out=str(out), tensors=len(state),
        parameters=sum(v.numel() for v in state.values()),
        source_dtypes=dict(Counter(str(v.dtype).removeprefix("torch.") for v in ckpt.state.values())),
        saved_dtype=str(dtype).removeprefix("torch."), renamed=dict(STAGE_CLASSES[stage].authors_key_renames),
        ignored_entries=ckpt.ignored, deepspeed_stand_ins=ckpt.stand_ins, source_sha256=_sha256(ckpt.path),
    )
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.eval().save_pretrained(tmp)
    (tmp / REPORT_NAME).write_text(json.dumps(report.__dict__, indent=2) + "\n")
    _replace(tmp, out)
    return report


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_stage_folder(folder: Path) -> bool:
    try:
        return json.loads((folder / CONFIG_NAME).read_text()).get("stage") in STAGE_CLASSES
    except (OSError, ValueError, AttributeError):
        return False


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse to write over anything but a stage folder, and over that only with `overwrite`."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not overwrite:
        raise UserError(f"'{out}' already exists and is not empty: choose another --out, or --overwrite to replace it")
    if not _is_stage_folder(out):
        raise UserError(f"--overwrite refuses '{out}': it is not a PCDMs stage folder (no config.json with a stage)")


def _replace(tmp: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


# ---------------------------------------------------------------- assembling a pipeline folder
def read_stage_config(folder: str | Path, stage: str) -> Any:
    """The stage dataclass saved in a stage folder's config.json (checked to be `stage`)."""
    folder = Path(folder)
    path = folder / CONFIG_NAME
    if not path.is_file() or not (folder / WEIGHTS_NAME).is_file():
        raise UserError(f"--{stage} '{folder}' is not a converted stage folder: expected {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
    if saved.get("stage") != stage:
        raise UserError(f"--{stage} '{folder}' holds a '{saved.get('stage')}' model, not a '{stage}' model")
    return configio.from_dict(STAGE_CLASSES[stage].config_class, saved.get("config", {}), prefix=stage)


def assemble_model(out: str | Path, cfg: RunConfig, stages: Mapping[str, str | Path | None],
                   overwrite: bool = False) -> Path:
    """Make the folder `PCDMsPipeline.from_pretrained` reads: `config.yaml` (cfg with each stage section
    taken from its folder) and `prior/`, `inpaint/`, `refine/` (hard links to the given folders' files, or
    copies across file systems). A stage not given is taken from `out/<stage>` when already there."""
    out = Path(out)
    folders = {name: Path(stages[name]) if stages.get(name) else
               (out / name if (out / name / CONFIG_NAME).is_file() else None) for name in STAGE_CLASSES}
    if folders["inpaint"] is None:
        raise UserError("--inpaint is required: a PCDMs model needs stage 2 (prior and refine are optional)")
    raw = configio.to_dict(cfg)
    for name, folder in folders.items():
        if folder is not None:
            raw[name] = configio.to_dict(read_stage_config(folder, name))
    try:
        run = configio.from_dict(RunConfig, raw)
    except ConfigError as err:
        raise UserError(f"the stage folders do not fit the config's encoders/data: {err}") from None
    for name, folder in folders.items():
        target = out / name
        if folder is None or (target.exists() and target.resolve() == folder.resolve()):
            continue
        _check_out(target, overwrite)
        tmp = target.with_name(f".{name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for file in sorted(p for p in folder.iterdir() if p.is_file()):
            _link_or_copy(file, tmp / file.name)
        _replace(tmp, target)
    save_config(run, out)
    return out


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # multi-GB weights: no second copy on the same file system
    except OSError:
        shutil.copy2(src, dst)
