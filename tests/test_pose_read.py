"""Skeleton pictures read back to keypoints (`pcdms.pose.picture`, `pcdms pose read`, `generate --target-pose PICTURE`).

The references are the authors' own (`$PCDMS_AUTHORS_REFERENCE`, default the copy vendored in
`tests/data/authors_reference`; `inputs/README.md` says how they were made): every render of `inputs/cases.json`
is `draw_bodypose` of a known pose, and the demo's pose pictures (`pose_images/pose*.png`, DWPose with hands,
1024x1024) are read and drawn again. Every case of the file is run; none is listed here.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from pcdms.cli import main
from pcdms.pose import NUM_JOINTS, read_openpose_json
from pcdms.pose.picture import check_picture, is_skeleton_picture, limb_labels, read_skeleton_picture

DATA = Path(__file__).resolve().parent / "data"
REF = Path(os.environ.get("PCDMS_AUTHORS_REFERENCE", DATA / "authors_reference")) / "inputs"
CASES = json.loads((REF / "cases.json").read_text()) if (REF / "cases.json").is_file() else {"renders": [], "preprocess": []}
RENDERS = CASES["renders"]
PICTURES = sorted({c["target_pose_image"] for c in CASES["preprocess"]} | {
    str(p.relative_to(REF)) for p in (REF / "pose_images").glob("pose*.png")})
DEMO = Path(__file__).resolve().parents[1] / "src" / "pcdms" / "assets" / "demo" / "inputs"
DRAW_THRESHOLD = 0.3  # draw_bodypose draws a joint of confidence above this


def test_reference_present():
    assert (REF / "cases.json").is_file(), f"expected the authors' inputs at {REF} (set PCDMS_AUTHORS_REFERENCE)"
    assert RENDERS and PICTURES


def _truth(case: dict):
    """The case's pose in the render's frame and the joints draw_bodypose drew."""
    data = json.loads((REF / case["keypoints"]).read_text())
    confidence = np.asarray(data["people"][0]["pose_keypoints_2d"], dtype=np.float64).reshape(NUM_JOINTS, 3)[:, 2]
    pose = read_openpose_json(REF / case["keypoints"]).resized(case["height"], case["width"])
    return pose, pose.visible & (confidence > DRAW_THRESHOLD)


def _tolerance(case: dict) -> float:
    return 1.5 * max(case["height"], case["width"]) / 512


def _check_read(case: dict, image: Image.Image) -> None:
    truth, drawn = _truth(case)
    read = read_skeleton_picture(image, case["image"]).pose
    assert (read.height, read.width) == (case["height"], case["width"])
    assert (read.visible == drawn).all(), f"joints present: read {read.visible.astype(int)}, drawn {drawn.astype(int)}"
    assert int(drawn.sum()) == case["visible"]
    error = np.linalg.norm(read.xy - truth.xy, axis=1)[drawn].max()
    assert error <= _tolerance(case), f"worst joint {error:.2f} px off (tolerance {_tolerance(case):.2f})"


@pytest.mark.parametrize("case", RENDERS, ids=[c["image"] for c in RENDERS])
def test_render_reads_back(case):
    """Each authors' render gives its keypoints within 1.5 px at 512 (scaled with the canvas), the same joints."""
    image = Image.open(REF / case["image"])
    assert is_skeleton_picture(image)
    _check_read(case, image)


JPEG_RENDERS = [c for c in RENDERS if max(c["height"], c["width"]) >= 512]


@pytest.mark.parametrize("case", JPEG_RENDERS, ids=[c["image"] for c in JPEG_RENDERS])
def test_jpeg_render_reads_back(case):
    """A quality-75 JPEG copy reads back within the same tolerance. The 256x176 renders are left out: their
    tolerance (0.75 px) is below what the integer dot centres (up to 0.71 px) plus JPEG's colour blur allow."""
    buffer = io.BytesIO()
    Image.open(REF / case["image"]).convert("RGB").save(buffer, "JPEG", quality=75)
    _check_read(case, Image.open(buffer))


@pytest.mark.parametrize("case", RENDERS, ids=[c["image"] for c in RENDERS])
def test_authors_style_draws_their_render_pixel_for_pixel(case):
    """`render_skeleton(style="authors")` of the case's keypoints is the authors' `draw_bodypose` render, every
    pixel, at every size (their 4-px limbs and dots do not scale). The project's "scaled" style lights a little
    fewer at 512 (a pixel whose centre is inside, where OpenCV's whole-pixel outline takes every pixel it
    touches) and far fewer below it (thinner limbs)."""
    pose = read_openpose_json(REF / case["keypoints"])
    want = np.asarray(Image.open(REF / case["image"]).convert("RGB"))
    np.testing.assert_array_equal(pose.render(case["height"], case["width"], "authors"), want)
    lit, lit_scaled = (want.max(axis=2) > 0).sum(), (pose.render(case["height"], case["width"]).max(axis=2) > 0).sum()
    if max(case["height"], case["width"]) == 512:
        assert 0.85 * lit <= lit_scaled < lit
    elif max(case["height"], case["width"]) < 512:
        assert lit_scaled < 0.8 * lit


def body_overlap(picture: np.ndarray) -> float:
    """Share of a picture's body-limb pixels that the pose read from it, drawn again, lights.

    Body-limb pixels: the picture's pixels in a limb's 60 % colour, opened with a 3x3 square so that DWPose's
    2-px hand lines (and their edges) drop out; limbs that run off the picture's edge are left out too (their
    outer joint is not in the picture, so no reader can place it). The redraw is `draw_bodypose` at the size the
    picture was drawn at (its dots are 4 px, so a picture with 8-px dots was drawn at half size and enlarged:
    drawn so, then resized bilinearly to the picture), and a pixel is lit when brighter than the background.
    The redraw is `render_skeleton(style="authors")`, which `test_authors_style_draws_their_render_pixel_for_pixel`
    shows is theirs.
    """
    reading = read_skeleton_picture(picture)
    height, width = picture.shape[:2]
    scale = max(1, round(reading.joint_radius / 4))
    pose = reading.pose
    small = pose.render(height // scale, width // scale, "authors")
    redraw = np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))
    labels = limb_labels(picture.astype(np.float32))
    body = ndimage.binary_opening(labels >= 0, np.ones((3, 3)))
    parts, _ = ndimage.label(body, structure=np.ones((3, 3)))
    edge = np.unique(np.concatenate([parts[0], parts[-1], parts[:, 0], parts[:, -1]]))
    body &= ~np.isin(parts, edge[edge > 0])
    return float((redraw.max(axis=2) > 48)[body].mean())


@pytest.mark.parametrize("name", PICTURES)
def test_demo_picture_redraws(name):
    """Each of the authors' demo pose pictures, read and drawn again, covers >= 95 % of its body-limb pixels."""
    picture = np.asarray(Image.open(REF / name).convert("RGB"))
    assert is_skeleton_picture(picture)
    assert body_overlap(picture) >= 0.95


def test_photos_are_not_pictures(samples_dir):
    """Photos (with and without a person) are not skeleton pictures; the project's own renders are."""
    for name in ("img1", "img2", "img3", "img4", "img5"):
        assert not is_skeleton_picture(Image.open(samples_dir / f"{name}.png")), name
    for case in CASES["preprocess"]:
        assert not is_skeleton_picture(Image.open(REF / case["photo"])), case["photo"]
    for k in range(1, 7):
        assert is_skeleton_picture(Image.open(samples_dir / f"pose{k}.png"))


def test_flat_and_noise_are_refused():
    rng = np.random.default_rng(0)
    flat = np.full((64, 48, 3), 90, dtype=np.uint8)
    noise = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    with pytest.raises(Exception, match=r"flat\.png is not a skeleton picture: it looks like a flat image"):
        read_skeleton_picture(flat, "flat.png")
    with pytest.raises(Exception, match=r"looks like noise or a photo \(\d+% black background"):
        read_skeleton_picture(noise, "noise.png")
    assert "all-dark" in check_picture(rng.integers(0, 30, (32, 32, 3), dtype=np.uint8)).description
    assert "flat image of one colour" in check_picture(np.zeros((32, 32, 3), dtype=np.uint8)).description


def test_cli_generate_and_read(tmp_path, capsys):
    """`generate --target-pose <DWPose picture>` with the demo model, and `pose read` on every demo picture."""
    source = sorted(DEMO.glob("*.png"))[0]
    code = main(["generate", "--source", str(source), "--target-pose", str(REF / PICTURES[0]), "--out",
                 str(tmp_path / "gen"), "--steps", "1", "--device", "cpu", "--no-progress"])
    assert code == 0
    assert (tmp_path / "gen" / f"{source.stem}_to_{Path(PICTURES[0]).stem}.png").is_file()

    photo = REF / CASES["preprocess"][0]["photo"]
    code = main(["pose", "read", *[str(REF / p) for p in PICTURES], str(photo), "--out", str(tmp_path / "read")])
    assert code == 1  # the photo failed, the pictures are written
    assert sorted(p.stem for p in (tmp_path / "read").glob("*.json")) == sorted(Path(p).stem for p in PICTURES)
    assert f"{photo} is not a skeleton picture: it looks like a photo" in capsys.readouterr().err
    for name in PICTURES:
        pose = read_openpose_json(tmp_path / "read" / f"{Path(name).stem}.json")
        assert pose is not None and (pose.height, pose.width) == Image.open(REF / name).size[::-1]
