"""Training speed per stage: steps/s, images/s, data wait, peak memory, FLOPs per step and MFU.

    python benchmarks/train_speed.py --preset tiny --steps 20                       # CPU, tiny networks
    python benchmarks/train_speed.py --preset deepfashion-512 --steps 30            # GPU, paper scale
    python benchmarks/train_speed.py --preset demo --photos ../shared/samples/deepfashion --photo-size 256x176

Each stage runs in its own process (so peak memory is that stage's alone) through the real training loop
(`pcdms.training.loop.train`) with random weights (every `pretrained_path` null: nothing is downloaded), on a
synthetic dataset, or with --photos on a dataset made of the photos in a folder (each kept at its own size,
or resized to --photo-size; a fixed standing pose each). Figures come from the loop's own progress records
(`<run>/logs/progress.jsonl`, one per step), after the first --warmup steps:

- steps/s and images/s (pairs per second per process: batch x gradient accumulation x steps/s);
- data wait: the share of each step's time spent waiting for the data loader (`pcdms.progress`);
- peak memory: `torch.cuda.max_memory_allocated` on a GPU, the peak resident set on the CPU;
- FLOPs per optimiser step, counted by `torch.utils.flop_counter.FlopCounterMode` on one real forward and
  backward of the stage's training loss: the trained network's (forward + backward) and, separately, the
  frozen encoders' (DINOv2, CLIP, VAE: forward only);
- MFU: the trained network's achieved FLOP/s over the device's peak. The peak comes from `PEAK_TFLOPS` by
  `torch.cuda.get_device_name()` and the run's precision (bf16/fp16 dense tensor-core peak, or fp32), or from
  --peak-tflops; on a CPU without --peak-tflops it is n/a.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Dense (no sparsity) peak TFLOP/s per GPU from the vendors' datasheets: (name substring, bf16/fp16 tensor
# cores with fp32 accumulation, fp32). First match wins, so the specific names come first.
PEAK_TFLOPS = [
    ("H200", 989.4, 66.9),
    ("H100 PCIe", 756.0, 51.2),
    ("H100 NVL", 835.0, 60.0),
    ("H100", 989.4, 66.9),  # SXM
    ("A100", 312.0, 19.5),
    ("A6000", 154.8, 38.7),  # RTX A6000
    ("V100", 125.0, 15.7),  # fp16 only (no bf16)
    ("4090", 165.2, 82.6),
    ("3090", 71.0, 35.6),
]
HALF = ("bf16", "fp16")


def peak_tflops(device_name: str, mixed_precision: str) -> float | None:
    """The table's peak for this GPU name and precision ('no', 'bf16', 'fp16'), None when not listed."""
    for name, half, full in PEAK_TFLOPS:
        if name.lower() in device_name.lower():
            return half if mixed_precision in HALF else full
    return None


# A standing person, COCO-18 order, (x, y) as fractions of the frame (nose, neck, right arm, left arm,
# right leg, left leg, eyes, ears).
STANDING = [(0.50, 0.12), (0.50, 0.20), (0.38, 0.21), (0.34, 0.36), (0.32, 0.50), (0.62, 0.21), (0.66, 0.36),
            (0.68, 0.50), (0.43, 0.50), (0.42, 0.70), (0.42, 0.90), (0.57, 0.50), (0.58, 0.70), (0.58, 0.90),
            (0.48, 0.10), (0.52, 0.10), (0.46, 0.11), (0.54, 0.11)]


def photo_dataset(photos: Path, root: Path, size: tuple[int, int] | None) -> None:
    """A PATN dataset in `root` of the photos in `photos` (every ordered pair), each at its own size or resized
    to size (height, width); every photo gets the standing pose, shifted a little per photo."""
    import numpy as np
    from PIL import Image

    from pcdms.data.formats import PairRecord, write_patn
    from pcdms.imageio import is_image_file, load_image
    from pcdms.pose import Pose

    files = sorted(p for p in photos.iterdir() if is_image_file(p) and p.name.startswith("img"))
    (root / "train").mkdir(parents=True, exist_ok=True)
    poses = {}
    for number, path in enumerate(files):
        name = f"{path.stem}.png"
        if size is None:
            (root / "train" / name).symlink_to(path.resolve())
            width, height = Image.open(path).size
        else:
            height, width = size
            load_image(path).resize((width, height), Image.Resampling.BICUBIC).save(root / "train" / name)
        shift = np.array([0.02 * (number % 3 - 1), 0.01 * (number % 2)], dtype=np.float32)
        poses[name] = Pose.from_normalized(np.array(STANDING, dtype=np.float32) + shift, height, width)
    pairs = [PairRecord(a, b) for a in poses for b in poses if a != b]
    write_patn(root, "train", pairs, poses)


def fake_coarse(root: str) -> str:
    """Stage 3 trains on stage-2 images; for timing, each pair's target stands in (speed ignores content)."""
    import shutil

    from pcdms.data.formats import load_split
    from pcdms.names import output_stem

    data = load_split(root, "train")
    coarse = Path(root) / "coarse"
    coarse.mkdir(exist_ok=True)
    for pair in data.pairs:
        shutil.copy(data.images[pair.target].path, coarse / f"{output_stem(pair.source, pair.target)}.png")
    return str(coarse)


def count_flops(stage: str, cfg, device: str) -> tuple[int, int]:
    """(trained network, frozen encoders) FLOPs of one optimiser step: one forward and backward of the
    stage's training loss on a real batch of the run's size, times the gradient accumulation steps."""
    import torch
    from torch.utils.data import default_collate
    from torch.utils.flop_counter import FlopCounterMode

    from pcdms.data.dataset import PairDataset
    from pcdms.models.encoders import build_encoders
    from pcdms.training.loop import stage_class

    data, tc = cfg.data, cfg.train
    dataset = PairDataset(data.root, data.train_split, data.height, data.width,
                          coarse_dir=data.coarse_dir if stage == "refine" else None)
    batch = default_collate([dataset[i % len(dataset)] for i in range(tc.batch_size)])
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    model = stage_class(stage)(getattr(cfg, stage)).to(device)
    encoders = build_encoders(cfg.encoders, stage_class(stage).encoder_roles).to(device)  # as training does
    frozen_names = {type(m).__name__ for m in encoders.present()}
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(tc.mixed_precision)
    with FlopCounterMode(display=False) as counter:
        with torch.autocast(torch.device(device).type, dtype=half or torch.float32, enabled=half is not None):
            loss = model.training_loss(batch, encoders, torch.Generator(device).manual_seed(0))
        loss.backward()
    frozen = sum(sum(ops.values()) for name, ops in counter.get_flop_counts().items() if name in frozen_names)
    total = counter.get_total_flops()
    return (total - frozen) * tc.gradient_accumulation_steps, frozen * tc.gradient_accumulation_steps


def step_figures(records: list[dict], warmup: int) -> dict:
    """steps/s, data-wait share and peak memory from the loop's per-step progress records."""
    windows = [(b["elapsed_s"] - a["elapsed_s"], b.get("data_wait_share", 0.0))
               for a, b in zip(records, records[1:])][max(warmup - 1, 0):]
    seconds = sum(w for w, _ in windows)
    waited = sum(w * share for w, share in windows)
    return {"steps_per_s": len(windows) / seconds if seconds > 0 else math.nan,
            "data_wait_share": waited / seconds if seconds > 0 else math.nan,
            "peak_memory_bytes": records[-1].get("peak_memory_bytes", math.nan)}


def _child(stage: str, args: argparse.Namespace) -> None:
    import torch

    from pcdms.config import load_config
    from pcdms.models.blocks import without_pretrained_paths
    from pcdms.training.loop import train

    cfg = without_pretrained_paths(load_config(args.preset, [
        f"data.root={args.root}", f"train.max_steps={args.steps}", "train.checkpoint_every=1000000",
        "train.sample_every=0", "train.log_every=1", *args.overrides]))
    with tempfile.TemporaryDirectory() as out:
        train(stage, cfg, out, progress="lines")  # lines: the records below are written in every mode but off
        log = Path(out) / "logs" / "progress.jsonl"
        records = [json.loads(line) for line in log.read_text().splitlines()]
    row = step_figures(records, args.warmup)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.cuda.empty_cache()  # the run's own tensors are gone; count on a clean allocator
    row["train_flops_per_step"], row["encoder_flops_per_step"] = count_flops(stage, cfg, device)
    device_name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    peak = args.peak_tflops or (peak_tflops(device_name, cfg.train.mixed_precision) if device == "cuda" else None)
    achieved = row["train_flops_per_step"] * row["steps_per_s"]
    images = cfg.train.batch_size * cfg.train.gradient_accumulation_steps
    row.update(stage=stage, device=device_name, precision=cfg.train.mixed_precision, batch_size=images,
               images_per_s=row["steps_per_s"] * images, achieved_tflops=achieved / 1e12,
               peak_tflops=peak, mfu=achieved / (peak * 1e12) if peak else None,
               image=[cfg.data.height, cfg.data.width])
    print(json.dumps(row))


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


def _print_row(row: dict) -> None:
    print(f"{row['stage']:8s} {_fmt(row['steps_per_s'], '9.3f')} {_fmt(row['images_per_s'], '9.2f')} "
          f"{_fmt(100 * row['data_wait_share'], '8.0f')}% {_fmt(row['peak_memory_bytes'] / 2**20, '9.0f')} "
          f"{_fmt(row['train_flops_per_step'] / 1e9, '12.2f')} {_fmt(row['encoder_flops_per_step'] / 1e9, '12.2f')} "
          f"{_fmt(row['achieved_tflops'], '9.4f')} "
          f"{'n/a' if row['mfu'] is None else format(100 * row['mfu'], '.2f') + '%':>7s}  {row['device']}")


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 256x176, got '{text}'") from None
    if height < 8 or width < 8:
        raise argparse.ArgumentTypeError(f"expected a size of at least 8x8, got '{text}'")
    return height, width


def _positive(kind: type):
    def parse(text: str):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a number > 0, got '{text}'")
        return value

    return parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", help="config preset or YAML file (default tiny)")
    parser.add_argument("--steps", type=_positive(int), default=20, help="optimiser steps per stage (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the figures (default 2)")
    parser.add_argument("--stages", nargs="+", default=["prior", "inpaint", "refine"],
                        choices=["prior", "inpaint", "refine"])
    parser.add_argument("--photos", type=Path, help="train on these photos (img*.png ...) instead of synthetic people")
    parser.add_argument("--photo-size", type=_size, help="resize --photos to HEIGHTxWIDTH first (e.g. 256x176)")
    parser.add_argument("--peak-tflops", type=_positive(float), help="the device's peak TFLOP/s for MFU")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = parser.parse_args()
    if args.steps <= args.warmup + 1:
        parser.error(f"--steps must exceed --warmup + 1 ({args.warmup + 1}) to leave steps to time")
    if args.child:
        _child(args.child, args)
        return
    from pcdms.config import load_config
    from pcdms.data.synth import generate

    cfg = load_config(args.preset, args.overrides)
    rows = []
    with tempfile.TemporaryDirectory() as root:
        if args.photos:
            photo_dataset(args.photos, Path(root), args.photo_size)
            what = f"photos of {args.photos} at {'x'.join(map(str, args.photo_size)) if args.photo_size else 'their size'}"
        else:
            generate(root, train_identities=4, test_identities=1, poses_per_identity=4,
                     height=max(cfg.data.height, 32), width=max(cfg.data.width, 24), seed=0)
            what = "synthetic people"
        coarse = fake_coarse(root)
        print(f"preset {args.preset}: image {cfg.data.height}x{cfg.data.width}, batch {cfg.train.batch_size}, "
              f"{args.steps} steps per stage ({args.warmup} warm-up), {what}")
        print(f"{'stage':8s} {'steps/s':>9s} {'images/s':>9s} {'data wait':>9s} {'peak MiB':>9s} "
              f"{'train GFLOP':>12s} {'enc. GFLOP':>12s} {'TFLOP/s':>9s} {'MFU':>7s}  device")
        for stage in args.stages:
            cmd = [sys.executable, __file__, "--preset", args.preset, "--steps", str(args.steps), "--warmup",
                   str(args.warmup), "--child", stage, "--root", root, *args.overrides,
                   f"data.coarse_dir={coarse}"]
            if args.peak_tflops:
                cmd += ["--peak-tflops", str(args.peak_tflops)]
            result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
            if result.returncode != 0 or not lines:
                print(f"{stage:8s} failed: {result.stderr.strip().splitlines()[-1] if result.stderr else '?'}")
                continue
            rows.append(json.loads(lines[-1]))
            _print_row(rows[-1])
    print("per step: GFLOP of the trained network (forward + backward) and of the frozen encoders (forward); "
          "MFU: the trained network's FLOP/s over the device's peak")
    if args.json:
        args.json.write_text(json.dumps({"preset": args.preset, "rows": rows}, indent=1))
    if len(rows) < len(args.stages):
        sys.exit(1)


if __name__ == "__main__":
    main()
