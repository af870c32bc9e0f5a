"""`pcdms assemble`: put trained stages together into one model folder that `pcdms generate` and
`PCDMsPipeline.from_pretrained` read (config.yaml, prior/, inpaint/, refine/, encoders/ when random-weight)."""

from __future__ import annotations

import argparse

from pcdms.commands.common import add_config_args, dry_run, resolve_config


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "assemble",
        help="combine trained stage folders into one PCDMs model folder",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Combine the stages of separate training runs (each run's model/ folder) and the encoders of the
config into one folder for `pcdms generate --model DIR`:
  pcdms assemble --config demo --prior runs/prior/model --inpaint runs/inpaint/model \\
                 --refine runs/refine/model --out my-model
Random-weight encoders (pretrained_path: null) are saved inside the folder, so it is self-contained;
pretrained encoders stay referenced by their paths in config.yaml.""",
    )
    parser.add_argument("--inpaint", required=True, help="stage-2 model folder (required)")
    parser.add_argument("--prior", default=None, help="stage-1 model folder (optional: B1/B3 without it)")
    parser.add_argument("--refine", default=None, help="stage-3 model folder (optional)")
    parser.add_argument("--out", required=True, help="the model folder to write")
    add_config_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    if dry_run(args, cfg):
        return 0
    from pcdms.pipeline import PCDMsPipeline

    pipe = PCDMsPipeline.from_stages(cfg, inpaint=args.inpaint, prior=args.prior, refine=args.refine)
    out = pipe.save_pretrained(args.out, cfg)
    print(f"wrote {out}")
    return 0
