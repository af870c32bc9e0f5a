"""`pcdms pose extract`: a pose from every photo of a folder (or a list of files), each written as soon as it is
found; with a folder, also a PATN dataset root of those photos. Every failed input is reported with its reason,
none stops the job (`failed.csv`)."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from pcdms.data.formats import PairRecord, write_patn
from pcdms.errors import UserError
from pcdms.imageio import ImageReadError, load_image
from pcdms.pose import Pose, write_openpose_json
from pcdms.pose.extract import DEFAULT_VISIBILITY, PoseExtractor
from pcdms.progress import Progress, resolve_mode


@dataclass
class ExtractReport:
    """What a batch extraction did: poses written, and every item that failed with its reason."""

    done: dict[str, Pose] = field(default_factory=dict)  # output name -> pose
    failed: list[tuple[Path, str]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # annotation/pair files written


def list_inputs(inputs: list[str | Path]) -> tuple[list[Path], bool]:
    """Files to process (a folder contributes its non-hidden files, sorted) and whether a folder was given."""
    files: list[Path] = []
    folder = False
    for item in map(Path, inputs):
        if item.is_dir():
            folder = True
            files += sorted(p for p in item.iterdir() if p.is_file() and not p.name.startswith("."))
        elif item.is_file():
            files.append(item)
        else:
            raise UserError(f"{item}: no such file or folder")
    if not files:
        raise UserError(f"no files to process in {', '.join(map(str, inputs))}")
    return files, folder


def extract_poses(
    inputs: list[str | Path],
    out: str | Path,
    render: bool = False,
    split: str = "test",
    dataset: bool | None = None,
    visibility_threshold: float = DEFAULT_VISIBILITY,
    progress: bool | str = True,
) -> ExtractReport:
    """Extract a pose from every image in `inputs` and write them under `out`.

    Writes `keypoints/<stem>.json` (OpenPose JSON) per image as soon as it is done, `poses/<stem>.png` renders
    with `render`. With a folder among the inputs (or `dataset=True`) it also writes a PATN dataset root:
    `<split>/<stem>.png` (upright 8-bit RGB copies), `custom-annotation-<split>.csv` and
    `custom-pairs-<split>.csv` (every ordered pair), written even when the job is interrupted.
    progress: True (a bar in a terminal, else lines), False (silent) or a `pcdms.progress` mode.
    """
    files, folder = list_inputs(inputs)
    dataset = folder if dataset is None else dataset
    out = Path(out)
    for sub in ["keypoints"] + (["poses"] if render else []) + ([split] if dataset else []):
        (out / sub).mkdir(parents=True, exist_ok=True)
    report = ExtractReport()
    try:
        with PoseExtractor(visibility_threshold) as extractor:
            with Progress(len(files), "pose extract", "img", resolve_mode(progress)) as bar:
                for path in files:
                    _extract_one(extractor, path, out, render, split if dataset else None, report)
                    bar.update()
    finally:
        if dataset and report.done:
            names = list(report.done)
            pairs = [PairRecord(a, b) for a in names for b in names if a != b]
            report.files += list(write_patn(out, split, pairs, report.done, prefix="custom"))
    return report


def _extract_one(
    extractor: PoseExtractor, path: Path, out: Path, render: bool, split: str | None, report: ExtractReport
) -> None:
    name = path.stem + ".png"
    if name in report.done:
        report.failed.append((path, f"another input already produced {name}; rename one of them"))
        return
    try:
        image = load_image(path)
    except ImageReadError as err:
        report.failed.append((path, str(err).split(": ", 1)[-1]))
        return
    found = extractor(image)
    if found is None:
        report.failed.append((path, "no person found"))
        return
    pose, confidence = found
    write_openpose_json(out / "keypoints" / f"{path.stem}.json", pose, confidence)
    if render:
        Image.fromarray(pose.render()).save(out / "poses" / name)
    if split is not None:
        image.save(out / split / name)
    report.done[name] = pose


def write_failures(report: ExtractReport, out: Path) -> Path | None:
    """`failed.csv` listing each failed input and why, or None when nothing failed."""
    if not report.failed:
        return None
    path = Path(out) / "failed.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "reason"])
        writer.writerows((str(p), reason) for p, reason in report.failed)
    return path
