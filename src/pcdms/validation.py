"""The allowed range of every number a user can give, and the checks made before any work starts.

One home for the rules, applied at the edge, once: config values when a config is built
(`pcdms.config.validate` calls `check_config_ranges`), command-line numbers when argparse parses them
(`type=at_least(1)` and friends; a run setting's option with `setting_arg`, the range its settings file
is held to), output folders and devices when a command starts. Each message names
the argument or key, the value given and what is allowed, so no mistake reaches the models as a NaN, a
division by zero or a silently different run.

This module imports nothing from the rest of pcdms except its errors, so every module can use it.
"""

from __future__ import annotations

import argparse
import math
import re
import tempfile
from dataclasses import dataclass, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from pcdms.errors import ConfigError, UserError

SEED_MAX = 2**32 - 1  # numpy's (and accelerate.set_seed's) limit


@dataclass(frozen=True)
class Range:
    """A numeric range: `low`/`high` inclusive unless `*_open`; None means unbounded. Always finite."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    nullable: bool = False  # None is allowed (an optional setting left off)

    def allows(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not float(value).is_integer():
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            text = f"{kind} in {left}{_fmt(self.low)}, {_fmt(self.high)}{right}"
        elif self.low is not None:
            text = f"{kind} {'>' if self.low_open else '>='} {_fmt(self.low)}"
        elif self.high is not None:
            text = f"{kind} {'<' if self.high_open else '<='} {_fmt(self.high)}"
        else:
            text = kind
        return f"{text} or null" if self.nullable else text


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


COUNT = Range(1, integer=True)  # a count or size that must be at least one
NONNEG = Range(0, integer=True)  # an integer where 0 means "none" or "off"
PROB = Range(0.0, 1.0)
DROP_PROB = Range(0.0, 1.0, high_open=True)
POSITIVE = Range(0.0, low_open=True)
NONNEG_FLOAT = Range(0.0)
FINITE = Range()
BETA = Range(0.0, 1.0, high_open=True)
SEED = Range(0, SEED_MAX, integer=True)

#: A pose canvas's or recorded photo's side in pixels (photos are read at <= 2048): bounded before anything is
#: drawn at that size (a 10^6 x 10^6 canvas from a JSON or annotation row would take terabytes).
FRAME_SIDE = Range(1, 8192, integer=True)

#: The settings of one generation, as `pcdms generate` takes them (argparse types from `setting_arg`) and a
#: settings file (`--settings`, the page's downloads) replays them: one set of ranges for both. None = the
#: model's config.
RUN_SETTING_RANGES: dict[str, Range] = {
    "steps": Range(1, 1000, integer=True, nullable=True),  # the schedules have 1000 training timesteps
    "guidance": Range(0.0, 100.0, nullable=True),
    "seed": SEED,
    "num_samples": Range(1, 64, integer=True),
    "refine_strength": Range(0.0, 1.0, low_open=True, nullable=True),
}

#: Every numeric config value, by dotted key; `*` matches one section name, `[*]` any list item.
CONFIG_RANGES: dict[str, Range] = {
    # schedules and networks
    "*.schedule.num_train_timesteps": COUNT,
    "*.schedule.beta_start": Range(0.0, 1.0, low_open=True, high_open=True),
    "*.schedule.beta_end": Range(0.0, 1.0, low_open=True, high_open=True),
    "*.unet.block_out_channels[*]": COUNT,
    "*.unet.layers_per_block": COUNT,
    "*.unet.attention_head_dim[*]": COUNT,
    "*.unet.cross_attention_dim": COUNT,
    "*.unet.norm_num_groups": COUNT,
    "prior.embed_dim": COUNT,
    "prior.width": COUNT,
    "prior.num_layers": COUNT,
    "prior.num_heads": COUNT,
    "prior.num_keypoints": Range(18, 18, integer=True),  # COCO-18 (pcdms.pose)
    "prior.pose_hidden_dims[*]": COUNT,
    "prior.dropout": DROP_PROB,
    "prior.embed_shift": FINITE,
    "prior.embed_scale": POSITIVE,
    "*.cond_drop_prob": DROP_PROB,
    "*.noise_offset": NONNEG_FLOAT,
    "*.latent_channels": COUNT,
    "*.image_token_dim": COUNT,
    "*.token_hidden_dim": COUNT,
    "inpaint.global_embed_dim": Range(1, integer=True, nullable=True),  # null: the authors' simplified model
    "inpaint.pose_embed_channels[*]": COUNT,
    # encoders
    "encoders.autoencoder.factor": COUNT,
    "encoders.autoencoder.vae_latent_channels": COUNT,
    "encoders.autoencoder.block_out_channels[*]": COUNT,
    "encoders.autoencoder.scaling_factor": POSITIVE,
    "encoders.*.image_size": COUNT,
    "encoders.*.patch_size": COUNT,
    "encoders.*.hidden_size": COUNT,
    "encoders.*.num_hidden_layers": COUNT,
    "encoders.*.num_attention_heads": COUNT,
    "encoders.clip.intermediate_size": COUNT,
    "encoders.clip.projection_dim": COUNT,
    "encoders.dino.mlp_ratio": COUNT,
    # data
    "data.height": COUNT,
    "data.width": COUNT,
    "data.flip_prob": PROB,
    "data.recolor_prob": PROB,
    "data.num_workers": NONNEG,
    "data.prefetch_factor": COUNT,
    "data.cache_mb": NONNEG,
    # training
    "train.batch_size": COUNT,
    "train.gradient_accumulation_steps": COUNT,
    "train.learning_rate": POSITIVE,
    "train.weight_decay": NONNEG_FLOAT,
    "train.adam_beta1": BETA,
    "train.adam_beta2": BETA,
    "train.adam_epsilon": POSITIVE,
    "train.max_grad_norm": NONNEG_FLOAT,  # 0 disables clipping
    "train.max_steps": COUNT,
    "train.warmup_steps": NONNEG,
    "train.ema_decay": BETA,  # 0 disables EMA
    "train.seed": SEED,
    "train.checkpoint_every": COUNT,
    "train.keep_checkpoints": COUNT,
    "train.sample_every": NONNEG,  # 0 disables preview grids
    "train.log_every": COUNT,
    # sampling
    "sample.num_inference_steps": COUNT,
    "sample.prior_guidance_scale": NONNEG_FLOAT,
    "sample.inpaint_guidance_scale": NONNEG_FLOAT,
    "sample.refine_guidance_scale": NONNEG_FLOAT,
    "sample.refine_strength": Range(0.0, 1.0, low_open=True),
    "sample.refine_guidance_rescale": NONNEG_FLOAT,  # 0 = off; the authors' stage-3 driver: 2.0
    "sample.seed": SEED,
    "sample.latent_clip": Range(0.0, low_open=True, nullable=True),
    "sample.guidance_interval[*]": PROB,  # [lo, hi] fractions of the steps; lo <= hi checked by config.validate
}


def numeric_values(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) of every int/float (or None-able number) in a config dataclass tree; list items
    as `key[i]`."""
    found: list[tuple[str, Any]] = []
    for f in fields(obj):
        key = f"{prefix}{f.name}"
        value = getattr(obj, f.name)
        if is_dataclass(value):
            found += numeric_values(value, key + ".")
        elif isinstance(value, (tuple, list)):
            found += [(f"{key}[{i}]", v) for i, v in enumerate(value) if _is_number(v)]
        elif _is_number(value) or (value is None and re.search(r"\b(int|float)\b", str(f.type))):
            found.append((key, value))
    return found


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def rule_for(key: str) -> Range | None:
    """The range of a dotted config key (`train.max_steps`, `inpaint.unet.block_out_channels[2]`)."""
    parts = re.sub(r"\[\d+\]$", "[*]", key).split(".")
    for pattern, rule in CONFIG_RANGES.items():
        wanted = pattern.split(".")
        if len(wanted) == len(parts) and all(w in ("*", p) for w, p in zip(wanted, parts)):
            return rule
    return None


def check_config_ranges(cfg: Any) -> None:
    """Raise ConfigError for the first numeric config value outside its range, naming key, value and range."""
    for key, value in numeric_values(cfg):
        rule = rule_for(key)
        if rule is not None and not rule.allows(value):
            raise ConfigError(f"config key '{key}' must be {rule.describe()}, got {value!r}")


# ---------------------------------------------------------------- command-line numbers
def _arg_type(kind: type, rule: Range):
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {rule.describe()}, got {text!r}") from None
        if not rule.allows(value):
            raise argparse.ArgumentTypeError(f"expected {rule.describe()}, got {text!r}")
        return value

    parse.__name__ = rule.describe()  # what argparse shows if it ever names the type
    return parse


def int_in(low: int | None = None, high: int | None = None):
    """argparse `type=` for an integer in [low, high]."""
    return _arg_type(int, Range(low, high, integer=True))


def at_least(low: int):
    """argparse `type=` for an integer >= low (steps, counts, sizes: at_least(1))."""
    return int_in(low)


def float_in(low: float | None = None, high: float | None = None, low_open: bool = False):
    """argparse `type=` for a finite float in [low, high] (`(low, high]` with low_open)."""
    return _arg_type(float, Range(low, high, low_open=low_open))


def setting_arg(name: str):
    """argparse `type=` for the run setting `name` (steps, guidance, seed, num_samples, refine_strength): the
    range of `RUN_SETTING_RANGES`, the one a settings file replayed with `--settings` is held to (leaving the
    option off, not `null`, is how the command line keeps the model's default)."""
    rule = replace(RUN_SETTING_RANGES[name], nullable=False)
    return _arg_type(int if rule.integer else float, rule)


SEED_ARG = setting_arg("seed")
FRAME_SIDE_ARG = _arg_type(int, FRAME_SIDE)  # an image or canvas side given on the command line


# ---------------------------------------------------------------- output folders and devices
def prepare_output_dir(path: str | Path, argument: str = "--out") -> Path:
    """Create `path` (and its parents) and prove it writable, before any work starts.

    Raises UserError naming the argument when it is a file or cannot be created or written.
    """
    out = Path(path).expanduser()
    try:  # exists() too can fail: a parent folder this user may not read
        if out.exists() and not out.is_dir():
            raise UserError(f"{argument} {out}: is a file, not a folder; choose a folder name")
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".pcdms-write-test-"):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise UserError(f"{argument} {out}: cannot write there ({reason}); choose a folder you can write") from None
    return out


def available_devices() -> list[str]:
    """The devices torch can use here: cpu, cuda:0 ... cuda:N-1, mps."""
    import torch

    names = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def resolve_device(name: str | None, argument: str = "--device") -> str:
    """A device name that exists here (None or 'auto': cuda when present, else cpu); otherwise a one-line
    UserError naming the devices there are."""
    import torch

    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    there = available_devices()
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"{argument} {name!r} is not a device name; devices here: {', '.join(there)}") from None
    if device.type == "cpu":
        return "cpu"
    wanted = f"{device.type}:{device.index or 0}" if device.type == "cuda" else device.type
    if wanted not in there:
        raise UserError(f"{argument} {name}: no such device on this machine; devices here: {', '.join(there)}")
    return str(device)



def check_weight_files(folder: str | Path, argument: str = "--model") -> None:
    """Open the header of every `*.safetensors` under `folder` (cheap: no tensor is read) so a truncated or
    damaged weight file is a UserError naming it, before anything is loaded."""
    from safetensors import SafetensorError, safe_open

    for path in sorted(Path(folder).rglob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as handle:
                handle.keys()
        except (SafetensorError, OSError) as err:
            raise UserError(
                f"{argument}: weight file {path} is damaged or truncated ({err}); copy the model folder again "
                "from where it came from, or rerun the command that wrote it (pcdms train / assemble / convert)"
            ) from None


def check_model_folder(folder: str | Path, argument: str = "--model") -> None:
    """A PCDMs model folder (`config.yaml` inside) whose weight files are intact, checked before inputs are
    read and anything is loaded."""
    if not (Path(folder) / "config.yaml").is_file():
        raise UserError(f"{argument} {folder}: not a PCDMs model folder (expected {Path(folder) / 'config.yaml'}); "
                        "`pcdms assemble` makes one from trained stages")
    check_weight_files(folder, argument)
