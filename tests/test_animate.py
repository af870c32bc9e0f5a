"""`pcdms animate` on the shipped demo model: built-in motions to MP4, JSON folders with a bad file, resuming, video."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pcdms.cli import main
from pcdms.commands.demo import ASSETS
from pcdms.sampling.pipeline import PCDMsPipeline
from pcdms.pose import JOINT, Pose, read_openpose_json, write_openpose_json
from pcdms.jobs.video import read_frames, video_info, write_mp4

INPUTS = ASSETS / "inputs"
SOURCE = INPUTS / "id00161_00_front-full.png"
SOURCE_POSE = INPUTS / "id00161_00_front-full.json"
FAST = ["--steps", "2", "--no-progress", "--device", "cpu", "--model", str(ASSETS / "model")]


def animate_args(out, poses, *extra):
    return ["animate", "--source", str(SOURCE), "--source-pose", str(SOURCE_POSE), "--poses", str(poses),
            "--out", str(out), *FAST, *extra]


def test_builtin_motion_writes_mp4_gif_and_frames_of_the_source_size(tmp_path):
    out = tmp_path / "wave"
    assert main(animate_args(out, "arms-up", "--frames", "3")) == 0
    width, height = Image.open(SOURCE).size
    video = list(read_frames(out / "animation.mp4"))
    assert len(video) == 3 and all(f.shape == (height, width, 3) for f in video)
    assert video_info(out / "animation.mp4").fps == 12.0
    pngs = sorted((out / "frames").glob("frame_*.png"))
    assert [p.name for p in pngs] == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]
    frames = [np.asarray(Image.open(p), dtype=np.float32) for p in pngs]
    # the video holds the frames (H.264 loses a little), and the arms move: frames differ
    assert all(np.abs(f - v).mean() < 6 for f, v in zip(frames, video))
    assert np.abs(frames[0] - frames[1]).mean() > 1.0
    gif = Image.open(out / "animation.gif")
    assert gif.n_frames == 3 and gif.size == (width, height)


def test_side_by_side_and_fps(tmp_path):
    out = tmp_path / "sbs"
    assert main(animate_args(out, "walk", "--frames", "2", "--side-by-side", "--fps", "5")) == 0
    width, height = Image.open(SOURCE).size
    info = video_info(out / "animation.mp4")
    assert info.size == (2 * width, height) and info.fps == 5.0 and info.frames == 2
    first = next(read_frames(out / "animation.mp4"))
    assert first[:, :width].mean() < first[:, width:].mean()  # the skeleton on black, left of the person


def _pose_folder(folder, count):
    from pcdms.jobs.motions import make_motion

    folder.mkdir()
    for i, pose in enumerate(make_motion("wave", read_openpose_json(SOURCE_POSE), count)):
        write_openpose_json(folder / f"{i:03d}.json", pose)


def test_json_folder_with_a_broken_file_reports_it_and_writes_the_rest(tmp_path, capsys):
    poses = tmp_path / "poses"
    _pose_folder(poses, 4)
    (poses / "002.json").write_text("{ not json")
    out = tmp_path / "out"
    assert main(animate_args(out, poses, "--framing", "as-is")) == 0
    printed = capsys.readouterr().out
    assert "frame 2" in printed and "002.json" in printed
    assert sorted(p.name for p in (out / "frames").glob("*.png")) == \
        ["frame_00000.png", "frame_00001.png", "frame_00003.png"]
    report = json.loads((out / "report.json").read_text())
    assert list(report["no_pose"]) == ["2"] and "002.json" in report["no_pose"]["2"]
    video = list(read_frames(out / "animation.mp4"))
    assert len(video) == 4  # the timing is kept: frame 2 repeats frame 1
    assert np.abs(video[2].astype(float) - video[1]).mean() < 1.0


def test_folder_of_skeleton_pictures_animates_and_names_a_photo_among_them(tmp_path, capsys):
    # a ControlNet-style pose sequence: renders of gallery poses at 512x352, plus a photo that slipped in
    import shutil

    from pcdms.pose.gallery import gallery

    poses = tmp_path / "renders"
    poses.mkdir()
    shown = gallery()
    for i, name in enumerate(("front-standing", "front-waving", "front-arms-raised")):
        Image.fromarray(shown[name].resized(512, 352).render()).save(poses / f"pose_{i}.png")
    shutil.copy(SOURCE, poses / "pose_1b.png")
    out = tmp_path / "out"
    assert main(animate_args(out, poses, "--steps", "1")) == 0
    printed = capsys.readouterr().out
    assert "pose_1b.png is not a skeleton picture: it looks like a photo" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["generated"] == [0, 1, 3] and list(report["no_pose"]) == ["2"]
    assert len(list(read_frames(out / "animation.mp4"))) == 4


def test_rerun_after_a_kill_skips_finished_frames(tmp_path, monkeypatch):
    out = tmp_path / "out"
    args = animate_args(out, "wave", "--frames", "4", "--batch-size", "1")
    calls = []
    original = PCDMsPipeline.batch

    def killed_at_third(self, sources, *a, **k):
        calls.append(len(sources))
        if len(calls) == 3 and not getattr(killed_at_third, "done", False):
            killed_at_third.done = True
            raise KeyboardInterrupt
        return original(self, sources, *a, **k)

    monkeypatch.setattr(PCDMsPipeline, "batch", killed_at_third)
    assert main(args) == 130
    finished = sorted((out / "frames").glob("frame_*.png"))
    assert len(finished) == 2 and not list((out / "frames").glob(".*.tmp"))
    stamps = {p: p.stat().st_mtime_ns for p in finished}
    calls.clear()
    assert main(args) == 0
    assert calls == [1, 1]  # only frames 2 and 3 are generated
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    assert len(list(read_frames(out / "animation.mp4"))) == 4
    # the same folder with other settings would mix two animations: refused, nothing written
    assert main(args + ["--seed", "7"]) == 2


def test_shared_noise_keeps_frames_closer_than_fresh_noise_for_one_pose():
    # Four frames of the SAME pose: with one noise they are one image; fresh noise changes the person.
    pipe = PCDMsPipeline.from_pretrained(ASSETS / "model")
    source, pose = Image.open(SOURCE), read_openpose_json(SOURCE_POSE)
    poses = [read_openpose_json(INPUTS / "id00161_02_three-quarter-full.json")] * 3
    frames = {noise: [np.asarray(f, dtype=np.float32) for f in pipe.animate(
        source, poses, source_pose=pose, noise=noise, progress=False, num_inference_steps=2).frames]
        for noise in ("shared", "fresh")}
    # one image up to float noise: rows of one batch may round differently on several threads (1 grey level)
    assert all(np.abs(frames["shared"][0] - f).max() <= 1 for f in frames["shared"][1:])
    assert np.abs(frames["fresh"][0] - frames["fresh"][1]).mean() > 1.0


def test_video_with_frames_without_a_person_still_gives_a_video(tmp_path, samples_dir, capsys):
    # A clip of a real photo (mediapipe finds the person) with one blank frame and then three blank ones:
    # the single gap is filled in from its neighbours, the long one is reported by frame index.
    photo = Image.open(samples_dir / "img2.png").convert("RGB").resize((176, 256))
    blank = Image.new("RGB", photo.size, (235, 235, 235))
    clip = [photo, photo, blank, photo, blank, blank, blank]
    write_mp4(clip, tmp_path / "clip.mp4", fps=10)
    out = tmp_path / "out"
    assert main(animate_args(out, tmp_path / "clip.mp4")) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["filled_in"] == [2]
    assert sorted(report["no_pose"]) == ["4", "5", "6"] and "no person" in report["no_pose"]["4"]
    assert "frame 4: no person found" in printed
    assert report["fps"] == 10.0 and video_info(out / "animation.mp4").frames == 7
    assert len(list((out / "poses").glob("frame_*.json"))) == 7  # extracted poses are kept for a rerun


@pytest.mark.parametrize("poses, message", [("dance", "neither a folder"), ("EMPTY", "no .json pose files"),
                                            ("notes.txt", "not a video ffmpeg can read"), ("one.json", "one pose")])
def test_bad_poses_argument_is_a_one_line_error(tmp_path, capsys, poses, message):
    if poses == "EMPTY":
        (tmp_path / "empty").mkdir()
        poses = tmp_path / "empty"
    elif "." in poses:
        (tmp_path / poses).write_text("hello")
        poses = tmp_path / poses
    assert main(animate_args(tmp_path / "out", poses)) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # the failed run took back the --out folder it had made


def _head_at_top_edge(path):
    """The source's pose moved up until its head touches the photo's top edge (its highest joint at y = 0)."""
    pose = read_openpose_json(SOURCE_POSE)
    top = pose.xy[pose.visible, 1].min()
    write_openpose_json(path, Pose(pose.xy - np.array([0.0, top]), pose.visible, pose.height, pose.width))
    return path


def test_arms_up_from_a_head_at_the_top_edge_keeps_the_arms_on_the_canvas_and_says_so(tmp_path, capsys):
    args = animate_args(tmp_path / "out", "arms-up", "--frames", "3")
    args[args.index("--source-pose") + 1] = str(_head_at_top_edge(tmp_path / "top.json"))
    assert main(args) == 0
    err = capsys.readouterr().err
    # frame 1 of 3 is the arms' highest: it alone reached off the top, and the warning names it
    assert "pcdms animate: warning: motion 'arms-up' reaches off the 64x44 canvas" in err
    assert "in frame(s) 1 (" in err and "scaled to" in err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["no_pose"] == {} and report["generated"] == [0, 1, 2]


def test_poses_of_a_folder_that_leave_the_canvas_are_named_by_frame(tmp_path):
    import argparse

    from pcdms.commands.animate import load_sequence
    from pcdms.errors import InputWarning

    # a clip in a taller frame whose person raises the right hand high in frames 1 and 3: fitted to a source
    # whose head touches the top edge, the raised hand lands above the photo
    source = read_openpose_json(_head_at_top_edge(tmp_path / "top.json"))
    poses = tmp_path / "poses"
    poses.mkdir()
    for i in range(4):
        xy = source.xy + np.array([0.0, 30.0])
        xy[JOINT["r_wrist"], 1] = 2.0 if i % 2 else xy[JOINT["r_wrist"], 1]
        write_openpose_json(poses / f"{i}.json", Pose(xy, source.visible, 100, 44))
    args = argparse.Namespace(poses=str(poses), frames=None, smooth=None, framing="source", no_progress=True)
    with pytest.warns(InputWarning, match=r"joints off the canvas in frame\(s\) 1, 3 \(r_wrist\)"):
        load_sequence(args, source, tmp_path)
