"""Quality against network calls per image: samplers, step counts and guidance intervals (issue 16).

    python benchmarks/quality_calls.py                      # the shipped demo model, synthetic test split
    python benchmarks/quality_calls.py --model DIR --data DATA --split test --out OUT --device cuda
    python benchmarks/quality_calls.py --smoke              # tiny random model, 4 pairs, steps 1 and 2: seconds

For every setting of the grid, --schedulers x --steps with guidance on every step, plus each of --intervals
(`sample.guidance_interval`) with the model's own scheduler at --interval-steps, and for each of --seeds, the
full pipeline runs over every pair of the split (`pcdms.jobs.generate.dataset_items` + `run_items`, as `pcdms
generate --dataset` does) and the outputs are scored as `pcdms evaluate` scores them
(`pcdms.metrics.evaluation.evaluate`; ssim_pidm and l1 per pair, fid_tf against the train/ folder beside the
split's images, real statistics cached under OUT/fid-cache). Reported per setting:

- calls/image: network calls in sequence to make one image (each stage's `denoise`, summed over stages; a
  guided step is one call on [uncond; cond]), i.e. calls per pipeline pass;
- rows/image: the compute, network rows per image (a guided step counts 2 rows, an unguided step 1);
- s/image: wall time of generation per image (encoders, decoding and image files included);
- ssim_pidm, l1, fid_tf: mean over the seeds, +- half the spread between seeds (the noise to read against).

The table marks each setting within noise of the default (the model's own scheduler and steps, guidance on
every step) or not, and names the cheapest setting within noise (`mark_within_noise`).
Schedulers that do not clip (unipc, dpm) run with `sample.latent_clip` off (the demo model's DDIM clips at 2).
Resumable: finished (setting, seed) runs are kept in OUT/results.json and skipped; generation itself skips
finished images. Writes OUT/results.json, OUT/quality_calls.md (the table, also printed) and
OUT/quality_calls.png (ssim_pidm and fid_tf against rows per image, one line per scheduler, interval
settings marked). --smoke skips fid_tf (one FID is a 2048 x 2048 matrix square root, 20-60 s on 2 cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEMO_MODEL = REPO / "src/pcdms/assets/demo/model"
CLIPPING = ("ddim", "ddpm")  # the schedulers `sample.latent_clip` works with
METRICS = ("ssim_pidm", "l1", "fid_tf")
STAGES = ("prior", "inpaint", "refine")
# The demo model's data: `pcdms data synth --train-ids 160 --test-ids 8 --poses 4 --height 64 --width 44 --seed 0`
DEMO_DATA = {"train_identities": 160, "test_identities": 8, "poses_per_identity": 4, "height": 64, "width": 44}
SMOKE_DATA = {"train_identities": 1, "test_identities": 2, "poses_per_identity": 2, "height": 64, "width": 48}


@dataclass(frozen=True)
class Setting:
    """One point of the sweep: a sampler, its steps per stage and where guidance is on."""

    scheduler: str
    steps: int
    interval: tuple[float, float] = (0.0, 1.0)

    @property
    def key(self) -> str:
        return f"{self.scheduler}-{self.steps}-g{self.interval[0]:g}-{self.interval[1]:g}"

    @property
    def limited(self) -> bool:
        return tuple(self.interval) != (0.0, 1.0)


def grid(schedulers: list[str], steps: list[int], intervals: list[tuple[float, float]], default_scheduler: str,
         interval_steps: int) -> list[Setting]:
    """Every scheduler at every step count with full guidance, then each interval at the default sampler."""
    settings = [Setting(s, n) for s in schedulers for n in steps]
    settings += [Setting(default_scheduler, interval_steps, interval) for interval in intervals]
    return list(dict.fromkeys(settings))  # an interval of (0, 1) is already in the grid


class NetworkCounter:
    """Counts each stage's network calls (`denoise`, the per-step network) and their rows, and the pipeline
    passes (`batch`), by wrapping those methods on the instances for as long as it is entered."""

    def __init__(self, pipe) -> None:
        self.pipe, self.calls, self.rows, self.passes = pipe, 0, 0, 0

    @contextmanager
    def counting(self) -> Iterator[NetworkCounter]:
        wrapped = [(model, "denoise") for model in (getattr(self.pipe, n) for n in STAGES) if model is not None]
        wrapped.append((self.pipe, "batch"))
        for owner, name in wrapped:
            setattr(owner, name, self._wrap(getattr(owner, name), name))
        try:
            yield self
        finally:
            for owner, name in wrapped:
                delattr(owner, name)  # the class's method shows through again

    def _wrap(self, method, name: str):
        def counted(*args, **kwargs):
            if name == "batch":
                self.passes += 1
            else:
                self.calls += 1
                self.rows += args[0].shape[0]
            return method(*args, **kwargs)
        return counted


def smoke_model(folder: Path) -> Path:
    """The tiny preset with random weights, saved as a model folder (what --model points at)."""
    from pcdms.config import load_config
    from pcdms.models.encoders import build_encoders
    from pcdms.models import InpaintModel, PriorModel, RefineModel
    from pcdms.sampling.pipeline import PCDMsPipeline

    if not (folder / "config.yaml").is_file():
        torch.manual_seed(0)
        cfg = load_config("tiny")
        pipe = PCDMsPipeline(build_encoders(cfg.encoders), InpaintModel(cfg.inpaint), PriorModel(cfg.prior),
                             RefineModel(cfg.refine), cfg.data.height, cfg.data.width, cfg.sample)
        pipe.save_pretrained(folder, cfg)
    return folder


def ensure_data(folder: Path, sizes: dict) -> Path:
    """A synthetic dataset at `folder` (written with seed 0 when absent, as `pcdms data synth` writes it)."""
    from pcdms.data.synth import generate as synth

    if not (folder / "synth-identities.json").is_file():
        print(f"writing the synthetic dataset {folder} ({sizes})", flush=True)
        synth(folder, seed=0, **sizes)
    return folder


def generate_run(pipe, base_sample, setting: Setting, data: Path, split: str, out: Path, seed: int,
                 batch_size: int, progress: str) -> dict:
    """Every pair of the split through the pipeline with `setting`: images in `out`, and what it cost."""
    from pcdms.errors import UserError
    from pcdms.jobs.generate import dataset_items, run_items

    clip = base_sample.latent_clip if setting.scheduler in CLIPPING else None
    pipe.sample = dataclasses.replace(base_sample, scheduler=setting.scheduler, num_inference_steps=setting.steps,
                                      guidance_interval=setting.interval, latent_clip=clip)
    out.mkdir(parents=True, exist_ok=True)
    counter = NetworkCounter(pipe)
    with counter.counting():
        start = time.perf_counter()
        report = run_items(dataset_items(pipe, data, split, out, seed=seed), f"{setting.key} seed {seed}",
                           progress=progress, batch_size=batch_size)
        seconds = time.perf_counter() - start
    if report.failed:
        raise UserError(f"{setting.key} seed {seed}: {len(report.failed)} pair(s) failed, e.g. {report.failed[0]}")
    made, cost_file = len(report.done), out / "cost.json"
    if made:  # per pass and per image figures do not depend on how many were made
        cost = {"calls_per_image": counter.calls / counter.passes, "rows_per_image": counter.rows / made,
                "seconds_per_image": seconds / made, "images_timed": made, "latent_clip": clip}
        cost_file.write_text(json.dumps(cost))
    elif cost_file.is_file():  # every image was already there: the interrupted run measured them
        cost = json.loads(cost_file.read_text())
    else:
        raise UserError(f"{out} holds images without their cost.json: delete the folder and rerun")
    return cost


def score_run(pred: Path, data: Path, split: str, size: str, cache: Path, device: str, fid: bool) -> dict:
    """ssim_pidm, l1 and fid_tf of the single-sample predictions, as `pcdms evaluate` computes them."""
    from pcdms.metrics.evaluation import EvaluateOptions, evaluate
    from pcdms.metrics.images import parse_size
    from pcdms.metrics.loops import Compute

    skip = ("lpips", "fid_gfla") if fid else ("lpips", "fid_gfla", "fid_tf")
    options = EvaluateOptions(pred_dir=pred, gt_dir=data / split, size=parse_size(size), cache_dir=cache, skip=skip)
    result = evaluate(options, Compute(torch.device(device), batch_size=32, workers=0, progress=False))
    single = result.summaries["single_sample"]
    return {name: single.get(name) for name in METRICS} | {"pairs": single["images"]}


def summarise(settings: list[Setting], runs: dict, seeds: list[int]) -> list[dict]:
    """One row per setting: its cost and each metric's mean and half-spread over the seeds."""
    rows = []
    for setting in settings:
        done = [runs[f"{setting.key}/seed{seed}"] for seed in seeds if f"{setting.key}/seed{seed}" in runs]
        if not done:
            continue
        row = {"setting": setting.key, "scheduler": setting.scheduler, "steps": setting.steps,
               "interval": list(setting.interval), "limited": setting.limited, "seeds": len(done)}
        for name in ("calls_per_image", "rows_per_image", "seconds_per_image"):
            row[name] = float(np.mean([run[name] for run in done]))
        for name in METRICS:
            values = [run[name] for run in done if run.get(name) is not None]
            row[name] = float(np.mean(values)) if values else None
            row[f"{name}_spread"] = float(np.ptp(values) / 2) if values else None
        rows.append(row)
    return rows


def mark_within_noise(rows: list[dict], reference: str) -> dict | None:
    """Marks each row `within_noise` of the reference setting (the model's own sampler, steps and full
    guidance) and returns the cheapest such row (fewest rows per image, then calls), None without the reference.

    A row is within noise when, on ssim_pidm and on fid_tf, it is not worse than the reference by more than
    the larger of the two settings' seed-to-seed differences (twice the half-spread). Better is always within."""
    ref = next((row for row in rows if row["setting"] == reference), None)
    for row in rows:
        row["within_noise"] = None
    if ref is None:
        return None
    for row in rows:
        row["within_noise"] = True
        for name, worse in (("ssim_pidm", lambda a, b: b - a), ("fid_tf", lambda a, b: a - b)):
            if row[name] is None or ref[name] is None:
                continue
            noise = 2 * max(row[f"{name}_spread"], ref[f"{name}_spread"])
            if worse(row[name], ref[name]) > noise:
                row["within_noise"] = False
    return min((row for row in rows if row["within_noise"]),
               key=lambda row: (row["rows_per_image"], row["calls_per_image"]))


def markdown_table(rows: list[dict], meta: dict) -> str:
    def metric(row: dict, name: str, digits: int) -> str:
        if row[name] is None:
            return "-"
        return f"{row[name]:.{digits}f} ± {row[name + '_spread']:.{digits}f}"

    lines = [f"Model `{meta['model']}`, {meta['split']} split of `{meta['data']}` ({meta['pairs']} pairs), "
             f"seeds {meta['seeds']}, {meta['device']}, evaluation size {meta['size']}; ± is half the spread "
             "between seeds.", "",
             "| scheduler | steps | guidance interval | calls/image | rows/image | s/image | ssim_pidm | l1 | fid_tf "
             "| within noise of the default |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    noise = {None: "-", True: "yes", False: "no"}
    for row in rows:
        low, high = row["interval"]
        within = "(the default)" if row["setting"] == meta.get("reference") else noise[row.get("within_noise")]
        lines.append(f"| {row['scheduler']} | {row['steps']} | [{low:g}, {high:g}] | {row['calls_per_image']:.0f} | "
                     f"{row['rows_per_image']:.0f} | {row['seconds_per_image']:.3f} | {metric(row, 'ssim_pidm', 3)} | "
                     f"{metric(row, 'l1', 4)} | {metric(row, 'fid_tf', 1)} | {within} |")
    cheapest = meta.get("cheapest")
    if cheapest is not None:
        lines += ["", f"Cheapest within noise of the default ({meta['reference']}): {cheapest} (not worse on "
                      "ssim_pidm or fid_tf by more than the larger seed-to-seed difference of the two settings)."]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, title: str) -> None:
    """ssim_pidm and fid_tf against rows per image: a line per scheduler (full guidance), interval points
    marked and labelled, error bars the half-spread between seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [name for name in ("ssim_pidm", "fid_tf") if any(row[name] is not None for row in rows)]
    fig, axes = plt.subplots(1, len(shown), figsize=(6 * len(shown), 4.5), squeeze=False)
    for ax, name in zip(axes[0], shown):
        for scheduler in dict.fromkeys(row["scheduler"] for row in rows if not row["limited"]):
            line = sorted((r for r in rows if r["scheduler"] == scheduler and not r["limited"] and r[name] is not None),
                          key=lambda r: r["rows_per_image"])
            ax.errorbar([r["rows_per_image"] for r in line], [r[name] for r in line],
                        yerr=[r[f"{name}_spread"] for r in line], marker="o", capsize=3,
                        label=f"{scheduler}, guided every step")
        limited = [r for r in rows if r["limited"] and r[name] is not None]
        if limited:
            ax.errorbar([r["rows_per_image"] for r in limited], [r[name] for r in limited],
                        yerr=[r[f"{name}_spread"] for r in limited], fmt="*", markersize=11, capsize=3, color="black",
                        label=f"{limited[0]['scheduler']} {limited[0]['steps']} steps, guidance interval")
            for r in limited:
                ax.annotate("[{:g}, {:g}]".format(*r["interval"]), (r["rows_per_image"], r[name]),
                            textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.set_xlabel("network rows per image (a guided step counts 2)")
        ax.set_ylabel(name + (" (higher is better)" if name.startswith("ssim") else " (lower is better)"))
        ax.ticklabel_format(axis="y", useOffset=False)  # the values themselves, not offsets from one
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def interval_arg(text: str) -> tuple[float, float]:
    try:
        low, high = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI (e.g. 0.2,0.8), got {text!r}") from None
    if not 0 <= low <= high <= 1:
        raise argparse.ArgumentTypeError(f"expected 0 <= LO <= HI <= 1, got {text!r}")
    return low, high


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEMO_MODEL, help="a PCDMs model folder (default: the demo model)")
    parser.add_argument("--data", type=Path, default=None,
                        help="dataset root (default: OUT/data, written as the demo model's synthetic data if absent)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", type=Path, default=Path("quality_calls"), help="results folder (resumable)")
    parser.add_argument("--schedulers", nargs="+", default=["ddim", "unipc", "dpm"])
    parser.add_argument("--steps", nargs="+", type=int, default=[5, 10, 20], help="steps per stage")
    parser.add_argument("--intervals", nargs="*", type=interval_arg,
                        default=[(0.0, 0.5), (0.25, 0.75), (0.5, 1.0), (0.0, 0.0)],
                        help="guidance intervals LO,HI run at the model's scheduler and --interval-steps "
                             "(0,0 = no guidance at all, the lower bound)")
    parser.add_argument("--interval-steps", type=int, default=None, help="default: the model's num_inference_steps")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per pipeline pass")
    parser.add_argument("--size", default="176x256", help="evaluation size WxH (as pcdms evaluate --size)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-fid", action="store_true", help="skip fid_tf (pixel metrics only)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny random model, a 4-pair synthetic split, steps 1 and 2, no fid_tf: seconds")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.intervals, args.interval_steps, args.no_fid = [1, 2], [(0.0, 0.5), (0.0, 0.0)], 2, True
    return args


def main(argv: list[str] | None = None) -> int:
    from pcdms.sampling.pipeline import PCDMsPipeline
    from pcdms.progress import choose_mode, quiet_library_bars
    from pcdms.recipes import get_recipe
    from pcdms.validation import prepare_output_dir, resolve_device

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = prepare_output_dir(args.out)
    progress = "off" if args.smoke else choose_mode()
    quiet_library_bars(progress)
    model = smoke_model(out / "smoke-model") if args.smoke else args.model
    data = ensure_data(args.data or out / "data", SMOKE_DATA if args.smoke else DEMO_DATA)
    device = resolve_device(args.device)
    pipe = PCDMsPipeline.from_pretrained(model, device=device)
    base = pipe.sample
    intervals = args.intervals
    if intervals and not get_recipe(base.recipe).limited_guidance:
        print(f"the model's recipe '{base.recipe}' guides every step: guidance intervals not run")
        intervals = []
    interval_steps = args.interval_steps or base.num_inference_steps
    settings = grid(args.schedulers, args.steps, intervals, base.scheduler, interval_steps)
    meta = {"model": str(model), "data": str(data), "split": args.split, "size": args.size, "device": device,
            "threads": torch.get_num_threads(), "fid": not args.no_fid}
    results_file = out / "results.json"
    saved = json.loads(results_file.read_text()) if results_file.is_file() else {"meta": meta, "runs": {}}
    if saved["meta"] != meta:
        raise SystemExit(f"{results_file} was made with other settings ({saved['meta']}): use another --out")
    runs = saved["runs"]
    todo = [(s, seed) for s in settings for seed in args.seeds if f"{s.key}/seed{seed}" not in runs]
    print(f"{len(settings)} settings x {len(args.seeds)} seeds: {len(todo)} runs to do, "
          f"{len(settings) * len(args.seeds) - len(todo)} already in {results_file}", flush=True)
    for number, (setting, seed) in enumerate(todo, 1):
        run_dir = out / "images" / setting.key / f"seed{seed}"
        cost = generate_run(pipe, base, setting, data, args.split, run_dir, seed, args.batch_size, progress)
        scores = score_run(run_dir, data, args.split, args.size, out / "fid-cache", device, not args.no_fid)
        runs[f"{setting.key}/seed{seed}"] = cost | scores
        results_file.write_text(json.dumps(saved, indent=2))  # after every run: an interruption loses one
        shown = ", ".join(f"{k} {v:.4g}" for k, v in (cost | scores).items() if isinstance(v, float))
        print(f"[{number}/{len(todo)}] {setting.key} seed {seed}: {shown}", flush=True)
    rows = summarise(settings, runs, args.seeds)
    reference = Setting(base.scheduler, base.num_inference_steps).key
    cheapest = mark_within_noise(rows, reference)
    pairs = next(iter(runs.values()))["pairs"] if runs else 0
    table = markdown_table(rows, meta | {"seeds": args.seeds, "pairs": pairs, "reference": reference,
                                         "cheapest": cheapest["setting"] if cheapest else None})
    print(table)
    (out / "quality_calls.md").write_text(table)
    results_file.write_text(json.dumps(saved | {"table": rows, "reference": reference,
                                                "cheapest_within_noise": cheapest["setting"] if cheapest else None},
                                       indent=2))
    plot(rows, out / "quality_calls.png", f"{'/'.join(Path(meta['model']).parts[-2:])} on {args.split}, seeds {args.seeds}")
    print(f"wrote {out / 'quality_calls.md'}, {results_file} and {out / 'quality_calls.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
