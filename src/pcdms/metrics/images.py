"""Image folders and the evaluation-size resize of the field's metric scripts (REFERENCE.md Sec. 5).

Every metric sees the same array per image: the file decoded to 8-bit RGB, converted to float32
0-255, resized to the evaluation size with OpenCV's bicubic filter (`cv2.INTER_CUBIC`) and NOT
clipped, because that is what the PCDMs/GFLA scripts do (`cv2.resize(imread(f).astype(np.float32),
(W, H), interpolation=cv2.INTER_CUBIC)`). Bicubic overshoot therefore reaches the metrics exactly as
in the published numbers. The aspect ratio is not preserved: the protocol resizes, it does not crop.

Sizes are written WIDTHxHEIGHT, as OpenCV's `dsize` and the papers' tables ("256x176" in the papers
is height x width; here it is `176x256`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pcdms.errors import UserError
from pcdms.metrics.pixel import SSIM_W51_WINDOW

#: Files with these extensions (case-insensitive) count as images in every folder we read.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

#: The evaluation sizes of the literature, WIDTHxHEIGHT.
STANDARD_SIZES = {
    "176x256": "DeepFashion 256x176 (PIDM, PCDMs, CFLD tables)",
    "352x512": "DeepFashion 512x352",
    "64x128": "Market-1501 128x64",
}


@dataclass(frozen=True)
class EvalSize:
    """The size every image is resized to before any metric, in pixels."""

    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


def parse_size(text: str) -> EvalSize:
    """'176x256' -> EvalSize(width=176, height=256); a UserError names the argument otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise UserError(
            f"--size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 176x256 (DeepFashion 256), "
            "352x512 (DeepFashion 512) or 64x128 (Market-1501)"
        )
    width, height = int(match.group(1)), int(match.group(2))
    if min(width, height) < SSIM_W51_WINDOW:
        raise UserError(
            f"--size {text!r}: both sides must be at least {SSIM_W51_WINDOW} px (ssim_w51's window); images of "
            "any size are resized to --size, so evaluate small images at e.g. 176x256"
        )
    return EvalSize(width=width, height=height)


def list_images(folder: str | Path, what: str) -> list[Path]:
    """The image files directly inside `folder` (not recursive), sorted by name.

    `what` names the folder's role in error messages (e.g. '--gt'). Raises UserError when the folder
    does not exist or holds no image.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserError(f"{what} {folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise UserError(f"{what} {folder}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
    return files


def resize_for_eval(image: np.ndarray, size: EvalSize) -> np.ndarray:
    """(H, W, 3) uint8 or float 0-255 -> (size.height, size.width, 3) float32 0-255, bicubic, unclipped.

    An image already at the evaluation size comes back unchanged (as float32), as with cv2.
    """
    import cv2

    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {array.shape}")
    if array.shape[:2] == (size.height, size.width):
        return array.copy()
    return cv2.resize(array, (size.width, size.height), interpolation=cv2.INTER_CUBIC)


def load_for_eval(path: str | Path, size: EvalSize) -> np.ndarray:
    """Read an image file (any mode, via `pcdms.imageio.load_image`) -> (H, W, 3) float32 0-255 at `size`."""
    from pcdms.imageio import load_image

    return resize_for_eval(np.asarray(load_image(path), dtype=np.uint8), size)


def to_tensor_chw(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) float32 -> (3, H, W) float32 torch tensor, same values."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
