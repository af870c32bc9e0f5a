"""Pose sequences for `pcdms animate`: gap filling and smoothing, fitting to the source, the built-in motions
and keeping them on the canvas."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from pcdms.commands.demo import ASSETS
from pcdms.errors import InputWarning, UserError
from pcdms.jobs.motions import MOTIONS, make_motion
from pcdms.pose import JOINT, Pose, read_openpose_json
from pcdms.jobs.sequences import PoseSequence, describe_off_canvas, fit_to_source, from_motion, off_canvas, smooth

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


def _head_at_top_edge() -> Pose:
    """The demo source's pose moved up until its head touches the top edge (its highest joint at y = 0)."""
    top = SOURCE_POSE.xy[SOURCE_POSE.visible, 1].min()
    return Pose(SOURCE_POSE.xy - np.array([0.0, top]), SOURCE_POSE.visible, SOURCE_POSE.height, SOURCE_POSE.width)


def test_a_motion_that_would_leave_the_canvas_is_fitted_inside_it_once_for_every_frame():
    source = _head_at_top_edge()
    assert source.xy[JOINT["nose"], 1] < 3 and source.inside().sum() == source.visible.sum()
    assert off_canvas(make_motion("arms-up", source, 24))  # as made, the raised arms leave the top edge
    with pytest.warns(InputWarning, match=r"motion 'arms-up' reaches off the 64x44 canvas .* frame\(s\) [\d, -]+ "
                                          r"\(.*r_wrist.*l_wrist\); the whole motion is scaled to \d+%"):
        sequence = from_motion("arms-up", source, 24)
    assert len(sequence) == 24 and off_canvas(sequence.poses) == {}
    up = sequence.poses[12]  # the middle frame: both arms straight up, every joint still shown
    assert up.visible[[JOINT["r_wrist"], JOINT["l_wrist"]]].all()
    assert up.xy[JOINT["r_wrist"], 1] < up.xy[JOINT["nose"], 1]
    # one scale and shift for the whole motion: the body that does not move stays put from frame to frame
    still = [JOINT[j] for j in ("neck", "r_shoulder", "l_shoulder", "r_hip", "l_ankle", "nose")]
    for pose in sequence.poses:
        assert np.allclose(pose.xy[still], sequence.poses[0].xy[still], atol=1e-3)
    torso = np.linalg.norm(up.xy[JOINT["neck"]] - up.xy[JOINT["r_hip"]])
    assert 0.6 < torso / np.linalg.norm(source.xy[JOINT["neck"]] - source.xy[JOINT["r_hip"]]) < 1.0


def test_a_motion_inside_the_canvas_is_left_as_made():
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        sequence = from_motion("walk", SOURCE_POSE, 12)
    assert all(p.allclose(q) for p, q in zip(sequence.poses, make_motion("walk", SOURCE_POSE, 12)))


def test_off_canvas_names_frames_and_joints():
    moved = Pose(SOURCE_POSE.xy + np.array([0.0, -10.0]), SOURCE_POSE.visible, SOURCE_POSE.height, SOURCE_POSE.width)
    outside = off_canvas([SOURCE_POSE, moved, None, moved, SOURCE_POSE, moved])
    assert sorted(outside) == [1, 3, 5] and "nose" in outside[1]
    assert describe_off_canvas(outside).startswith("1, 3, 5 (nose")
    assert describe_off_canvas({2: ["r_wrist"], 3: ["l_wrist", "r_wrist"], 4: ["r_wrist"], 9: ["nose"]}) == \
        "2-4, 9 (nose, r_wrist, l_wrist)"


# ---------------------------------------------------------------------- a folder of skeleton pictures
SHOWN = ("front-waving", "side-walking", "three-quarter")


def _render_folder(folder, names=SHOWN):
    """The gallery poses `names` drawn by the project's renderer at 512x352 (a ControlNet size) into `folder`,
    named so that name order is not the order they were written in: c.png, a.png, b.jpg (a JPEG too)."""
    from PIL import Image

    from pcdms.pose.gallery import gallery

    folder.mkdir()
    poses = {name: pose.resized(512, 352) for name, pose in gallery().items()}
    files = ["c.png", "a.png", "b.jpg"]
    for name, file in zip(names, files):
        Image.fromarray(poses[name].render()).save(folder / file, quality=95)
    return {file: poses[name] for name, file in zip(names, files)}


def test_a_folder_of_skeleton_pictures_reads_back_to_their_poses_in_name_order(tmp_path):
    from pcdms.jobs.sequences import from_folder

    drawn = _render_folder(tmp_path / "renders")
    sequence = from_folder(tmp_path / "renders")
    assert sequence.names == ["a.png", "b.jpg", "c.png"] and sequence.problems == {}
    for name, pose in zip(sequence.names, sequence.poses):
        want = drawn[name]
        assert (pose.height, pose.width) == (want.height, want.width)
        assert np.array_equal(pose.visible, want.visible), name
        assert np.abs(pose.xy - want.xy)[want.visible].max() < 1.5, name
    assert len(from_folder(tmp_path / "renders", limit=2)) == 2


def test_a_photo_in_a_folder_of_pictures_is_its_frames_problem_saying_what_it_looked_like(tmp_path):
    import shutil

    from pcdms.jobs.sequences import from_folder

    _render_folder(tmp_path / "renders")
    shutil.copy(ASSETS / "inputs" / "id00161_00_front-full.png", tmp_path / "renders" / "b2.png")
    (tmp_path / "renders" / "notes.txt").write_text("not a pose")  # neither a pose file nor a picture: not a frame
    sequence = from_folder(tmp_path / "renders")
    assert sequence.names == ["a.png", "b.jpg", "b2.png", "c.png"]
    assert sequence.poses[2] is None and list(sequence.problems) == [2]
    assert "b2.png is not a skeleton picture: it looks like a photo" in sequence.problems[2]


def test_a_folder_where_no_file_gives_a_pose_is_an_error_naming_the_files(tmp_path):
    import shutil

    from pcdms.jobs.sequences import from_folder

    (tmp_path / "photos").mkdir()
    for name in ("1.png", "2.png"):
        shutil.copy(ASSETS / "inputs" / "id00161_00_front-full.png", tmp_path / "photos" / name)
    with pytest.raises(UserError, match=r"no file in the folder gives a pose \(1.png is not a skeleton picture"):
        from_folder(tmp_path / "photos")
