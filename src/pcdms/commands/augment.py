"""`pcdms augment`: a Market-1501 training set cut to a fraction and augmented with PCDMs images (Sec. 4.3)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pcdms.commands.common import add_inference_args
from pcdms.errors import UserError
from pcdms.validation import at_least, float_in, prepare_output_dir

DESCRIPTION = """\
Re-ID data augmentation as in the paper's Table 2 (the protocol of PIDM):

  pcdms augment --data market1501/ --fraction 0.2 --model models/market --out market-20-aug/

1. Keep --fraction of the images of DATA/bounding_box_train (names PPPP_cCsS_FFFFFF_NN.jpg), every
   person at least one: one image per person is drawn first, then the rest in one seeded order, so
   max(people, round(fraction x images)) are kept and, for one --seed, a smaller fraction's images are
   all inside a larger one's.
2. For each kept image, generate the same person in --per-image target poses (default 1: the kept set
   doubles) drawn, seeded and without repeats, from kept images of OTHER people: other people's poses
   give each person poses and views their own photos lack, and only kept images are used, so nothing
   of the dropped images leaks in (--pose-fraction F draws them from the images kept at F only). Keypoints come from --annotation (a PATN market-annotation csv;
   default DATA/market-annotation-train.csv when present); images it does not list are given to the
   pose extractor (MediaPipe). Images without a usable pose are kept but generate nothing.
3. Write OUT as a Market-1501 root: OUT/bounding_box_train holds the kept real images and the
   generated ones (JPEG), named PPPP_cCs9_NNNNNN_KK.jpg: the source's person id and camera (so
   torchreid's `([-\\d]+)_c(\\d)` reads the right person and a valid camera 1-6), sequence s9 (Market's own
   are s1-s6) marking them generated, the source's place in the sorted training folder and the draw
   index. Each image's pose and noise are seeded from --seed and that name. OUT/query and
   OUT/bounding_box_test are copied from DATA (--no-test-copy leaves them out). OUT/generated holds the
   lossless PNGs, OUT/augment.json the settings, the kept images and each generated image's source and
   target pose.

Rerunning the same command resumes: finished images are kept, only missing ones are made. A different
--fraction/--per-image/--seed/--model/--steps in the same OUT is refused.
The default --model is the shipped demo model (synthetic people): real Market photos need a model trained
on Market (the market-128 preset)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "augment", help="keep a fraction of a Market-1501 training set and add PCDMs images of its people (re-ID)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, metavar="ROOT", help="a Market-1501 root holding bounding_box_train/")
    parser.add_argument("--fraction", type=float_in(0, 1, low_open=True), default=1.0,
                        help="share of the training images kept, in (0, 1] (default 1: all)")
    parser.add_argument("--per-image", type=at_least(1), default=1, metavar="K",
                        help="generated images per kept image, each in another person's pose (default 1)")
    parser.add_argument("--pose-fraction", type=float_in(0, 1, low_open=True), default=None, metavar="F",
                        help="take target poses only from the images kept at fraction F <= --fraction (default: "
                             "--fraction, every kept image)")
    parser.add_argument("--annotation", metavar="CSV",
                        help="PATN keypoints csv (default: ROOT/market-annotation-train.csv when present)")
    parser.add_argument("--no-test-copy", action="store_true", help="do not copy query/ and bounding_box_test/")
    parser.add_argument("--dry-run", action="store_true",
                        help="print how many images would be kept and generated; write nothing, load no PCDMs model")
    add_inference_args(parser, "images")
    parser.set_defaults(func=run_augment)


def run_augment(args: argparse.Namespace) -> int:
    from pcdms.jobs.augment import AugmentSettings, augment, check_fraction, make_plan, open_output
    from pcdms.commands.common import announce, start
    from pcdms.data.market import GALLERY_DIR, QUERY_DIR, TRAIN_DIR
    from pcdms.validation import check_model_folder

    data = Path(args.data).expanduser()
    if not data.is_dir():
        raise UserError(f"--data: no folder {data}")
    out = Path(args.out).expanduser()
    inside = [data.resolve() / folder for folder in (TRAIN_DIR, QUERY_DIR, GALLERY_DIR)]
    resolved = out.resolve()
    if resolved == data.resolve() or any(resolved == folder or folder in resolved.parents for folder in inside):
        raise UserError(f"--out {out}: write the augmented set to a folder of its own, not into --data")
    check_fraction(args.fraction)
    settings = AugmentSettings(str(data.resolve()), args.fraction, args.per_image, args.seed,
                               str(Path(args.model).resolve()), args.steps, args.guidance, args.refine_strength,
                               tuple(args.overrides), args.pose_fraction)
    annotation = Path(args.annotation).expanduser() if args.annotation else None
    if not args.dry_run:
        check_model_folder(args.model)  # before poses are read or extracted: a wrong --model fails fast
    plan, images = make_plan(data, settings, annotation)
    summary = (f"{len(plan.kept)} of the training images kept, {len(plan.synthetic)} to generate "
               f"({len(plan.no_pose)} kept image(s) without a usable pose generate nothing)")
    if args.dry_run:
        print(summary)
        return 0
    out = prepare_output_dir(out)
    open_output(out, settings, plan)
    mode, pipe = start(args, out)
    announce("augment", pipe, [("data", str(data)), ("plan", summary)], out, args.batch_size, mode)
    report, published = augment(pipe, plan, images, out, settings, not args.no_test_copy, args.batch_size, mode)
    print(report.summary())
    print(f"{published} generated image(s) added to {out / 'bounding_box_train'}; record: {out / 'augment.json'}")
    return 1 if report.failed else 0
