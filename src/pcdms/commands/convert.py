"""`pcdms convert`: the authors' released checkpoints -> pcdms stage folders -> a PCDMs model folder (issue 8)."""

from __future__ import annotations

import argparse

from pcdms.commands.common import add_config_args, dry_run, resolve_config

STAGES = ("prior", "inpaint", "refine")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert the authors' released PCDMs checkpoints into pcdms stage folders",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Convert one of the authors' DeepSpeed stage files (mp_rank_00_model_states.pt, weights under
`module`) into a stage folder (config.json + model.safetensors + conversion.json):
  pcdms convert --from-authors ckpt/stage2/512/mp_rank_00_model_states.pt --stage inpaint --out models/pcdms-authors/inpaint
The file is read with torch.load(weights_only=True): it cannot run code. Every tensor is checked
against the architecture of --config (default authors-512); missing or unexpected keys and shape
mismatches are errors that name the keys. A file holding another stage's weights is refused
(the authors' 256 stage-2 release holds stage-1 weights).

Then put the stages and the run config together into a folder `pcdms generate --model` reads:
  pcdms assemble --config authors-512 --prior P --inpaint I --refine R --out models/pcdms-authors""",
    )
    parser.add_argument("--from-authors", metavar="FILE", required=True,
                        help="the authors' checkpoint file (or its folder), or any .pt/.safetensors in their key layout")
    parser.add_argument("--stage", choices=STAGES, required=True, help="which stage the file holds")
    parser.add_argument("--out", required=True, help="the stage folder to write")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                        help="saved weight precision (default float32: exact for the authors' fp16 files)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing stage folder")
    add_config_args(parser, default="authors-512")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    if dry_run(args, cfg):
        return 0
    import torch

    from pcdms.convert import convert_authors_checkpoint

    report = convert_authors_checkpoint(args.from_authors, args.stage, cfg, args.out,
                                        dtype=getattr(torch, args.dtype), overwrite=args.overwrite)
    print(report.summary())
    return 0
