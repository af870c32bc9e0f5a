"""What a job will do, said once at its start: data and split, pairs, how images are fitted to the model's size,
device and precision, where outputs and checkpoints go.

The image sizes are read from file headers (no decoding) of up to `SAMPLE` images spread over the split, and
each size is followed through the same steps the job applies: for training (`pcdms.data.dataset`) a centre
crop to the annotation frame's aspect, then a bicubic resize to the model's size; for inference
(`pcdms.framing.Fit`) padding to the model's aspect with the image's border colour (or squashing, `data.fit:
stretch`), a resize, and outputs cropped back to the input's size.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

if TYPE_CHECKING:
    from pcdms.config import RunConfig
    from pcdms.data.dataset import PairDataset
    from pcdms.metrics.evaluation import EvaluateOptions
    from pcdms.metrics.loops import Compute
    from pcdms.metrics.pairing import Matching

SAMPLE = 32
_ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height (load_image applies them)


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def header_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) as `pcdms.imageio.load_image` will return it, from the header only; None if unreadable."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return (height, width) if orientation in _ROTATED else (width, height)


def _spread(items: Sequence, limit: int = SAMPLE) -> list:
    if len(items) <= limit:
        return list(items)
    return [items[i * len(items) // limit] for i in range(limit)]


def _crop_to_aspect(size: tuple[int, int], frame: tuple[int, int] | None) -> tuple[int, int]:
    """`pcdms.imageio.center_crop_to_aspect` on sizes: frame is (height, width)."""
    if frame is None:
        return size
    width, height = size
    target = frame[1] / frame[0]
    if abs(width / height - target) <= 0.01 * target:
        return size
    return (round(height * target), height) if width / height > target else (width, round(width / target))


def _resize_note(size: tuple[int, int], model: tuple[int, int]) -> str:
    if size == model:
        return f"{_wxh(model)} (already the model's size)"
    before, after = size[0] / size[1], model[0] / model[1]
    kind = "aspect kept" if abs(before - after) <= 0.01 * after else f"squashed: aspect {before:.2f} -> {after:.2f}"
    return f"{_wxh(model)} (bicubic resize, {kind})"


def training_chain(size: tuple[int, int], frame: tuple[int, int] | None, model: tuple[int, int]) -> str:
    """How a training image of `size` (w, h) with annotation `frame` (h, w) reaches the `model` size (w, h)."""
    steps = [_wxh(size)]
    cropped = _crop_to_aspect(size, frame)
    if cropped != size:
        steps.append(f"centre crop {_wxh(cropped)} (the annotation frame's aspect)")
    steps.append(_resize_note(cropped, model))
    return " -> ".join(steps)


def inference_chain(size: tuple[int, int], frame: tuple[int, int] | None, model: tuple[int, int],
                    stretch: bool) -> str:
    """How an input image reaches the `model` size (w, h) in the pipeline, and how results come back."""
    from pcdms.framing import Fit

    steps = [_wxh(size)]
    cropped = _crop_to_aspect(size, frame)
    if cropped != size:
        steps.append(f"centre crop {_wxh(cropped)} (the annotation frame's aspect)")
    person = (frame[1], frame[0]) if frame is not None else cropped
    if person != cropped:
        steps.append(f"{_wxh(person)} (the annotation frame)")
    fit = Fit.of(person[0], person[1], model[1], model[0], stretch)
    if fit.padded != person:
        steps.append(f"padded with its border colour to {_wxh(fit.padded)} (the model's aspect)")
    steps.append(_resize_note(fit.padded, model))
    back = f"; results come back at {_wxh(person)}" if person != model else ""
    return " -> ".join(steps) + back


def describe_sizes(chains: list[str], population: int) -> str:
    """The most common chain, and how many of the sampled images follow each other one."""
    if not chains:
        return "no readable image to sample"
    counts = Counter(chains).most_common()
    text = counts[0][0]
    sampled = f"{len(chains)} of {population} images" if population > len(chains) else f"all {population} images"
    if len(counts) == 1:
        return f"{text}; sizes read from {sampled}"
    others = "; ".join(f"{chain} ({count})" for chain, count in counts[1:4])
    more = f"; {len(counts) - 4} more kinds" if len(counts) > 4 else ""
    return f"{text} ({counts[0][1]} of {len(chains)} sampled); also {others}{more}"


def dataset_fit(entries: Sequence, model: tuple[int, int], how: str = "train", stretch: bool = False) -> str:
    """Fit of the images of dataset `entries` (`ImageEntry`) to `model` (w, h); how: 'train' or 'infer'."""
    present = [e for e in entries if e.path is not None]
    chains = []
    for entry in _spread(present):
        size = header_size(entry.path)
        if size is None:
            continue
        if how == "train":
            chains.append(training_chain(size, entry.frame, model))
        else:
            chains.append(inference_chain(size, entry.frame, model, stretch))
    return describe_sizes(chains, len(present))


def files_fit(paths: Sequence[Path], model: tuple[int, int], stretch: bool = False) -> str:
    """Fit of image files given directly (no annotation frame) to `model` (w, h) at inference."""
    chains = [inference_chain(size, None, model, stretch)
              for size in (header_size(p) for p in _spread(list(paths))) if size is not None]
    return describe_sizes(chains, len(paths))


def precision_name(dtype: object) -> str:
    return {"torch.float16": "fp16", "torch.bfloat16": "bf16", "torch.float32": "fp32"}.get(str(dtype), str(dtype))


def format_summary(title: str, rows: Sequence[tuple[str, str]]) -> str:
    """'title' then one indented 'label  value' row each."""
    width = max((len(label) for label, _ in rows), default=0)
    return "\n".join([title] + [f"  {label.ljust(width)}  {value}" for label, value in rows])


def training_summary(stage: str, cfg: RunConfig, dataset: PairDataset, run_dir: Path, device: Any,
                     num_processes: int) -> str:
    """The start-up summary of `pcdms train`: data, image fit, device, batch and where everything goes."""
    data, tc = cfg.data, cfg.train
    split = dataset.data
    model = (data.width, data.height)
    rows = [
        ("data", f"{data.root}, split '{split.split}' ({split.format} format): {len(dataset):,} pairs of "
                 f"{len(split.images):,} images" + (f", flipped with p={data.flip_prob}" if data.flip_prob else "")),
        ("images", dataset_fit(list(split.images.values()), model, "train")),
        ("loader", (f"{data.num_workers} worker process{'es' if data.num_workers != 1 else ''}, "
                    f"{data.prefetch_factor} batches ahead each" if data.num_workers else "in the training process")
                   + (f"; decoded images and pose renders cached up to {data.cache_mb:,} MiB per process"
                      if data.cache_mb else "; no cache (data.cache_mb=0)")),
    ]
    if stage == "refine":
        rows.append(("coarse", f"stage-2 images from {data.coarse_dir}, resized to {_wxh(model)} likewise"))
    if tc.prior_embeddings is not None:
        rows.append(("embedding", f"sampled by the prior {tc.prior_embeddings} from each source and both poses "
                                  f"({cfg.sample.num_inference_steps} steps), not the target's own"))
    precision = {"no": "fp32"}.get(tc.mixed_precision, f"{tc.mixed_precision} mixed precision")
    rows += [
        ("device", f"{getattr(device, 'type', device) if num_processes > 1 else device} x {num_processes} "
                   f"process{'es' if num_processes > 1 else ''}, {precision}"),
        ("batch", f"{tc.batch_size} per process x {num_processes} x {tc.gradient_accumulation_steps} accumulation "
                  f"= {tc.batch_size * num_processes * tc.gradient_accumulation_steps} pairs per step; "
                  f"{tc.max_steps:,} steps, lr {tc.learning_rate:g}"),
        ("run", f"{run_dir}: checkpoints checkpoint-<step>/ every {tc.checkpoint_every} steps (newest "
                f"{tc.keep_checkpoints} kept), final weights model/"),
        ("logs", f"{run_dir / 'logs'} (TensorBoard; progress.jsonl), a line every {tc.log_every} steps"),
        ("previews", f"{run_dir / 'samples'}/step-<step>.png every {tc.sample_every} steps"
                     if tc.sample_every > 0 else "off (train.sample_every=0)"),
    ]
    return format_summary(f"train {stage}", rows)


def split_rows(root: str | Path, split: str, limit: int | None, model: tuple[int, int], stretch: bool,
               format: str = "auto") -> list[tuple[str, str]]:
    """'data' and 'images' rows of a job over the pairs of one dataset split (first `limit` pairs) at inference."""
    from pcdms.data.formats import load_split

    data = load_split(root, split, format)
    pairs = data.pairs[:limit] if limit else data.pairs
    names = dict.fromkeys(name for pair in pairs for name in (pair.source, pair.target))
    entries = [data.images[name] for name in names if name in data.images]
    limited = f" (the first {len(pairs)} of {len(data.pairs):,})" if len(pairs) < len(data.pairs) else ""
    return [("data", f"{root}, split '{split}' ({data.format} format): {len(pairs):,} pairs{limited}"),
            ("images", dataset_fit(entries, model, "infer", stretch))]


def inference_summary(title: str, pipe: Any, rows: Sequence[tuple[str, str]], out: Path, batch_size: int,
                      num_processes: int = 1) -> str:
    """The start-up summary of a pipeline job (generate, refine, export-coarse)."""
    stage = pipe.inpaint if pipe.inpaint is not None else pipe.refine
    processes = f"{num_processes} process{'es' if num_processes > 1 else ''}"
    return format_summary(title, [
        *rows,
        ("device", f"{stage.device} x {processes}, {precision_name(stage.dtype)}, {batch_size} pairs per pass"),
        ("out", str(out)),
    ])


def evaluation_fit(paths: Sequence[Path], size: tuple[int, int]) -> str:
    """How images reach the evaluation `size` (w, h): every image is resized to it (cv2 bicubic, unclipped)."""
    chains = []
    for found in (header_size(p) for p in _spread(list(paths))):
        if found is not None:
            note = "already that size" if found == size else "cv2 bicubic, no crop"
            chains.append(f"{_wxh(found)} -> {_wxh(size)} ({note})")
    return describe_sizes(chains, len(paths))


def evaluation_summary(matching: Matching, options: EvaluateOptions, compute: Compute, out: Path) -> str:
    """The start-up summary of `pcdms evaluate`, once the predictions are matched to their ground truth."""
    predictions = matching.predictions()
    size = (options.size.width, options.size.height)
    problems = sum(len(v) for v in matching.problems().values())
    skipped = f"; skipped: {', '.join(options.skip)}" if options.skip else ""
    rows = [
        ("pred", f"{options.pred_dir}: {len(predictions):,} predictions of {len(matching.pairs):,} pairs"
                 + (f" ({problems} unmatched or incomplete, listed below)" if problems else "")),
        ("gt", str(options.gt_dir)),
        ("images", f"predictions {evaluation_fit([p.path for p in predictions], size)}"),
        ("truth", evaluation_fit(sorted({p.gt_path for p in predictions}), size)),
        ("device", f"{compute.device} x {compute.num_processes} process{'es' if compute.num_processes > 1 else ''}, "
                   f"{compute.batch_size} images per network batch{skipped}"),
        ("out", str(out)),
    ]
    return format_summary("evaluate", rows)
