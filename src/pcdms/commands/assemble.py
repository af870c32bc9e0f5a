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
Stage files are hard-linked (copied across file systems), each stage's settings come from its folder
and are checked against the config's encoders. Random-weight encoders (pretrained_path: null) are
saved inside the folder, so it is self-contained; pretrained encoders stay referenced by their paths
in config.yaml. A stage already inside OUT (OUT/prior, ...) need not be named again.""",
    )
    parser.add_argument("--inpaint", default=None, help="stage-2 model folder (required unless OUT/inpaint exists)")
    parser.add_argument("--prior", default=None, help="stage-1 model folder (optional: B1/B3 without it)")
    parser.add_argument("--refine", default=None, help="stage-3 model folder (optional)")
    parser.add_argument("--out", required=True, help="the model folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace stage folders already in OUT")
    add_config_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    if dry_run(args, cfg):
        return 0
    from pcdms.config import load_config
    from pcdms.models.folder import assemble_model, save_random_encoders
    from pcdms.progress import choose_mode, quiet_library_bars

    quiet_library_bars(choose_mode())  # transformers' "Writing model shards" bar only in a terminal

    stages = {"prior": args.prior, "inpaint": args.inpaint, "refine": args.refine}
    out = assemble_model(args.out, cfg, stages, overwrite=args.overwrite)
    saved = save_random_encoders(load_config(str(out / "config.yaml")), out)
    present = [s for s in stages if (out / s / "config.json").is_file()]
    extra = f" and random-weight encoders {', '.join(saved)}" if saved else ""
    print(f"wrote {out}: config.yaml, {', '.join(s + '/' for s in present)}{extra}\n"
          f"run it with: pcdms generate --model {out} --source PHOTO --target-pose POSE --out OUTDIR")
    return 0
