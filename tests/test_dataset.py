"""PairDataset: the training batch contract, poses rendered from keypoints, consistent flips and recolourings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from pcdms.data.dataset import RECOLORINGS, PairDataset, load_split, pose_image_tensor
from pcdms.data.synth import generate
from pcdms.errors import UserError
from pcdms.names import output_stem
from pcdms.pose import JOINT, MISSING, flip_normalized, is_missing

H, W = 64, 48


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs") / "people"
    # drawn at 128x88, read at 64x48: the dataset resizes
    generate(root, train_identities=2, test_identities=1, poses_per_identity=3, height=128, width=88, seed=4)
    return root


def test_item_matches_the_batch_contract(root):
    dataset = PairDataset(root, "train", H, W)
    assert len(dataset) == 2 * 3 * 2
    item = dataset[0]
    pair = dataset.pairs[0]
    assert (item["source_name"], item["target_name"]) == (pair.source, pair.target)
    for role in ("source", "target"):
        image, pose, kp = item[f"{role}_image"], item[f"{role}_pose_image"], item[f"{role}_keypoints"]
        assert image.shape == pose.shape == (3, H, W)
        assert image.dtype == pose.dtype == kp.dtype == torch.float32
        assert -1.0 <= image.min() and image.max() <= 1.0 and image.min() < 0 < image.max()
        assert 0.0 <= pose.min() and pose.max() <= 1.0 and pose.max() > 0
        assert kp.shape == (18, 2)
        missing = torch.from_numpy(is_missing(kp.numpy()))
        assert (kp[missing] == MISSING).all() and ((kp[~missing] >= 0) & (kp[~missing] <= 1)).all()
        # the pose image is the skeleton of exactly these keypoints, at the model size
        assert torch.equal(pose, pose_image_tensor(kp.numpy(), H, W))


def test_image_is_the_resized_file(root):
    dataset = PairDataset(root, "test", H, W)
    item = dataset[0]
    entry = dataset.data.images[item["source_name"]]
    expected = Image.open(entry.path).convert("RGB").resize((W, H), Image.Resampling.BICUBIC)
    expected = torch.from_numpy(np.asarray(expected, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)
    assert torch.allclose(item["source_image"], expected, atol=1e-6)


def test_flip_mirrors_images_and_poses_of_a_pair_together(root):
    plain = PairDataset(root, "train", H, W, flip_prob=0.0)[3]
    flipped = PairDataset(root, "train", H, W, flip_prob=1.0)[3]
    for role in ("source", "target"):
        assert torch.equal(flipped[f"{role}_image"], plain[f"{role}_image"].flip(-1))
        kp = plain[f"{role}_keypoints"].numpy()
        assert np.allclose(flipped[f"{role}_keypoints"].numpy(), flip_normalized(kp))
        assert torch.equal(flipped[f"{role}_pose_image"], pose_image_tensor(flip_normalized(kp), H, W))
        # the mirrored person's right shoulder is where the left one was, mirrored
        left = kp[JOINT["l_shoulder"]]
        if not is_missing(left):
            assert np.allclose(flipped[f"{role}_keypoints"][JOINT["r_shoulder"]].numpy(), [1 - left[0], left[1]])


def test_flip_probability_flips_whole_pairs(root):
    dataset = PairDataset(root, "train", H, W, flip_prob=0.5)
    plain = PairDataset(root, "train", H, W)[1]
    seen = []
    for epoch in range(12):
        dataset.set_epoch(epoch)
        item = dataset[1]
        source_flipped = torch.equal(item["source_image"], plain["source_image"].flip(-1))
        target_flipped = torch.equal(item["target_image"], plain["target_image"].flip(-1))
        assert source_flipped == target_flipped
        seen.append(source_flipped)
        torch.manual_seed(epoch)  # global RNG state must not matter: the flip depends on (seed, epoch, index)
        assert torch.equal(dataset[1]["source_image"], item["source_image"])
    assert set(seen) == {True, False}


def test_recolouring_gives_source_and_target_the_same_other_channel_order_and_leaves_poses(root, tmp_path):
    coarse = tmp_path / "coarse"  # stage 3's input is recoloured with its pair
    coarse.mkdir()
    plain_set = PairDataset(root, "train", H, W)
    for pair in plain_set.pairs:
        image = Image.open(root / "train" / pair.target).convert("RGB").rotate(5)
        image.save(coarse / f"{output_stem(pair.source, pair.target)}.png")
    plain_set = PairDataset(root, "train", H, W, coarse_dir=coarse)
    dataset = PairDataset(root, "train", H, W, coarse_dir=coarse, recolor_prob=1.0, seed=2)
    orders = set()
    for index in range(len(dataset)):
        plain, item = plain_set[index], dataset[index]
        # the one order that maps the plain source onto the recoloured one also maps target and coarse image
        matching = [c for c in RECOLORINGS if torch.equal(item["source_image"], plain["source_image"][list(c)])]
        assert matching and matching != [RECOLORINGS[0]], index
        order = list(matching[0])
        for key in ("target_image", "coarse_image"):
            assert torch.equal(item[key], plain[key][order]), (index, key)
        for key in ("source_pose_image", "target_pose_image", "source_keypoints", "target_keypoints"):
            assert torch.equal(item[key], plain[key])
        orders.add(tuple(order))
    assert len(orders) >= 4  # 12 pairs draw among the five other orders


def test_recolour_probability_depends_on_seed_epoch_and_index_only(root):
    dataset = PairDataset(root, "train", H, W, recolor_prob=0.5, flip_prob=0.5)
    plain = PairDataset(root, "train", H, W)[1]["source_image"]
    seen = set()
    for epoch in range(16):
        dataset.set_epoch(epoch)
        image = dataset[1]["source_image"]
        torch.manual_seed(epoch)  # global RNG state must not matter
        assert torch.equal(dataset[1]["source_image"], image)
        unflipped = image if dataset._flip(1) is False else image.flip(-1)
        seen.add(torch.equal(unflipped, plain))
    assert seen == {True, False}
    assert all(PairDataset(root, "train", H, W)._channels(i) == RECOLORINGS[0] for i in range(12))


def test_default_collate_gives_the_batch_layout(root):
    batch = next(iter(DataLoader(PairDataset(root, "train", H, W), batch_size=4)))
    assert batch["source_image"].shape == (4, 3, H, W)
    assert batch["target_pose_image"].shape == (4, 3, H, W)
    assert batch["source_keypoints"].shape == (4, 18, 2)
    assert isinstance(batch["target_name"], list) and len(batch["target_name"]) == 4


def test_load_split_gives_pairs_and_keypoints_for_generation_code(root):
    data = load_split(root, "test")
    assert len(data.pairs) == 6
    for pair in data.pairs:
        assert data.keypoints(pair.target).shape == (18, 2)


def test_bad_arguments_are_user_errors(root, tmp_path):
    with pytest.raises(UserError, match="flip_prob"):
        PairDataset(root, "train", H, W, flip_prob=2.0)
    with pytest.raises(UserError, match="recolor_prob"):
        PairDataset(root, "train", H, W, recolor_prob=1.5)
    with pytest.raises(UserError, match="no split .validation. .it has: test, train"):
        PairDataset(root, "validation", H, W)
    with pytest.raises(UserError, match="no dataset files"):
        PairDataset(tmp_path, "train", H, W)
