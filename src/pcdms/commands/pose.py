"""`pcdms pose render`, `extract`, `read` and `gallery`: skeleton images from annotations; poses from photos and
from skeleton pictures; the shipped ready poses."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pcdms.commands.common import add_progress_arg
from pcdms.errors import UserError
from pcdms.pose import SKELETON_STYLES
from pcdms.validation import FRAME_SIDE_ARG, float_in, prepare_output_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pose",
        help="render skeleton images from annotations, extract poses from photos, read skeleton pictures, list the pose gallery",
        description="Pose tools. Run `pcdms pose <subcommand> --help`.",
    )
    sub = parser.add_subparsers(dest="pose_command", metavar="<subcommand>")
    parser.set_defaults(func=lambda args: _usage(parser))

    render = sub.add_parser(
        "render",
        help="render OpenPose-style skeleton images for every annotated image",
        description=(
            "Turn a dataset's keypoints into skeleton images (OpenPose/ControlNet colours, 17 limbs and 18 "
            "joint dots on black), one PNG per image: OUT/<split>/<image name>.png. INPUT is a dataset root in "
            "any format (see `pcdms data --help`) or a PATN annotation csv. Each render has the size of the "
            "image's annotation frame (e.g. 256x176) unless --height/--width are given. Images need not exist."
        ),
    )
    render.add_argument("input", metavar="INPUT", help="dataset root or PATN annotation csv")
    render.add_argument("--out", required=True, metavar="DIR", help="output folder")
    render.add_argument("--split", action="append", metavar="NAME", help="only this split (repeatable; default all)")
    render.add_argument("--format", default="auto", choices=["auto", "patn", "gfla", "authors"])
    render.add_argument("--height", type=FRAME_SIDE_ARG, help="render height in pixels")
    render.add_argument("--width", type=FRAME_SIDE_ARG, help="render width in pixels")
    render.add_argument("--style", choices=SKELETON_STYLES, default="scaled",
                        help="scaled (default): limbs 4 px wide at 512 and scaled with the size, as the project's "
                             "presets train with; authors: 4 px at every size, exactly as the authors' "
                             "draw_bodypose (their openpose_all_img/<name>_pose.jpg renders)")
    add_progress_arg(render, "images")
    render.set_defaults(func=run_render)

    extract = sub.add_parser(
        "extract",
        help="detect COCO-18 poses in photos (MediaPipe, offline)",
        description=(
            "Detect one person's pose in each image with MediaPipe Pose (model_complexity=1, offline) mapped to "
            "COCO-18 (neck = mid-shoulders; joints below --threshold visibility or outside the image are "
            "missing). Writes OUT/keypoints/<stem>.json in OpenPose format (people[0].pose_keypoints_2d = 18 "
            "x,y,confidence triples, plus canvas_height/canvas_width) and, with --render, OUT/poses/<stem>.png. "
            "Given a folder it also makes OUT a PATN dataset root: OUT/<split>/<stem>.png (upright RGB copies), "
            "custom-annotation-<split>.csv and custom-pairs-<split>.csv (every ordered pair), ready for "
            "`pcdms data check OUT`. Images are read by content (any format, mode or EXIF rotation). Every "
            "failure (unreadable file, no person found) is listed and saved to OUT/failed.csv; finished work is "
            "kept. Exit status 1 when any input failed."
        ),
    )
    extract.add_argument("inputs", nargs="+", metavar="IMAGES_OR_FOLDER", help="image files and/or folders")
    extract.add_argument("--out", required=True, metavar="DIR", help="output folder")
    extract.add_argument("--render", action="store_true", help="also write skeleton renders")
    add_progress_arg(extract, "images")
    extract.add_argument("--split", default="test", help="split name of the dataset written for a folder (default test)")
    extract.add_argument("--threshold", type=float_in(0, 1), default=0.5, help="minimum MediaPipe visibility of a joint (default 0.5)")
    extract.set_defaults(func=run_extract)

    read = sub.add_parser(
        "read",
        help="read skeleton pictures (OpenPose/ControlNet/DWPose renders) back to COCO-18 JSON",
        description=(
            "Recover the 18 body keypoints drawn in skeleton pictures: OpenPose, ControlNet or DWPose renders "
            "(the authors' demo pose images among them), any size, PNG or JPEG, with or without DWPose's hands "
            "and face (those are ignored). Each joint is found by its OpenPose colour (a full-colour dot on the "
            "dimmer limbs, black background). Writes DIR/<stem>.json per picture: OpenPose JSON "
            "(people[0].pose_keypoints_2d = 18 x,y,confidence triples, plus canvas_height/canvas_width = the "
            "picture's size), usable wherever a pose file is asked for. A joint not drawn (or off the picture) "
            "is written missing. An image that is not a skeleton picture (a photo: use `pcdms pose extract`) or "
            "holds no joint is reported with what it looked like; the others are still written. Exit status 1 "
            "when any input failed. `pcdms generate --target-pose picture.png` reads a skeleton picture the "
            "same way without this step."
        ),
    )
    read.add_argument("images", nargs="+", metavar="IMAGES", help="skeleton pictures (png, jpg, ...)")
    read.add_argument("--out", required=True, metavar="DIR", help="output folder for <stem>.json")
    read.set_defaults(func=run_read)

    from pcdms.pose.gallery import GALLERY_DIR

    gallery = sub.add_parser(
        "gallery",
        help="list the shipped ready target poses by name",
        description=(
            "List the pose gallery: ready target poses shipped with pcdms (OpenPose COCO-18 JSON in a 256x176 "
            f"frame, in {GALLERY_DIR}), one line each: name, view (front, back, side, three-quarter) and what "
            "the pose shows. Give a name wherever a pose file is asked for: `pcdms generate --source me.jpg "
            "--target-pose front-arms-raised --out out/` (also --source-pose, and `pcdms animate "
            "--source-pose`). A name is looked up in the gallery first, then as a file path. The app offers "
            "the same poses by the same names."
        ),
    )
    gallery.add_argument("--paths", action="store_true", help="also print each pose's JSON file")
    gallery.set_defaults(func=run_gallery)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def run_render(args: argparse.Namespace) -> int:
    from PIL import Image

    from pcdms.pose import render_skeleton
    from pcdms.progress import Progress, choose_mode

    if (args.height is None) != (args.width is None):
        raise UserError("give both --height and --width, or neither")
    jobs = _render_jobs(Path(args.input), args.split, args.format)
    out = prepare_output_dir(args.out)
    failed = 0
    bar = Progress(len(jobs), "pose render", "img", choose_mode(args.no_progress))
    for split, entry in jobs:
        size = (args.height, args.width) if args.height else entry.frame or _image_size(entry.path)
        if size is None:
            print(f"{entry.origin[0]}: '{entry.name}': no frame size and no image to take it from; "
                  "pass --height and --width", file=sys.stderr)  # fmt: skip
            failed += 1
        else:
            target = out / split / Path(entry.name).with_suffix(".png")
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(render_skeleton(entry.keypoints, *size, args.style)).save(target)
        bar.update()
    bar.close()
    print(f"rendered {len(jobs) - failed} pose images to {out}")
    return 1 if failed else 0


def _render_jobs(source: Path, splits: list[str] | None, format: str) -> list:
    from pcdms.data.formats import available_splits, read_patn_annotation, read_split

    if source.is_file():
        entries, problems = read_patn_annotation(source)
        split = source.stem.rsplit("-annotation-", 1)[-1]
        _warn(problems)
        return [(split, e) for e in entries]
    if not source.is_dir():
        raise UserError(f"{source}: no such dataset root or annotation file")
    jobs = []
    for split in splits or available_splits(source, format):
        data, problems = read_split(source, split, format)
        # images are not needed for a render; only keypoint problems matter here
        _warn([p for p in problems if p.kind not in ("missing-image", "unknown-image")])
        jobs += [(split, e) for e in data.images.values()]
    if not jobs:
        raise UserError(f"{source}: no annotated images found")
    return jobs


def _warn(problems: list) -> None:
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)


def _image_size(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    from pcdms.imageio import load_image

    image = load_image(path)
    return image.height, image.width


def run_extract(args: argparse.Namespace) -> int:
    from pcdms.jobs.extract import extract_poses, write_failures

    from pcdms.progress import choose_mode

    prepare_output_dir(args.out)
    report = extract_poses(args.inputs, args.out, render=args.render, split=args.split,
                           visibility_threshold=args.threshold, progress=choose_mode(args.no_progress))
    for path, reason in report.failed:
        print(f"{path}: {reason}", file=sys.stderr)
    failures = write_failures(report, Path(args.out))
    print(f"{len(report.done)} pose(s) written to {args.out}" + (f"; {len(report.failed)} failed, see {failures}" if failures else ""))
    for path in report.files:
        print(f"wrote {path}")
    return 1 if report.failed else 0


def run_read(args: argparse.Namespace) -> int:
    from pcdms.imageio import load_image
    from pcdms.pose import NUM_JOINTS, write_openpose_json
    from pcdms.pose.picture import read_skeleton_picture

    out = prepare_output_dir(args.out)
    failed, written = [], []
    for name in args.images:
        target = out / f"{Path(name).stem}.json"
        try:
            if target in written:
                raise UserError(f"another input already wrote {target} (same file name stem)")
            reading = read_skeleton_picture(load_image(name), name)
        except UserError as err:
            failed.append(name)
            print(f"error: {err}", file=sys.stderr)
            continue
        write_openpose_json(target, reading.pose)
        written.append(target)
        print(f"wrote {target} ({int(reading.pose.visible.sum())} of {NUM_JOINTS} joints)")
    print(f"{len(written)} pose(s) written to {out}" + (f"; {len(failed)} failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def run_gallery(args: argparse.Namespace) -> int:
    from pcdms.pose.gallery import GALLERY_DIR, describe, gallery_names, view

    names = gallery_names()
    if not names:
        raise UserError(f"the pose gallery {GALLERY_DIR} holds no .json poses; reinstall pcdms")
    width = max(len(name) for name in names)
    for name in names:
        line = f"{name:<{width}}  {view(name) or '-':<13}  {describe(name)}"
        print(f"{line}  {GALLERY_DIR / f'{name}.json'}" if args.paths else line)
    print(f"{len(names)} poses in {GALLERY_DIR}; use one with --target-pose NAME")
    return 0
