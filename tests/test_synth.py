"""Synthetic people: disjoint identities, correct keypoints, stable outfits, determinism, a contact sheet."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest
from PIL import Image

from pcdms.cli import main
from pcdms.data.formats import load_split
from pcdms.data.synth import generate
from pcdms.pose import JOINT, is_missing

PREVIEW = "/tmp/synth_preview.png"


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "people"
    generate(root, train_identities=6, test_identities=3, poses_per_identity=4, height=128, width=88, seed=11)
    return root


def identity_of(name: str) -> str:
    return name.split("_")[0]


def test_identities_of_the_splits_are_disjoint(synth_root):
    train, test = load_split(synth_root, "train"), load_split(synth_root, "test")
    train_ids = {identity_of(n) for n in train.images}
    test_ids = {identity_of(n) for n in test.images}
    assert len(train_ids) == 6 and len(test_ids) == 3
    assert not train_ids & test_ids
    # pairs stay within one identity and within the split
    for data in (train, test):
        assert all(identity_of(p.source) == identity_of(p.target) for p in data.pairs)
        assert len(data.pairs) == len(data.images) // 4 * 4 * 3
    # and no test identity dresses like a training one
    meta = json.loads((synth_root / "synth-identities.json").read_text())
    looks = {m["split"]: [] for m in meta["identities"]}
    for m in meta["identities"]:
        looks[m["split"]].append(json.dumps(m["look"], sort_keys=True))
    assert not set(looks["train"]) & set(looks["test"])


def test_written_keypoints_are_normalised_with_missing_joints(synth_root):
    data = load_split(synth_root, "train")
    for entry in data.images.values():
        kp = entry.keypoints
        visible = kp[~is_missing(kp)]
        assert ((visible >= 0) & (visible <= 1)).all()
        assert entry.frame == (128, 88)
        with Image.open(entry.path) as image:
            assert image.size == (88, 128)


def _torso_colour(image: np.ndarray, kp: np.ndarray) -> np.ndarray | None:
    """Mean RGB of a patch on the lower torso (between neck and hips), None when those joints are hidden."""
    joints = kp[[JOINT["neck"], JOINT["r_hip"], JOINT["l_hip"]]]
    if is_missing(joints).any():
        return None
    h, w = image.shape[:2]
    neck = joints[0] * (w, h)
    hips = (joints[1] + joints[2]) / 2 * (w, h)
    centre = neck + 0.7 * (hips - neck)
    half = max(2, int(0.12 * np.hypot(*(hips - neck))))
    x, y = centre.astype(int)
    return image[y - half : y + half + 1, x - half : x + half + 1].reshape(-1, 3).mean(axis=0)


def test_an_identity_keeps_its_clothing_colours_across_poses(synth_root):
    data = load_split(synth_root, "train")
    colours: dict[str, list[np.ndarray]] = {}
    for name, entry in data.images.items():
        image = np.asarray(Image.open(entry.path).convert("RGB"), dtype=np.float64)
        colour = _torso_colour(image, entry.keypoints)
        if colour is not None:
            colours.setdefault(identity_of(name), []).append(colour)
    centres = {k: np.median(v, axis=0) for k, v in colours.items() if len(v) >= 2}
    assert len(centres) >= 4
    within = np.median([np.linalg.norm(c - centres[k]) for k, v in colours.items() if k in centres for c in v])
    between = np.median([np.linalg.norm(centres[a] - centres[b]) for a, b in combinations(centres, 2)])
    assert within < 0.35 * between, (within, between)


def test_same_seed_same_dataset_other_seed_other_dataset(tmp_path):
    def make(seed, name):
        root = tmp_path / name
        generate(root, 2, 1, 2, height=64, width=48, seed=seed)
        pixels = {p.name: np.asarray(Image.open(p)) for p in sorted((root / "train").glob("*.png"))}
        return (root / "synth-annotation-train.csv").read_text(), pixels

    first, again, other = make(7, "a"), make(7, "b"), make(8, "c")
    assert first[0] == again[0]
    assert first[1].keys() == again[1].keys()
    assert all(np.array_equal(first[1][k], again[1][k]) for k in first[1])
    assert first[0] != other[0]


def test_synth_command_writes_a_checkable_dataset_and_a_contact_sheet(tmp_path, capsys):
    out = tmp_path / "people"
    args = ["data", "synth", "--out", str(out), "--train-ids", "4", "--test-ids", "1", "--poses", "6",
            "--seed", "1", "--preview", PREVIEW]  # fmt: skip
    assert main(args) == 0
    assert "train: 24 images of 4 identities, 120 pairs" in capsys.readouterr().out
    sheet = Image.open(PREVIEW)
    assert sheet.width > 4 * 176 and sheet.height > 2 * 256  # 8 x 3 tiles of 256x176
    assert main(["data", "check", str(out)]) == 0
    # regenerating into the same folder is allowed (old images go); a foreign non-empty folder is not
    assert main(["data", "synth", "--out", str(out), "--train-ids", "1", "--test-ids", "1", "--poses", "2",
                 "--height", "64", "--width", "48"]) == 0  # fmt: skip
    assert len(list((out / "train").iterdir())) == 2
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert main(["data", "synth", "--out", str(tmp_path / "other")]) == 2
