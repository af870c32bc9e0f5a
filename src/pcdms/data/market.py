"""Market-1501's folder layout and file names, and synthetic people written in it (paper Sec. 4.3, Table 2).

Market-1501 (Zheng et al. 2015) keeps `bounding_box_train/` (training identities), `query/` and
`bounding_box_test/` (the gallery; test identities, disjoint from training). Every image is named
`PPPP_cCsS_FFFFFF_NN.jpg`: person id, camera C (1-6), sequence S, frame, box index in that frame. Re-ID code
reads only the person id and the camera (torchreid: regex `([-\\d]+)_c(\\d)`, camera asserted 1-6); the
evaluation drops gallery images of the query's own person seen by the query's own camera.

`SYNTHETIC_SEQUENCE` (s9; Market itself uses s1-s6) marks an image that `pcdms augment` generated: its person
id and camera stay valid, so a standard re-ID reader takes the augmented folder as it is. This module is the
one home of that convention: `parse_market_name` reads names, `market_name` writes them.

`write_market_synth` draws people with `pcdms.data.synth` into that layout at 128x64 (the Market frame), with
a PATN `market-annotation-train.csv` (keypoints of the training images, with height/width columns), so the
re-ID benchmark (`benchmarks/reid_table2.py`) runs without the real dataset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pcdms.errors import UserError

TRAIN_DIR, QUERY_DIR, GALLERY_DIR = "bounding_box_train", "query", "bounding_box_test"
SYNTHETIC_SEQUENCE = 9  # the sequence digit of generated images (Market's own are 1-6)
MAX_CAMERA = 6  # Market-1501 has six cameras; readers such as torchreid refuse others
MARKET_ANNOTATION = "market-annotation-train.csv"  # PATN's keypoints of Market's training images
_NAME = re.compile(r"^(-?\d+)_c(\d)s(\d)_(\d{6})_(\d{2})\.(jpg|jpeg|png)$", re.IGNORECASE)


@dataclass(frozen=True)
class MarketName:
    """One Market-1501 image name read into its fields."""

    pid: int  # person id (Market: 0 = distractor, -1 = junk; training ids are positive)
    camera: int  # 1..6
    sequence: int  # 1..6 for Market's own images, SYNTHETIC_SEQUENCE for generated ones
    frame: int
    box: int

    @property
    def synthetic(self) -> bool:
        return self.sequence == SYNTHETIC_SEQUENCE


def parse_market_name(name: str) -> MarketName | None:
    """`0002_c1s1_000451_03.jpg` -> MarketName(2, 1, 1, 451, 3); None for a name of another form."""
    match = _NAME.match(name)
    if match is None:
        return None
    pid, camera, sequence, frame, box = (int(g) for g in match.groups()[:5])
    return MarketName(pid, camera, sequence, frame, box)


def market_name(pid: int, camera: int, sequence: int, frame: int, box: int = 0, ext: str = ".jpg") -> str:
    """The Market-1501 file name of these fields: `PPPP_cCsS_FFFFFF_NN.jpg` (frame up to 999999)."""
    if not (1 <= camera <= MAX_CAMERA and 0 <= sequence <= 9 and 0 <= frame <= 999_999 and 0 <= box <= 99):
        raise ValueError(f"no Market-1501 name for camera {camera}, sequence {sequence}, frame {frame}, box {box}")
    return f"{pid:04d}_c{camera}s{sequence}_{frame:06d}_{box:02d}{ext}"


def read_market_folder(folder: Path, argument: str = "--data") -> dict[str, MarketName]:
    """Every image of a Market-1501 folder by file name, or a UserError naming the first badly named image.
    Files that are not images (Market ships `Thumbs.db`) are ignored."""
    if not folder.is_dir():
        raise UserError(f"{argument}: no folder {folder} (a Market-1501 root holds {TRAIN_DIR}/)")
    names = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png") or not path.is_file():
            continue
        parsed = parse_market_name(path.name)
        if parsed is None:
            raise UserError(f"{path}: not a Market-1501 name PPPP_cCsS_FFFFFF_NN.jpg (person id, camera 1-6, "
                            "sequence, frame, box); rename it or move it out of the folder")
        if not 1 <= parsed.camera <= MAX_CAMERA:
            raise UserError(f"{path}: camera c{parsed.camera} is not one of Market-1501's c1-c{MAX_CAMERA}")
        names[path.name] = parsed
    if not names:
        raise UserError(f"{argument}: {folder} holds no .jpg/.png images")
    return names


# ---------------------------------------------------------------------- synthetic people in this layout
@dataclass
class MarketSynthSummary:
    root: Path
    images: dict[str, int]  # per folder
    identities: dict[str, list[int]]  # person ids: train, test


def write_market_synth(
    out: str | Path,
    train_ids: int = 200,
    test_ids: int = 100,
    images_per_id: int = 6,
    cameras: int = 4,
    query_per_id: int = 2,
    height: int = 128,
    width: int = 64,
    seed: int = 0,
) -> MarketSynthSummary:
    """Draw `train_ids + test_ids` synthetic people (`pcdms.data.synth`, seed `seed`) as a Market-1501 root.

    Image k of a person is seen by camera `k % cameras + 1`. Test people's first `query_per_id` images go to
    `query/` (cameras 1, 2, ...) and the rest to `bounding_box_test/`, so every query has a same-person image
    in another camera. Training keypoints go to `market-annotation-train.csv` (PATN format with the frame).
    Person ids count from 1 (Market's 0 and -1 are distractors and junk).
    """
    from pcdms.data.synth import render_sample, sample_identity
    from pcdms.pose import MISSING

    if not (2 <= cameras <= MAX_CAMERA and 1 <= query_per_id < images_per_id and min(train_ids, test_ids) >= 1):
        raise UserError("need 2-6 cameras, at least one train and test person, and 1 <= query_per_id < images_per_id")
    out = Path(out)
    for folder in (TRAIN_DIR, QUERY_DIR, GALLERY_DIR):
        (out / folder).mkdir(parents=True, exist_ok=True)
    rows = ["name:keypoints_y:keypoints_x:height:width"]
    summary = MarketSynthSummary(out, {TRAIN_DIR: 0, QUERY_DIR: 0, GALLERY_DIR: 0}, {"train": [], "test": []})
    for index in range(train_ids + test_ids):
        split = "train" if index < train_ids else "test"
        pid = index + 1
        identity = sample_identity(seed, index, split)
        summary.identities[split].append(pid)
        for k in range(images_per_id):
            sample = render_sample(identity, seed, k, height, width)
            name = market_name(pid, k % cameras + 1, 1, k)
            folder = TRAIN_DIR if split == "train" else QUERY_DIR if k < query_per_id else GALLERY_DIR
            Image.fromarray(sample.image).save(out / folder / name, quality=95)
            summary.images[folder] += 1
            if split == "train":
                xy = np.where(sample.pose.visible[:, None], np.rint(sample.pose.xy), MISSING).astype(int)
                rows.append(f"{name}:{xy[:, 1].tolist()}:{xy[:, 0].tolist()}:{height}:{width}".replace(" ", ""))
    (out / MARKET_ANNOTATION).write_text("\n".join(rows) + "\n")
    return summary
