"""Training speed and peak memory per stage: `python benchmarks/train_speed.py [--preset tiny] [--steps 20]`.

Each stage runs in its own process (so peak memory is that stage's alone) on a synthetic dataset, through
the real training loop (`pcdms.training.train`). Prints steps/s (after the first, warm-up steps) and peak
memory: resident set size on the CPU, `torch.cuda.max_memory_allocated` on a GPU. Paper-scale presets
need a GPU and their local model folders (or `...pretrained_path=null` overrides for random weights).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _child(stage: str, preset: str, steps: int, root: str, overrides: list[str]) -> None:
    import resource

    import torch

    from pcdms.config import load_config
    from pcdms.training import train

    cfg = load_config(preset, [f"data.root={root}", f"train.max_steps={steps}", "train.checkpoint_every=1000000",
                               "train.sample_every=0", *overrides])
    times: list[float] = []

    import pcdms.training as training

    original = training._LossStep.forward

    def timed(self, batch, generator):
        times.append(time.perf_counter())
        return original(self, batch, generator)

    training._LossStep.forward = timed
    with tempfile.TemporaryDirectory() as out:
        train(stage, cfg, out, progress=False)
    warm = times[2:] if len(times) > 4 else times
    rate = (len(warm) - 1) / (warm[-1] - warm[0]) if len(warm) > 1 else float("nan")
    peak = (torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps({"stage": stage, "steps_per_s": rate, "peak_mib": peak,
                      "device": "cuda" if torch.cuda.is_available() else "cpu",
                      "batch_size": cfg.train.batch_size, "image": [cfg.data.height, cfg.data.width]}))


def _fake_coarse(root: str) -> str:
    """Stage 3 trains on stage-2 images; for timing, each pair's target stands in (speed ignores content)."""
    import shutil

    from pcdms.data.formats import load_split
    from pcdms.generate import output_stem

    data = load_split(root, "train")
    coarse = Path(root) / "coarse"
    coarse.mkdir(exist_ok=True)
    for pair in data.pairs:
        shutil.copy(data.images[pair.target].path, coarse / f"{output_stem(pair.source, pair.target)}.png")
    return str(coarse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--stages", nargs="+", default=["prior", "inpaint", "refine"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.preset, args.steps, args.root, args.overrides)
        return
    from pcdms.config import load_config
    from pcdms.data.synth import generate

    cfg = load_config(args.preset, args.overrides)
    with tempfile.TemporaryDirectory() as root:
        generate(root, train_identities=4, test_identities=1, poses_per_identity=4,
                 height=max(cfg.data.height, 32), width=max(cfg.data.width, 24), seed=0)
        coarse = _fake_coarse(root)
        print(f"preset {args.preset}: image {cfg.data.height}x{cfg.data.width}, batch {cfg.train.batch_size}, "
              f"{args.steps} steps per stage")
        print(f"{'stage':8s} {'steps/s':>9s} {'peak MiB':>9s} device")
        for stage in args.stages:
            cmd = [sys.executable, __file__, "--preset", args.preset, "--steps", str(args.steps), "--child", stage,
                   "--root", root, *args.overrides, f"data.coarse_dir={coarse}"]
            result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
            if result.returncode != 0 or not lines:
                print(f"{stage:8s} failed: {result.stderr.strip().splitlines()[-1] if result.stderr else '?'}")
                continue
            row = json.loads(lines[-1])
            print(f"{stage:8s} {row['steps_per_s']:9.2f} {row['peak_mib']:9.0f} {row['device']}")


if __name__ == "__main__":
    main()
