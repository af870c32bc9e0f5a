"""`pcdms export-coarse`: stage-2 images for the training pairs, the data stage 3 trains on (REFERENCE.md Sec. 1)."""

from __future__ import annotations

import argparse

from pcdms.commands.common import add_config_args, add_run_args, announce, dry_run, reporting_mode, resolve_config
from pcdms.validation import at_least, check_weight_files, prepare_output_dir, resolve_device


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export-coarse",
        help="run stage 2 over the training pairs (ground-truth CLIP embeddings) for stage-3 training",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Run the trained inpainting model (stage 2) over every pair of a split, feeding it the target's
ground-truth CLIP embedding as the authors do, and write <from>_to_<to>.png per pair. Stage 3
then trains on them:  pcdms train --stage refine ... data.coarse_dir=<this --out>.
With --prior, stage 2 gets the prior's predicted embedding instead: coarse images made the way
generation makes them (what the shipped demo's refiner trains on).
Rerunning skips finished images; `accelerate launch -m pcdms.cli export-coarse ...` shares the
pairs across processes.""",
    )
    parser.add_argument("--inpaint", required=True, help="the stage-2 model folder (a training run's model/)")
    parser.add_argument("--prior", default=None,
                        help="a stage-1 model folder: feed stage 2 the prior's embedding, as generation does, "
                             "instead of the target's ground-truth CLIP embedding")
    parser.add_argument("--out", required=True, help="output folder for the coarse images")
    parser.add_argument("--split", default=None, help="dataset split (default: data.train_split)")
    parser.add_argument("--limit", type=at_least(1), default=None, help="only the first N pairs")
    add_run_args(parser)
    add_config_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    if dry_run(args, cfg):
        return 0
    from pcdms.config import save_config
    from pcdms.errors import UserError
    from pcdms.jobs.generate import dataset_items, run_items
    from pcdms.sampling.pipeline import PCDMsPipeline

    if cfg.data.root is None:
        raise UserError("data.root is not set: pass data.root=DIR")
    from pcdms.summary import split_rows

    out = prepare_output_dir(args.out)
    device = resolve_device(args.device)
    save_config(cfg, out)
    check_weight_files(args.inpaint, "--inpaint")
    if args.prior is not None:
        check_weight_files(args.prior, "--prior")
    mode = reporting_mode(args.no_progress)
    pipe = PCDMsPipeline.from_stages(cfg, inpaint=args.inpaint, prior=args.prior, device=device)
    split = args.split or cfg.data.train_split
    fed = ("the prior's embedding (" + args.prior + ")" if args.prior is not None
           else "each target's ground-truth CLIP embedding")
    rows = [("inpaint", f"{args.inpaint}, fed {fed}"),
            *split_rows(cfg.data.root, split, args.limit, (pipe.width, pipe.height), pipe.stretch, cfg.data.format)]
    announce(f"export-coarse {split}", pipe, rows, out, args.batch_size, mode)
    job = dataset_items(pipe, cfg.data.root, split, out, seed=cfg.sample.seed, limit=args.limit,
                        ground_truth_embeds=args.prior is None,
                        stages=("inpaint",) if args.prior is None else ("prior", "inpaint"))
    report = run_items(job, f"export-coarse {split}", progress=mode, batch_size=args.batch_size)
    print(report.summary())
    return 1 if report.failed else 0
