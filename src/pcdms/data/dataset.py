"""The training dataset: one (source, target) pair per item, images resized and poses rendered on the fly.

Serves all three PCDMs stages (paper Sec. 3; `shared/REFERENCE.md` Sec. 1 and 4). Skeleton images are drawn
from the keypoints at the model's size (`pcdms.pose.render_skeleton`), so no pre-rendered pose files are
needed: the authors never shipped theirs. Batches after the default collate:

- `source_image`, `target_image`: float32 (B, 3, H, W) in [-1, 1]
- `source_pose_image`, `target_pose_image`: float32 (B, 3, H, W) in [0, 1], OpenPose colours on black
- `source_keypoints`, `target_keypoints`: float32 (B, 18, 2), (x / W, y / H) in [0, 1], missing (-1, -1)
- `source_name`, `target_name`: lists of str
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from pcdms.data.formats import ImageEntry, PairRecord, SplitData, load_split
from pcdms.errors import UserError
from pcdms.imageio import center_crop_to_aspect, load_image
from pcdms.pose import flip_normalized, render_skeleton

__all__ = ["PairDataset", "load_split", "load_person_image", "pose_image_tensor", "PairRecord", "SplitData"]


def load_person_image(entry: ImageEntry, height: int, width: int) -> Image.Image:
    """The image of `entry` as the model sees it: centre-cropped to its annotation frame, resized to HxW.

    Bicubic with antialiasing (PIL). The entry's normalised keypoints describe the returned image.
    """
    if entry.path is None:
        raise UserError(f"image '{entry.name}' was not found (annotated at {entry.origin[0]})")
    image = load_image(entry.path)
    if entry.frame is not None:
        image = center_crop_to_aspect(image, *entry.frame)
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BICUBIC)
    return image


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> float32 (3, H, W) in [-1, 1]."""
    array = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0
    # transpose in numpy: torch's threaded permute().contiguous() took ~9 ms per image on a busy 2-core CPU
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def pose_image_tensor(keypoints: np.ndarray, height: int, width: int) -> torch.Tensor:
    """Normalised keypoints (18, 2) -> skeleton render float32 (3, H, W) in [0, 1]."""
    render = render_skeleton(keypoints, height, width).transpose(2, 0, 1).astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(render))


class PairDataset(Dataset):
    """Pairs of one split of a dataset root (any of the formats in `pcdms.data.formats`).

    height, width: the model's image size; every image is resized to it and every pose rendered at it.
    flip_prob: probability of mirroring a whole pair (both images, both poses; left/right joints swap).
    Whether item i is flipped depends only on (seed, epoch, i), never on global RNG state, so a resumed
    run sees the same flips as an uninterrupted one; `set_epoch` (called by accelerate's loader) varies it.
    coarse_dir: stage 3's inputs, `<coarse_dir>/<from>_to_<to>.png` per pair (`pcdms export-coarse`); each
    item then also holds `coarse_image` (3, H, W) in [-1, 1].
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        height: int,
        width: int,
        flip_prob: float = 0.0,
        format: str = "auto",
        coarse_dir: str | Path | None = None,
        seed: int = 0,
    ) -> None:
        if height <= 0 or width <= 0:
            raise UserError(f"image size must be positive, got {height}x{width}")
        if not 0.0 <= flip_prob <= 1.0:
            raise UserError(f"flip_prob must be in [0, 1], got {flip_prob}")
        self.data = load_split(root, split, format)
        self.pairs = self.data.pairs
        self.height, self.width = height, width
        self.flip_prob = flip_prob
        self.seed, self.epoch = seed, 0
        self.coarse_dir = None if coarse_dir is None else Path(coarse_dir)
        if self.coarse_dir is not None:
            from pcdms.generate import output_stem

            self.coarse_paths = [self.coarse_dir / f"{output_stem(p.source, p.target)}.png" for p in self.pairs]
            missing = [p.name for p in self.coarse_paths if not p.is_file()]
            if missing:
                raise UserError(
                    f"{len(missing)} of {len(self.pairs)} coarse images are missing from {self.coarse_dir} "
                    f"(first: {', '.join(missing[:3])}): run `pcdms export-coarse` for split '{split}' first"
                )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _flip(self, index: int) -> bool:
        if self.flip_prob <= 0:
            return False
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index)
        return bool(torch.rand((), generator=generator) < self.flip_prob)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        pair = self.pairs[index]
        flip = self._flip(index)
        item: dict = {}
        for role, name in (("source", pair.source), ("target", pair.target)):
            entry = self.data.images[name]
            image = load_person_image(entry, self.height, self.width)
            keypoints = entry.keypoints
            if flip:
                image = ImageOps.mirror(image)
                keypoints = flip_normalized(keypoints)
            item[f"{role}_image"] = image_to_tensor(image)
            item[f"{role}_pose_image"] = pose_image_tensor(keypoints, self.height, self.width)
            item[f"{role}_keypoints"] = torch.from_numpy(np.array(keypoints, dtype=np.float32))
            item[f"{role}_name"] = name
        if self.coarse_dir is not None:
            coarse = load_image(self.coarse_paths[index]).resize((self.width, self.height), Image.Resampling.BICUBIC)
            item["coarse_image"] = image_to_tensor(ImageOps.mirror(coarse) if flip else coarse)
        return item
