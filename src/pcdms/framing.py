"""The model frame: how images and poses of any size go into a PCDMs model's fixed size and come back out.

`Fit` pads an image to the model's aspect with its own border colour (or squashes it, the authors' way),
resizes it, maps its poses the same way, and crops outputs back to the input's size and aspect.

Every resize is `resize_bicubic`: Pillow's bicubic with the pass order of Pillow 13, whatever Pillow is installed,
so the same file gives the same model input everywhere (the page's Gradio pins Pillow below 13).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from pcdms.pose import Pose


def resize_bicubic(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`image.resize(size, BICUBIC)` as Pillow 13 computes it, on any Pillow.

    Pillow resizes in two passes, horizontal then vertical, rounding to 8 bits in between. Pillow 13 runs the
    vertical pass first when the height shrinks by more than twice as many pixels as the width (its
    `ImagingResampleInner`), which changes up to 6 grey levels of, for example, a 768 x 1120 photo squashed
    to 512 x 512 as the authors' code does it. Here that order is made explicit: a vertical-only resize, then
    a horizontal-only one, each of which every Pillow computes the same way.
    """
    (width, height), (new_width, new_height) = image.size, size
    bicubic = Image.Resampling.BICUBIC
    if height - new_height > 0 and height - new_height > 2 * (width - new_width) and width != new_width:
        return image.resize((width, new_height), bicubic).resize(size, bicubic)
    return image.resize(size, bicubic)


@dataclass(frozen=True)
class Fit:
    """How an image of `size` (w, h) sits in the model frame: padded to its aspect, then resized."""

    size: tuple[int, int]
    padded: tuple[int, int]
    offset: tuple[int, int]

    @classmethod
    def of(cls, width: int, height: int, model_h: int, model_w: int, stretch: bool = False) -> Fit:
        aspect = model_w / model_h
        if stretch:  # the authors' way: squash any aspect into the model frame
            return cls((width, height), (width, height), (0, 0))
        if width / height > aspect:  # too wide: pad top and bottom
            padded = (width, round(width / aspect))
        else:
            padded = (round(height * aspect), height)
        return cls((width, height), padded, ((padded[0] - width) // 2, (padded[1] - height) // 2))

    def image_in(self, image: Image.Image, model_h: int, model_w: int) -> Image.Image:
        border = np.concatenate([np.asarray(image)[[0, -1]].reshape(-1, 3), np.asarray(image)[:, [0, -1]].reshape(-1, 3)])
        colour = tuple(int(c) for c in np.median(border, axis=0))
        canvas = Image.new("RGB", self.padded, colour)
        canvas.paste(image, self.offset)
        return resize_bicubic(canvas, (model_w, model_h))

    def pose_in(self, pose: Pose, model_h: int, model_w: int) -> Pose:
        scaled = pose.resized(self.size[1], self.size[0])  # into this image's pixel frame
        xy = scaled.pixels() + np.asarray(self.offset, dtype=np.float32)
        return Pose(xy, scaled.visible, self.padded[1], self.padded[0]).resized(model_h, model_w)

    def image_out(self, image: Image.Image) -> Image.Image:
        full = resize_bicubic(image, self.padded)
        left, top = self.offset
        return full.crop((left, top, left + self.size[0], top + self.size[1]))


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) in [-1, 1] -> PIL RGB images."""
    arrays = ((images.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in arrays]


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> (1, 3, H, W) in [-1, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1)[None].contiguous()


def pose_tensor(pose: Pose, fit: Fit, height: int, width: int, skeleton: str = "scaled") -> tuple[torch.Tensor, torch.Tensor]:
    """A pose of an image that sits in the model frame as `fit` says -> (normalised keypoints (1, 18, 2) and
    skeleton render (1, 3, H, W) in [0, 1], both in the model frame).

    The render is drawn in `skeleton` style (`pcdms.pose.SKELETON_STYLES`); under "authors" a pose read from a
    skeleton picture brings the picture itself, fitted as an image is (their code resizes the file bicubic).
    """
    fitted = fit.pose_in(pose, height, width)
    if skeleton == "authors" and pose.picture is not None:
        render = np.asarray(fit.image_in(Image.fromarray(pose.picture), height, width))
    else:
        render = fitted.render(height, width, skeleton)
    pixels = torch.from_numpy(render.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    return torch.from_numpy(fitted.normalized())[None], pixels.contiguous()
