"""Building blocks shared by the PCDMs stages (paper Sec. 3.2-3.4; REFERENCE.md Sec. 1 and 3).

- `PoseMLP`: the stage-1 keypoint encoder, 36 -> 512 -> 1024 (authors' `pose_encoder.net.*` layout).
- `TokenMLP`: DINOv2 tokens -> cross-attention tokens, 1536 -> 768 -> 1024 (authors' `image_proj_model_p.net.*`).
- `PoseConditioningEmbedding`: the ControlNet conditioning embedding of the stage-2 pose canvas, written here
  because diffusers does not export it publicly; same layout and key names (`conv_in`, `blocks.*`, `conv_out`).
- `PoseAddedConvIn`: the UNet's first conv, which adds pose features passed as extra input channels to its
  output, so the diffusers UNet is used as is (no fork): sample = [UNet input | pose features].
- `build_unet`: a diffusers `UNet2DConditionModel` from `UNetConfig`, random or from a pretrained folder with
  the first conv widened by zero-extending its kernel (new input channels start with no effect).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from torch import nn

from pcdms.config import UNetConfig, require_folder
from pcdms.models.encoders import load_local
from pcdms.errors import UserError


class PoseMLP(nn.Module):
    """Flattened keypoints (B, 2K) -> (B, hidden[1]): Linear, GELU, Dropout, LayerNorm, Linear, Dropout, LayerNorm."""

    def __init__(self, in_dim: int, hidden_dims: tuple[int, int], dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dims[0]), nn.GELU(), nn.Dropout(dropout), nn.LayerNorm(hidden_dims[0]),
            nn.Linear(hidden_dims[0], hidden_dims[1]), nn.Dropout(dropout), nn.LayerNorm(hidden_dims[1]),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TokenMLP(nn.Module):
    """Image tokens (B, N, in_dim) -> (B, N, out_dim): Linear, GELU, Dropout, LayerNorm, Linear, Dropout."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.LayerNorm(hidden_dim),
            nn.Linear(hidden_dim, out_dim), nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PoseConditioningEmbedding(nn.Module):
    """Pose image (B, 3, H, W) in [0, 1] -> features (B, out_channels, H / 2^(n-1), W / 2^(n-1)).

    `channels` has n entries with one stride-2 conv between consecutive entries (paper: 16/32/96/256, x8);
    the output conv is zero-initialised, so a new pose branch starts with no effect on the UNet.
    """

    def __init__(self, channels: tuple[int, ...], out_channels: int, in_channels: int = 3) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, channels[0], kernel_size=3, padding=1)
        self.blocks = nn.ModuleList()
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            self.blocks.append(nn.Conv2d(c_in, c_in, kernel_size=3, padding=1))
            self.blocks.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, stride=2))
        self.conv_out = nn.Conv2d(channels[-1], out_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        self.downsample = 2 ** (len(channels) - 1)

    def forward(self, pose: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.conv_in(pose))
        for block in self.blocks:
            x = F.silu(block(x))
        return self.conv_out(x)


class PoseAddedConvIn(nn.Conv2d):
    """A UNet `conv_in` that adds features given as extra input channels: conv(x[:, :in]) + x[:, in:].

    State-dict keys stay `conv_in.weight`/`conv_in.bias`. An input with exactly `in_channels` channels is a
    plain convolution.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == self.in_channels:
            return super().forward(x)
        extra = x[:, self.in_channels :]
        if extra.shape[1] != self.out_channels:
            raise ValueError(f"conv_in expects {self.out_channels} extra feature channels, got {extra.shape[1]}")
        return super().forward(x[:, : self.in_channels]) + extra

    @classmethod
    def replace(cls, conv: nn.Conv2d) -> PoseAddedConvIn:
        """A `PoseAddedConvIn` sharing `conv`'s parameters."""
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                  padding=conv.padding, device="meta")
        new.weight, new.bias = conv.weight, conv.bias
        return new


# UNetConfig fields and the diffusers config keys they set; all other keys keep diffusers' defaults.
_UNET_FIELDS = ("block_out_channels", "layers_per_block", "down_block_types", "up_block_types",
                "attention_head_dim", "cross_attention_dim", "use_linear_projection", "norm_num_groups")
_IGNORED_KEYS = {"in_channels", "out_channels", "class_embed_type", "projection_class_embeddings_input_dim", "sample_size"}


def _unet_kwargs(cfg: UNetConfig, in_channels: int, out_channels: int, class_embed_dim: int | None) -> dict:
    kwargs = {name: getattr(cfg, name) for name in _UNET_FIELDS}
    kwargs.update(in_channels=in_channels, out_channels=out_channels)
    if class_embed_dim is not None:
        kwargs.update(class_embed_type="projection", projection_class_embeddings_input_dim=class_embed_dim)
    return kwargs


def unet_config_from(config: dict, pretrained_path: str | None) -> UNetConfig:
    """The `UNetConfig` describing a diffusers UNet config dict (per-block tuples expanded)."""
    n = len(config["block_out_channels"])
    heads = config["attention_head_dim"]
    return UNetConfig(
        pretrained_path=pretrained_path,
        block_out_channels=tuple(config["block_out_channels"]),
        layers_per_block=int(config["layers_per_block"]),
        down_block_types=tuple(config["down_block_types"]),
        up_block_types=tuple(config["up_block_types"]),
        attention_head_dim=tuple(heads) if isinstance(heads, (list, tuple)) else (int(heads),) * n,
        cross_attention_dim=int(config["cross_attention_dim"]),
        use_linear_projection=bool(config["use_linear_projection"]),
        norm_num_groups=int(config["norm_num_groups"]),
    )


def _check_representable(base: dict, cfg: UNetConfig, key: str) -> None:
    """Refuse a base UNet whose architecture `UNetConfig` cannot describe (saved stages rebuild from it)."""
    with torch.device("meta"):
        ours = UNet2DConditionModel(**_unet_kwargs(cfg, base["in_channels"], base["out_channels"], None)).config
    differ = sorted(k for k in ours if not k.startswith("_") and k not in _IGNORED_KEYS
                    and k in base and _plain(base[k]) != _plain(ours[k]))
    if differ:
        raise UserError(f"the base UNet at {key} has settings PCDMs' UNetConfig cannot describe: "
                        + ", ".join(f"{k}={base[k]!r}" for k in differ[:5]) + " (use an SD-2.1-base-like UNet)")


def _plain(value: object) -> object:
    return list(value) if isinstance(value, (list, tuple)) else value


def _widen_conv_in(weight: torch.Tensor, in_channels: int, key: str) -> torch.Tensor:
    """Zero-extend a (out, c, k, k) kernel to (out, in_channels, k, k): new channels start with no effect."""
    have = weight.shape[1]
    if have > in_channels:
        raise UserError(f"the base UNet at {key} takes {have} input channels, more than the {in_channels} needed")
    return torch.cat([weight, weight.new_zeros(weight.shape[0], in_channels - have, *weight.shape[2:])], dim=1)


def build_unet(
    cfg: UNetConfig, in_channels: int, out_channels: int, class_embed_dim: int | None, key: str
) -> tuple[UNet2DConditionModel, UNetConfig]:
    """A UNet with `in_channels` inputs and, when `class_embed_dim` is set, a projection class embedding
    (Linear(class_embed_dim, T), SiLU, Linear(T, T) added to the time embedding, T = 4 x first block width).

    `cfg.pretrained_path` None: random weights from the fields of `cfg`. Otherwise a diffusers UNet folder
    (or an SD folder with `unet/`): its weights are copied, `conv_in` zero-extended to `in_channels`, the
    class embedding left random. Returns the UNet and the `UNetConfig` that describes it (`key` names the
    config section in errors, e.g. `inpaint.unet.pretrained_path`).
    """
    if cfg.pretrained_path is None:
        return UNet2DConditionModel(**_unet_kwargs(cfg, in_channels, out_channels, class_embed_dim)), cfg
    base = load_local(UNet2DConditionModel, cfg.pretrained_path, "base UNet", key, subfolder="unet")
    folder = require_folder(cfg.pretrained_path, "base UNet", key)
    if base.config.out_channels != out_channels:
        raise UserError(f"the base UNet at '{folder}' predicts {base.config.out_channels} channels, but the "
                        f"autoencoder gives {out_channels} latent channels")
    effective = unet_config_from(dict(base.config), cfg.pretrained_path)
    _check_representable(dict(base.config), effective, key)
    unet = UNet2DConditionModel(**_unet_kwargs(effective, in_channels, out_channels, class_embed_dim))
    state = base.state_dict()
    state["conv_in.weight"] = _widen_conv_in(state["conv_in.weight"], in_channels, key)
    missing, unexpected = unet.load_state_dict(state, strict=False)
    new_keys = [k for k in missing if not k.startswith("class_embedding.")]
    if new_keys or unexpected:
        raise UserError(f"the base UNet at '{folder}' does not match its config: missing {new_keys[:3]}, "
                        f"unexpected {unexpected[:3]}")
    return unet, effective


def without_pretrained_paths(obj: object) -> object:
    """A copy of a config dataclass with every `pretrained_path` (at any depth) set to None."""
    if not dataclasses.is_dataclass(obj):
        return obj
    changes = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name == "pretrained_path":
            changes[f.name] = None
        elif dataclasses.is_dataclass(value):
            changes[f.name] = without_pretrained_paths(value)
    return dataclasses.replace(obj, **changes)


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Run a block in eval mode (no dropout) and restore the previous mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)
