"""The training dataset: one (source, target) pair per item, images resized and poses rendered on the fly.

Each image is decoded and resized, and each pose rendered, once per loader process: the results are kept
(uint8, at the model's size) up to `cache_mb` MiB, so later epochs and other pairs of the same person read
them from memory (decoding and resizing a DeepFashion photo costs far more than a small network's step).
Flipped images are mirrored from the cached array, the same pixels as mirroring the PIL image.

Serves all three PCDMs stages (paper Sec. 3; `shared/REFERENCE.md` Sec. 1 and 4). Skeleton images are drawn
from the keypoints at the model's size (`pcdms.pose.render_skeleton`), so no pre-rendered pose files are
needed: the authors never shipped theirs. Batches after the default collate:

- `source_image`, `target_image`: float32 (B, 3, H, W) in [-1, 1]
- `source_pose_image`, `target_pose_image`: float32 (B, 3, H, W) in [0, 1], OpenPose colours on black
- `source_keypoints`, `target_keypoints`: float32 (B, 18, 2), (x / W, y / H) in [0, 1], missing (-1, -1)
- `source_name`, `target_name`: lists of str
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from pcdms.data.formats import ImageEntry, PairRecord, SplitData, load_split
from pcdms.errors import UserError
from pcdms.framing import resize_bicubic
from pcdms.imageio import center_crop_to_aspect, load_image
from pcdms.pose import flip_normalized, render_skeleton

__all__ = ["PairDataset", "load_split", "load_person_image", "pose_image_tensor", "PairRecord", "SplitData"]


def load_person_image(entry: ImageEntry, height: int, width: int) -> Image.Image:
    """The image of `entry` as the model sees it: centre-cropped to its annotation frame, resized to HxW.

    Bicubic with antialiasing (`pcdms.framing.resize_bicubic`, as at inference). The entry's normalised keypoints
    describe the returned image.
    """
    if entry.path is None:
        raise UserError(f"image '{entry.name}' was not found (annotated at {entry.origin[0]})")
    image = load_image(entry.path)
    if entry.frame is not None:
        image = center_crop_to_aspect(image, *entry.frame)
    if image.size != (width, height):
        image = resize_bicubic(image, (width, height))
    return image


def image_to_tensor(image: Image.Image | np.ndarray) -> torch.Tensor:
    """PIL RGB (or its uint8 (H, W, 3) array) -> float32 (3, H, W) in [-1, 1]."""
    array = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0
    # transpose in numpy: torch's threaded permute().contiguous() took ~9 ms per image on a busy 2-core CPU
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def pose_image_tensor(keypoints: np.ndarray, height: int, width: int, skeleton: str = "scaled") -> torch.Tensor:
    """Normalised keypoints (18, 2) -> skeleton render float32 (3, H, W) in [0, 1], drawn in `skeleton` style."""
    return _unit_range(render_skeleton(keypoints, height, width, skeleton))


# the six orders of the RGB channels; the first leaves an image as it is (`PairDataset.recolor_prob`)
RECOLORINGS: tuple[tuple[int, int, int], ...] = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


def _reorder(array: np.ndarray, channels: tuple[int, int, int]) -> np.ndarray:
    """uint8 (H, W, 3) with its channels in the order `channels`; the array itself (no copy) when that is RGB."""
    return array if channels == RECOLORINGS[0] else array[..., list(channels)]


def _unit_range(render: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(render.transpose(2, 0, 1).astype(np.float32) / 255.0))


class PairDataset(Dataset):
    """Pairs of one split of a dataset root (any of the formats in `pcdms.data.formats`).

    height, width: the model's image size; every image is resized to it and every pose rendered at it.
    flip_prob: probability of mirroring a whole pair (both images, both poses; left/right joints swap).
    Whether item i is flipped depends only on (seed, epoch, i), never on global RNG state, so a resumed
    run sees the same flips as an uninterrupted one; `set_epoch` (called by accelerate's loader) varies it.
    coarse_dir: stage 3's inputs, `<coarse_dir>/<from>_to_<to>.png` per pair (`pcdms export-coarse`); each
    item then also holds `coarse_image` (3, H, W) in [-1, 1].
    cache_mb: decoded, resized images and pose renders kept per process, up to this many MiB (0: none). The
    epoch lives in shared memory, so `set_epoch` reaches the copies in persistent loader workers.
    skeleton: how the pose renders are drawn (`pcdms.pose.SKELETON_STYLES`, the config's `data.skeleton`).
    recolor_prob: probability of giving a pair other colours: one of the five other orders of the RGB channels
    (`RECOLORINGS`), the same for source, target and coarse image, so that the target's colours can only be
    learnt from the source's, not remembered per outfit (issue #31). Exact and discrete: no value is clipped,
    and an encoder cache keyed by image content holds at most six versions of an image. Drawn like the flip,
    from (seed, epoch, index) alone.
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
        cache_mb: float = 0,
        skeleton: str = "scaled",
        recolor_prob: float = 0.0,
    ) -> None:
        if height <= 0 or width <= 0:
            raise UserError(f"image size must be positive, got {height}x{width}")
        if not 0.0 <= flip_prob <= 1.0:
            raise UserError(f"flip_prob must be in [0, 1], got {flip_prob}")
        if not 0.0 <= recolor_prob <= 1.0:
            raise UserError(f"recolor_prob must be in [0, 1], got {recolor_prob}")
        self.data = load_split(root, split, format)
        self.pairs = self.data.pairs
        self.height, self.width = height, width
        self.skeleton = skeleton
        self.flip_prob = flip_prob
        self.recolor_prob = recolor_prob
        self.seed = seed
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.cache_bytes = int(cache_mb * 2**20)
        self._cache: dict[tuple, np.ndarray] = {}
        self._cached_bytes = 0
        self.coarse_dir = None if coarse_dir is None else Path(coarse_dir)
        if self.coarse_dir is not None:
            from pcdms.names import output_stem

            self.coarse_paths = [self.coarse_dir / f"{output_stem(p.source, p.target)}.png" for p in self.pairs]
            missing = [p.name for p in self.coarse_paths if not p.is_file()]
            if missing:
                raise UserError(
                    f"{len(missing)} of {len(self.pairs)} coarse images are missing from {self.coarse_dir} "
                    f"(first: {', '.join(missing[:3])}): run `pcdms export-coarse` for split '{split}' first"
                )

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(epoch)

    def _cached(self, key: tuple, make: Callable[[], np.ndarray]) -> np.ndarray:
        """`make()` once per key while the cache has room (read-only arrays: callers copy before changing)."""
        value = self._cache.get(key)
        if value is None:
            value = make()
            if self._cached_bytes + value.nbytes <= self.cache_bytes:
                value.flags.writeable = False
                self._cache[key] = value
                self._cached_bytes += value.nbytes
        return value

    def _image(self, name: str) -> np.ndarray:
        """uint8 (H, W, 3) of image `name` at the model's size (`load_person_image`)."""
        entry = self.data.images[name]
        return self._cached(("image", name), lambda: np.asarray(load_person_image(entry, self.height, self.width)))

    def _pose(self, keypoints: np.ndarray, name: str, flip: bool) -> np.ndarray:
        """uint8 (H, W, 3) skeleton render of `keypoints` (image `name`'s, flipped or not)."""
        return self._cached(("pose", name, flip), lambda: render_skeleton(keypoints, self.height, self.width,
                                                                               self.skeleton))

    def _coarse(self, index: int) -> np.ndarray:
        def read() -> np.ndarray:
            coarse = load_image(self.coarse_paths[index])
            return np.asarray(resize_bicubic(coarse, (self.width, self.height)))

        return self._cached(("coarse", index), read)

    def _flip(self, index: int) -> bool:
        if self.flip_prob <= 0:
            return False
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index)
        return bool(torch.rand((), generator=generator) < self.flip_prob)

    def _channels(self, index: int) -> tuple[int, int, int]:
        """Item `index`'s order of the RGB channels this epoch (`RECOLORINGS`), from (seed, epoch, index) alone."""
        if self.recolor_prob <= 0:
            return RECOLORINGS[0]
        draw = np.random.default_rng([self.seed, self.epoch, index, 31])  # 31: this draw's own stream
        return RECOLORINGS[1 + int(draw.integers(5))] if draw.random() < self.recolor_prob else RECOLORINGS[0]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        pair = self.pairs[index]
        flip, channels = self._flip(index), self._channels(index)
        item: dict = {}
        for role, name in (("source", pair.source), ("target", pair.target)):
            image = self._image(name)
            keypoints = self.data.images[name].keypoints
            if flip:
                image = image[:, ::-1]  # the pixels of ImageOps.mirror
                keypoints = flip_normalized(keypoints)
            item[f"{role}_image"] = image_to_tensor(_reorder(image, channels))
            item[f"{role}_pose_image"] = _unit_range(self._pose(keypoints, name, flip))
            item[f"{role}_keypoints"] = torch.from_numpy(np.array(keypoints, dtype=np.float32))
            item[f"{role}_name"] = name
        if self.coarse_dir is not None:
            coarse = self._coarse(index)
            item["coarse_image"] = image_to_tensor(_reorder(coarse[:, ::-1] if flip else coarse, channels))
        return item
