"""The app's pose logic: gallery, model frame, editor state (drag, hide/show, mirror), uploads, overlays."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app_browser import data_url_image
from pcdms.app import poses
from pcdms.pose.gallery import gallery
from pcdms.framing import Fit, pose_tensor
from pcdms.pose import FLIP_ORDER, JOINT, JOINTS, Pose

MODEL_H, MODEL_W = 64, 44  # the demo model's frame


def test_gallery_has_a_dozen_named_valid_poses_with_back_and_side_views():
    poses_by_name = gallery()
    assert len(poses_by_name) >= 12
    for name, pose in poses_by_name.items():
        assert pose.visible.sum() >= 14, name
        assert (pose.inside() == pose.visible).all(), f"{name} has joints outside its frame"
    for name in ("front-standing", "front-arms-raised", "front-walking", "back-standing", "side-walking"):
        assert name in poses_by_name
    back = poses_by_name["back-standing"]
    assert not back.visible[[JOINT["nose"], JOINT["r_eye"], JOINT["l_eye"]]].any()  # no face from behind
    assert back.visible[[JOINT["r_ear"], JOINT["l_ear"]]].all()
    assert back.xy[JOINT["r_shoulder"], 0] > back.xy[JOINT["l_shoulder"], 0]
    front = poses_by_name["front-standing"]
    assert front.xy[JOINT["r_shoulder"], 0] < front.xy[JOINT["l_shoulder"], 0]
    raised = poses_by_name["front-arms-raised"]
    assert raised.xy[JOINT["r_wrist"], 1] < raised.xy[JOINT["nose"], 1]


def test_editor_shows_exactly_the_render_stage_2_gets():
    """The editor's picture equals the pipeline's target-pose render (the same Fit and the same render)."""
    pose = gallery()["side-walking"]
    in_frame = poses.to_model_frame(pose, MODEL_H, MODEL_W)
    value = poses.editor_value(in_frame)
    shown = data_url_image(value["render"])
    # what PCDMsPipeline._pose_inputs does with the target pose the page sends (any frame -> model frame)
    sent = poses.pose_from_editor(value)
    _, render = pose_tensor(sent, Fit.of(sent.width, sent.height, MODEL_H, MODEL_W), MODEL_H, MODEL_W)
    expected = (render[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert shown.shape == (MODEL_H, MODEL_W, 3)
    np.testing.assert_array_equal(shown, expected)
    assert sent.allclose(in_frame, atol=1e-3)  # the gallery pose, mapped as the pipeline maps it


def test_drag_moves_only_that_joint_and_its_render():
    pose = poses.to_model_frame(gallery()["front-standing"], MODEL_H, MODEL_W)
    value = poses.editor_value(pose)
    wrist = JOINT["l_wrist"]
    value["joints"][wrist].update(x=30.0, y=50.0)  # what the browser sends after a drag
    moved = poses.refresh(value)
    edited = poses.pose_from_editor(moved)
    np.testing.assert_allclose(edited.xy[wrist], (30.0, 50.0))
    others = [j for j in range(18) if j != wrist]
    np.testing.assert_allclose(edited.xy[others], pose.xy[others], atol=1e-3)
    before, after = data_url_image(poses.editor_value(pose)["render"]), data_url_image(moved["render"])
    assert (after[50, 30] != 0).any() and (before[50, 30] == 0).all()


def test_hide_show_keeps_the_place_and_a_joint_dragged_out_is_missing():
    value = poses.editor_value(poses.to_model_frame(gallery()["front-standing"], MODEL_H, MODEL_W))
    elbow = JOINT["r_elbow"]
    place = (value["joints"][elbow]["x"], value["joints"][elbow]["y"])
    hidden = poses.toggle_joint(value, "r_elbow")
    assert not poses.pose_from_editor(hidden).visible[elbow]
    assert not hidden["joints"][elbow]["visible"] and (hidden["joints"][elbow]["x"], hidden["joints"][elbow]["y"]) == place
    shown = poses.toggle_joint(hidden, "r_elbow")
    assert poses.pose_from_editor(shown).visible[elbow]
    np.testing.assert_allclose(poses.pose_from_editor(shown).xy[elbow], place, atol=1e-3)
    value["joints"][elbow].update(x=-5.0)
    assert not poses.pose_from_editor(value).visible[elbow]
    with pytest.raises(ValueError):
        poses.toggle_joint(value, "tail")


def test_mirror_is_the_pose_flip_and_twice_is_identity():
    pose = poses.to_model_frame(gallery()["front-waving"], MODEL_H, MODEL_W)
    value = poses.editor_value(pose)
    mirrored = poses.mirror(value)
    assert poses.pose_from_editor(mirrored).allclose(pose.flipped(), atol=1e-3)
    assert poses.pose_from_editor(poses.mirror(mirrored)).allclose(pose, atol=1e-3)
    assert [j["name"] for j in mirrored["joints"]] == list(JOINTS)
    assert FLIP_ORDER[JOINT["r_wrist"]] == JOINT["l_wrist"]


def test_uploads_are_read_by_content_capped_and_downscaled_with_a_note(tmp_path):
    fake = tmp_path / "holiday.jpg"
    fake.write_bytes(b"%PDF-1.4 not an image")
    with pytest.raises(poses.PhotoError, match="holiday.jpg is not an image"):
        poses.read_photo(fake, "holiday.jpg")
    big = tmp_path / "big.png"
    Image.new("RGB", (3000, 1500), (10, 20, 30)).save(big)
    photo = poses.read_photo(big, "big.png")
    assert photo.image.size == (1024, 512) and "downscaled from 3000x1500 to 1024x512" in photo.note
    small = tmp_path / "small.png"
    Image.new("RGB", (176, 256)).save(small)
    assert poses.read_photo(small, "small.png").note == ""
    bomb = tmp_path / "bomb.png"
    Image.new("1", (8000, 6000)).save(bomb)  # 48 MP, a few kB on disk
    with pytest.raises(poses.PhotoError, match="8000x6000"):
        poses.read_photo(bomb, "bomb.png")
    giant = tmp_path / "giant.png"  # 30000x30000: PIL refuses to open it; it is too large, not "not an image"
    Image.new("1", (30000, 30000)).save(giant)
    with pytest.raises(poses.PhotoError, match=r"giant.png is too large \(over 178 MP\); photos up to 40 MP"):
        poses.read_photo(giant, "giant.png")


def test_overlay_draws_the_skeleton_over_the_photo():
    photo = Image.new("RGB", (176, 256), (200, 200, 200))
    pose = gallery()["front-standing"]
    drawn = np.asarray(poses.overlay(photo, pose))
    neck = pose.xy[JOINT["neck"]].astype(int)
    assert tuple(drawn[neck[1], neck[0]]) != (200, 200, 200)
    assert tuple(drawn[5, 5]) == (200, 200, 200)


def test_demo_inputs_are_offered_by_name():
    inputs = poses.demo_inputs()
    assert len(inputs) >= 4 and all("/" not in name for name in inputs)
