"""Pose sequences for `pcdms animate`: gap filling and smoothing, fitting to the source, the built-in motions."""

from __future__ import annotations

import numpy as np
import pytest

from pcdms.commands.demo import ASSETS
from pcdms.errors import UserError
from pcdms.motions import MOTIONS, make_motion
from pcdms.pose import JOINT, Pose, read_openpose_json
from pcdms.sequences import PoseSequence, fit_to_source, smooth

SOURCE_POSE = read_openpose_json(ASSETS / "inputs" / "id00161_00_front-full.json")


def _sequence(poses):
    return PoseSequence(list(poses), [f"f{i}" for i in range(len(poses))],
                        {i: "no person found" for i, p in enumerate(poses) if p is None})


def test_smooth_fills_gaps_of_two_frames_not_three_and_reports_them():
    base = SOURCE_POSE
    poses = [base, None, None, base, None, None, None, base]
    out = smooth(_sequence(poses), sigma=0)
    assert out.poses[1] is not None and out.poses[2] is not None and out.poses[1].allclose(base)
    assert all(out.poses[i] is None for i in (4, 5, 6))
    assert out.filled == [1, 2] and sorted(out.problems) == [4, 5, 6]


def test_smooth_fills_a_missing_joint_between_sightings_and_takes_out_jitter():
    rng = np.random.default_rng(0)
    wrist = JOINT["r_wrist"]
    poses = []
    for t in range(30):
        xy = SOURCE_POSE.xy + rng.normal(0, 1.0, SOURCE_POSE.xy.shape)  # an extractor's jitter, 1 px
        visible = SOURCE_POSE.visible.copy()
        visible[wrist] = t != 10
        poses.append(Pose(xy, visible, SOURCE_POSE.height, SOURCE_POSE.width))
    out = smooth(_sequence(poses), sigma=2.0)
    assert out.poses[10].visible[wrist]
    jitter = lambda seq: np.mean([np.abs(b.xy - a.xy).mean() for a, b in zip(seq, seq[1:])])  # noqa: E731
    assert jitter(out.poses) < 0.5 * jitter(poses)


def test_fit_to_source_puts_the_neck_on_the_source_neck_and_matches_the_torso():
    # the same person filmed in a wide 1280x720 frame, three times as large and off to the right
    neck = JOINT["neck"]
    wide = Pose(SOURCE_POSE.xy * 3 + np.array([700.0, 20.0]), SOURCE_POSE.visible, 720, 1280)
    out = fit_to_source(_sequence([wide, None, wide]), SOURCE_POSE)
    assert out.poses[1] is None
    fitted = out.poses[0]
    assert (fitted.height, fitted.width) == (SOURCE_POSE.height, SOURCE_POSE.width)
    assert np.allclose(fitted.xy[fitted.visible], SOURCE_POSE.xy[SOURCE_POSE.visible], atol=1e-3)
    assert np.allclose(fitted.xy[neck], SOURCE_POSE.xy[neck])


@pytest.mark.parametrize("name", list(MOTIONS))
def test_motions_move_from_the_source_pose_and_keep_bone_lengths(name):
    poses = make_motion(name, SOURCE_POSE)
    assert 20 <= len(poses) <= 40 and all(p.height == SOURCE_POSE.height for p in poses)
    assert len(make_motion(name, SOURCE_POSE, 5)) == 5
    moved = max(np.abs(p.xy - SOURCE_POSE.xy)[p.visible & SOURCE_POSE.visible].max() for p in poses)
    assert moved > 3.0  # pixels, in a 64 px tall frame
    if name != "turn":  # a turn foreshortens; the others only change angles (walk also lifts a knee)
        bones = [("r_shoulder", "r_elbow"), ("l_elbow", "l_wrist"), ("r_hip", "r_knee")]
        for a, b in bones[: (2 if name == "walk" else 3)]:
            rest = np.linalg.norm(SOURCE_POSE.xy[JOINT[a]] - SOURCE_POSE.xy[JOINT[b]])
            for p in poses:
                assert np.linalg.norm(p.xy[JOINT[a]] - p.xy[JOINT[b]]) == pytest.approx(rest, rel=0.35)


def test_turn_shows_the_back_half_way_and_the_face_again_at_the_end():
    poses = make_motion("turn", SOURCE_POSE, 32)
    half = poses[16]
    assert not half.visible[[JOINT["nose"], JOINT["r_eye"], JOINT["l_eye"]]].any()
    # seen from behind, the person's right shoulder is on the image's right
    assert half.xy[JOINT["r_shoulder"], 0] > half.xy[JOINT["l_shoulder"], 0]
    assert SOURCE_POSE.xy[JOINT["r_shoulder"], 0] < SOURCE_POSE.xy[JOINT["l_shoulder"], 0]
    assert poses[0].allclose(SOURCE_POSE) and poses[-1].visible[JOINT["nose"]]


def test_a_motion_needs_the_shoulders_and_a_known_name():
    headless = Pose(SOURCE_POSE.xy, np.zeros(18, bool), SOURCE_POSE.height, SOURCE_POSE.width)
    with pytest.raises(UserError, match="neck and both shoulders"):
        make_motion("wave", headless)
    with pytest.raises(UserError, match="unknown motion 'dance'"):
        make_motion("dance", SOURCE_POSE)
