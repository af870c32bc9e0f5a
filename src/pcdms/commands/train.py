"""`pcdms train`: train one PCDMs stage with the one accelerate loop (`pcdms.training.loop`)."""

from __future__ import annotations

import argparse

from pcdms.commands.common import add_config_args, dry_run, resolve_config
from pcdms.config import STAGE_NAMES
from pcdms.validation import prepare_output_dir



def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train one stage (prior, inpaint or refine); resumable, multi-GPU through `accelerate launch`",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Train one PCDMs stage on a dataset (data.root) with AdamW, gradient accumulation and clipping,
mixed precision, EMA weights and a warm-up-then-constant learning rate.

Writes into --out (default: train.output_dir/<config name>-<stage>):
  config.yaml             the resolved config
  checkpoint-<step>/      full training state (written atomically; the newest train.keep_checkpoints kept)
  model/                  final weights (EMA when train.ema_decay > 0), loadable with from_pretrained
  logs/                   TensorBoard logs (tensorboard --logdir <out>/logs) and progress.jsonl
  samples/step-<step>.png preview grids every train.sample_every steps

Progress: a bar in a terminal; with --no-progress, or when output goes to a file or pipe, one
line every train.log_every steps or minute: step, loss, learning rate, steps/s, share of time
waiting for data, peak memory, elapsed time and ETA. Under accelerate only the main process prints.

Stage 3 (refine) trains on stage-2 outputs for the training pairs: make them with `pcdms export-coarse`.

Examples:
  pcdms train --stage inpaint --config tiny data.root=data/synth train.max_steps=500
  pcdms train --stage inpaint --config tiny data.root=data/synth --resume
  accelerate launch --num_processes 8 -m pcdms.cli train --stage inpaint --config deepfashion-256 data.root=...
""",
    )
    parser.add_argument("--stage", required=True, choices=STAGE_NAMES, help="which stage to train")
    add_config_args(parser)
    parser.add_argument("--out", default=None, help="run folder (default: train.output_dir/<name>-<stage>)")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the newest complete checkpoint in the run folder"
    )
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar: a plain line every train.log_every steps or minute instead (what a "
                             "log file gets anyway when output is not a terminal)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    if dry_run(args, cfg):
        return 0
    from pcdms.progress import choose_mode
    from pcdms.training.loop import default_run_dir, train

    prepare_output_dir(args.out or default_run_dir(cfg, args.stage), "--out" if args.out else "train.output_dir")
    result = train(args.stage, cfg, run_dir=args.out, resume=args.resume, progress=choose_mode(args.no_progress))
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return 0
    import math

    # nan: no step ran (resumed at train.max_steps), so there is no loss to show
    loss = f"loss {result.last_loss:.4f}" if math.isfinite(result.last_loss) else "no steps left to run"
    print(f"trained {args.stage} to step {result.final_step} ({loss}); weights in {result.final_model_dir}")
    return 0
