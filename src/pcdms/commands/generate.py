"""`pcdms generate` (one pair, or every pair of a dataset split) and `pcdms refine` (stage 3 over any images)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pcdms.commands.common import DEMO_MODEL, add_inference_args, announce, load_pose, start
from pcdms.errors import UserError
from pcdms.validation import at_least, check_model_folder, prepare_output_dir, setting_arg

if TYPE_CHECKING:
    from pcdms.data.formats import ImageEntry, SplitData

__all__ = ["DEMO_MODEL", "load_pose", "refine_source_lookup", "register"]  # load_pose: its home is commands.common


def register(subparsers: argparse._SubParsersAction) -> None:
    gen = subparsers.add_parser(
        "generate", help="generate a person in a new pose: one pair, or every pair of a dataset split",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Run the three PCDMs stages (prior -> inpaint -> refine) on your photo and a target pose.

One pair:
  pcdms generate --source me.jpg --target-pose pose.json --out out/
      --target-pose: a gallery pose by NAME (`pcdms pose gallery` lists them, e.g.
      front-arms-raised), OpenPose COCO-18 JSON (`pcdms pose extract` writes it), a skeleton
      PICTURE (an OpenPose/ControlNet/DWPose render, read by its colours) or another PHOTO, whose
      pose is extracted; --source-pose likewise (default: extracted from --source).
      Writes <name>.png (final), <name>_coarse.png (stage 2) and <name>_grid.png
      (source | target pose | coarse | final); --process adds <name>_process.png (paper Fig. 18-19).

Every pair of a dataset split (PATN csv, GFLA txt or the authors' json; see `pcdms data check`):
  pcdms generate --dataset data/deepfashion --split test --out results/
      Writes <from>_to_<to>.png per pair (<from>_to_<to>_sample<k>.png with --num-samples > 1),
      the names `pcdms evaluate` expects. Rerunning skips finished pairs; `accelerate launch
      -m pcdms.cli generate ...` shares the pairs across GPUs.

--stages B1 / B2 / B3 / full runs the paper's ablations (B1 = inpaint only, B2 = prior + inpaint,
B3 = inpaint + refine).

Replay a result of `pcdms app` from its settings file:
  pcdms generate --settings settings.json --source me.jpg --out out/
      The file's stages, steps, guidance, seed, samples, refine strength and both poses replace
      those options; --source must be the photo the app used (checked by its pixels).""")
    add_inference_args(gen)
    gen.add_argument("--source", help="the source photo (one-pair mode)")
    gen.add_argument("--target-pose", metavar="NAME_OR_FILE",
                     help="target pose: a gallery pose name (see `pcdms pose gallery`), COCO-18 OpenPose JSON, "
                          "a skeleton picture (OpenPose/ControlNet/DWPose render) or a photo to take the pose from")
    gen.add_argument("--source-pose", metavar="NAME_OR_FILE",
                     help="source pose, given like --target-pose (default: extracted from --source with mediapipe)")
    gen.add_argument("--name", default=None, help="output name in one-pair mode (default: <source>_to_<pose>)")
    gen.add_argument("--dataset", help="dataset root (dataset mode)")
    gen.add_argument("--split", default="test", help="dataset split (default: test)")
    gen.add_argument("--limit", type=at_least(1), default=None, help="only the first N pairs of the split")
    gen.add_argument("--num-samples", type=setting_arg("num_samples"), default=1, help="samples per pair")
    gen.add_argument("--stages", default=None, choices=("full", "B1", "B2", "B3"),
                     help="which stages run (default: every stage the model has; the authors' simplified model "
                          "is stage 2 alone)")
    gen.add_argument("--process", action="store_true",
                     help="also write <name>_process.png: the predicted clean image at six steps of stage 2 and of "
                          "stage 3, a row per stage, each labelled with its step (one pair)")
    gen.add_argument("--settings", help="a settings file written by `pcdms app`: replay that result (one pair)")
    gen.set_defaults(func=run_generate)

    ref = subparsers.add_parser(
        "refine", help="stage 3 over images made by any method (paper Fig. 9)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Refine images produced by another method with the PCDMs refining stage (texture restoration).
The refiner needs each image's SOURCE photo (its DINOv2 tokens guide the texture):
  pcdms refine --images their_results/ --dataset data/deepfashion --split test --out refined/
      images named <from>_to_<to>.png take <from> from the dataset split;
  pcdms refine --images result.png --source source.jpg --out refined/
      one source for every image given.""")
    add_inference_args(ref)
    ref.add_argument("--images", required=True, nargs="+", help="images or folders of images to refine")
    ref.add_argument("--source", help="the source photo of every image")
    ref.add_argument("--dataset", help="dataset root whose images are the <from> of <from>_to_<to>.png")
    ref.add_argument("--split", default="test")
    ref.set_defaults(func=run_refine)


def run_generate(args: argparse.Namespace) -> int:
    from pcdms.jobs.generate import dataset_items, run_items

    settings = _apply_settings(args) if args.settings else None
    if args.num_samples < 1:
        raise UserError(f"--num-samples must be at least 1, got {args.num_samples}")
    if bool(args.dataset) == bool(args.source):
        raise UserError("give either --source with --target-pose (one pair) or --dataset (every pair of a split)")
    out = prepare_output_dir(args.out)
    check_model_folder(args.model)
    call = {"num_inference_steps": args.steps, "guidance_scale": args.guidance, "stages": args.stages}
    stages = ("stages", f"{args.stages or 'every stage of the model'}, {args.num_samples} sample(s) per pair, "
                        f"seed {args.seed}")
    if args.dataset:
        from pcdms.summary import split_rows

        mode, pipe = start(args, out)
        rows = split_rows(args.dataset, args.split, args.limit, (pipe.width, pipe.height), pipe.stretch)
        announce(f"generate {args.split}", pipe, [("model", args.model), *rows, stages], out, args.batch_size, mode)
        job = dataset_items(pipe, args.dataset, args.split, out, args.num_samples, args.seed, args.limit, **call)
        report = run_items(job, f"generate {args.split}", progress=mode, batch_size=args.batch_size)
        print(report.summary())
        return 1 if report.failed else 0
    return _generate_one(args, out, call, stages, settings)


def _apply_settings(args: argparse.Namespace):
    """Read --settings and put its sampling settings into `args` (they replace the options)."""
    from pcdms.jobs.replay import read_settings

    if args.dataset or args.target_pose or args.source_pose:
        raise UserError("--settings brings its own poses: give it with --source only (no --dataset, --target-pose, --source-pose)")
    settings = read_settings(args.settings)
    if settings.model != "demo" and Path(args.model).resolve() == DEMO_MODEL.resolve():
        raise UserError(f"{args.settings} was made with model '{settings.model}': pass that model folder with --model")
    args.stages, args.steps, args.guidance = settings.stages, settings.steps, settings.guidance
    args.seed, args.num_samples = settings.seed, settings.num_samples
    if settings.refine_strength is not None:
        args.refine_strength = settings.refine_strength
    return settings


def _generate_one(args: argparse.Namespace, out: Path, call: dict, stages: tuple[str, str], settings=None) -> int:
    import torch

    from pcdms.imageio import load_image, save_atomic
    from pcdms.visualize import PROCESS_FRAMES, StepLog, image_grid, process_figure, process_steps

    source = load_image(args.source)  # every input is read before the model loads: a bad one fails fast
    if settings is not None:
        from pcdms.jobs.replay import check_source

        check_source(settings, source, f"--source '{args.source}'")
        target_pose, source_pose = settings.target_pose, settings.source_pose
        name = args.name or f"{Path(args.source).stem}_to_{Path(args.settings).stem}"
    else:
        if not args.target_pose:
            raise UserError("--target-pose is required with --source")
        target_pose = load_pose(args.target_pose, "--target-pose")
        if args.source_pose:
            source_pose = load_pose(args.source_pose, "--source-pose")
        else:  # before the model loads, and the error names the file
            from pcdms.pose.extract import extract_pose

            source_pose = extract_pose(source, f"--source '{args.source}'")
        name = args.name or f"{Path(args.source).stem}_to_{Path(args.target_pose).stem}"
    from pcdms.summary import files_fit

    mode, pipe = start(args, out)
    rows = [("source", args.source), ("images", files_fit([Path(args.source)], (pipe.width, pipe.height), pipe.stretch))]
    announce("generate", pipe, [("model", args.model), *rows, stages], out, args.batch_size, mode)
    steps = StepLog()
    result = pipe(source, target_pose, source_pose, num_samples=args.num_samples, return_process=args.process,
                  process_frames=PROCESS_FRAMES, callback=steps if args.process else None,
                  generator=torch.Generator().manual_seed(args.seed), **call)
    labels = process_steps(steps, args.steps or pipe.sample.num_inference_steps)
    from PIL import Image

    # drawn no larger than the source photo (read at <= 2048 px): a pose file's canvas may be far larger
    scale = min(1.0, max(source.size) / max(target_pose.height, target_pose.width))
    shown = target_pose.resized(max(1, round(target_pose.height * scale)), max(1, round(target_pose.width * scale)))
    pose_render = Image.fromarray(shown.render())
    rows = [[source, pose_render, coarse, final] for coarse, final in zip(result.coarse_images, result.images)]
    for k, (coarse, final) in enumerate(zip(result.coarse_images, result.images)):
        suffix = f"_sample{k}" if args.num_samples > 1 else ""
        save_atomic(final, out / f"{name}{suffix}.png")
        save_atomic(coarse, out / f"{name}{suffix}_coarse.png")
        if result.process:
            process = process_figure(result.process[k], pipe.width, labels)
            save_atomic(process, out / f"{name}{suffix}_process.png")
    save_atomic(image_grid(rows, ["source", "target pose", "coarse", "final"], cell=source.size), out / f"{name}_grid.png")
    print(f"wrote {out / name}.png and {out / name}_grid.png")
    return 0


def refine_source_lookup(data: SplitData) -> Callable[[Path], ImageEntry]:
    """`path -> ImageEntry`: the dataset image that an image to refine names as its `<from>`.

    data: the `SplitData` of --dataset/--split. The name is read by `pcdms.names.split_output_stem` with the
    split's images as the known sources and targets, so `look_to_left_to_b.png` finds `look_to_left.png` as
    `pcdms evaluate` and the training dataset pair it. Raises UserError naming the file when it cannot.
    """
    from pcdms.names import image_stem, split_output_stem

    by_stem = {image_stem(name): entry for name, entry in data.images.items()}
    where = f"{data.root} split '{data.split}'"

    def source_entry(path: Path) -> ImageEntry:
        name = split_output_stem(path.name, sources=by_stem, targets=by_stem)
        if name is None:
            raise UserError(f"{path.name}: not named <from>_to_<to>.png, so its source photo in {where} is unknown "
                            "(give --source IMG for images named otherwise)")
        if name.source not in by_stem:
            raise UserError(f"{path.name}: source '{name.source}' is not an image of {where}")
        return by_stem[name.source]

    return source_entry


def run_refine(args: argparse.Namespace) -> int:
    from pcdms.jobs.generate import refine_items, run_items
    from pcdms.imageio import is_image_file, load_image

    out = prepare_output_dir(args.out)
    check_model_folder(args.model)
    # `--images a.png sample.key=value`: argparse gives the override to --images (nargs="+"); take it back
    overrides = [item for item in args.images if re.match(r"^sample\.\w+=", item)]
    args.images = [item for item in args.images if item not in overrides]
    args.overrides = [*args.overrides, *overrides]
    files: list[Path] = []
    for item in args.images:
        path = Path(item)
        if path.is_dir():
            files += [p for p in sorted(path.iterdir()) if p.is_file() and is_image_file(p)]
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"--images: '{item}' is neither an image nor a folder")
    if not files:
        raise UserError("--images: no image files found")
    if bool(args.source) == bool(args.dataset):
        raise UserError("give the source photo(s) with either --source IMG or --dataset ROOT")
    if args.source:
        source = load_image(args.source)

        def source_for(path: Path):
            return source
    else:
        from pcdms.data.dataset import load_person_image
        from pcdms.data.formats import load_split

        source_entry = refine_source_lookup(load_split(args.dataset, args.split))

        def source_for(path: Path):
            entry = source_entry(path)
            return load_person_image(entry, *(entry.frame or load_image(entry.path).size[::-1]))

    mode, pipe = start(args, out)
    from pcdms.summary import files_fit

    sources = f"--source {args.source}" if args.source else f"<from> of each name in {args.dataset} split '{args.split}'"
    rows = [("images", f"{len(files)} to refine; {files_fit(files, (pipe.width, pipe.height), pipe.stretch)}"),
            ("sources", sources)]
    announce("refine", pipe, [("model", args.model), *rows], out, args.batch_size, mode)
    job = refine_items(pipe, files, out, source_for, args.seed,
                       num_inference_steps=args.steps, guidance_scale=args.guidance)
    report = run_items(job, "refine", progress=mode, batch_size=args.batch_size)
    print(report.summary())
    return 1 if report.failed else 0
