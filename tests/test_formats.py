"""The three dataset layouts (PATN csv, GFLA txt, authors' json) read into the same records."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pcdms.data.dataset import PairDataset
from pcdms.data.formats import (
    GFLA_TARGET_FIELD,
    PairRecord,
    detect_format,
    load_split,
    read_split,
    write_authors,
    write_gfla,
    write_patn,
)
from pcdms.errors import UserError
from pcdms.pose import JOINT, MISSING, Pose

NAMES = ("a.png", "b.png", "c.png")
PAIRS = [PairRecord("a.png", "b.png"), PairRecord("c.png", "b.png"), PairRecord("a.png", "c.png")]


def make_poses() -> dict[str, Pose]:
    rng = np.random.default_rng(0)
    poses = {}
    for i, name in enumerate(NAMES):
        xy = rng.integers(5, 170, size=(18, 2)).astype(np.float32)
        xy[:, 1] = rng.integers(5, 250, size=18)
        xy[JOINT["l_ankle"] if i == 0 else JOINT["r_ear"]] = MISSING
        poses[name] = Pose.from_pixels(xy, 256, 176)
    return poses


def make_images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {name: rng.integers(0, 256, size=(256, 176, 3), dtype=np.uint8) for name in NAMES}


@pytest.fixture(scope="module")
def three_roots(tmp_path_factory):
    """The same three images, keypoints and pairs written in each layout."""
    base = tmp_path_factory.mktemp("formats")
    poses, images = make_poses(), make_images()
    roots = {f: base / f for f in ("patn", "gfla", "authors")}
    write_patn(roots["patn"], "test", PAIRS, poses, prefix="fasion-resize", frame_columns=False)
    write_gfla(roots["gfla"], "test", PAIRS, poses)
    write_authors(roots["authors"], "test", PAIRS, poses)
    for name, pixels in images.items():
        (roots["patn"] / "test").mkdir(exist_ok=True)
        Image.fromarray(pixels).save(roots["patn"] / "test" / name)
        Image.fromarray(pixels).save(roots["authors"] / name)
        padded = np.full((256, 256, 3), 255, dtype=np.uint8)  # GFLA keeps DeepFashion's white bars
        padded[:, 40:216] = pixels
        Image.fromarray(padded).save(roots["gfla"] / name)
    return roots


def test_format_is_detected_from_the_files(three_roots):
    for fmt, root in three_roots.items():
        assert detect_format(root) == fmt


def test_three_formats_give_identical_records(three_roots):
    splits = {fmt: load_split(root, "test") for fmt, root in three_roots.items()}
    reference = splits["patn"]
    assert reference.pairs == PAIRS
    expected = {name: pose.normalized() for name, pose in make_poses().items()}
    for fmt, data in splits.items():
        assert data.pairs == reference.pairs, fmt
        assert sorted(data.images) == sorted(NAMES), fmt
        for name in NAMES:
            assert np.array_equal(data.keypoints(name), expected[name]), (fmt, name)


def test_three_formats_give_identical_training_items(three_roots):
    """Down to the pixels: GFLA's padded 256x256 images are cropped to the same 176 columns."""
    datasets = {fmt: PairDataset(root, "test", 128, 88) for fmt, root in three_roots.items()}
    for index in range(len(PAIRS)):
        items = {fmt: ds[index] for fmt, ds in datasets.items()}
        for fmt in ("gfla", "authors"):
            for key, value in items["patn"].items():
                other = items[fmt][key]
                if isinstance(value, torch.Tensor):
                    assert torch.equal(value, other), (fmt, key)
                else:
                    assert value == other, (fmt, key)


def test_gfla_field_zero_is_the_target_and_the_rest_are_its_sources(three_roots, tmp_path):
    assert GFLA_TARGET_FIELD == 0
    lines = (three_roots["gfla"] / "test_pairs.txt").read_text().split()
    assert lines[0] == "b.png,a.png"  # write_gfla puts the target first
    # a line with several sources makes one pair per source, all with the first field as target
    root = tmp_path / "multi"
    write_gfla(root, "train", [], make_poses())
    (root / "train_pairs.txt").write_text("b.png,a.png,c.png\n")
    data, problems = read_split(root, "train")
    assert data.pairs == [PairRecord("a.png", "b.png"), PairRecord("c.png", "b.png")]
    assert {p.kind for p in problems} == {"missing-image"}  # no images written here


def test_patn_frame_comes_from_the_prefix_or_the_frame_columns(tmp_path):
    pose = Pose.from_pixels(np.tile([[32.0, 100.0]], (18, 1)), 128, 64)
    write_patn(tmp_path / "m", "test", [], {"x.jpg": pose}, prefix="market", frame_columns=False)
    data, _ = read_split(tmp_path / "m", "test")
    assert data.images["x.jpg"].frame == (128, 64)
    np.testing.assert_allclose(data.keypoints("x.jpg")[0], [0.5, 100 / 128])
    small = pose.resized(40, 30)
    write_patn(tmp_path / "s", "test", [], {"x.jpg": small}, prefix="synth")
    data, _ = read_split(tmp_path / "s", "test")
    assert data.images["x.jpg"].frame == (40, 30)


def test_strict_loading_names_the_problems_and_the_check_command(three_roots, tmp_path):
    root = tmp_path / "broken"
    write_patn(root, "test", PAIRS + [PairRecord("a.png", "zzz.png")], make_poses(), prefix="fasion-resize")
    with pytest.raises(UserError) as err:
        load_split(root, "test")
    message = str(err.value)
    assert "zzz.png" in message and "pcdms data check" in message
    assert "fasion-resize-pairs-test.csv:line 5" in message


def test_an_image_named_jpg_is_found_as_png(tmp_path):
    poses = make_poses()
    write_patn(tmp_path, "test", [PairRecord("a.jpg", "b.jpg")], {n.replace(".png", ".jpg"): p for n, p in poses.items()})
    (tmp_path / "test").mkdir()
    for name, pixels in make_images().items():
        Image.fromarray(pixels).save(tmp_path / "test" / name)
    data = load_split(tmp_path, "test")
    assert data.images["a.jpg"].path.name == "a.png"


def test_unknown_or_mixed_layouts_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="no dataset files"):
        detect_format(tmp_path)
    (tmp_path / "train_pairs.txt").write_text("")
    (tmp_path / "train_data.json").write_text("[]")
    with pytest.raises(UserError, match="several formats"):
        detect_format(tmp_path)
    with pytest.raises(UserError, match="unknown dataset format"):
        read_split(tmp_path, "train", format="lmdb")
