"""Finding and reading the ImageNet backbones that LPIPS and the GFLA-lineage FID need, offline.

torchvision downloads these on first use, which cannot happen on machines without internet. We look,
in order, for: the file named on the command line, the file named by an environment variable, and the
file torchvision itself would have downloaded (`$TORCH_HOME/hub/checkpoints/<name>`, default
`~/.cache/torch/hub/checkpoints`). Files are read with `torch.load(..., weights_only=True)` or as
safetensors, never unpickled. When none is there the error says exactly what to put where.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from pcdms.errors import UserError


class WeightsUnavailable(UserError):
    """A backbone weight file that is needed is not on this machine (or is not the right file)."""


@dataclass(frozen=True)
class BackboneFile:
    """Where one torchvision backbone's weights may be found."""

    what: str  # the metric that needs it, for messages
    filename: str  # torchvision's own file name in the hub cache
    enum: str  # the torchvision weights enum, so the user can find the file
    env_var: str
    flag: str  # the `pcdms evaluate` option that names a file


ALEXNET = BackboneFile(
    what="lpips",
    filename="alexnet-owt-7be5be79.pth",
    enum="torchvision.models.AlexNet_Weights.IMAGENET1K_V1",
    env_var="PCDMS_LPIPS_BACKBONE",
    flag="--lpips-backbone",
)
INCEPTION = BackboneFile(
    what="fid_gfla",
    filename="inception_v3_google-0cc3c7bd.pth",
    enum="torchvision.models.Inception_V3_Weights.IMAGENET1K_V1",
    env_var="PCDMS_INCEPTION_WEIGHTS",
    flag="--inception-weights",
)


def hub_checkpoint_path(filename: str) -> Path:
    """Where torchvision caches a downloaded weight file (honours $TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def resolve_weights(backbone: BackboneFile, explicit: str | Path | None = None) -> Path:
    """The weight file to use for `backbone`; raises WeightsUnavailable saying what to put where."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsUnavailable(f"{backbone.flag} {path}: file not found")
        return path
    from_env = os.environ.get(backbone.env_var)
    if from_env:
        path = Path(from_env).expanduser()
        if not path.is_file():
            raise WeightsUnavailable(f"${backbone.env_var}={path}: file not found")
        return path
    cached = hub_checkpoint_path(backbone.filename)
    if cached.is_file():
        return cached
    raise WeightsUnavailable(
        f"{backbone.what} needs the ImageNet weights {backbone.enum} ({backbone.filename}), which cannot be "
        f"downloaded here: copy that file to {cached}, or pass {backbone.flag} PATH, or set "
        f"${backbone.env_var}=PATH"
    )


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors` file or a `torch.save`d state dict, read without unpickling code."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any reader error means the file is not a plain tensor file
        raise WeightsUnavailable(f"{path}: not a readable state dict of tensors ({err})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailable(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    return state


def check_keys(path: Path, state: dict[str, torch.Tensor], expected: dict[str, torch.Size]) -> None:
    """Raise WeightsUnavailable naming the file when a needed key is absent or has the wrong shape."""
    missing = sorted(k for k in expected if k not in state)
    wrong = sorted(k for k in expected if k in state and state[k].shape != expected[k])
    if missing or wrong:
        detail = []
        if missing:
            detail.append(f"missing {len(missing)} keys, e.g. {', '.join(missing[:3])}")
        if wrong:
            k = wrong[0]
            detail.append(f"wrong shape for {k}: {tuple(state[k].shape)}, expected {tuple(expected[k])}")
        raise WeightsUnavailable(f"{path}: not the expected backbone weights ({'; '.join(detail)})")


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (hex), read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
