"""Pose extraction from photos (MediaPipe -> COCO-18) and reading images by content, in any mode."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pcdms.cli import main
from pcdms.pose.extract import PoseExtractor
from pcdms.imageio import ImageReadError, load_image
from pcdms.pose import JOINT, read_openpose_json

from photos import NO_PERSON, PEOPLE  # which test photos show a person (tests/photos.py)


@pytest.fixture(scope="module")
def extractor():
    with PoseExtractor() as pose_extractor:
        yield pose_extractor


@pytest.mark.parametrize("name", PEOPLE)
def test_photos_give_plausible_coco18_poses(extractor, samples_dir, name):
    image = load_image(samples_dir / f"{name}.png")
    pose, confidence = extractor(image)
    assert (pose.height, pose.width) == (image.height, image.width)
    xy, seen = pose.xy, pose.visible
    for joint in ("nose", "neck", "r_shoulder", "l_shoulder", "r_eye", "l_eye"):
        assert seen[JOINT[joint]], joint
    assert xy[JOINT["nose"], 1] < xy[JOINT["neck"], 1]
    # the right shoulder on the image's left (a person facing the camera), the neck between the shoulders
    assert xy[JOINT["r_shoulder"], 0] < xy[JOINT["neck"], 0] < xy[JOINT["l_shoulder"], 0]
    np.testing.assert_allclose(xy[JOINT["neck"]], (xy[JOINT["r_shoulder"]] + xy[JOINT["l_shoulder"]]) / 2, atol=1)
    assert (pose.inside() == seen).all()  # joints MediaPipe puts beyond the border are missing
    assert (confidence[~seen] == 0).all() and (confidence[seen] >= 0.5).all()


def test_a_person_seen_to_the_knees_has_hips_below_the_neck(extractor, samples_dir):
    """img2 (the cameraman) shows the body to the knees: hips found, in order, below the neck."""
    pose, _ = extractor(load_image(samples_dir / "img2.png"))
    xy, seen = pose.xy, pose.visible
    assert seen[JOINT["r_hip"]] and seen[JOINT["l_hip"]]
    hips_y = (xy[JOINT["r_hip"], 1] + xy[JOINT["l_hip"], 1]) / 2
    assert xy[JOINT["nose"], 1] < xy[JOINT["neck"], 1] < hips_y
    assert xy[JOINT["r_hip"], 0] < xy[JOINT["l_hip"], 0]


def test_cropped_body_is_missing_not_invented(extractor, samples_dir):
    """img1 (the astronaut) ends at the chest: MediaPipe extrapolates hips and legs below the image; they
    must be missing."""
    pose, _ = extractor(load_image(samples_dir / "img1.png"))
    for joint in ("r_hip", "l_hip", "r_knee", "l_knee", "r_ankle", "l_ankle"):
        assert not pose.visible[JOINT[joint]], joint


@pytest.mark.parametrize("name", NO_PERSON)
def test_no_person_in_a_cat_or_a_cup(extractor, samples_dir, name):
    assert extractor(load_image(samples_dir / f"{name}.png")) is None


def test_flat_and_noise_images_have_no_person(extractor):
    flat = Image.new("RGB", (192, 256), (200, 200, 200))
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 192, 3), dtype=np.uint8))
    assert extractor(flat) is None
    assert extractor(noise) is None


def test_extract_command_writes_poses_dataset_and_reports_every_bad_item(samples_dir, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "me.jpg").symlink_to(samples_dir / "img4.png")  # a PNG behind a .jpg name: read by content
    (photos / "her.png").symlink_to(samples_dir / "img2.png")
    Image.new("RGB", (64, 96), (240, 240, 240)).save(photos / "wall.png")
    (photos / "notes.txt").write_text("not an image")
    out = tmp_path / "out"

    assert main(["pose", "extract", str(photos), "--out", str(out), "--render"]) == 1
    captured = capsys.readouterr()
    assert "wall.png: no person found" in captured.err and "notes.txt" in captured.err
    failed = (out / "failed.csv").read_text()
    assert "wall.png" in failed and "notes.txt" in failed
    # finished work is kept: keypoints, renders, and a dataset root that passes the check
    pose = read_openpose_json(out / "keypoints" / "me.json")
    assert (pose.height, pose.width) == (600, 512)
    assert json.loads((out / "keypoints" / "her.json").read_text())["people"]
    assert Image.open(out / "poses" / "me.png").size == (512, 600)
    assert main(["data", "check", str(out)]) == 0
    assert "test: 2 images, 2 pairs" in capsys.readouterr().out


def test_single_files_give_keypoints_only(samples_dir, tmp_path):
    out = tmp_path / "out"
    assert main(["pose", "extract", str(samples_dir / "img4.png"), "--out", str(out)]) == 0
    assert (out / "keypoints" / "img4.json").is_file()
    assert not list(out.glob("*.csv"))


def test_missing_input_is_a_one_line_error(tmp_path, capsys):
    assert main(["pose", "extract", str(tmp_path / "nope.png"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.png" in capsys.readouterr().err


# ---------------------------------------------------------------------- reading images
def test_load_image_reads_by_content_in_any_mode(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (12, 8, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.jpg", format="PNG")  # wrong extension
    assert np.array_equal(np.asarray(load_image(tmp_path / "photo.jpg")), rgb)

    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[:2, :, 3] = 255  # top half opaque red, bottom half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    out = np.asarray(load_image(tmp_path / "alpha.png"))
    assert out[0, 0].tolist() == [255, 0, 0] and out[3, 0].tolist() == [255, 255, 255]

    grey16 = np.array([[0, 65535], [32896, 257 * 10]], dtype=np.uint16)
    Image.fromarray(grey16).save(tmp_path / "deep.png")
    out = np.asarray(load_image(tmp_path / "deep.png"))
    assert out.shape == (2, 2, 3) and out[:, :, 0].tolist() == [[0, 255], [128, 10]]

    Image.fromarray(np.full((3, 5), 77, dtype=np.uint8), "L").save(tmp_path / "grey.bmp")
    assert np.asarray(load_image(tmp_path / "grey.bmp"))[0, 0].tolist() == [77, 77, 77]


def test_load_image_applies_exif_rotation(tmp_path):
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image.save(tmp_path / "phone.jpg", exif=exif)
    assert load_image(tmp_path / "phone.jpg").size == (20, 40)


def test_unreadable_images_name_the_file(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageReadError, match="bad.png"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(ImageReadError, match="missing.png"):
        load_image(tmp_path / "missing.png")
