"""The names of generated images: `<from>_to_<to>.png`, one home for the convention (paper Sec. 4.1).

`pcdms generate` writes them, `export-coarse` writes stage 3's inputs under them, the training dataset finds
those inputs by them and `pcdms evaluate` pairs predictions with ground truth by them
(`pcdms.metrics.pairing`). `<from>` and `<to>` are dataset image names with their image extension dropped and
folders flattened with '_'; several samples of one pair add `_sample<k>`.
"""

from __future__ import annotations

import os
from pathlib import Path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def output_stem(source: str, target: str) -> str:
    """`<from>_to_<to>` from dataset image names: extensions dropped, folders flattened with '_'."""
    def stem(name: str) -> str:
        base, ext = os.path.splitext(name)
        return (base if ext.lower() in IMAGE_EXTENSIONS else name).replace("/", "_")

    return f"{stem(source)}_to_{stem(target)}"


def output_paths(out_dir: Path, stem: str, num_samples: int) -> list[Path]:
    """The files of one pair: `<stem>.png`, or `<stem>_sample<k>.png` for k < num_samples when several."""
    if num_samples == 1:
        return [out_dir / f"{stem}.png"]
    return [out_dir / f"{stem}_sample{k}.png" for k in range(num_samples)]
