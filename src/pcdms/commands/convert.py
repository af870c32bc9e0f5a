"""`pcdms convert`: the authors' released checkpoints -> pcdms stage folders -> a PCDMs model folder (issue 8)."""

from __future__ import annotations

import argparse

from pcdms.commands.common import add_config_args, dry_run, resolve_config
from pcdms.config import STAGE_NAMES



def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert the authors' released PCDMs checkpoints into pcdms stage folders",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Convert one of the authors' DeepSpeed stage files (mp_rank_00_model_states.pt, weights under
`module`) into a stage folder (config.json + model.safetensors + conversion.json):
  pcdms convert --from-authors ckpt/stage2/512/mp_rank_00_model_states.pt --stage inpaint --out models/pcdms-authors/inpaint
then put the stages and the run config together into a folder `pcdms generate --model` reads:
  pcdms assemble --config authors-512 --prior P --inpaint I --refine R --out models/pcdms-authors

The authors' simplified stage-2-only model (pcdms_ckpt.pt, their demo notebook's) is recognised
and converted straight into a model folder (config.yaml + inpaint/), sampled as the notebook does
(DDIM, 50 steps, guidance 2):
  pcdms convert --from-authors pcdms_ckpt.pt --out models/pcdms-simplified
  pcdms generate --model models/pcdms-simplified --source me.jpg --target-pose pose.json --out out/

The file is read with torch.load(weights_only=True): it cannot run code. The architecture is read
from the tensor shapes (widths, channels, layers, block types, token and embedding sizes); what
shapes cannot show (attention heads, norm groups) comes from --config (default authors-512, or
authors-simplified for the simplified model), and the report names those values. Every tensor is
checked; missing or unexpected keys and shape mismatches are errors that name the keys. A file
holding another stage's weights than --stage is refused (the authors' 256 stage-2 release holds
stage-1 weights). Converted models sample with the authors' own loops (sample.recipe: authors).""",
    )
    parser.add_argument("--from-authors", metavar="FILE", required=True,
                        help="the authors' checkpoint file (or its folder), or any .pt/.safetensors in their key layout")
    parser.add_argument("--stage", choices=STAGE_NAMES, default=None,
                        help="the stage the file must hold (default: whatever it holds, detected from its keys)")
    parser.add_argument("--out", required=True, help="the stage folder to write (a model folder for the simplified model)")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                        help="saved weight precision (default float32: exact for the authors' fp16 files)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing stage folder")
    add_config_args(parser, default=None)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.dry_run:
        args.config = args.config or "authors-512"
        dry_run(args, resolve_config(args))
        return 0
    import torch

    from pcdms.models.convert import convert_authors_checkpoint, is_simplified, read_checkpoint

    ckpt = read_checkpoint(args.from_authors)
    if args.config is None:
        args.config = "authors-simplified" if is_simplified(ckpt.state) else "authors-512"
    cfg = resolve_config(args)
    report = convert_authors_checkpoint(ckpt, args.stage, cfg, args.out,
                                        dtype=getattr(torch, args.dtype), overwrite=args.overwrite)
    print(report.summary())
    if report.stage == "simplified":
        print(f"run it with: pcdms generate --model {args.out} --source PHOTO --target-pose POSE --out OUTDIR")
    return 0
