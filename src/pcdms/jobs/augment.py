"""Re-ID training data augmented with PCDMs images (paper Sec. 4.3, Table 2; the protocol of PIDM).

Keep a fraction of a Market-1501 training set (every person keeps at least one image), then, for each kept
image, generate the same person in `per_image` target poses taken from kept images of OTHER people. Other
people's poses give each person poses and views their own kept photos lack, and only kept images are used,
so the augmented set holds nothing of the dropped images. The output folder is a Market-1501 root: the kept
real images and the generated ones (sequence s9, `pcdms.data.market`) in `bounding_box_train/`, plus
`query/` and `bounding_box_test/` copied from the input, so a standard re-ID trainer reads it as it is.

Selections are nested: for one seed, the images kept at 20 % are also kept at 40 %, and so on up
(`select_subset`). `pose_fraction` takes the target poses from a smaller kept set (the one of that fraction);
since a generated image's name, pose and noise depend only on its source, with one pose fraction the images
of a smaller fraction are exactly a subset of a larger one's (how `benchmarks/reid_table2.py` generates
once). `augment.json` in the output records the settings, the kept images and every generated image's source
and target pose; a rerun with the same settings resumes (only missing images are made, through
`pcdms.jobs.generate.run_items`), one with other settings is refused rather than mixing two runs in one folder.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pcdms.data.market import (
    GALLERY_DIR, MARKET_ANNOTATION, QUERY_DIR, SYNTHETIC_SEQUENCE, TRAIN_DIR, MarketName, market_name,
    parse_market_name, read_market_folder,
)
from pcdms.errors import UserError
from pcdms.jobs.generate import Item, Job, JobReport, pipeline_render, run_items
from pcdms.pose import Pose

PLAN_FILE = "augment.json"
GENERATED_DIR = "generated"  # lossless PNGs as the pipeline wrote them; bounding_box_train gets JPEG copies
JPEG_QUALITY = 95
MAX_PER_IMAGE = 99


@dataclass(frozen=True)
class AugmentSettings:
    """Everything that decides which images an augment run writes and what they look like."""

    data: str
    fraction: float  # share of the training images kept, in (0, 1]
    per_image: int  # generated images per kept image
    seed: int
    model: str
    steps: int | None = None
    guidance: float | None = None
    refine_strength: float | None = None
    overrides: tuple[str, ...] = ()
    pose_fraction: float | None = None  # target poses from the images kept at this fraction (None: `fraction`)


@dataclass(frozen=True)
class Synthetic:
    """One generated image: its Market name, the kept image it shows the person of, the image giving the pose."""

    name: str
    source: str
    target: str


@dataclass
class AugmentPlan:
    kept: list[str]
    synthetic: list[Synthetic]
    no_pose: list[str] = field(default_factory=list)  # kept images without a usable pose: no images made from them


@dataclass
class TrainImage:
    name: str
    market: MarketName
    path: Path
    pose: Pose | None


def check_fraction(fraction: float) -> float:
    if not (isinstance(fraction, (int, float)) and math.isfinite(fraction) and 0 < fraction <= 1):
        raise UserError(f"--fraction must be in (0, 1] (the share of training images kept), got {fraction}")
    return float(fraction)


# ---------------------------------------------------------------------- which images, which poses
def select_subset(pids: dict[str, int], fraction: float, seed: int) -> list[str]:
    """The kept image names (sorted): `max(people, round(fraction * images))` of them, every person at least one.

    One image per person is drawn first, then the rest in one seeded order; a fraction keeps a prefix of that
    order, so for one seed a smaller fraction's selection is inside every larger one's.
    """
    check_fraction(fraction)
    rng = np.random.default_rng([seed, 0])
    by_person: dict[int, list[str]] = defaultdict(list)
    for name in sorted(pids):
        by_person[pids[name]].append(name)
    anchors = [names[rng.integers(len(names))] for _, names in sorted(by_person.items())]
    chosen = set(anchors)
    rest = [name for name in sorted(pids) if name not in chosen]
    order = [rest[i] for i in rng.permutation(len(rest))]
    total = max(len(anchors), math.floor(fraction * len(pids) + 0.5))
    return sorted(anchors + order[: total - len(anchors)])


def plan_synthetic(kept: list[TrainImage], pose_pool: list[str], per_image: int, seed: int,
                   number: dict[str, int]) -> AugmentPlan:
    """For each kept image with a pose, `per_image` target poses drawn (seeded, without repeats) from the images
    of `pose_pool` (kept ones) of other people that have a pose.

    `number[name]`: the image's place in the whole training folder. A generated image is named after its
    source: person and camera, sequence s9, that number as the frame and the draw index as the box; its draw
    is seeded from (seed, number). So an image's name and pose do not depend on which other images are kept:
    with one pose pool, the plan of a smaller fraction is part of a larger one's.
    """
    if not 1 <= per_image <= MAX_PER_IMAGE:
        raise UserError(f"--per-image must be in 1..{MAX_PER_IMAGE} (the box field of a Market name), got {per_image}")
    by_name = {image.name: image for image in kept}
    pool = [by_name[name] for name in sorted(pose_pool) if by_name[name].pose is not None]
    posed = [image for image in kept if image.pose is not None]
    pool_pids = np.array([image.market.pid for image in pool])
    synthetic = []
    for image in posed:
        others = np.flatnonzero(pool_pids != image.market.pid)
        rng = np.random.default_rng([seed, 1, number[image.name]])
        picks = rng.choice(others, size=min(per_image, len(others)), replace=False)
        for k, pick in enumerate(picks):
            name = market_name(image.market.pid, image.market.camera, SYNTHETIC_SEQUENCE, number[image.name], k)
            synthetic.append(Synthetic(name, image.name, pool[pick].name))
    if not synthetic:
        raise UserError("no kept image with a usable pose has another person's posed image to take a target pose "
                        "from (poses come from other people's kept images): nothing to generate")
    return AugmentPlan([image.name for image in kept], synthetic, [i.name for i in kept if i.pose is None])


# ---------------------------------------------------------------------- reading the training set
def read_train_images(root: Path, annotation: Path | None, names: list[str] | None = None,
                      extract_missing: bool = True) -> dict[str, TrainImage]:
    """The images of `root/bounding_box_train` with their poses (only `names` when given).

    Poses come from `annotation` (a PATN `market-annotation-*.csv`; default `root/market-annotation-train.csv`
    when present); an image the annotation does not list is given to the pose extractor (MediaPipe) when
    `extract_missing`. A row with no usable joint, or a failed extraction, leaves the image without a pose.
    """
    from pcdms.data.formats import POSE_PROBLEMS, read_patn_annotation

    market = read_market_folder(root / TRAIN_DIR)
    synthetic = [name for name, parsed in market.items() if parsed.synthetic]
    if synthetic:
        raise UserError(f"{root / TRAIN_DIR / synthetic[0]}: sequence s{SYNTHETIC_SEQUENCE} marks an image "
                        "`pcdms augment` generated; augment a folder of real images")
    wanted = sorted(market) if names is None else names
    poses: dict[str, Pose | None] = {}
    if annotation is None and (root / MARKET_ANNOTATION).is_file():
        annotation = root / MARKET_ANNOTATION
    if annotation is not None:
        if not annotation.is_file():
            raise UserError(f"--annotation: no file {annotation}")
        entries, problems = read_patn_annotation(annotation)
        fatal = [p for p in problems if p.kind not in POSE_PROBLEMS]
        if fatal:
            raise UserError(f"{fatal[0]} ({len(fatal)} problem(s) in this file; `pcdms data check` lists them)")
        for entry in entries:
            pose = Pose.from_normalized(entry.keypoints, *entry.frame)
            poses[entry.name] = pose if pose.visible.any() else None
    images = {}
    for name in wanted:
        if name not in poses and extract_missing:
            poses[name] = _extract(root / TRAIN_DIR / name)
        images[name] = TrainImage(name, market[name], root / TRAIN_DIR / name, poses.get(name))
    return images


def _extract(path: Path) -> Pose | None:
    from pcdms.pose.extract import extract_pose
    from pcdms.imageio import load_image

    try:
        return extract_pose(load_image(path), str(path))
    except UserError:
        return None


# ---------------------------------------------------------------------- the output folder
def open_output(out: Path, settings: AugmentSettings, plan: AugmentPlan) -> None:
    """Write `augment.json` (settings, kept images, generated images), or check that the one there is of the
    same settings: a different run's files must not mix with this one's."""
    record = {"settings": asdict(settings), "kept": plan.kept, "no_pose": plan.no_pose,
              "synthetic": [asdict(s) for s in plan.synthetic]}
    record["settings"]["overrides"] = list(settings.overrides)
    path = out / PLAN_FILE
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
            old = previous["settings"]
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{path}: not an augment record; choose another --out") from None
        changed = [f"{key} {old.get(key)!r} -> {value!r}" for key, value in record["settings"].items()
                   if old.get(key) != value]
        if changed:
            raise UserError(f"--out {out} holds an augment run with other settings ({'; '.join(changed)}); "
                            "rerun with its settings to resume it, or choose another --out")
        if previous.get("kept") != record["kept"] or previous.get("synthetic") != record["synthetic"]:
            raise UserError(f"--out {out} holds an augment run of other images or poses: {settings.data}'s training "
                            "images or keypoints changed since; choose another --out")
    for folder in (TRAIN_DIR, GENERATED_DIR):
        (out / folder).mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)


def copy_real(root: Path, out: Path, kept: list[str], with_test: bool, progress: bool | str) -> int:
    """Copy the kept training images (and `query/`, `bounding_box_test/` when `with_test`) into `out`,
    skipping files already there; each is written to a temporary name and renamed. Returns files copied."""
    from pcdms.progress import Progress, resolve_mode

    jobs = [(root / TRAIN_DIR / name, out / TRAIN_DIR / name) for name in kept]
    for folder in (QUERY_DIR, GALLERY_DIR) if with_test else ():
        if (root / folder).is_dir():
            (out / folder).mkdir(parents=True, exist_ok=True)
            jobs += [(p, out / folder / p.name) for p in sorted((root / folder).iterdir()) if p.is_file()]
    todo = [(src, dst) for src, dst in jobs if not dst.exists()]
    bar = Progress(len(todo), "copy real images", "img", resolve_mode(progress))
    for src, dst in todo:
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        bar.update()
    bar.close()
    return len(todo)


def generation_job(pipeline: Any, plan: AugmentPlan, images: dict[str, TrainImage], out: Path, seed: int,
                   **call_kwargs: Any) -> Job:
    """One `pcdms.jobs.generate` item per generated image, written as `generated/<name>.png`; each seeds its own
    generator from the seed and its name (source number, draw index), so an image does not depend on batching,
    on what a resumed run skipped or on which fraction was kept."""
    from pcdms.imageio import load_image

    items = []
    for synthetic in plan.synthetic:
        parsed = parse_market_name(synthetic.name)
        index = parsed.frame * (MAX_PER_IMAGE + 1) + parsed.box

        def prepare(synthetic=synthetic, index=index) -> dict[str, Any]:
            source, target = images[synthetic.source], images[synthetic.target]
            return {"source_image": load_image(source.path), "source_pose": source.pose,
                    "target_pose": target.pose,
                    "generator": torch.Generator().manual_seed(seed * 1_000_003 + index)}

        items.append(Item(synthetic.name, [png_path(out, synthetic.name)], prepare))
    return Job(items, pipeline_render(pipeline, **call_kwargs))


def png_path(out: Path, name: str) -> Path:
    return out / GENERATED_DIR / f"{Path(name).stem}.png"


def publish(out: Path, plan: AugmentPlan) -> int:
    """JPEG copies (quality 95, as Market's own files) of the generated PNGs in `bounding_box_train/`, for
    those not there yet. Returns how many were written."""
    from PIL import Image

    written = 0
    for synthetic in plan.synthetic:
        target, png = out / TRAIN_DIR / synthetic.name, png_path(out, synthetic.name)
        if target.exists() or not png.is_file():
            continue
        tmp = target.with_name(f".{target.name}.tmp")
        with Image.open(png) as image:
            image.convert("RGB").save(tmp, format="JPEG", quality=JPEG_QUALITY)
        os.replace(tmp, target)
        written += 1
    return written


def augment(pipeline: Any, plan: AugmentPlan, images: dict[str, TrainImage], out: Path, settings: AugmentSettings,
            with_test: bool = True, batch_size: int = 8, progress: bool | str = False) -> tuple[JobReport, int]:
    """Copy the real images, generate the missing synthetic ones and publish them into an output folder that
    `open_output` prepared. `pipeline`: a loaded `PCDMsPipeline`; `settings.steps`/`guidance` go to its calls.
    Returns the generation report and how many JPEGs were added to `bounding_box_train/`."""
    copy_real(Path(settings.data), out, plan.kept, with_test, progress)
    job = generation_job(pipeline, plan, images, out, settings.seed,
                         num_inference_steps=settings.steps, guidance_scale=settings.guidance)
    report = run_items(job, "augment", progress=progress, batch_size=batch_size)
    return report, publish(out, plan)


def make_plan(root: Path, settings: AugmentSettings, annotation: Path | None = None) -> tuple[AugmentPlan, dict[str, TrainImage]]:
    """The kept images and the generated images' sources and poses; poses are read (or extracted) for the
    kept images only."""
    check_fraction(settings.fraction)
    pose_fraction = settings.fraction if settings.pose_fraction is None else check_fraction(settings.pose_fraction)
    if pose_fraction > settings.fraction:
        raise UserError(f"--pose-fraction {pose_fraction} is above --fraction {settings.fraction}: target poses come "
                        "from kept images only")
    market = read_market_folder(root / TRAIN_DIR)
    pids = {name: parsed.pid for name, parsed in market.items()}
    kept = select_subset(pids, settings.fraction, settings.seed)
    pool = select_subset(pids, pose_fraction, settings.seed)
    images = read_train_images(root, annotation, kept)
    number = {name: i for i, name in enumerate(sorted(market))}
    plan = plan_synthetic([images[name] for name in kept], pool, settings.per_image, settings.seed, number)
    return plan, images
