"""Paper Table 2 at demo scale: person re-ID trained on a fraction of the data, with and without PCDMs images.

    python benchmarks/reid_table2.py --seeds 0 1 --train-seeds 0 1   # docs/reid.md's table: 6 min on 2 idle cores
    python benchmarks/reid_table2.py --smoke --work /tmp/x --docs /tmp/x   # end to end in seconds

1. Data: synthetic people (`pcdms.data.synth`, seed `SYNTH_SEED`, not the seed 0 of the people the shipped
   demo model was trained on, so the generator saw none of them) written as a Market-1501 root at 128x64
   (`pcdms.data.market.write_market_synth`): training people, and disjoint test people whose first images
   are the queries and the rest the gallery, seen by other cameras.
2. Augmentation: `pcdms.jobs.augment` with the demo model, at fraction 1 with target poses from the images kept at
   20 % (`pose_fraction`), once per seed. A generated image's name, pose and noise depend only on its source,
   so the images generated from the sources kept at fraction f are exactly those that
   `pcdms augment --fraction f --pose-fraction 0.2` writes: one generation serves every row of a seed.
3. Re-ID: BoT (Luo et al. 2019) made small: a narrow ResNet (torchvision's BasicBlock, one block per stage,
   widths `Scale.widths`, last stride 1, random init: no ImageNet weights offline) at 64x32, BNNeck, ID loss
   with label smoothing 0.1 plus batch-hard triplet loss (margin 0.3), PK batches, random flip and
   pad-and-crop; the same number of iterations for every row, so added images cannot win by extra steps.
   Rank-1 and mAP by Market-1501's protocol (gallery images of the query's person in the query's camera
   are left out; `market_eval`).
4. Rows: real only and real + PCDMs at 20/40/60/80/100 %, for each seed: mean and each seed's value.
   Writes `<docs>/reid_table2.md`, `<docs>/reid_table2.png` and `<work>/results.json` (a rerun skips the
   rows already there, and the augmentation resumes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from pcdms.jobs.augment import AugmentSettings, augment, make_plan, open_output  # noqa: E402
from pcdms.data.market import GALLERY_DIR, QUERY_DIR, TRAIN_DIR, parse_market_name, write_market_synth  # noqa: E402

SYNTH_SEED = 1501  # the demo model's training people are seed 0
DEMO_MODEL = REPO / "src" / "pcdms" / "assets" / "demo" / "model"
FRACTIONS = (0.2, 0.4, 0.6, 0.8, 1.0)
PAPER_RANK1 = {"real": (33.4, 56.6, 64.9, 69.2, 76.7), "PIDM": (61.3, 64.8, 71.6, 75.3, 78.4),
               "PCDMs": (63.8, 67.1, 73.3, 76.4, 80.3)}


@dataclass(frozen=True)
class Scale:
    """How big everything is: data, generation, re-ID model and training."""

    train_ids: int = 100
    test_ids: int = 100
    images_per_id: int = 5  # 20 % of the training images is then one per person
    cameras: int = 4
    query_per_id: int = 2
    sample_steps: int = 2  # DDIM steps per PCDMs stage
    per_image: int = 1  # generated images per kept image
    input_hw: tuple[int, int] = (64, 32)
    widths: tuple[int, ...] = (16, 32, 64, 128)
    iterations: int = 150
    people_per_batch: int = 16  # P
    images_per_person: int = 4  # K
    learning_rate: float = 1e-3


SMOKE = Scale(train_ids=4, test_ids=3, images_per_id=2, cameras=2, query_per_id=1, sample_steps=1,
              input_hw=(32, 16), widths=(8, 8, 16, 16), iterations=3, people_per_batch=4, images_per_person=2)


# ---------------------------------------------------------------------- evaluation
def market_eval(distance: np.ndarray, query_pids: np.ndarray, gallery_pids: np.ndarray, query_cams: np.ndarray,
                gallery_cams: np.ndarray) -> tuple[float, float]:
    """(Rank-1, mAP) in [0, 1] by Market-1501's protocol. distance: (Q, G), smaller is closer. For each query the
    gallery images of its own person seen by its own camera are left out; queries left with no match are
    skipped."""
    hits, precisions = [], []
    for q in range(distance.shape[0]):
        keep = ~((gallery_pids == query_pids[q]) & (gallery_cams == query_cams[q]))
        order = np.argsort(distance[q][keep], kind="stable")
        match = (gallery_pids[keep][order] == query_pids[q])
        if not match.any():
            continue
        hits.append(float(match[0]))
        ranks = np.flatnonzero(match) + 1
        precisions.append(float(np.mean(np.arange(1, len(ranks) + 1) / ranks)))
    return float(np.mean(hits)), float(np.mean(precisions))


# ---------------------------------------------------------------------- BoT, small
def _stage(cin: int, cout: int, stride: int) -> nn.Module:
    from torchvision.models.resnet import BasicBlock

    down = None if stride == 1 and cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                                                  nn.BatchNorm2d(cout))
    return BasicBlock(cin, cout, stride, down)


class BoT(nn.Module):
    """Narrow ResNet, last stride 1, global average pooling, BNNeck, bias-free ID classifier."""

    def __init__(self, num_ids: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        w = widths
        self.backbone = nn.Sequential(
            nn.Conv2d(3, w[0], 3, 2, 1, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU(inplace=True),
            _stage(w[0], w[0], 1), _stage(w[0], w[1], 2), _stage(w[1], w[2], 2), _stage(w[2], w[3], 1))
        self.neck = nn.BatchNorm1d(w[3])
        self.neck.bias.requires_grad_(False)
        self.classifier = nn.Linear(w[3], num_ids, bias=False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(images).mean(dim=(2, 3))  # (B, C): triplet loss here
        return features, self.classifier(self.neck(features))  # logits (B, num_ids): ID loss after the neck

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.neck(self.backbone(images).mean(dim=(2, 3))), dim=1)


def batch_hard_triplet(features: torch.Tensor, labels: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    distance = torch.cdist(features, features)
    same = labels[:, None] == labels[None, :]
    hardest_positive = (distance * same).max(dim=1).values
    hardest_negative = distance.masked_fill(same, float("inf")).min(dim=1).values
    return F.relu(hardest_positive - hardest_negative + margin).mean()


def load_folder(folder: Path, names: list[str], hw: tuple[int, int]) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Images (N, 3, h, w) in [-1, 1], person ids and cameras of `names` in `folder`."""
    from PIL import Image

    pixels = np.stack([np.asarray(Image.open(folder / n).convert("RGB").resize((hw[1], hw[0]), Image.BILINEAR))
                       for n in names])
    parsed = [parse_market_name(n) for n in names]
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1
    return images, np.array([p.pid for p in parsed]), np.array([p.camera for p in parsed])


def _jitter(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and pad-and-crop (BoT's augmentation, random erasing left out at this size)."""
    flip = torch.rand(len(images), generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    pad = max(1, images.shape[-1] // 16)
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    shifts = torch.randint(0, 2 * pad + 1, (len(images), 2), generator=generator)
    h, w = images.shape[-2:]
    return torch.stack([padded[i, :, y:y + h, x:x + w] for i, (y, x) in enumerate(shifts.tolist())])


def train_reid(images: torch.Tensor, pids: np.ndarray, scale: Scale, seed: int) -> BoT:
    """Train BoT for `scale.iterations` PK batches (P people x K images, drawn with replacement when a person
    has fewer than K); Adam with a linear warm-up over the first tenth and cosine decay."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    labels_of = {pid: i for i, pid in enumerate(sorted(set(pids.tolist())))}
    labels = torch.tensor([labels_of[p] for p in pids.tolist()])
    by_label = [np.flatnonzero(labels.numpy() == k) for k in range(len(labels_of))]
    model = BoT(len(labels_of), scale.widths)
    optimizer = torch.optim.Adam(model.parameters(), scale.learning_rate, weight_decay=5e-4)
    warmup = max(1, scale.iterations // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (
        1 + np.cos(np.pi * i / scale.iterations)))
    model.train()
    for _ in range(scale.iterations):
        people = rng.choice(len(by_label), size=min(scale.people_per_batch, len(by_label)), replace=False)
        index = np.concatenate([rng.choice(by_label[p], scale.images_per_person,
                                           replace=len(by_label[p]) < scale.images_per_person) for p in people])
        batch = _jitter(images[index], generator)
        features, logits = model(batch)
        target = labels[index]
        loss = F.cross_entropy(logits, target, label_smoothing=0.1) + batch_hard_triplet(features, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()


def evaluate(model: BoT, query: tuple, gallery: tuple) -> tuple[float, float]:
    q, g = model.embed(query[0]), model.embed(gallery[0])
    distance = (1 - q @ g.T).numpy()
    return market_eval(distance, query[1], gallery[1], query[2], gallery[2])


# ---------------------------------------------------------------------- the table
def generate_for_seed(market: Path, work: Path, seed: int, scale: Scale, pipeline) -> tuple[Path, dict]:
    """Augment the whole training folder once (poses from the 20 % set); returns the folder and its record."""
    out = work / f"augmented-seed{seed}"
    settings = AugmentSettings(str(market.resolve()), 1.0, scale.per_image, seed, str(DEMO_MODEL.resolve()),
                               scale.sample_steps, pose_fraction=FRACTIONS[0])
    plan, images = make_plan(market, settings)
    out.mkdir(parents=True, exist_ok=True)
    open_output(out, settings, plan)
    report, _ = augment(pipeline, plan, images, out, settings, with_test=False, batch_size=16, progress="lines")
    if report.failed:
        raise SystemExit(report.summary())
    return out, json.loads((out / "augment.json").read_text())


def run_table(scale: Scale, work: Path, docs: Path, seeds: list[int], train_seeds: list[int] | None = None) -> dict:
    """Every row for each data seed (kept images, poses, sampling noise) and each re-ID training seed
    (`train_seeds`, default: the data seed itself)."""
    from pcdms.jobs.augment import select_subset
    from pcdms.sampling.pipeline import PCDMsPipeline

    torch.set_num_threads(2)
    market = work / "market"
    if not (market / "market-annotation-train.csv").is_file():
        write_market_synth(market, scale.train_ids, scale.test_ids, scale.images_per_id, scale.cameras,
                           scale.query_per_id, seed=SYNTH_SEED)
    results_file = work / "results.json"
    scale_record = json.loads(json.dumps(asdict(scale)))
    results = json.loads(results_file.read_text()) if results_file.is_file() else {"scale": scale_record, "rows": []}
    if results["scale"] != scale_record:
        raise SystemExit(f"{results_file} was made at another scale; remove it or use another --work")
    done = {(r["seed"], r.get("train_seed", r["seed"]), r["fraction"], r["variant"]) for r in results["rows"]}
    query_names = sorted(p.name for p in (market / QUERY_DIR).iterdir())
    gallery_names = sorted(p.name for p in (market / GALLERY_DIR).iterdir())
    query = load_folder(market / QUERY_DIR, query_names, scale.input_hw)
    gallery = load_folder(market / GALLERY_DIR, gallery_names, scale.input_hw)
    pipeline = PCDMsPipeline.from_pretrained(DEMO_MODEL)
    pids = {p.name: parse_market_name(p.name).pid for p in (market / TRAIN_DIR).iterdir()}
    for seed in seeds:
        augmented, record = generate_for_seed(market, work, seed, scale, pipeline)
        for fraction in FRACTIONS:
            kept = select_subset(pids, fraction, seed)
            kept_set = set(kept)
            synthetic = [s["name"] for s in record["synthetic"] if s["source"] in kept_set]
            for variant, names in (("real", kept), ("real+PCDMs", kept + synthetic)):
                for train_seed in train_seeds or [seed]:
                    if (seed, train_seed, fraction, variant) in done:
                        continue
                    started = time.monotonic()
                    images, train_pids, _ = load_folder(augmented / TRAIN_DIR, names, scale.input_hw)
                    model = train_reid(images, train_pids, scale, train_seed)
                    rank1, mean_ap = evaluate(model, query, gallery)
                    row = {"seed": seed, "train_seed": train_seed, "fraction": fraction, "variant": variant,
                           "real_images": len(kept),
                           "generated_images": len(names) - len(kept), "rank1": rank1, "mAP": mean_ap,
                           "seconds": round(time.monotonic() - started, 1)}
                    print(json.dumps(row), flush=True)
                    results["rows"].append(row)
                    results_file.write_text(json.dumps(results, indent=1))
    write_outputs(results, docs, seeds)
    sample_sheet(work / f"augmented-seed{seeds[0]}", docs / "reid_samples.png")
    return results


def sample_sheet(augmented: Path, path: Path, count: int = 8) -> None:
    """A PNG of `count` generated images: kept source | image giving the target pose | generated, side by side."""
    from PIL import Image

    record = json.loads((augmented / "augment.json").read_text())
    picks = record["synthetic"][:: max(1, len(record["synthetic"]) // count)][:count]
    market = Path(record["settings"]["data"]) / TRAIN_DIR
    tiles = [[market / p["source"], market / p["target"], augmented / TRAIN_DIR / p["name"]] for p in picks]
    width, height, columns = 64, 128, 4
    rows = (len(tiles) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * (3 * width + 12), rows * (height + 8)), "white")
    for i, row in enumerate(tiles):
        left, top = (i % columns) * (3 * width + 12), (i // columns) * (height + 8)
        for j, file in enumerate(row):
            sheet.paste(Image.open(file).convert("RGB").resize((width, height)), (left + j * width, top))
    sheet.resize((sheet.width * 2, sheet.height * 2), Image.NEAREST).save(path)


def summarise(results: dict, seeds: list[int]) -> dict[tuple[str, float], dict[str, list[float]]]:
    table: dict[tuple[str, float], dict[str, list[float]]] = {}
    for row in sorted(results["rows"], key=lambda r: (r["seed"], r.get("train_seed", r["seed"]))):
        if row["seed"] in seeds:
            cell = table.setdefault((row["variant"], row["fraction"]), {"rank1": [], "mAP": [], "sizes": []})
            cell["rank1"].append(100 * row["rank1"])
            cell["mAP"].append(100 * row["mAP"])
            cell["sizes"].append(f"{row['real_images']}+{row['generated_images']}")
    return table


def write_outputs(results: dict, docs: Path, seeds: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    table = summarise(results, seeds)
    variants = ("real", "real+PCDMs")
    header = "| training data | " + " | ".join(f"{round(100 * f)} %" for f in FRACTIONS) + " |"
    lines = [header, "|---" * (len(FRACTIONS) + 1) + "|"]
    for metric in ("rank1", "mAP"):
        for variant in variants:
            cells = []
            for f in FRACTIONS:
                values = table.get((variant, f), {}).get(metric, [])
                cells.append(f"{np.mean(values):.1f} ({' / '.join(f'{v:.1f}' for v in values)})" if values else "-")
            lines.append(f"| {variant}: {'Rank-1' if metric == 'rank1' else 'mAP'} | " + " | ".join(cells) + " |")
    sizes = [table.get(("real+PCDMs", f), {}).get("sizes", ["-"])[0] for f in FRACTIONS]
    lines.append("| images (real+generated, seed " + str(seeds[0]) + ") | " + " | ".join(sizes) + " |")
    text = "\n".join(lines) + "\n"
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "reid_table2.md").write_text(text)
    print(text)
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    xs = [100 * f for f in FRACTIONS]
    for axis, metric, label in ((axes[0], "rank1", "Rank-1 (%)"), (axes[1], "mAP", "mAP (%)")):
        for variant, colour in zip(variants, ("tab:grey", "tab:blue")):
            values = [table.get((variant, f), {}).get(metric, []) for f in FRACTIONS]
            means = [np.mean(v) if v else np.nan for v in values]
            low = [min(v) if v else np.nan for v in values]
            high = [max(v) if v else np.nan for v in values]
            axis.plot(xs, means, "o-", color=colour, label=variant)
            axis.fill_between(xs, low, high, color=colour, alpha=0.2)
        if metric == "rank1":
            axis.plot(xs, PAPER_RANK1["real"], "x:", color="tab:grey", label="paper: real (Market)")
            axis.plot(xs, PAPER_RANK1["PCDMs"], "x:", color="tab:blue", label="paper: + PCDMs (Market)")
        axis.set_xlabel("real training images kept (%)")
        axis.set_ylabel(label)
        axis.set_xticks(xs)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.suptitle("Re-ID on synthetic people at demo scale (band: min-max over seeds)", fontsize=9)
    figure.tight_layout()
    figure.savefig(docs / "reid_table2.png", dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny everything: runs end to end in seconds")
    parser.add_argument("--work", default=str(REPO / "runs" / "reid_table2"), help="data, generated images, results")
    parser.add_argument("--docs", default=str(REPO / "docs"), help="where reid_table2.md and .png go")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                        help="data seeds: kept images, poses, sampling noise (and re-ID training unless --train-seeds)")
    parser.add_argument("--train-seeds", type=int, nargs="+", default=None,
                        help="re-ID training seeds run for every data seed (default: each data seed's own)")
    parser.add_argument("--iterations", type=int, default=None, help="re-ID training iterations (default: the scale's)")
    parser.add_argument("--report-only", action="store_true",
                        help="only write the table and plot from <work>/results.json (the rows done so far)")
    args = parser.parse_args(argv)
    if args.report_only:
        write_outputs(json.loads((Path(args.work) / "results.json").read_text()), Path(args.docs), args.seeds)
        sample_sheet(Path(args.work) / f"augmented-seed{args.seeds[0]}", Path(args.docs) / "reid_samples.png")
        return 0
    scale = SMOKE if args.smoke else Scale()
    if args.iterations:
        scale = Scale(**{**asdict(scale), "iterations": args.iterations})
    started = time.monotonic()
    run_table(scale, Path(args.work), Path(args.docs), args.seeds, args.train_seeds)
    print(f"total {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
