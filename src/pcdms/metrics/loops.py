"""Batched passes over image files, on the CPU or a GPU, split across processes (REFERENCE.md Sec. 5).

DataLoader workers read, resize and score each image pair with the CPU metrics (scikit-image), while
the main loop runs the networks (LPIPS, Inception) on whole batches on the device. Under `accelerate
launch` / `torchrun` every process takes a contiguous share of the images and the results are gathered
in the original order, so the numbers do not depend on the number of processes. No image is ever
dropped here; the old scripts' dropped remainder batch is reproduced later, on request, by selection.
An image that cannot be read does not stop a pass (nor raise inside a loader worker): its item carries the
error, its row says so, it gets no features, and the caller lists it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pcdms.errors import UserError
from pcdms.metrics.images import EvalSize, load_for_eval, to_tensor_chw
from pcdms.metrics.pairing import Prediction
from pcdms.metrics.garment import GARMENT_METRICS, garment_colour_error, to_uint8
from pcdms.metrics.pixel import PIXEL_METRICS, pixel_metrics

#: Every per-image metric a scored row holds (besides lpips), in report order: pixel metrics, then garment colour.
PER_IMAGE_METRICS = {**PIXEL_METRICS, **GARMENT_METRICS}

#: (B, 3, H, W) float 0-255 -> (B, D) features; `name` and `identity` attributes are also expected.
FeatureExtractor = Callable[[torch.Tensor], np.ndarray]


@dataclass
class Compute:
    """Where and how the passes run: device, batch size, loader workers, progress (True: a bar in a terminal,
    else lines; False: silent; or a `pcdms.progress` mode), processes."""

    device: torch.device
    batch_size: int = 32
    workers: int = 0
    progress: bool | str = True
    state: Any = field(default=None)  # accelerate.PartialState, or None for a single process

    @property
    def is_main(self) -> bool:
        return self.state is None or self.state.is_main_process

    @property
    def num_processes(self) -> int:
        return 1 if self.state is None else self.state.num_processes


class _PredictionSet(Dataset):
    """Item i: prediction and ground truth (3, H, W) float32 0-255 plus the PER_IMAGE_METRICS of the pair."""

    def __init__(self, predictions: list[Prediction], size: EvalSize) -> None:
        self.predictions, self.size = predictions, size

    def __len__(self) -> int:
        return len(self.predictions)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.predictions[index]
        try:
            pred, gt = load_for_eval(item.path, self.size), load_for_eval(item.gt_path, self.size)
        except (UserError, OSError, ValueError) as err:
            blank = torch.zeros(3, self.size.height, self.size.width)
            return {"index": index, "pred": blank, "gt": blank, "error": str(err),
                    **{name: float("nan") for name in PER_IMAGE_METRICS}}
        return {"index": index, "pred": to_tensor_chw(pred), "gt": to_tensor_chw(gt), "error": "",
                **pixel_metrics(pred, gt), "garment_colour_error": garment_colour_error(to_uint8(pred), to_uint8(gt))}


class _FolderSet(Dataset):
    """Item i: the image (3, H, W) float32 0-255 at the evaluation size."""

    def __init__(self, paths: list[Path], size: EvalSize) -> None:
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            return {"index": index, "image": to_tensor_chw(load_for_eval(self.paths[index], self.size)), "error": ""}
        except (UserError, OSError, ValueError) as err:
            return {"index": index, "image": torch.zeros(3, self.size.height, self.size.width), "error": str(err)}


def _my_share(count: int, compute: Compute) -> list[int]:
    """This process's contiguous share of range(count) (all of it for a single process)."""
    if compute.num_processes == 1:
        return list(range(count))
    with compute.state.split_between_processes(list(range(count))) as share:
        return list(share)


def _gather_list(items: list, compute: Compute) -> list:
    """Concatenate every process's list, in process order (the identity for one process)."""
    if compute.num_processes == 1:
        return items
    from accelerate.utils import gather_object

    return gather_object(items)


def _gather_features(chunks: dict[str, list[np.ndarray]], compute: Compute) -> dict[str, np.ndarray]:
    gathered = {}
    for name, arrays in chunks.items():
        local = np.concatenate(arrays) if arrays else np.zeros((0, 0), np.float32)
        parts = [part for part in _gather_list([local], compute) if part.size]
        gathered[name] = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    return gathered


def _batches(dataset: Dataset, indices: list[int], compute: Compute, desc: str):
    from torch.utils.data import Subset

    from pcdms.progress import Progress, resolve_mode

    loader = DataLoader(Subset(dataset, indices), batch_size=compute.batch_size, num_workers=compute.workers)
    mode = resolve_mode(compute.progress)
    with Progress(len(indices), desc, "img", mode, enabled=compute.is_main) as bar:
        for batch in loader:
            yield batch
            bar.update(len(batch["index"]))


def score_predictions(
    predictions: list[Prediction],
    size: EvalSize,
    compute: Compute,
    lpips_metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
    extractors: list[FeatureExtractor],
) -> tuple[list[dict[str, float | None]], dict[str, np.ndarray]]:
    """Per-prediction metrics (same order as `predictions`) and each extractor's (N, D) features.

    Each row holds PER_IMAGE_METRICS plus 'lpips' (None when `lpips_metric` is None), or only 'error' (the reason)
    when the prediction or its ground truth could not be read; features are those of the readable rows, in order.
    """
    rows: list[dict[str, Any]] = []
    chunks: dict[str, list[np.ndarray]] = {e.name: [] for e in extractors}
    dataset = _PredictionSet(predictions, size)
    for batch in _batches(dataset, _my_share(len(predictions), compute), compute, "scoring predictions"):
        good = [j for j, error in enumerate(batch["error"]) if not error]
        pred, gt = batch["pred"][good], batch["gt"][good]
        distances = lpips_metric(pred, gt) if lpips_metric is not None and good else None
        for extractor in extractors:
            if good:
                chunks[extractor.name].append(extractor(pred))
        for j, error in enumerate(batch["error"]):
            if error:
                rows.append({"error": error})
                continue
            row: dict[str, Any] = {name: float(batch[name][j]) for name in PER_IMAGE_METRICS}
            row["lpips"] = float(distances[good.index(j)]) if distances is not None else None
            rows.append(row)
    return _gather_list(rows, compute), _gather_features(chunks, compute)


def folder_features(
    paths: list[Path], size: EvalSize, compute: Compute, extractors: list[FeatureExtractor], desc: str
) -> dict[str, np.ndarray]:
    """Each extractor's (N, D) features of the readable images at `paths`, in that order, and the unreadable
    ones as (file name, reason)."""
    chunks: dict[str, list[np.ndarray]] = {e.name: [] for e in extractors}
    failed: list[tuple[str, str]] = []
    for batch in _batches(_FolderSet(paths, size), _my_share(len(paths), compute), compute, desc):
        good = [j for j, error in enumerate(batch["error"]) if not error]
        failed += [(paths[int(batch["index"][j])].name, e) for j, e in enumerate(batch["error"]) if e]
        for extractor in extractors:
            if good:
                chunks[extractor.name].append(extractor(batch["image"][good]))
    return _gather_features(chunks, compute), _gather_list(failed, compute)
