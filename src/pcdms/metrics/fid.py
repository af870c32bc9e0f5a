"""FID statistics, the Frechet distance, and the cache of real-image statistics (REFERENCE.md Sec. 5).

The distance is pytorch-fid's `calculate_frechet_distance`, the function the GFLA and PCDMs scripts
copied verbatim. Real statistics (over the training images, as the GFLA lineage does) are slow to
compute, so they are cached; the PCDMs script cached them inside the image folder keyed by size only,
and reused stale files after the folder changed. Here the key is a SHA-256 over:
- every file's name, byte size and SHA-256 of its content (a changed, added or removed image is a new key;
  hashing costs seconds per GB, far less than the Inception pass it saves),
- the variant and its extractor's identity (network file and input handling),
- the evaluation size and resize method, and the drop-last-batch setting.
Cache files are `.npz` holding only arrays (read with allow_pickle=False) plus a JSON note for people.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pcdms.errors import UserError
from pcdms.metrics.images import EvalSize
from pcdms.metrics.weights import file_digest

#: Bump when the way images reach the extractors changes, so old cache entries are not reused.
PIPELINE_VERSION = "cv2-INTER_CUBIC-float32-unclipped/1"
DEFAULT_CACHE_DIR = Path("~/.cache/pcdms/fid")


@dataclass
class FeatureStats:
    """Mean (D,) and covariance (D, D), float64, of `count` feature vectors."""

    mu: np.ndarray
    sigma: np.ndarray
    count: int


def feature_statistics(features: np.ndarray) -> FeatureStats:
    """(N, D) features -> FeatureStats, as the scripts compute them (np.mean, np.cov rowvar=False)."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise UserError(f"FID needs the features of at least 2 images, got {features.shape[0]}")
    features = features.astype(np.float64)
    return FeatureStats(np.mean(features, axis=0), np.cov(features, rowvar=False), int(features.shape[0]))


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """The Frechet distance between two Gaussians (pytorch-fid's implementation)."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    return float(calculate_frechet_distance(a.mu, a.sigma, b.mu, b.sigma))


def folder_fingerprint(files: list[Path]) -> str:
    """SHA-256 over (name, byte size, content SHA-256) of every file, in name order."""
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.name):
        digest.update(f"{path.name}\0{path.stat().st_size}\0{file_digest(path)}\n".encode())
    return digest.hexdigest()


def stats_cache_path(
    cache_dir: Path, variant: str, identity: str, size: EvalSize, fingerprint: str, drop_last: int | None
) -> Path:
    """The cache file for one (folder content, variant, extractor, size, drop-last batch) combination.

    `drop_last` is the batch size whose remainder was dropped, or None when every image was used.
    """
    key = {
        "fingerprint": fingerprint,
        "variant": variant,
        "extractor": identity,
        "size": str(size),
        "pipeline": PIPELINE_VERSION,
        "drop_last_batch": drop_last,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return Path(cache_dir).expanduser() / f"{variant}_{size}_{digest[:24]}.npz"


def load_cached_stats(path: Path) -> FeatureStats | None:
    """The statistics stored at `path`, or None when there is no usable cache file."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return FeatureStats(data["mu"], data["sigma"], int(data["count"]))
    except (OSError, KeyError, ValueError):
        return None  # a truncated or foreign file is recomputed, not trusted


def save_stats(path: Path, stats: FeatureStats, note: dict) -> None:
    """Write statistics atomically (temp file + rename) with a JSON note beside them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(temporary, mu=stats.mu, sigma=stats.sigma, count=np.int64(stats.count))
    os.replace(temporary, path)
    path.with_suffix(".json").write_text(json.dumps(note, indent=2, sort_keys=True) + "\n")
