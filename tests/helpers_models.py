"""Shared tiny builders for the model tests: the tiny preset, its real-class encoders, a training batch made
from the test photos and pose renders (photos.py), and oracle denoisers that know the clean sample."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pcdms.config import RunConfig, load_config
from pcdms.models.encoders import Encoders, build_encoders
from pcdms.pose import MISSING


def tiny_config() -> RunConfig:
    return load_config("tiny")


@functools.lru_cache(maxsize=1)
def tiny_encoders() -> Encoders:
    """Random-weight CLIP and DINOv2 of the real transformers classes, and the space-to-depth autoencoder."""
    torch.manual_seed(0)
    return build_encoders(tiny_config().encoders)


@functools.lru_cache(maxsize=None)
def _read(path: str, height: int, width: int) -> torch.Tensor:
    image = Image.open(path).convert("RGB").resize((width, height), Image.BICUBIC)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255.0  # (3, H, W) in [0, 1]


def make_batch(samples_dir: Path, batch_size: int = 2, height: int = 64, width: int = 48, seed: int = 0) -> dict:
    """A training batch in the shared batch format, from the real photos and pose renders."""
    gen = torch.Generator().manual_seed(seed)
    photos = [samples_dir / f"img{i}.png" for i in range(1, 6)]
    poses = [samples_dir / f"pose{i}.png" for i in range(1, 7)]

    def images(paths: list[Path], offset: int) -> torch.Tensor:
        return torch.stack([_read(str(paths[(i + offset) % len(paths)]), height, width) for i in range(batch_size)])

    keypoints = torch.rand(2, batch_size, 18, 2, generator=gen)
    keypoints[:, :, 16:] = MISSING  # ears often missing in DeepFashion
    return {
        "source_image": images(photos, 0) * 2 - 1,
        "target_image": images(photos, 1) * 2 - 1,
        "source_pose_image": images(poses, 0),
        "target_pose_image": images(poses, 1),
        "source_keypoints": keypoints[0],
        "target_keypoints": keypoints[1],
        "source_name": [f"s{i}" for i in range(batch_size)],
        "target_name": [f"t{i}" for i in range(batch_size)],
    }


def oracle(scheduler, clean: torch.Tensor) -> Callable[..., torch.Tensor]:
    """A denoiser that knows x0: returns the exact noise (epsilon models) or x0 (x0 models) for any x_t.

    Its signature matches a stage's forward (x_t, t, **conditions); a guided call's (2B, ...) batch is served
    by repeating `clean`.
    """
    kind = scheduler.config.prediction_type

    def forward(x: torch.Tensor, t: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        x0 = clean.repeat(x.shape[0] // clean.shape[0], *([1] * (clean.ndim - 1))).to(x)
        if kind == "sample":
            return x0
        abar = scheduler.alphas_cumprod[t.long().reshape(-1)].to(x).view(-1, *([1] * (x.ndim - 1)))
        return (x - abar.sqrt() * x0) / (1 - abar).sqrt()

    return forward


def seeds(*values: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(v) for v in values]


def trainable_without_grad(model: torch.nn.Module) -> list[str]:
    """Names of trainable parameters whose gradient is missing or all zeros."""
    return [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]


def overfit(model: torch.nn.Module, loss_fn: Callable[[torch.Generator], torch.Tensor], steps: int,
            lr: float = 1e-3) -> tuple[float, float]:
    """Train on one fixed draw (same noise, timesteps and dropout every step); (first loss, last loss)."""
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_fn(torch.Generator().manual_seed(123))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses[0], min(losses[-5:])
