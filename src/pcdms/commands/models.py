"""`pcdms models check DIR`: are the pretrained and converted model folders present, complete and usable?"""

from __future__ import annotations

import argparse

from pcdms.commands.common import add_config_args, dry_run, resolve_config


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="check the local model folders (base models, converted stages)")
    commands = parser.add_subparsers(dest="models_command", metavar="<subcommand>")
    check = commands.add_parser(
        "check", help="which components are present, complete and usable",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Check the model folder DIR (what $PCDMS_MODEL_DIR points to) for the base models of --config
(default authors-512): SD-2.1-base unet/vae/scheduler, DINOv2-giant, OpenCLIP ViT-H/14 (CLIP vision),
the Kandinsky-2.2 prior, and any converted PCDMs stage folders (pcdms convert). For each: present,
complete (config + every weight file, none truncated), usable (builds on the meta device and the
weight files hold every tensor; --load really loads it), fits (widths the config expects), and
what to do about it. Exits 1 when a component required --for inference (default) or training is
not ready.
  pcdms models check models/
  pcdms models check models/ --for training --config deepfashion-256""",
    )
    check.add_argument("dir", metavar="DIR", help="the model folder (${PCDMS_MODEL_DIR} in the presets' paths)")
    check.add_argument("--for", dest="purpose", choices=("inference", "training"), default="inference",
                       help="which components are required (training adds the SD UNet and the Kandinsky prior)")
    check.add_argument("--load", action="store_true",
                       help="really load each model with from_pretrained (slow, needs memory) instead of on meta")
    add_config_args(check, default="authors-512")
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    if dry_run(args, cfg):
        return 0
    from pcdms.models.check import check_models, exit_code, format_report

    rows = check_models(args.dir, cfg, args.purpose, load=args.load)
    print(format_report(rows, args.dir, args.config, args.purpose))
    return exit_code(rows)
