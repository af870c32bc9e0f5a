"""Batch generation over a dataset split, and the refiner over any method's images (paper Sec. 4.1-4.2, Fig. 9).

Outputs are named `<from>_to_<to>.png` (`_sample<k>` before `.png` when several samples are drawn), the
names `pcdms evaluate` matches to ground truth (`pcdms.metrics.pairing`). Jobs are resumable: a pair whose
files all exist is skipped, every file is written to a temporary name and renamed, so an interrupted run
never leaves a half-written image that a rerun would skip. Work is shared across processes (accelerate),
each item's failure is reported by name and the job goes on, and the report lists every bad item.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from pcdms.errors import UserError
from pcdms.pose import Pose


def output_stem(source: str, target: str) -> str:
    """`<from>_to_<to>` from dataset image names: extensions dropped, folders flattened with '_'."""
    def stem(name: str) -> str:
        base, ext = os.path.splitext(name)
        return (base if ext.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp") else name).replace("/", "_")

    return f"{stem(source)}_to_{stem(target)}"


def output_paths(out_dir: Path, stem: str, num_samples: int) -> list[Path]:
    if num_samples == 1:
        return [out_dir / f"{stem}.png"]
    return [out_dir / f"{stem}_sample{k}.png" for k in range(num_samples)]


def save_atomic(image: Image.Image, path: Path) -> None:
    """Write a PNG to a temporary name, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)


@dataclass
class JobReport:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (item, reason)

    def summary(self) -> str:
        lines = [f"{len(self.done)} written, {len(self.skipped)} already there, {len(self.failed)} failed"]
        lines += [f"  FAILED {item}: {reason}" for item, reason in self.failed]
        return "\n".join(lines)


def run_items(
    items: list[tuple[str, list[Path], Callable[[], list[Image.Image]]]],
    desc: str,
    progress: bool = True,
) -> JobReport:
    """Run (name, output paths, make images) items: this process's share, skipping finished ones.

    A UserError or an unreadable input fails that item only; it is reported and the job goes on.
    """
    from accelerate import PartialState
    from tqdm.auto import tqdm

    state = PartialState()
    report = JobReport()
    with state.split_between_processes(items) as mine:
        todo = []
        for name, paths, make in mine:
            if all(p.exists() for p in paths):
                report.skipped.append(name)
            else:
                todo.append((name, paths, make))
        for name, paths, make in tqdm(todo, desc=desc, unit="pair", disable=not (progress and state.is_local_main_process)):
            try:
                images = make()
            except (UserError, OSError) as err:
                report.failed.append((name, str(err)))
                continue
            for image, path in zip(images, paths):
                save_atomic(image, path)
            report.done.append(name)
    return report


def dataset_items(
    pipeline: object,
    root: str | Path,
    split: str,
    out_dir: Path,
    num_samples: int = 1,
    seed: int = 0,
    limit: int | None = None,
    ground_truth_embeds: bool = False,
    **call_kwargs: object,
) -> list[tuple[str, list[Path], Callable[[], list[Image.Image]]]]:
    """One item per pair of the split; each seeds its own generator from (seed, pair index) so results do not
    depend on how pairs are shared across processes or on what was skipped.

    ground_truth_embeds: feed stage 2 the target's own CLIP embedding instead of the prior's (how the authors
    make stage 3's training data, `pcdms export-coarse`)."""
    from pcdms.data.dataset import load_person_image
    from pcdms.data.formats import load_split

    data = load_split(root, split)
    pairs = data.pairs[:limit] if limit else data.pairs
    items = []
    for index, pair in enumerate(pairs):
        stem = output_stem(pair.source, pair.target)

        def make(pair=pair, index=index) -> list[Image.Image]:
            src, tgt = data.images[pair.source], data.images[pair.target]
            src_image, src_pose = _image_and_pose(src, load_person_image)
            tgt_pose = _pose_of(tgt)
            generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
            extra = {}
            if ground_truth_embeds:
                target_image, _ = _image_and_pose(tgt, load_person_image)
                extra["target_embeds"] = pipeline.embed_image(target_image)
            out = pipeline(src_image, tgt_pose, src_pose, num_samples=num_samples, generator=generator,
                           **call_kwargs, **extra)
            return out.images

        items.append((stem, output_paths(out_dir, stem, num_samples), make))
    return items


def _pose_of(entry: object) -> Pose:
    frame = entry.frame
    if frame is None:  # authors' format: fractions of the whole image
        from pcdms.imageio import load_image

        width, height = load_image(entry.path).size
        frame = (height, width)
    return Pose.from_normalized(entry.keypoints, *frame)


def _image_and_pose(entry: object, load_person_image: Callable) -> tuple[Image.Image, Pose]:
    pose = _pose_of(entry)
    return load_person_image(entry, pose.height, pose.width), pose


def refine_items(
    pipeline: object,
    images: Iterable[Path],
    out_dir: Path,
    source_for: Callable[[Path], Image.Image],
    seed: int = 0,
    **call_kwargs: object,
) -> list[tuple[str, list[Path], Callable[[], list[Image.Image]]]]:
    """Stage 3 over images made by any method; `source_for(path)` gives the source photo of each."""
    from pcdms.imageio import load_image

    items = []
    for index, path in enumerate(sorted(images)):
        def make(path=path, index=index) -> list[Image.Image]:
            generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
            out = pipeline(source_for(path), None, stages="refine", coarse_image=load_image(path),
                           generator=generator, **call_kwargs)
            return out.images

        items.append((path.name, [out_dir / f"{path.stem}.png"], make))
    return items
