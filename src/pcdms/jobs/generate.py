"""Batch generation over a dataset split, and the refiner over any method's images (paper Sec. 4.1-4.2, Fig. 9).

Outputs are named `<from>_to_<to>.png` (`_sample<k>` before `.png` when several samples are drawn; `pcdms.names`),
the names `pcdms evaluate` matches to ground truth (`pcdms.metrics.pairing`). Jobs are resumable: a pair whose
files all exist is skipped, every file is written to a temporary name and renamed, so an interrupted run
never leaves a half-written image that a rerun would skip. Work is shared across processes (accelerate),
each item's failure is reported by name and the job goes on, and the report lists every bad item.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from pcdms.errors import UserError
from pcdms.imageio import save_atomic
from pcdms.names import output_paths, output_stem
from pcdms.pose import Pose


@dataclass
class JobReport:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (item, reason)

    def summary(self) -> str:
        lines = [f"{len(self.done)} written, {len(self.skipped)} already there, {len(self.failed)} failed"]
        lines += [f"  FAILED {item}: {reason}" for item, reason in self.failed]
        return "\n".join(lines)


@dataclass
class Item:
    """One pair of a job: its name, its output files, and `prepare()`, which reads its inputs (the keyword
    arguments `pipeline_render` batches) and raises UserError or OSError when they are bad."""

    name: str
    paths: list[Path]
    prepare: Callable[[], dict[str, Any]]


# Prepared inputs of several items -> each item's images, in order.
Render = Callable[[list[dict[str, Any]]], list[list[Image.Image]]]


@dataclass
class Job:
    items: list[Item]
    render: Render


def run_items(job: Job, desc: str, progress: bool | str = True, batch_size: int = 1) -> JobReport:
    """Run this process's share of `job.items`, skipping finished ones, `batch_size` pairs per pipeline pass.

    A UserError or an unreadable input fails that item only; it is reported and the job goes on. When a
    whole batch fails, its items are retried one by one so the failure is pinned on the right item
    (`run_batches`). Each item's images are written to its paths atomically (`pcdms.imageio.save_atomic`).
    progress: True (a bar in a terminal, else lines), False (silent) or a `pcdms.progress` mode; only the
    main process reports, for its own share of the pairs.
    """
    from accelerate import PartialState

    from pcdms.progress import Progress, resolve_mode

    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    state = PartialState()
    report = JobReport()
    with state.split_between_processes(job.items) as mine:
        todo = []
        for item in mine:
            if all(p.exists() for p in item.paths):
                report.skipped.append(item.name)
            else:
                todo.append(item)
        bar = Progress(len(todo), desc, "pair", resolve_mode(progress), enabled=state.is_main_process)

        def done(item: Item, images: list[Image.Image]) -> None:
            for image, path in zip(images, item.paths):
                save_atomic(image, path)
            report.done.append(item.name)

        run_batches(todo, job.render, batch_size, done, lambda item, why: report.failed.append((item.name, why)),
                    step=bar.update)
        bar.close()
    return report


def run_batches(
    items: Sequence[Item],
    render: Render,
    batch_size: int,
    done: Callable[[Item, list[Image.Image]], None],
    failed: Callable[[Item, str], None],
    step: Callable[[int], None] | None = None,
) -> None:
    """The batch-then-retry core of every job (`run_items`; `pcdms.jobs.animate` over a pose sequence's frames).

    `items` go through `render` `batch_size` at a time, in order. An item whose `prepare()` raises UserError or
    OSError is passed to `failed(item, reason)` and the rest of its batch still runs; when a whole batch
    raises, its items are rendered one by one, so the failure is pinned on the right item and the others
    still come out. `done(item, images)` gets each rendered item (its images in the order of `item.paths`);
    `step(n)` is told after each batch how many items it handled (a progress bar's update).
    """
    for start in range(0, len(items), batch_size):
        chunk, ready = items[start:start + batch_size], []
        for item in chunk:
            try:
                ready.append((item, item.prepare()))
            except (UserError, OSError) as err:
                failed(item, str(err))
        for item, images in _render_or_retry(render, ready, failed):
            done(item, images)
        if step is not None:
            step(len(chunk))


def _render_or_retry(render: Render, ready: list[tuple[Item, dict[str, Any]]],
                     failed: Callable[[Item, str], None]) -> list[tuple[Item, list[Image.Image]]]:
    if not ready:
        return []
    try:
        return list(zip([item for item, _ in ready], render([inputs for _, inputs in ready])))
    except (UserError, OSError) as err:
        if len(ready) == 1:
            failed(ready[0][0], str(err))
            return []
    return [done for one in ready for done in _render_or_retry(render, [one], failed)]


def pipeline_render(pipeline: Any, num_samples: int = 1, **call_kwargs: Any) -> Render:
    """A `Render` that runs `pipeline.batch` once over the prepared pairs. Each prepared dict holds
    `source_image`, `generator` and, as the job needs, `target_pose`, `source_pose`, `target_embeds` (1, D)
    and `coarse_image`."""
    def render(inputs: list[dict[str, Any]]) -> list[list[Image.Image]]:
        embeds = [x["target_embeds"] for x in inputs if x.get("target_embeds") is not None]
        outputs = pipeline.batch(
            [x["source_image"] for x in inputs], [x.get("target_pose") for x in inputs],
            [x.get("source_pose") for x in inputs], generators=[x["generator"] for x in inputs],
            target_embeds=torch.cat(embeds) if embeds else None,
            coarse_images=[x["coarse_image"] for x in inputs] if "coarse_image" in inputs[0] else None,
            num_samples=num_samples, **call_kwargs)
        return [out.images for out in outputs]
    return render


def dataset_items(
    pipeline: Any,
    root: str | Path,
    split: str,
    out_dir: Path,
    num_samples: int = 1,
    seed: int = 0,
    limit: int | None = None,
    ground_truth_embeds: bool = False,
    **call_kwargs: Any,
) -> Job:
    """One item per pair of the split; each seeds its own generator from (seed, pair index) so results do not
    depend on how pairs are shared across processes or batched, or on what was skipped.

    ground_truth_embeds: feed stage 2 the target's own CLIP embedding instead of the prior's (how the authors
    make stage 3's training data, `pcdms export-coarse`)."""
    from pcdms.data.dataset import load_person_image
    from pcdms.data.formats import load_split

    data = load_split(root, split)
    pairs = data.pairs[:limit] if limit else data.pairs
    items = []
    for index, pair in enumerate(pairs):
        stem = output_stem(pair.source, pair.target)

        def prepare(pair=pair, index=index) -> dict[str, Any]:
            src, tgt = data.images[pair.source], data.images[pair.target]
            src_image, src_pose = _image_and_pose(src, load_person_image)
            inputs = {"source_image": src_image, "source_pose": src_pose, "target_pose": _pose_of(tgt),
                      "generator": torch.Generator().manual_seed(seed * 1_000_003 + index)}
            if ground_truth_embeds:
                target_image, _ = _image_and_pose(tgt, load_person_image)
                inputs["target_embeds"] = pipeline.embed_image(target_image)
            return inputs

        items.append(Item(stem, output_paths(out_dir, stem, num_samples), prepare))
    return Job(items, pipeline_render(pipeline, num_samples, **call_kwargs))


def _pose_of(entry: object) -> Pose:
    frame = entry.frame
    if frame is None:  # authors' format: fractions of the whole image
        from pcdms.imageio import load_image

        width, height = load_image(entry.path).size
        frame = (height, width)
    pose = Pose.from_normalized(entry.keypoints, *frame)
    if not pose.visible.any():
        file, where = entry.origin
        raise UserError(f"{file}{':' + where if where else ''}: image '{entry.name}' has no usable keypoint (all "
                        "missing, NaN or outside the frame); fix the annotation or drop its pairs")
    return pose


def _image_and_pose(entry: object, load_person_image: Callable) -> tuple[Image.Image, Pose]:
    pose = _pose_of(entry)
    return load_person_image(entry, pose.height, pose.width), pose


def refine_items(
    pipeline: Any,
    images: Iterable[Path],
    out_dir: Path,
    source_for: Callable[[Path], Image.Image],
    seed: int = 0,
    **call_kwargs: Any,
) -> Job:
    """Stage 3 over images made by any method; `source_for(path)` gives the source photo of each."""
    from pcdms.imageio import load_image

    items = []
    for index, path in enumerate(sorted(images)):
        def prepare(path=path, index=index) -> dict[str, Any]:
            return {"source_image": source_for(path), "coarse_image": load_image(path),
                    "generator": torch.Generator().manual_seed(seed * 1_000_003 + index)}

        items.append(Item(path.name, [out_dir / f"{path.stem}.png"], prepare))
    return Job(items, pipeline_render(pipeline, stages="refine", **call_kwargs))
