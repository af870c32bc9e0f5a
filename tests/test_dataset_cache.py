"""The cached input pipeline (issue 16) yields exactly the tensors of the uncached one it replaced, on real
photos at their own resolution, with flips and stage-3 coarse images, in the training process and in
persistent loader workers across epochs; the cache is filled once and stays within its budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, default_collate

import pcdms.data.dataset as dataset_module
from pcdms.data.dataset import PairDataset, image_to_tensor, load_person_image, pose_image_tensor
from pcdms.data.formats import PairRecord, write_patn
from pcdms.names import output_stem
from pcdms.imageio import load_image
from pcdms.pose import Pose, flip_normalized

H, W = 64, 44
PHOTOS = ("img1.png", "img3.png", "img5.png")  # 768x1120, 744x992 (centre-cropped to the frame), 768x1024


@pytest.fixture(scope="module")
def root(tmp_path_factory, samples_dir):
    """A PATN dataset of three real photos (linked, at their own size), every ordered pair, stage-3 inputs."""
    root = tmp_path_factory.mktemp("photos")
    (root / "train").mkdir()
    rng = np.random.default_rng(0)
    poses = {}
    for name in PHOTOS:
        (root / "train" / name).symlink_to(samples_dir / name)
        keypoints = rng.uniform(0.1, 0.9, size=(18, 2)).astype(np.float32)
        keypoints[16] = -1.0  # a missing ear
        poses[name] = Pose.from_normalized(keypoints, 1120, 768)
    pairs = [PairRecord(a, b) for a in PHOTOS for b in PHOTOS if a != b]
    write_patn(root, "train", pairs, poses)
    coarse = root / "coarse"
    coarse.mkdir()
    for pair in pairs:  # another size than the model's, so it is resized on read
        Image.open(samples_dir / pair.target).convert("RGB").resize((88, 128)).save(
            coarse / f"{output_stem(pair.source, pair.target)}.png")
    return root


def uncached_item(dataset: PairDataset, index: int) -> dict:
    """The item as the pipeline before the cache built it: PIL decode, resize and mirror; render per item."""
    pair = dataset.pairs[index]
    flip = dataset._flip(index)
    item: dict = {}
    for role, name in (("source", pair.source), ("target", pair.target)):
        entry = dataset.data.images[name]
        image = load_person_image(entry, dataset.height, dataset.width)
        keypoints = entry.keypoints
        if flip:
            image = ImageOps.mirror(image)
            keypoints = flip_normalized(keypoints)
        item[f"{role}_image"] = image_to_tensor(image)
        item[f"{role}_pose_image"] = pose_image_tensor(keypoints, dataset.height, dataset.width)
        item[f"{role}_keypoints"] = torch.from_numpy(np.array(keypoints, dtype=np.float32))
        item[f"{role}_name"] = name
    coarse = load_image(dataset.coarse_paths[index]).resize((dataset.width, dataset.height), Image.Resampling.BICUBIC)
    item["coarse_image"] = image_to_tensor(ImageOps.mirror(coarse) if flip else coarse)
    return item


def assert_same(new: dict, old: dict) -> None:
    assert new.keys() == old.keys()
    for key, value in old.items():
        if isinstance(value, torch.Tensor):
            assert new[key].dtype == value.dtype and torch.equal(new[key], value), key
        else:
            assert new[key] == value, key


@pytest.mark.parametrize("cache_mb", [64, 0])
def test_items_equal_the_uncached_pipeline_over_epochs_with_flips(root, cache_mb):
    dataset = PairDataset(root, "train", H, W, flip_prob=0.5, coarse_dir=root / "coarse", seed=3, cache_mb=cache_mb)
    flips = set()
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            flips.add(dataset._flip(index))
            assert_same(dataset[index], uncached_item(dataset, index))
    assert flips == {True, False}  # both paths were compared


def test_each_photo_is_decoded_once_while_the_cache_has_room(root, monkeypatch):
    calls = []
    real = dataset_module.load_person_image
    monkeypatch.setattr(dataset_module, "load_person_image", lambda entry, h, w: calls.append(entry.name) or real(entry, h, w))
    cached = PairDataset(root, "train", H, W, flip_prob=0.5, cache_mb=64)
    for epoch in range(3):
        cached.set_epoch(epoch)
        [cached[i] for i in range(len(cached))]
    assert sorted(calls) == sorted(PHOTOS)
    calls.clear()
    one_image = H * W * 3
    small = PairDataset(root, "train", H, W, cache_mb=2.5 * one_image / 2**20)  # room for two arrays only
    [small[i] for i in range(len(small))]
    assert small._cached_bytes == 2 * one_image
    assert len(calls) > len(PHOTOS)  # the rest is decoded again, as without a cache
    calls.clear()
    off = PairDataset(root, "train", H, W, cache_mb=0)
    [off[i] for i in range(len(off))]
    assert len(calls) == 2 * len(off) and off._cached_bytes == 0


def test_persistent_workers_see_each_epoch_and_give_the_same_batches(root):
    dataset = PairDataset(root, "train", H, W, flip_prob=0.5, coarse_dir=root / "coarse", seed=1, cache_mb=64)
    loader = DataLoader(dataset, batch_size=3, num_workers=2, persistent_workers=True, prefetch_factor=2)
    patterns = set()
    for epoch in (0, 1, 2):
        dataset.set_epoch(epoch)  # as accelerate's loader does before each epoch
        patterns.add(tuple(dataset._flip(i) for i in range(len(dataset))))
        expected = [uncached_item(dataset, i) for i in range(len(dataset))]
        batches = list(loader)
        assert len(batches) == 2
        for number, batch in enumerate(batches):
            assert_same(batch, default_collate(expected[3 * number: 3 * number + 3]))
    assert len(patterns) > 1  # the epochs flip different pairs, so a stale epoch in a worker would show
