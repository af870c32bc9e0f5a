"""Inference cost per image: seconds per stage and network evaluations per image.

    python benchmarks/inference_speed.py [--model DIR] [--steps 20] [--images 4] [--batch 1] [--device cpu|cuda]
        [--precision fp32|fp16|bf16] [--preset NAME key=value ...]

With --model (default: the shipped demo model) the trained folder is timed; with --preset the stages are
built from a config with random weights (e.g. `--preset deepfashion-256 inpaint.unet.pretrained_path=null ...`
on a GPU for paper-scale figures). Counts every call of each stage's per-step network (the UNet, or the
prior's output projection: `sampling_calls.step_network`), so batched classifier-free guidance shows as one
call per step per stage; --steps defaults to the model's own `sample.num_inference_steps`.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch


def build(args: argparse.Namespace):
    from pcdms.sampling.pipeline import PCDMsPipeline

    dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[args.precision]
    if args.preset is None:
        return PCDMsPipeline.from_pretrained(args.model, device=args.device, dtype=dtype)
    from pcdms.config import load_config
    from pcdms.models.encoders import build_encoders
    from pcdms.models.inpaint import InpaintModel
    from pcdms.models.prior import PriorModel
    from pcdms.models.refine import RefineModel

    cfg = load_config(args.preset, args.overrides)
    stages = [m(getattr(cfg, n)).to(args.device, dtype) for m, n in
              ((PriorModel, "prior"), (InpaintModel, "inpaint"), (RefineModel, "refine"))]
    return PCDMsPipeline(build_encoders(cfg.encoders).to(args.device, dtype), stages[1], stages[0], stages[2],
                         cfg.data.height, cfg.data.width, cfg.sample)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(Path(__file__).resolve().parents[1] / "src/pcdms/assets/demo/model"))
    parser.add_argument("--preset", default=None)
    parser.add_argument("--steps", type=int, default=None, help="steps per stage (default: the model's own)")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1,
                        help="pairs per pipeline pass (PCDMsPipeline.batch, as generate --batch-size)")
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    from PIL import Image

    from pcdms.pose import Pose
    from sampling_calls import NetworkClock, step_network

    pipe = build(args)
    args.steps = args.steps or pipe.sample.num_inference_steps
    clocks = {name: NetworkClock([step_network(getattr(pipe, name))]) for name in ("prior", "inpaint", "refine")}
    seconds: dict[str, float] = defaultdict(float)
    for name in clocks:
        model = getattr(pipe, name)
        original = model.sample

        def timed(*a, _n=name, _f=original, **k):
            sync()
            tic = time.perf_counter()
            out = _f(*a, **k)
            sync()
            seconds[_n] += time.perf_counter() - tic
            return out

        model.sample = timed

    def sync() -> None:
        if str(args.device).startswith("cuda"):
            torch.cuda.synchronize()

    rng = np.random.default_rng(0)
    source = Image.fromarray(rng.integers(0, 255, (pipe.height, pipe.width, 3), dtype=np.uint8))
    pose = Pose.from_normalized(rng.uniform(0.1, 0.9, (18, 2)), pipe.height, pipe.width)
    pipe(source, pose, pose, num_inference_steps=2)  # warm-up
    seconds.clear()
    for clock in clocks.values():
        clock.reset()
    if str(args.device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    sync()
    tic = time.perf_counter()
    batches = max(1, args.images // args.batch)
    for _ in range(batches):
        pipe.batch([source] * args.batch, [pose] * args.batch, [pose] * args.batch, num_inference_steps=args.steps,
                   guidance_scale=args.guidance)
    sync()
    total = time.perf_counter() - tic
    n = batches * args.batch
    print(f"{n} images at {pipe.height}x{pipe.width}, {args.batch} per pass, {args.steps} steps per stage, "
          f"guidance {args.guidance}, {args.device} {args.precision}")
    print(f"{'stage':8s} {'s/image':>9s} {'network calls/image':>20s}   (a call covers every image of a pass)")
    for name in ("prior", "inpaint", "refine"):
        print(f"{name:8s} {seconds[name] / n:9.3f} {clocks[name].calls / n:20.1f}")
    print(f"{'total':8s} {total / n:9.3f} {sum(c.calls for c in clocks.values()) / n:20.1f}   "
          "(includes encoders and decoding)")
    if str(args.device).startswith("cuda"):
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
