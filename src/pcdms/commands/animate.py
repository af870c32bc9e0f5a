"""`pcdms animate`: one photo through a pose sequence (JSON folder, video or built-in motion) to MP4, GIF and PNGs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pcdms.errors import UserError, warn
from pcdms.validation import at_least, float_in

DEFAULT_FPS = 12.0
SETTINGS_FILE = "animation.json"


def register(subparsers: argparse._SubParsersAction) -> None:
    from pcdms.commands.common import add_inference_args
    from pcdms.jobs.motions import MOTIONS

    parser = subparsers.add_parser(
        "animate", help="one photo through a pose sequence (poses folder, video or built-in motion) to a video",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"""\
Make a video of the person in --source moving through a sequence of poses.

  pcdms animate --source me.jpg --poses POSES --out DIR
      POSES is one of
        a folder of OpenPose/COCO-18 JSON files, used in name order;
        a video file: a pose is extracted from each frame (mediapipe), smoothed over time, gaps of
          1-2 frames filled in;
        a built-in motion made from the source's own pose: {', '.join(MOTIONS)}; a motion that would
          reach off the photo (arms raised over a head at its top edge) is scaled and moved, once for
          every frame, to stay inside it, with a warning naming the frames.
      Poses from a folder or a video are moved and scaled so their person stands where, and as large
      as, the person in --source (--framing as-is keeps them as they are).

Writes DIR/animation.mp4 (H.264), DIR/animation.gif, DIR/frames/frame_NNNNN.png and DIR/report.json
(frames without a pose of their own and why). A frame with no pose (a video frame with no person, a
broken JSON file) shows the previous frame and is reported by index. Rerunning the same command
resumes: finished frames are not redone.

Every frame starts from the same noise (--noise shared), so the person stays the same; --noise fresh
draws new noise per frame (for comparison). --stages B2 skips the refiner (docs/animation.md has how steady the frames are).""")
    add_inference_args(parser, unit="frames")
    parser.add_argument("--source", required=True, help="the photo of the person")
    parser.add_argument("--poses", required=True, help=f"a folder of pose JSON files or skeleton pictures (OpenPose/ControlNet renders), a video, or {'/'.join(MOTIONS)}")
    parser.add_argument("--source-pose", metavar="NAME_OR_FILE",
                        help="the source's pose: COCO-18 JSON, a photo or a gallery pose name (`pcdms pose gallery`); "
                             "default: extracted from --source")
    parser.add_argument("--frames", type=at_least(1), default=None, metavar="N",
                        help="a built-in motion in N frames (default: its own, 24-32); a folder or video: its first N")
    parser.add_argument("--fps", type=float_in(0, low_open=True), default=None,
                        help=f"frame rate of the video (default: the input video's, else {DEFAULT_FPS:g})")
    parser.add_argument("--side-by-side", action="store_true", help="the pose skeleton beside each frame of the video")
    parser.add_argument("--noise", choices=("shared", "fresh"), default="shared",
                        help="the same starting noise for every frame (default) or new noise per frame")
    parser.add_argument("--stages", default="full", choices=("full", "B2"), help="full, or B2 = prior + inpaint")
    parser.add_argument("--framing", choices=("source", "as-is"), default="source",
                        help="fit a folder's or video's poses to the source's place and size (default), or not")
    parser.add_argument("--smooth", type=float_in(0), default=None, metavar="SIGMA",
                        help="smooth joints over time with a Gaussian of SIGMA frames (default: 1 for a video, "
                             "else 0); gaps of up to 2 frames are filled whenever SIGMA > 0 or it is a video")
    parser.set_defaults(func=run_animate)


def load_sequence(args: argparse.Namespace, source_pose, out: Path):
    """The pose sequence of --poses, steadied and fitted to the source as the options say."""
    from pcdms.jobs import sequences
    from pcdms.jobs.motions import MOTIONS
    from pcdms.progress import choose_mode

    poses = Path(args.poses)
    if poses.is_dir():
        sequence = sequences.from_folder(poses, args.frames)
    elif poses.is_file() and poses.suffix.lower() == ".json":
        raise UserError(f"--poses {poses}: one JSON file is one pose; give the folder of a sequence's JSON files")
    elif poses.is_file():
        sequence = sequences.from_video(poses, out / "poses", args.frames, progress=choose_mode(args.no_progress))
    elif args.poses in MOTIONS:
        return sequences.from_motion(args.poses, source_pose, args.frames)
    else:
        raise UserError(f"--poses '{args.poses}' is neither a folder, a video file nor a motion ({', '.join(MOTIONS)})")
    sigma = args.smooth if args.smooth is not None else (1.0 if poses.is_file() else 0.0)
    if sigma > 0 or poses.is_file():
        sequence = sequences.smooth(sequence, sigma)
    if args.framing == "source":
        sequence = sequences.fit_to_source(sequence, source_pose)
    outside = sequences.off_canvas(sequence.poses)
    if outside:
        warn(f"--poses {poses}: joints off the canvas in frame(s) {sequences.describe_off_canvas(outside)}; "
             "those frames are made without them")
    return sequence


def claim(out: Path, settings: dict) -> None:
    """Resume only what these settings made: frames in `out` made with other settings are an error."""
    path = out / SETTINGS_FILE
    if path.is_file() and any((out / "frames").glob("frame_*.png")):
        before = json.loads(path.read_text())
        changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
        if changed:
            raise UserError(f"{out} holds frames made with other settings ({', '.join(changed)} differ): "
                            f"use another --out, or delete {out / 'frames'}")
    path.write_text(json.dumps(settings, indent=1) + "\n")


def run_animate(args: argparse.Namespace) -> int:
    import hashlib

    from pcdms.jobs.animate import side_by_side
    from pcdms.commands.common import load_pose, start
    from pcdms.imageio import load_image
    from pcdms.pose.extract import extract_pose
    from pcdms.jobs.sequences import pose_fingerprint
    from pcdms.validation import prepare_output_dir
    from pcdms.jobs.video import write_gif, write_mp4

    source = load_image(args.source)
    source_pose = (load_pose(args.source_pose, "--source-pose") if args.source_pose
                   else extract_pose(source, f"--source '{args.source}'"))
    out = prepare_output_dir(args.out)
    sequence = load_sequence(args, source_pose, out)
    settings = {"model": str(Path(args.model).resolve()), "source": hashlib.sha256(Path(args.source).read_bytes()).hexdigest(),
                "poses": pose_fingerprint(sequence.poses), "source_pose": pose_fingerprint([source_pose]),
                "seed": args.seed, "noise": args.noise, "steps": args.steps, "guidance": args.guidance,
                "stages": args.stages, "refine_strength": args.refine_strength}
    claim(out, settings)
    mode, pipe = start(args, out)
    result = pipe.animate(source, sequence, source_pose=source_pose, noise=args.noise, seed=args.seed,
                          batch_size=args.batch_size, frames_dir=out / "frames", progress=mode,
                          stages=args.stages, num_inference_steps=args.steps, guidance_scale=args.guidance)
    frames = result.frames
    if args.side_by_side:
        frames = [side_by_side(frame, pose) for frame, pose in zip(frames, result.poses)]
    fps = args.fps or sequence.fps or DEFAULT_FPS
    write_mp4(frames, out / "animation.mp4", fps)
    write_gif(frames, out / "animation.gif", fps)
    report = {"frames": len(frames), "fps": fps, "generated": result.made, "resumed": result.resumed,
              "no_pose": {str(i): why for i, why in sorted(result.missing.items())},
              "filled_in": sequence.filled}
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(result.summary())
    if sequence.filled:
        print(f"  frames whose pose was filled in from their neighbours: {sequence.filled}")
    print(f"wrote {out / 'animation.mp4'}, {out / 'animation.gif'} and {len(frames)} frames in {out / 'frames'}")
    return 0
