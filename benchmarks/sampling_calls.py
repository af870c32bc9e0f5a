"""Time one sampling call per stage, and how much of it is spent inside the networks (issue 19).

    python benchmarks/sampling_calls.py                 # authors-tiny, tiny and demo, 20 steps, guidance 2
    python benchmarks/sampling_calls.py --presets authors-tiny --repeat 7 --threads 1 --json out.json

`authors-tiny` is the architecture of the authors' tiny reference checkpoints (`shared/authors_reference`:
SD-style UNets of widths 32/64, the paper's 16/32/96/256 pose embedding on a 128 x 256 canvas, 5 DINOv2
tokens of width 48); `tiny` and `demo` are this project's presets.

For each stage it reports the wall time of one `stage.sample(...)` call (the minimum over --repeat runs),
the time inside the stage's networks (forward hooks on each top-level network module: UNet, pose embedding,
token projection, the prior's transformer blocks and projections) and the share outside them (scheduler
steps, concatenations, casts, callbacks), plus the number of network calls. Random weights of the preset's
real classes; batch 1; float32; CPU. Uses only the stages' public `sample` API, so the same script times
older versions of the code (run it with PYTHONPATH pointing at another checkout to compare).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator

import torch
from torch import nn

from pcdms.config import load_config
from pcdms.models import InpaintModel, PriorModel, RefineModel
from pcdms.models.blocks import without_pretrained_paths


def network_modules(stage: nn.Module) -> Iterator[nn.Module]:
    """The modules a stage calls directly (a ModuleList's members, since a list itself is never called)."""
    for child in stage.children():
        if isinstance(child, nn.ModuleList):
            yield from child
        else:
            yield child


def step_network(stage: nn.Module) -> nn.Module:
    """The module called once per sampling step (and per `denoise`): a stage's UNet, or the prior's output
    projection (its transformer blocks sit in a ModuleList and are called once per block)."""
    return stage.unet if hasattr(stage, "unet") else stage.proj_to_clip_embeddings


class NetworkClock:
    """Sums the time spent inside the given modules' forward calls (they never nest in one another)."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.seconds, self.calls, self._start = 0.0, 0, 0.0
        self.handles = [h for m in modules for h in (m.register_forward_pre_hook(self._enter),
                                                      m.register_forward_hook(self._leave))]

    def _enter(self, *_: object) -> None:
        self._start = time.perf_counter()

    def _leave(self, *_: object) -> None:
        self.seconds += time.perf_counter() - self._start
        self.calls += 1

    def reset(self) -> None:
        self.seconds, self.calls = 0.0, 0


TINY_UNET = ["unet.block_out_channels=[32,64]", "unet.layers_per_block=1", "unet.attention_head_dim=[8,8]",
             "unet.down_block_types=[CrossAttnDownBlock2D,DownBlock2D]", "unet.cross_attention_dim=32",
             "unet.up_block_types=[UpBlock2D,CrossAttnUpBlock2D]", "unet.norm_num_groups=8",
             "image_token_dim=48", "token_hidden_dim=24"]
# The authors' tiny reference checkpoints, one stage config each (their stage 1 has 1024-d embeddings, their
# stages 2 and 3 32-d ones, so no single run config holds all three).
AUTHORS_TINY = {"prior": ["prior.width=16", "prior.num_heads=2", "prior.num_layers=2"],
                "inpaint": [f"inpaint.{o}" for o in TINY_UNET] + ["inpaint.global_embed_dim=32"],
                "refine": [f"refine.{o}" for o in TINY_UNET]}
AUTHORS_TINY_SHAPES = {"height": 128, "width": 128, "downsample": 8, "latent_channels": 4, "tokens": 5,
                       "token_dim": 48}


def stage_setup(preset: str, name: str) -> tuple[object, dict[str, int]]:
    """The stage config and the input sizes of a preset (or of the authors' tiny checkpoints)."""
    if preset == "authors-tiny":
        from pcdms import configio
        from pcdms.config import RunConfig

        raw = configio.apply_overrides(RunConfig, {}, AUTHORS_TINY[name] + ["sample.scheduler=unipc"])
        stage = configio.from_dict(type(getattr(load_config("authors-512"), name)), raw.get(name, {}), prefix=name)
        return stage, {**AUTHORS_TINY_SHAPES, "embed_dim": getattr(stage, "embed_dim", 1024)}
    cfg = load_config(preset)
    ae, dino = cfg.encoders.autoencoder, cfg.encoders.dino
    return getattr(cfg, name), {"height": cfg.data.height, "width": cfg.data.width, "downsample": ae.downsample,
                                "latent_channels": ae.latent_channels, "embed_dim": cfg.prior.embed_dim,
                                "tokens": (dino.image_size // dino.patch_size) ** 2 + 1, "token_dim": dino.hidden_size}


def stage_inputs(name: str, stage_cfg: object, size: dict[str, int],
                 generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Conditions of batch 1 at the preset's image size (random values of the right shapes)."""
    r = lambda *shape: torch.randn(*shape, generator=generator)  # noqa: E731
    h, w, c = size["height"], size["width"], size["latent_channels"]
    lh, lw = h // size["downsample"], w // size["downsample"]
    tokens = r(1, size["tokens"], size["token_dim"])
    if name == "prior":
        return {"source_embeds": r(1, size["embed_dim"]), "source_keypoints": torch.rand(1, 18, 2, generator=generator),
                "target_keypoints": torch.rand(1, 18, 2, generator=generator)}
    if name == "inpaint":
        return {"masked_latents": r(1, c, lh, 2 * lw), "pose_canvas": torch.rand(1, 3, h, 2 * w, generator=generator),
                "image_tokens": tokens, "global_embeds": r(1, stage_cfg.global_embed_dim)}
    return {"coarse_latents": r(1, c, lh, lw), "image_tokens": tokens}


def time_stage(preset: str, name: str, scheduler: str, steps: int, repeat: int) -> dict[str, float]:
    cls = {"prior": PriorModel, "inpaint": InpaintModel, "refine": RefineModel}[name]
    stage_cfg, size = stage_setup(preset, name)
    torch.manual_seed(0)
    model = cls(without_pretrained_paths(stage_cfg)).eval()
    inputs = stage_inputs(name, stage_cfg, size, torch.Generator().manual_seed(1))
    clock = NetworkClock(list(network_modules(model)))
    runs = []
    for attempt in range(repeat + 1):  # the first run warms up and is not kept
        clock.reset()
        start = time.perf_counter()
        model.sample(**inputs, guidance_scale=2.0, num_inference_steps=steps, scheduler=scheduler,
                     generator=torch.Generator().manual_seed(2))
        total = time.perf_counter() - start
        if attempt:
            runs.append({"call_ms": 1000 * total, "network_ms": 1000 * clock.seconds, "module_calls": clock.calls})
    best = min(runs, key=lambda run: run["call_ms"])
    best["outside_share"] = 1 - best["network_ms"] / best["call_ms"]
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["authors-tiny", "tiny", "demo"])
    parser.add_argument("--scheduler", default="unipc", help="the sampler of every stage (default unipc, the authors')")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per stage; the minimum is reported")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = {}
    print(f"{'preset':8} {'stage':8} {'call ms':>9} {'network ms':>11} {'outside':>8} {'module calls':>13}")
    for preset in args.presets:
        for name in ("prior", "inpaint", "refine"):
            row = time_stage(preset, name, args.scheduler, args.steps, args.repeat)
            report[f"{preset}/{name}"] = row
            print(f"{preset:8} {name:8} {row['call_ms']:9.1f} {row['network_ms']:11.1f} "
                  f"{100 * row['outside_share']:7.1f}% {row['module_calls']:13d}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"steps": args.steps, "threads": args.threads, "batch": 1, "guidance": 2.0,
                       "scheduler": args.scheduler, "stages": report},
                      f, indent=2)


if __name__ == "__main__":
    main()
