"""`pcdms data check` and `pcdms data synth`: validate a dataset root; write a synthetic one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pcdms.commands.common import add_progress_arg
from pcdms.validation import FRAME_SIDE, SEED_ARG, int_in, prepare_output_dir

MAX_IDENTITIES = 100_000  # synthetic people per split: far beyond any use, short of filling a disk by a typo
MAX_POSES = 1000

FORMAT_HELP = """dataset layouts (detected from the files in ROOT):
  patn     <prefix>-pairs-<split>.csv (header from,to) and <prefix>-annotation-<split>.csv
           (':'-separated name:keypoints_y:keypoints_x[:height:width], 18 integers each, -1 = missing;
           frame 256x176, or 128x64 for a market- prefix, unless height/width columns say otherwise);
           images in <split>/
  gfla     <split>_pairs.txt (comma lines; field 0 = TARGET, the other fields its sources);
           pose/<name without img/>.txt (18 lines 'x y' in the 256x256 frame, 40 px bars, -1 = missing)
  authors  <split>_data.json (list of {source_image, target_image});
           normalized_pose_txt/<stem>.txt (18 lines 'x y' as fractions of the image, -1 = missing)"""


SYNTH_STYLES = """styles (--style):
  classic   the people the shipped demo model trained on: tee/long/tank/jacket tops, trousers/shorts/
            skirts, seven patterns at one scale, a palette of neutrals and mid-saturation colours.
  wardrobe  a second generator for validation (issue #31): same poses, views, crops and backdrop, but
            other bodies (shoulder/hip/waist widths, limb thickness, head size, torso and leg lengths,
            stature), other cuts and patterns, colours uniform over the whole RGB cube, a flatter drawing.
            Each identity wears one outfit family:
              dress       one cloth from neck to knee or ankle, sleeveless or short sleeves
              coat        a long coat (long sleeves, hem below the knees, open over a top) over trousers
              jumpsuit    one cloth, long sleeves and full-length legs
              sleeveless  a sleeveless top over trousers or a knee skirt
              shorts      a short-sleeve top and shorts
              suit        a long-sleeve top and trousers
              skirt       a short-sleeve top and a mini or knee skirt
            Patterns (each at a fine, medium or large scale, up to three colours): solid, stripes,
            pinstripes, checks, dots, diagonal, gingham, bands, diamonds.

held-out outfits (--held-out, wardrobe only):
  Names of families and/or patterns (comma-separated) that no training identity wears on any garment.
  Every test identity's family is drawn from the held-out families (when any are named) and its main
  garment's pattern from the held-out patterns (when any are named), so a model scores on test only by
  carrying the source's clothes, not by remembering training outfits. synth-identities.json records
  the style, the held-out names and each identity's outfit (family, patterns, scale, colours).
  Example: pcdms data synth --out data/wardrobe --style wardrobe --held-out coat,dress,checks,dots"""


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="check a dataset root, or write a synthetic dataset",
        description="Dataset tools. Run `pcdms data <subcommand> --help`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=FORMAT_HELP,
    )
    sub = parser.add_subparsers(dest="data_command", metavar="<subcommand>")
    parser.set_defaults(func=lambda args: _usage(parser))

    check = sub.add_parser(
        "check",
        help="validate a dataset root and list every problem with file and line",
        description=(
            "Read every split of ROOT and list EVERY problem, one per line as FILE:WHERE: message:\n"
            "malformed rows, keypoints outside their frame, pairs naming an image without keypoints,\n"
            "missing or unreadable images. Exit status 0 when clean, 1 when anything is wrong."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=FORMAT_HELP,
    )
    check.add_argument("root", metavar="ROOT", help="dataset root folder")
    check.add_argument("--split", action="append", metavar="NAME", help="check only this split (repeatable)")
    check.add_argument("--format", default="auto", choices=["auto", "patn", "gfla", "authors"])
    check.add_argument("--no-decode", action="store_true", help="skip decoding images (only check they exist)")
    add_progress_arg(check, "images")
    check.set_defaults(func=run_check)

    synth = sub.add_parser(
        "synth",
        help="write a synthetic people dataset (PATN layout)",
        description=(
            "Draw synthetic people and write them as a PATN dataset: train/ and test/ images, "
            "synth-annotation-<split>.csv (keypoints in the image frame, with height and width columns), "
            "synth-pairs-<split>.csv (every ordered pair of one identity's images), <split>.lst and "
            "synth-identities.json. Each identity keeps its body, hair and outfit (colours, pattern) in "
            "every image; poses, views (front, back, three-quarter), scale and crops vary. Test identities "
            "are disjoint from training. The same --seed writes the same dataset."
        ),
        epilog=SYNTH_STYLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    synth.add_argument("--out", required=True, metavar="DIR", help="output folder (new, empty, or an older synth dataset)")
    synth.add_argument("--train-ids", type=int_in(0, MAX_IDENTITIES), default=24, metavar="N",
                       help=f"training identities (default 24, at most {MAX_IDENTITIES:,})")
    synth.add_argument("--test-ids", type=int_in(0, MAX_IDENTITIES), default=8, metavar="N",
                       help=f"test identities (default 8, at most {MAX_IDENTITIES:,})")
    synth.add_argument("--poses", type=int_in(2, MAX_POSES), default=6, metavar="N",
                       help=f"images per identity (default 6, at most {MAX_POSES})")
    synth.add_argument("--height", type=int_in(32, FRAME_SIDE.high), default=256,
                       help=f"image height in pixels (default 256, at most {FRAME_SIDE.high})")
    synth.add_argument("--width", type=int_in(24, FRAME_SIDE.high), default=176,
                       help=f"image width in pixels (default 176, at most {FRAME_SIDE.high})")
    synth.add_argument("--seed", type=SEED_ARG, default=0)
    synth.add_argument("--style", choices=["classic", "wardrobe"], default="classic",
                       help="which people to draw: classic (default; what the demo model trained on) or wardrobe "
                            "(other bodies, cuts and patterns: a validation set; see below)")
    synth.add_argument("--held-out", type=_names, default=(), metavar="NAME[,NAME...]",
                       help="wardrobe only: outfit families and/or patterns that only TEST identities wear "
                            "(training identities never do), e.g. --held-out coat,dress,checks")
    synth.add_argument(
        "--preview", nargs="?", const="", default=None, metavar="PNG",
        help="also write a contact sheet with keypoints drawn (default path DIR/preview.png)",
    )  # fmt: skip
    add_progress_arg(synth, "images")
    synth.set_defaults(func=run_synth)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def run_check(args: argparse.Namespace) -> int:
    from pcdms.data.check import check_dataset
    from pcdms.progress import choose_mode

    result = check_dataset(args.root, args.split, args.format, decode_images=not args.no_decode,
                           progress=choose_mode(args.no_progress))
    for problem in result.problems:
        print(problem)
    if result.ok:
        print(f"ok: {result.summary()}")
        return 0
    print(f"{len(result.problems)} problem(s) in {result.summary()}", file=sys.stderr)
    return 1


def run_synth(args: argparse.Namespace) -> int:
    from pcdms.data.synth import contact_sheet, generate
    from pcdms.progress import choose_mode

    prepare_output_dir(args.out)
    summary = generate(args.out, args.train_ids, args.test_ids, args.poses, args.height, args.width, args.seed,
                       progress=choose_mode(args.no_progress), style=args.style, held_out=args.held_out)
    for split in summary.images:
        print(f"{split}: {summary.images[split]} images of {len(summary.identities[split])} identities, "
              f"{summary.pairs[split]} pairs")  # fmt: skip
    if args.preview is not None:
        split = "train" if summary.images.get("train") else "test"  # --train-ids 0: a held-out set alone
        path = contact_sheet(args.out, args.preview or Path(args.out) / "preview.png", split)
        print(f"preview: {path}")
    print(f"dataset: {summary.root}")
    return 0
