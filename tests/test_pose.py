"""COCO-18 keypoints: the normalised encoding, frames, flipping, OpenPose JSON, skeleton renders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pcdms.errors import UserError
from pcdms.pose import (
    COLORS,
    JOINT,
    LIMBS,
    MISSING,
    Pose,
    flip_normalized,
    read_openpose_json,
    render_skeleton,
    write_openpose_json,
)

H, W = 256, 176


def star_pose() -> Pose:
    """A front-view person in the 256x176 frame with well separated joints; the left ankle is missing."""
    xy = {
        "nose": (88, 40), "neck": (88, 70),
        "r_shoulder": (58, 72), "r_elbow": (36, 110), "r_wrist": (20, 150),
        "l_shoulder": (118, 72), "l_elbow": (140, 110), "l_wrist": (158, 150),
        "r_hip": (72, 140), "r_knee": (62, 190), "r_ankle": (56, 240),
        "l_hip": (104, 140), "l_knee": (114, 190),
        "r_eye": (80, 30), "l_eye": (96, 30), "r_ear": (66, 20), "l_ear": (110, 20),
    }  # fmt: skip
    arr = np.full((18, 2), MISSING, dtype=np.float32)
    for name, value in xy.items():
        arr[JOINT[name]] = value
    return Pose.from_pixels(arr, H, W)


def test_normalised_encoding_round_trips_and_marks_missing_joints():
    pose = star_pose()
    kp = pose.normalized()
    assert kp.dtype == np.float32 and kp.shape == (18, 2)
    assert (kp[JOINT["l_ankle"]] == MISSING).all()
    visible = np.delete(kp, JOINT["l_ankle"], axis=0)
    assert (visible >= 0).all() and (visible <= 1).all()
    np.testing.assert_allclose(kp[JOINT["neck"]], [88 / W, 70 / H], rtol=1e-6)
    assert Pose.from_normalized(kp, H, W).allclose(pose)
    # a resize changes pixels but not the normalised encoding
    np.testing.assert_allclose(pose.resized(512, 352).normalized(), kp, atol=1e-6)
    np.testing.assert_array_equal(pose.pixels()[JOINT["l_ankle"]], [MISSING, MISSING])


def test_flip_twice_is_identity_and_swaps_left_and_right():
    pose = star_pose()
    flipped = pose.flipped()
    assert flipped.flipped().allclose(pose)
    # the mirrored person's right shoulder is the old left shoulder, mirrored: still on the image's left
    old_left = pose.xy[JOINT["l_shoulder"]]
    np.testing.assert_allclose(flipped.xy[JOINT["r_shoulder"]], [W - old_left[0], old_left[1]])
    assert flipped.xy[JOINT["r_shoulder"], 0] < flipped.xy[JOINT["l_shoulder"], 0]
    # the missing left ankle becomes a missing right ankle; the nose stays the nose
    assert not flipped.visible[JOINT["r_ankle"]] and flipped.visible[JOINT["l_ankle"]]
    np.testing.assert_allclose(flipped.xy[JOINT["nose"]], [W - 88, 40])
    # the array version agrees with the Pose version and is also an involution
    kp = pose.normalized()
    np.testing.assert_allclose(flip_normalized(kp), flipped.normalized(), atol=1e-6)
    np.testing.assert_allclose(flip_normalized(flip_normalized(kp)), kp, atol=1e-6)
    batch = np.stack([kp, flip_normalized(kp)])
    np.testing.assert_allclose(flip_normalized(batch)[0], flip_normalized(kp), atol=1e-6)


def test_gfla_frame_is_the_deepfashion_frame_shifted_by_the_40_pixel_bar():
    gfla = star_pose().to_gfla()
    assert gfla[JOINT["neck"]].tolist() == [128.0, 70.0]
    assert gfla[JOINT["l_ankle"]].tolist() == [MISSING, MISSING]
    back = Pose.from_gfla(gfla)
    assert (back.height, back.width) == (256, 176)
    assert back.allclose(star_pose())


def test_crop_drops_joints_outside_the_window():
    pose = star_pose().cropped(0, 0, 160, W)  # keep the top 160 rows: knees and ankles leave
    assert not pose.visible[JOINT["r_knee"]] and not pose.visible[JOINT["r_ankle"]]
    assert pose.visible[JOINT["r_hip"]]


def test_render_has_each_limb_colour_between_its_joints_and_joint_colours_on_joints():
    pose = star_pose()
    render = render_skeleton(pose.normalized(), H, W, stick_width=2, joint_radius=2)
    assert render.shape == (H, W, 3) and render.dtype == np.uint8
    xy = pose.xy
    for limb, (a, b) in enumerate(LIMBS):
        if not (pose.visible[a] and pose.visible[b]):
            continue
        x, y = ((xy[a] + xy[b]) / 2).astype(int)
        expected = [int(c * 0.6) for c in COLORS[limb]]
        assert render[y, x].tolist() == expected, f"limb {limb} ({a}-{b})"
    for joint in np.flatnonzero(pose.visible):
        x, y = xy[joint].astype(int)
        assert render[y, x].tolist() == list(COLORS[joint]), f"joint {joint}"
    # the missing left ankle draws neither its dot nor the left shin (limb 11)
    assert render[240, 120].tolist() == [0, 0, 0]
    knee = xy[JOINT["l_knee"]]
    assert render[int(knee[1]) + 20, int(knee[0])].tolist() == [0, 0, 0]
    assert render[5, 5].tolist() == [0, 0, 0]


def test_render_is_deterministic_at_any_size_and_empty_without_joints():
    kp = star_pose().normalized()
    first = render_skeleton(kp, 37, 23)
    assert first.shape == (37, 23, 3)
    assert np.array_equal(first, render_skeleton(kp, 37, 23))
    assert first.any()
    assert not render_skeleton(np.full((18, 2), MISSING), 64, 48).any()
    # a joint outside the frame must not crash or wrap around
    far = kp.copy()
    far[JOINT["r_wrist"]] = [1.8, -0.5]
    assert render_skeleton(far, 64, 48).shape == (64, 48, 3)


def test_openpose_json_round_trip(tmp_path):
    pose = star_pose()
    path = tmp_path / "a.json"
    write_openpose_json(path, pose)
    data = json.loads(path.read_text())
    values = data["people"][0]["pose_keypoints_2d"]
    assert len(values) == 54
    assert values[3 * JOINT["l_ankle"] : 3 * JOINT["l_ankle"] + 3] == [0.0, 0.0, 0.0]
    assert read_openpose_json(path).allclose(pose, atol=1e-3)
    # the frame may come from the caller (files from OpenPose itself carry no canvas size)
    del data["canvas_height"], data["canvas_width"]
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="canvas_height"):
        read_openpose_json(path)
    assert read_openpose_json(path, H, W).allclose(pose, atol=1e-3)


def test_openpose_json_body25_no_person_and_malformed(tmp_path):
    body25 = np.zeros((25, 3))
    body25[1] = (50, 60, 0.9)  # neck
    body25[8] = (55, 120, 0.9)  # mid-hip: not a COCO-18 joint
    body25[9] = (45, 121, 0.8)  # right hip -> COCO 8
    path = tmp_path / "b25.json"
    path.write_text(json.dumps({"people": [{"pose_keypoints_2d": body25.ravel().tolist()}]}))
    pose = read_openpose_json(path, 200, 100)
    assert pose.visible.sum() == 2
    np.testing.assert_allclose(pose.xy[JOINT["r_hip"]], [45, 121])
    empty = tmp_path / "none.json"
    write_openpose_json(empty, None)
    assert read_openpose_json(empty, 10, 10) is None
    bad = tmp_path / "bad.json"
    bad.write_text('{"people": [{"pose_keypoints_2d": [1, 2, 3]}]}')
    with pytest.raises(UserError, match="bad.json"):
        read_openpose_json(bad, 10, 10)


def test_render_command_writes_one_pose_image_per_annotated_image(tmp_path):
    from PIL import Image

    from pcdms.cli import main
    from pcdms.data.formats import PairRecord, write_patn

    pose = star_pose()
    annotation, _ = write_patn(
        tmp_path / "ds", "test", [PairRecord("a.jpg", "b.jpg")], {"a.jpg": pose, "b.jpg": pose.flipped()},
        prefix="fasion-resize", frame_columns=False,
    )  # fmt: skip
    # from the annotation csv alone, at the annotation frame (256x176 for DeepFashion)
    assert main(["pose", "render", str(annotation), "--out", str(tmp_path / "r1")]) == 0
    written = np.asarray(Image.open(tmp_path / "r1" / "test" / "a.png"))
    assert np.array_equal(written, render_skeleton(pose.normalized(), H, W))
    # from the dataset root (its images need not exist), at a chosen size
    assert main(["pose", "render", str(tmp_path / "ds"), "--out", str(tmp_path / "r2"), "--height", "128", "--width", "88"]) == 0
    assert Image.open(tmp_path / "r2" / "test" / "b.png").size == (88, 128)
    assert main(["pose", "render", str(tmp_path / "ds"), "--out", str(tmp_path / "r3"), "--height", "128"]) == 2
    # the authors' drawing (4-px limbs at any size), as their openpose_all_img renders
    assert main(["pose", "render", str(annotation), "--out", str(tmp_path / "r4"), "--style", "authors"]) == 0
    authors = np.asarray(Image.open(tmp_path / "r4" / "test" / "a.png"))
    assert np.array_equal(authors, render_skeleton(pose.normalized(), H, W, "authors"))
    assert (authors.max(axis=2) > 0).sum() > (written.max(axis=2) > 0).sum()  # thicker than scaled at 256x176
