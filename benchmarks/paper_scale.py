"""Paper-scale inference: seconds per image, network calls, peak memory and time outside the networks (issue 16).

    python benchmarks/paper_scale.py --preset deepfashion-512 --device cuda            # every configuration
    python benchmarks/paper_scale.py --preset authors-512 --device cuda --configs bf16 bf16+compile
    python benchmarks/paper_scale.py --smoke                                            # CPU, tiny sizes (a test runs it)

Builds the preset's networks with random weights from the real classes (every `pretrained_path` null: the
SD-2.1-base UNets, DINOv2-giant, OpenCLIP ViT-H/14, the 20-block prior, the SD VAE), then runs the full
three-stage pipeline (`PCDMsPipeline.batch`) on random images and poses at batch 1 and batch 8 for each
configuration: precision (fp32, fp16, bf16), attention (`sdpa`, diffusers' default, or `+classic` attention),
`+compile` and `+channels_last` (`pcdms.sampling.fastpaths`). Reports per stage and in total: seconds per image, network
calls per image, the share of time outside the networks, peak memory, and the largest difference (grey levels)
of the images from the fp32 configuration's. Writes a JSON report beside the printed table (--json).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from dataclasses import replace

import numpy as np
import torch
from PIL import Image

from pcdms.config import load_config
from pcdms.models.encoders import build_encoders
from pcdms.sampling.fastpaths import apply_fast_paths
from pcdms.models import InpaintModel, PriorModel, RefineModel
from pcdms.models.blocks import without_pretrained_paths
from pcdms.sampling.pipeline import PCDMsPipeline
from pcdms.pose import Pose
from sampling_calls import NetworkClock, network_modules, step_network

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
ALL_CONFIGS = ["fp32", "fp32+classic", "fp16", "bf16", "bf16+channels_last", "bf16+compile",
               "bf16+compile+channels_last"]
SMOKE_CONFIGS = ["fp32", "fp32+classic", "bf16", "fp32+channels_last"]


def build(preset: str, overrides: list[str], device: str, config: str) -> PCDMsPipeline:
    """The pipeline of `preset` with random weights, in the precision and fast paths `config` names."""
    cfg = without_pretrained_paths(load_config(preset, overrides))
    parts = config.split("+")
    dtype = DTYPES[parts[0]]
    torch.manual_seed(0)
    with torch.device(device):
        stages = InpaintModel(cfg.inpaint), PriorModel(cfg.prior), RefineModel(cfg.refine)
    stages = [s.to(dtype=dtype).eval() for s in stages]
    sample = replace(cfg.sample, compile="compile" in parts, channels_last="channels_last" in parts)
    pipe = PCDMsPipeline(build_encoders(cfg.encoders).to(device, dtype), *stages, cfg.data.height, cfg.data.width,
                         sample, cfg.data.fit)
    apply_fast_paths(pipe, sample, dtype if dtype != torch.float32 else None)
    if "classic" in parts:
        from diffusers.models.attention_processor import AttnProcessor

        for stage in (pipe.inpaint, pipe.refine):
            stage.unet.set_attn_processor(AttnProcessor())
    return pipe


def inputs(pipe: PCDMsPipeline, count: int) -> tuple[list[Image.Image], list[Pose]]:
    rng = np.random.default_rng(0)
    h, w = pipe.height, pipe.width
    images = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for _ in range(count)]
    poses = [Pose.from_pixels(rng.uniform([8, 8], [w - 8, h - 8], size=(18, 2)).astype(np.float32), h, w)
             for _ in range(count)]
    return images, poses


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (KB -> MB)


def run(pipe: PCDMsPipeline, batch: int, steps: int, device: str) -> tuple[dict, list[np.ndarray]]:
    """One timed pass over `batch` pairs (after one warm-up pass, which also compiles)."""
    images, poses = inputs(pipe, batch)
    clocks = {name: NetworkClock(list(network_modules(getattr(pipe, name)))) for name in ("prior", "inpaint", "refine")}
    evaluations = NetworkClock([step_network(getattr(pipe, name)) for name in clocks])  # one per step and stage
    stage_seconds = {name: 0.0 for name in clocks}
    for name in clocks:  # wrap each stage's sampler to time it
        stage = getattr(pipe, name)
        original = stage.sample

        def timed(*args, _name=name, _original=original, **kwargs):
            sync(device)
            start = time.perf_counter()
            out = _original(*args, **kwargs)
            sync(device)
            stage_seconds[_name] += time.perf_counter() - start
            return out

        stage.sample = timed
    call = lambda: pipe.batch(images, poses, poses, num_inference_steps=steps,  # noqa: E731
                              generators=[torch.Generator().manual_seed(i) for i in range(batch)])
    call()
    for clock in (*clocks.values(), evaluations):
        clock.reset()
    stage_seconds.update({name: 0.0 for name in stage_seconds})
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    start = time.perf_counter()
    outputs = call()
    sync(device)
    total = time.perf_counter() - start
    row = {"seconds_per_image": total / batch, "peak_memory_mb": peak_memory_mb(device),
           "network_calls_per_image": evaluations.calls / batch,
           "outside_networks_share": 1 - sum(c.seconds for c in clocks.values()) / total}
    for name, clock in clocks.items():
        row[f"{name}_seconds_per_image"] = stage_seconds[name] / batch
        row[f"{name}_outside_share"] = 1 - clock.seconds / max(stage_seconds[name], 1e-9)
    return row, [np.asarray(o.images[0], np.int16) for o in outputs]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="deepfashion-512", help="deepfashion-512, deepfashion-256, authors-512")
    parser.add_argument("--smoke", action="store_true", help="CPU smoke run: the tiny preset, 2 steps, batch 1 and 2")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--configs", nargs="+", default=None, help=f"default: {' '.join(ALL_CONFIGS)}")
    parser.add_argument("--batches", nargs="+", type=int, default=None, help="default: 1 8 (smoke: 1 2)")
    parser.add_argument("--steps", type=int, default=None, help="steps per stage (default 20; smoke 2)")
    parser.add_argument("--json", default=None, help="write the report here too")
    parser.add_argument("overrides", nargs="*", help="config overrides, key=value")
    args = parser.parse_args()
    preset = "tiny" if args.smoke else args.preset
    configs = args.configs or (SMOKE_CONFIGS if args.smoke else ALL_CONFIGS)
    batches = args.batches or ([1, 2] if args.smoke else [1, 8])
    steps = args.steps or (2 if args.smoke else 20)
    machine = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads)"
    report = {"preset": preset, "device": machine, "steps": steps, "guidance": 2.0, "rows": []}
    print(f"{preset} on {machine}, {steps} steps per stage, guidance 2")
    print(f"{'config':28} {'batch':>5} {'s/image':>8} {'prior':>7} {'inpaint':>8} {'refine':>7} {'calls':>6} "
          f"{'outside':>8} {'peak MB':>8} {'vs fp32':>7}")
    for batch in batches:
        reference = None
        for config in configs:
            row, images = run(build(preset, args.overrides, args.device, config), batch, steps, args.device)
            if reference is None and config.startswith("fp32") and "+" not in config:
                reference = images
            row["max_grey_levels_vs_fp32"] = (None if reference is None else
                                              max(int(np.abs(a - b).max()) for a, b in zip(images, reference)))
            report["rows"].append({"config": config, "batch": batch, **row})
            print(f"{config:28} {batch:5d} {row['seconds_per_image']:8.3f} {row['prior_seconds_per_image']:7.3f} "
                  f"{row['inpaint_seconds_per_image']:8.3f} {row['refine_seconds_per_image']:7.3f} "
                  f"{row['network_calls_per_image']:6.0f} {100 * row['outside_networks_share']:7.1f}% "
                  f"{row['peak_memory_mb']:8.0f} {str(row['max_grey_levels_vs_fp32']):>7}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
