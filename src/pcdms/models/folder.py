"""The model folder `PCDMsPipeline.from_pretrained` reads, and its one writer.

A model folder holds `config.yaml` (the run config, each stage section as its stage folder says), the stage
folders `inpaint/` and optionally `prior/`, `refine/` (each `StageModel.save_pretrained`: `config.json` +
`model.safetensors`) and, for encoders with random weights, `encoders/clip`, `encoders/dino`. Every writer goes
through `assemble_model` (`pcdms assemble`, `pcdms convert`, `PCDMsPipeline.save_pretrained`), so the folder
has one layout, one self-containment rule and one way of merging the stage configs.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pcdms import configio
from pcdms.config import RunConfig, outside_folder_problem, pretrained_paths, save_config
from pcdms.errors import ConfigError, UserError
from pcdms.models import STAGES
from pcdms.models.io import CONFIG_NAME, WEIGHTS_NAME

REPORT_NAME = "conversion.json"  # beside a stage converted from the authors' files (`pcdms.models.convert`)


def _is_stage_folder(folder: Path) -> bool:
    try:
        return json.loads((folder / CONFIG_NAME).read_text()).get("stage") in STAGES
    except (OSError, ValueError, AttributeError):
        return False


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse to write over anything but a stage folder, and over that only with `overwrite`."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not overwrite:
        raise UserError(f"'{out}' already exists and is not empty: choose another --out, or --overwrite to replace it")
    if not _is_stage_folder(out):
        raise UserError(f"--overwrite refuses '{out}': it is not a PCDMs stage folder (no config.json with a stage)")


def replace_folder(tmp: Path, out: Path) -> None:
    """Put the finished folder `tmp` where `out` is (whatever was there goes)."""
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


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
    return configio.from_dict(STAGES[stage].config_class, saved.get("config", {}), prefix=stage)


def check_self_contained(cfg: RunConfig) -> None:
    """Refuse, before a model folder is written, encoder paths that would not load once the folder is copied
    elsewhere (the rule `load_model_folder_config` applies when reading it)."""
    for key, value in pretrained_paths(configio.to_dict(cfg.encoders), "encoders."):
        problem = outside_folder_problem(key, value)
        if problem:
            raise UserError(f"a model folder is self-contained: {problem}")


def assemble_model(out: str | Path, cfg: RunConfig, stages: Mapping[str, str | Path | None],
                   overwrite: bool = False) -> Path:
    """Make the folder `PCDMsPipeline.from_pretrained` reads: `config.yaml` (cfg with each stage section
    taken from its folder) and `prior/`, `inpaint/`, `refine/` (hard links to the given folders' files, or
    copies across file systems). A stage not given is taken from `out/<stage>` when already there. Stages
    converted from the authors' files (`conversion.json`) make the model sample with their recipe."""
    out = Path(out)
    folders = {name: Path(stages[name]) if stages.get(name) else
               (out / name if (out / name / CONFIG_NAME).is_file() else None) for name in STAGES}
    if folders["inpaint"] is None:
        raise UserError("--inpaint is required: a PCDMs model needs stage 2 (prior and refine are optional)")
    check_self_contained(cfg)
    raw = configio.to_dict(cfg)
    for name, folder in folders.items():
        if folder is not None:
            raw[name] = configio.to_dict(read_stage_config(folder, name))
    if raw["sample"]["recipe"] == "pcdms" and any(f is not None and (f / REPORT_NAME).is_file() for f in folders.values()):
        raw["sample"]["recipe"] = "authors"  # converted from the authors' files: sampled their way
    try:
        run = configio.from_dict(RunConfig, raw)
    except ConfigError as err:
        raise UserError(f"the stage folders do not fit the config's encoders/data: {err}") from None
    for name, folder in folders.items():
        target = out / name
        if folder is None or (target.exists() and target.resolve() == folder.resolve()):
            continue
        check_out(target, overwrite)
        tmp = target.with_name(f".{name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for file in sorted(p for p in folder.iterdir() if p.is_file()):
            _link_or_copy(file, tmp / file.name)
        replace_folder(tmp, target)
    save_config(run, out)
    return out


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # multi-GB weights: no second copy on the same file system
    except OSError:
        shutil.copy2(src, dst)


def save_random_encoders(cfg: RunConfig, folder: str | Path, encoders: Any = None) -> list[str]:
    """Save the random-weight CLIP/DINOv2 encoders (`pretrained_path` null; not Inception) into
    `folder/encoders/<name>`, so a model folder trained with random-weight encoders is self-contained. Returns
    the names saved. `encoders`: built ones to save (`pcdms.models.encoders.Encoders`), else built from `cfg`."""
    from pcdms.models.encoders import build_encoders

    random = [name for name in ("clip", "dino") if getattr(cfg.encoders, name).random_weights]
    if random:
        if encoders is None or any(getattr(encoders, name) is None for name in random):
            encoders = build_encoders(cfg.encoders)  # a run that did not need one still saves it
        for name in random:
            getattr(encoders, name).model.save_pretrained(Path(folder) / "encoders" / name)
    return random
