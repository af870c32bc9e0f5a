"""`evaluate`: every published metric variant over a folder of predictions (REFERENCE.md Sec. 5).

One pass scores every matched prediction (pixel metrics, LPIPS, Inception features); real statistics
come from the cache or one pass over the real folder; then each *selection* of predictions is
summarised: `single_sample` always (each pair's first sample), `best_of_<N>` only when asked (each
pair's sample with the highest ssim_pidm against the ground truth: an oracle, as in the PCDMs
evaluation, and labelled so). A metric whose weights are absent is reported unavailable with the
reason; the others still run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pcdms.errors import UserError
from pcdms.metrics import NETWORK_METRICS, fid
from pcdms.metrics.images import EvalSize, list_images
from pcdms.metrics.garment import garment_baselines
from pcdms.metrics.loops import Compute, FeatureExtractor, folder_features, score_predictions
from pcdms.metrics.pairing import Matching, match_predictions, read_pairs_csv
from pcdms.metrics.pixel import PIXEL_METRICS
from pcdms.metrics.weights import WeightsUnavailable


@dataclass
class EvaluateOptions:
    """Everything `pcdms evaluate` takes; see its --help for each option's meaning."""

    pred_dir: Path
    gt_dir: Path
    real_dir: Path | None = None  # None: <gt>/../train when it exists, else the --gt folder
    size: EvalSize = field(default_factory=lambda: EvalSize(176, 256))
    pairs_file: Path | None = None
    best_of: int = 1
    drop_last_batch: bool = False
    cache_dir: Path = fid.DEFAULT_CACHE_DIR
    lpips_backbone: Path | None = None
    inception_weights: Path | None = None
    skip: tuple[str, ...] = ()  # names from NETWORK_METRICS not to compute
    garment_baselines: bool = False  # also score source photo / other identity against each target (garment.py)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.skip) - set(NETWORK_METRICS))
        if unknown:
            raise UserError(f"--skip {', '.join(unknown)}: expected one of {', '.join(NETWORK_METRICS)}")


@dataclass
class EvaluationResult:
    """What the report is written from. `rows` align with `predictions` order of `matching`."""

    options: EvaluateOptions
    matching: Matching
    rows: list[dict]
    summaries: dict[str, dict]
    unavailable: dict[str, str]
    real: dict
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (prediction, reason): not scored
    garment_baselines: dict | None = None  # garment.garment_baselines, when asked for

    @property
    def complete(self) -> bool:
        """False when some prediction, ground truth or real image could not be read (the report says which)."""
        return not self.unreadable and not self.real.get("unreadable")


def default_real_dir(gt_dir: Path) -> tuple[Path, str]:
    """The training images beside the test images (`<root>/train` for `<root>/test`), else --gt itself."""
    sibling = gt_dir.parent / "train"
    if sibling.is_dir() and sibling.resolve() != gt_dir.resolve():
        return sibling, "training images found beside --gt (the GFLA-lineage protocol)"
    return gt_dir, "the --gt folder, since no --real was given and no train/ folder is beside it: not the training set"


def _networks(options: EvaluateOptions, device: torch.device) -> tuple[object | None, list, dict[str, str]]:
    """LPIPS and the Inception extractors that can run here; the reasons for those that cannot."""
    from pcdms.metrics.inception import GFLAInceptionFeatures, TFInceptionFeatures
    from pcdms.metrics.perceptual import LpipsMetric

    unavailable = {name: "skipped (--skip)" for name in options.skip}
    lpips_metric, extractors = None, []
    builders = {
        "lpips": lambda: LpipsMetric(options.lpips_backbone, device),
        "fid_tf": lambda: TFInceptionFeatures(device),
        "fid_gfla": lambda: GFLAInceptionFeatures(options.inception_weights, device),
    }
    for name, build in builders.items():
        if name in options.skip:
            continue
        try:
            network = build()
        except WeightsUnavailable as err:
            unavailable[name] = str(err)
            continue
        if name == "lpips":
            lpips_metric = network
        else:
            extractors.append(network)
    return lpips_metric, extractors, unavailable


def _kept_for_batches(count: int, batch_size: int, drop_last: bool) -> int:
    """How many images the old scripts used: whole batches only (batch shrunk to the set when larger)."""
    if not drop_last or count == 0:
        return count
    batch = min(batch_size, count)
    return (count // batch) * batch


def real_images(options: EvaluateOptions) -> tuple[Path, str, list[Path]]:
    """The real folder for FID (see `default_real_dir`), why it was chosen, and its image files."""
    real_dir, note = (options.real_dir, "given with --real") if options.real_dir else default_real_dir(options.gt_dir)
    return real_dir, note, list_images(real_dir, "--real")


def real_statistics(
    options: EvaluateOptions, compute: Compute, extractors: list[FeatureExtractor]
) -> tuple[dict[str, fid.FeatureStats], dict]:
    """Real statistics per extractor (cached), and what to report about them."""
    real_dir, note, files = real_images(options)
    files = files[: _kept_for_batches(len(files), compute.batch_size, options.drop_last_batch)]
    drop = min(compute.batch_size, len(files)) if options.drop_last_batch else None
    info = {"folder": str(real_dir), "note": note, "images": len(files), "cache": {}}
    fingerprint = fid.folder_fingerprint(files)
    stats, todo = {}, []
    for extractor in extractors:
        path = fid.stats_cache_path(options.cache_dir, extractor.name, extractor.identity, options.size,
                                    fingerprint, drop)
        cached = fid.load_cached_stats(path)
        info["cache"][extractor.name] = {"file": str(path), "hit": cached is not None}
        if cached is not None:
            stats[extractor.name] = cached
        else:
            todo.append((extractor, path))
    if todo:
        features, failed = folder_features(files, options.size, compute, [e for e, _ in todo], "real statistics")
        if failed:
            info["unreadable"] = [f"{name}: {reason}" for name, reason in failed]
            info["images"] = len(files) - len(failed)
        for extractor, path in todo:
            stats[extractor.name] = fid.feature_statistics(features[extractor.name])
            if compute.is_main and not failed:  # statistics of a partly read folder are not cached
                fid.save_stats(path, stats[extractor.name], {"folder": str(real_dir), "images": len(files),
                               "variant": extractor.name, "extractor": extractor.identity,
                               "size": str(options.size), "drop_last_batch": drop})
    return stats, info


def summarise(
    rows: list[dict],
    features: dict[str, np.ndarray],
    real: dict[str, fid.FeatureStats],
    selection: list[int],
    batch_size: int,
    drop_last: bool,
) -> dict:
    """Mean of each per-image metric and each FID over the selected rows.

    Pixel metrics always use every selected image; garment_colour_error those with a value
    (`images_garment` of them; the others had no person found). With `drop_last`, LPIPS and FID use only
    the whole batches of the old scripts (the first floor(n / batch) * batch images, in name order).
    """
    kept = selection[: _kept_for_batches(len(selection), batch_size, drop_last)]
    summary: dict = {"images": len(selection), "images_lpips_fid": len(kept)}
    for name in PIXEL_METRICS:
        summary[name] = float(np.mean([rows[i][name] for i in selection]))
    scored = [rows[i]["garment_colour_error"] for i in selection if not np.isnan(rows[i]["garment_colour_error"])]
    summary["garment_colour_error"] = float(np.mean(scored)) if scored else float("nan")
    summary["images_garment"] = len(scored)
    distances = [rows[i]["lpips"] for i in kept]
    summary["lpips"] = float(np.mean(distances)) if distances and None not in distances else None
    for name, stats in real.items():
        try:
            summary[name] = fid.frechet_distance(fid.feature_statistics(features[name][kept]), stats)
        except UserError as err:
            summary[name] = None
            summary.setdefault("notes", []).append(f"{name}: {err}")
    return summary


def selections(matching: Matching, rows: list[dict], best_of: int) -> dict[str, list[int]]:
    """Row indices per selection: 'single_sample' (first sample of each pair), and 'best_of_<N>' if N > 1."""
    chosen: dict[str, list[int]] = {"single_sample": []}
    best: list[int] = []
    start = 0
    for key in sorted(matching.pairs):
        count = len(matching.pairs[key])
        group = list(range(start, start + count))
        chosen["single_sample"].append(group[0])
        best.append(max(group, key=lambda i: rows[i]["ssim_pidm"]))  # first of equals wins
        start += count
    if best_of > 1:
        chosen[f"best_of_{best_of}"] = best
    return chosen


def evaluate(options: EvaluateOptions, compute: Compute,
             announce: Callable[[Matching], None] | None = None) -> EvaluationResult | None:
    """Run the whole evaluation; returns the result on the main process, None on the others.
    `announce(matching)` is called on the main process once the predictions are matched, before any scoring."""
    pred_files = list_images(options.pred_dir, "--pred")
    gt_files = list_images(options.gt_dir, "--gt")
    pairs = read_pairs_csv(options.pairs_file) if options.pairs_file else None
    matching = match_predictions(pred_files, gt_files, pairs, options.best_of)
    if not matching.pairs:
        shown = ", ".join((matching.unparsed + matching.missing_gt + matching.not_in_pairs)[:5])
        raise UserError(f"--pred {options.pred_dir}: no prediction matches a ground truth in --gt {options.gt_dir} "
                        f"(expected <from>_to_<to>.png with <to> an image of --gt; e.g. {shown or 'none'})")
    if announce is not None and compute.is_main:
        announce(matching)
    lpips_metric, extractors, unavailable = _networks(options, compute.device)
    if extractors:
        real_images(options)  # a wrong --real fails now, not after the predictions are scored
    predictions = matching.predictions()
    rows, features = score_predictions(predictions, options.size, compute, lpips_metric, extractors)
    unreadable = drop_unreadable(matching, predictions, rows)
    if unreadable:
        predictions, rows = matching.predictions(), [row for row in rows if "error" not in row]
        if not matching.pairs:
            raise UserError(f"--pred {options.pred_dir}: none of the {len(unreadable)} matched predictions could be "
                            f"read (with its ground truth): {'; '.join(f'{n}: {r}' for n, r in unreadable[:5])}")
    real, real_info = real_statistics(options, compute, extractors) if extractors else ({}, {"note": "no FID computed"})
    if not compute.is_main:
        return None
    chosen = selections(matching, rows, options.best_of)
    summaries = {name: summarise(rows, features, real, idx, compute.batch_size, options.drop_last_batch)
                 for name, idx in chosen.items()}
    members = {name: set(idx) for name, idx in chosen.items()}
    for index, (pred, row) in enumerate(zip(predictions, rows, strict=True)):
        row.update({"pair": pred.pair, "sample": pred.sample, "prediction": pred.path.name,
                    "ground_truth": pred.gt_path.name})
        row.update({name: index in member for name, member in members.items()})
    baselines = garment_baselines(matching, gt_files, options.size) if options.garment_baselines else None
    return EvaluationResult(options, matching, rows, summaries, unavailable, real_info, unreadable, baselines)


def drop_unreadable(matching: Matching, predictions: list, rows: list[dict]) -> list[tuple[str, str]]:
    """Take the predictions whose row is an error out of `matching` (pairs left empty go); return them as
    (prediction file name, reason)."""
    failed = {pred.path: row["error"] for pred, row in zip(predictions, rows, strict=True) if "error" in row}
    for key in list(matching.pairs):
        kept = [pred for pred in matching.pairs[key] if pred.path not in failed]
        if kept:
            matching.pairs[key] = kept
        else:
            del matching.pairs[key]
    return [(path.name, reason) for path, reason in failed.items()]
