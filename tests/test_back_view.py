"""The back-view rule of pose extraction: no face on the back of a head (OpenPose and DeepFashion drop it).

No back-view photo ships with the tests, so the rule is tested on landmark sets shaped like MediaPipe's
output: 33 rows of (x / width, y / height, visibility), person's left/right as MediaPipe labels them.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pcdms.cli import main
from pcdms.pose.extract import PoseExtractor, landmarks_to_coco18
from pcdms.pose import JOINT, read_openpose_json

HEIGHT, WIDTH = 256, 176
FACE = ("nose", "r_eye", "l_eye")
EARS = ("r_ear", "l_ear")

# MediaPipe landmark indices -> (x offset from the body's centre line for the person's RIGHT side, y)
# in a front view; the person's left side mirrors it. Face points are all reported, as MediaPipe does
# even on the back of a head.
_RIGHT_SIDE = {  # right-side landmark index: (dx, y)
    5: (-0.03, 0.10), 8: (-0.06, 0.11), 12: (-0.13, 0.21), 14: (-0.16, 0.36), 16: (-0.17, 0.49),
    24: (-0.08, 0.52), 26: (-0.08, 0.70), 28: (-0.08, 0.88),
}
_LEFT_OF = {5: 2, 8: 7, 12: 11, 14: 13, 16: 15, 24: 23, 26: 25, 28: 27}


def mediapipe_marks(view: str) -> np.ndarray:
    """(33, 3) landmarks of a standing person seen from the front, the back or the (person's right) side."""
    marks = np.zeros((33, 3))
    marks[:, 2] = 0.99
    squeeze = {"front": 1.0, "back": -1.0, "side": -0.08}[view]  # x of the right side, relative to a front view
    centre = 0.5
    for right, (dx, y) in _RIGHT_SIDE.items():
        marks[right, :2] = (centre + squeeze * dx, y)
        marks[_LEFT_OF[right], :2] = (centre - squeeze * dx, y)
    marks[0, :2] = (centre - (0.05 if view == "side" else 0.0), 0.12)  # nose (in profile: ahead of the head)
    for row in range(33):
        if not marks[row, :2].any():
            marks[row, :2] = marks[0, :2]  # other face/hand/foot points: anywhere sensible
    return marks


def _pose(view: str):
    return landmarks_to_coco18(mediapipe_marks(view), HEIGHT, WIDTH)


def test_front_view_keeps_the_face():
    pose, confidence = _pose("front")
    for joint in FACE + EARS:
        assert pose.visible[JOINT[joint]] and confidence[JOINT[joint]] > 0.5, joint


def test_back_view_drops_nose_and_eyes_keeps_ears():
    pose, confidence = _pose("back")
    for joint in FACE:
        assert not pose.visible[JOINT[joint]] and confidence[JOINT[joint]] == 0, joint
    for joint in EARS + ("neck", "r_shoulder", "l_shoulder", "r_hip", "l_hip"):
        assert pose.visible[JOINT[joint]], joint
    # the right shoulder really is on the image's right: the pose is what a back view looks like
    assert pose.xy[JOINT["r_shoulder"], 0] > pose.xy[JOINT["l_shoulder"], 0]


def test_side_view_keeps_the_face():
    """Shoulders nearly overlap in a side view, either way round: that is not a back view."""
    pose, _ = _pose("side")
    assert pose.xy[JOINT["r_shoulder"], 0] > pose.xy[JOINT["l_shoulder"], 0]  # by a hair
    for joint in FACE:
        assert pose.visible[JOINT[joint]], joint


def test_pose_extract_command_applies_the_rule(tmp_path, monkeypatch):
    """`pcdms pose extract` goes through the same mapping: its JSON has no face for a back view."""
    monkeypatch.setattr(PoseExtractor, "landmarks", lambda self, image: mediapipe_marks("back"))
    photo = tmp_path / "back.png"
    Image.new("RGB", (WIDTH, HEIGHT), (120, 130, 140)).save(photo)
    assert main(["pose", "extract", str(photo), "--out", str(tmp_path / "out")]) == 0
    pose = read_openpose_json(tmp_path / "out" / "keypoints" / "back.json")
    assert [pose.visible[JOINT[j]] for j in FACE + EARS] == [False, False, False, True, True]


@pytest.mark.parametrize("view", ["front", "back", "side"])
def test_low_visibility_still_wins(view):
    """The rule only removes joints; a face point MediaPipe itself is unsure of stays missing in any view."""
    marks = mediapipe_marks(view)
    marks[0, 2] = 0.1
    pose, _ = landmarks_to_coco18(marks, HEIGHT, WIDTH)
    assert not pose.visible[JOINT["nose"]]
