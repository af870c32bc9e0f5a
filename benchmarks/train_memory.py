"""Training memory per stage, with and without gradient checkpointing (issue 16).

    python benchmarks/train_memory.py --preset deepfashion-512                       # CPU: forward + backward
    python benchmarks/train_memory.py --preset deepfashion-512 --device cuda --optimizer
    python benchmarks/train_memory.py --preset tiny                                  # seconds (a test runs it)

Each (stage, checkpointing) runs in its own process, so one run's memory cannot hide in another's. The process
builds the stage's trained network and the frozen encoders with random weights from the real classes (every
`pretrained_path` null: nothing is downloaded), takes one training batch of --batch pairs at the preset's image
size (synthetic people, through `PairDataset` as training reads them), and measures, phase by phase:

- resident: memory held once everything is built (trained network, the frozen encoders its loss runs, as
  training loads them, and the runtime);
- forward: the peak above resident during the stage's training loss with autograd on (the encoders run under
  no_grad inside it; the activations kept for the backward pass are what checkpointing saves);
- backward: the peak above resident during `loss.backward()` (activations + gradients);
- optimizer: with --optimizer, the peak above resident during one `torch.optim.AdamW` step (its two fp32 states
  per trained parameter come into being here), as training runs it.

On a GPU the figures are `torch.cuda` allocator peaks (reset between phases); on a CPU they are the process's
resident set (`VmRSS`) and its high-water mark (`VmHWM`, reset between phases through /proc/self/clear_refs),
so they include the allocator's and the runtime's own overheads. The trained network's precision follows
--precision (autocast, as `train.mixed_precision` does). EMA weights (one more fp32 copy of the trained network
on the main process) and the data loader are not counted.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

MIB = 2**20


# ------------------------------------------------------------------ memory probes (one per device kind)
def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"/proc/self/status has no {field}: CPU memory is measured on Linux only")


def reset_peak(device: str) -> None:
    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS


def current_mib(device: str) -> float:
    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.memory_allocated() / MIB
    _trim_heap()
    return _status_mib("VmRSS")


def _trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc `malloc_trim`), so what was freed while building (random
    encoders drawn and dropped) neither counts as resident nor hides the next phase's allocations."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name:
        libc = ctypes.CDLL(name)
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)


def peak_mib(device: str) -> float:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / MIB
    return _status_mib("VmHWM")


# ------------------------------------------------------------------ one (stage, checkpointing) run
def _child(args: argparse.Namespace) -> None:
    import torch
    from torch.utils.data import default_collate

    from pcdms.config import load_config
    from pcdms.data.dataset import PairDataset
    from pcdms.data.synth import generate
    from pcdms.models.encoders import build_encoders
    from pcdms.models.blocks import without_pretrained_paths
    from pcdms.training.loop import stage_class
    from train_speed import fake_coarse

    device, stage, checkpointing = args.device, args.child, args.checkpointing[0]
    cfg = without_pretrained_paths(load_config(args.preset, args.overrides))
    precision = args.precision or cfg.train.mixed_precision
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as root:
        generate(root, train_identities=1, test_identities=1, poses_per_identity=2,
                 height=max(cfg.data.height, 32), width=max(cfg.data.width, 24), seed=0)
        coarse = fake_coarse(root) if stage == "refine" else None
        dataset = PairDataset(root, "train", cfg.data.height, cfg.data.width, coarse_dir=coarse)
        batch = default_collate([dataset[i % len(dataset)] for i in range(args.batch)])
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    start = current_mib(device)
    model = stage_class(stage)(getattr(cfg, stage)).to(device).train()
    if checkpointing == "on":
        model.enable_gradient_checkpointing()
    encoders = build_encoders(cfg.encoders, stage_class(stage).encoder_roles).to(device)  # as training does
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for m in encoders.present() for p in m.parameters())
    resident = current_mib(device)
    row = {"stage": stage, "checkpointing": checkpointing, "batch": args.batch, "precision": precision,
           "image": [cfg.data.height, cfg.data.width], "trained_params_m": trained / 1e6,
           "frozen_params_m": frozen / 1e6, "built_mib": resident - start, "resident_mib": resident}

    reset_peak(device)
    with torch.autocast(torch.device(device).type, dtype=half or torch.float32, enabled=half is not None):
        loss = model.training_loss(batch, encoders, torch.Generator(device).manual_seed(0))
    row["forward_mib"] = peak_mib(device) - resident
    reset_peak(device)
    loss.backward()
    del loss
    row["backward_mib"] = peak_mib(device) - resident
    if args.optimizer:
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        reset_peak(device)
        optimizer.step()
        row["optimizer_mib"] = peak_mib(device) - resident
    row["peak_mib"] = resident + max(row["forward_mib"], row["backward_mib"], row.get("optimizer_mib", 0.0))
    row["device"] = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(json.dumps(row))


# ------------------------------------------------------------------ the table
def _print_row(row: dict) -> None:
    optimizer = f"{row['optimizer_mib']:10.0f}" if "optimizer_mib" in row else f"{'-':>10s}"
    print(f"{row['stage']:8s} {row['checkpointing']:>5s} {row['trained_params_m']:9.1f} {row['frozen_params_m']:9.1f} "
          f"{row['resident_mib']:10.0f} {row['forward_mib']:10.0f} {row['backward_mib']:10.0f} {optimizer} "
          f"{row['peak_mib']:10.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", help="config preset or YAML file (default tiny)")
    parser.add_argument("--stages", nargs="+", default=["prior", "inpaint", "refine"],
                        choices=["prior", "inpaint", "refine"])
    parser.add_argument("--checkpointing", nargs="+", default=["off", "on"], choices=["off", "on"],
                        help="gradient checkpointing settings to measure (default both)")
    parser.add_argument("--batch", type=int, default=1, help="pairs per batch (default 1)")
    parser.add_argument("--precision", choices=["no", "fp16", "bf16"],
                        help="autocast precision (default: the preset's train.mixed_precision)")
    parser.add_argument("--optimizer", action="store_true", help="also measure one AdamW step")
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error(f"--batch must be at least 1, got {args.batch}")
    if args.child:
        _child(args)
        return 0
    print(f"preset {args.preset}, batch {args.batch}, precision {args.precision or 'preset'}, device {args.device}; "
          "MiB (forward, backward, optimizer: peak above resident)")
    print(f"{'stage':8s} {'ckpt':>5s} {'trained M':>9s} {'frozen M':>9s} {'resident':>10s} {'forward':>10s} "
          f"{'backward':>10s} {'optimizer':>10s} {'peak':>10s}")
    rows, failed = [], []
    for stage in args.stages:
        for checkpointing in args.checkpointing:
            cmd = [sys.executable, __file__, "--preset", args.preset, "--child", stage, "--checkpointing",
                   checkpointing, "--batch", str(args.batch), "--device", args.device, *args.overrides]
            cmd += ["--precision", args.precision] if args.precision else []
            cmd += ["--optimizer"] if args.optimizer else []
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parent,
                                  env={**os.environ, "HF_HUB_OFFLINE": "1"})
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            if done.returncode != 0 or not lines:
                reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
                print(f"{stage:8s} {checkpointing:>5s} failed: {reason}")
                failed.append((stage, checkpointing))
                continue
            rows.append(json.loads(lines[-1]))
            _print_row(rows[-1])
    if rows:
        print(f"device: {rows[0]['device']}; trained/frozen: parameters in millions; image "
              f"{'x'.join(map(str, rows[0]['image']))}")
    if args.json:
        args.json.write_text(json.dumps({"preset": args.preset, "rows": rows}, indent=1))
    return 1 if failed else 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
