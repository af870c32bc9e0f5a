"""Offline pose extraction from photos: MediaPipe Pose mapped to COCO-18 (`shared/REFERENCE.md` Sec. 2 and 4).

The authors used DWPose and never said how to make poses for new data; a different extractor on custom
images is a known cause of poor results. This module gives one documented, offline path: MediaPipe's
legacy `mediapipe.solutions.pose.Pose` with `static_image_mode=True, model_complexity=1` (the only model
shipped inside the `mediapipe==0.10.21` wheel; the others are downloaded at run time and fail offline).

Mapping to COCO-18 (person's left/right in both): nose, eyes and ears from MediaPipe's face points,
shoulders, elbows, wrists, hips, knees, ankles one to one, and the neck as the midpoint of the shoulders.
A joint is missing when its visibility is below `visibility_threshold` or it falls outside the image
(MediaPipe extrapolates joints beyond the border); the neck needs both shoulders. No detected person
gives None rather than a guess.

Back views: MediaPipe reports a nose and eyes on the back of a head; OpenPose, and so DeepFashion's labels,
do not. When the shoulders show a back view (the person's right shoulder on the image's RIGHT, by more than
`BACK_VIEW_MARGIN` of the shoulder-to-hip length, so a side view with overlapping shoulders keeps its face),
nose and eyes are dropped and the ears kept (`is_back_view`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from pcdms.errors import UserError
from pcdms.imageio import ImageReadError, load_image
from pcdms.pose import NUM_JOINTS, Pose, write_openpose_json

# COCO-18 joint -> MediaPipe landmark index (neck, COCO index 1, is computed from both shoulders)
MEDIAPIPE_FOR_COCO18: dict[int, int] = {
    0: 0, 2: 12, 3: 14, 4: 16, 5: 11, 6: 13, 7: 15, 8: 24, 9: 26, 10: 28,
    11: 23, 12: 25, 13: 27, 14: 5, 15: 2, 16: 8, 17: 7,
}  # fmt: skip
NECK, R_SHOULDER, L_SHOULDER = 1, 2, 5
R_HIP, L_HIP = 8, 11
FACE_JOINTS_HIDDEN_FROM_BEHIND = (0, 14, 15)  # nose, r_eye, l_eye (the ears, 16 and 17, stay)
DEFAULT_VISIBILITY = 0.5
BACK_VIEW_MARGIN = 0.1


class PoseExtractor:
    """Callable: PIL RGB image -> `Pose` in the image's pixel frame, or None when no person is found.

    Loads MediaPipe lazily; use as a context manager (or call `close`) to free it.
    """

    def __init__(self, visibility_threshold: float = DEFAULT_VISIBILITY) -> None:
        try:
            import mediapipe as mp
        except ImportError as err:  # pragma: no cover - mediapipe is a dependency
            raise UserError("pose extraction needs mediapipe==0.10.21 (pip install mediapipe==0.10.21)") from err
        self.visibility_threshold = visibility_threshold
        self._pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1)

    def __enter__(self) -> PoseExtractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pose is not None:
            self._pose.close()
            self._pose = None

    def landmarks(self, image: Image.Image) -> np.ndarray | None:
        """MediaPipe's 33 landmarks as float64 (33, 3) of (x / width, y / height, visibility), or None."""
        result = self._pose.process(np.asarray(image.convert("RGB"), dtype=np.uint8))
        if result.pose_landmarks is None:
            return None
        return np.array([(p.x, p.y, p.visibility) for p in result.pose_landmarks.landmark], dtype=np.float64)

    def __call__(self, image: Image.Image) -> tuple[Pose, np.ndarray] | None:
        """(pose, confidence (18,)) in the image's frame, or None when no person is found."""
        marks = self.landmarks(image)
        if marks is None:
            return None
        pose, confidence = landmarks_to_coco18(marks, image.height, image.width, self.visibility_threshold)
        return (pose, confidence) if pose.visible.any() else None


def extract_pose(image: Image.Image, what: str) -> Pose:
    """The COCO-18 pose of the person in `image` (MediaPipe), or a UserError naming `what`."""
    with PoseExtractor() as extractor:
        found = extractor(image.convert("RGB"))
    if found is None:
        raise UserError(f"no person found in {what} to take a pose from: give the pose as COCO-18 JSON or as a "
                        "skeleton picture (OpenPose/DWPose render) instead")
    return found[0]


def landmarks_to_coco18(
    marks: np.ndarray, height: int, width: int, visibility_threshold: float = DEFAULT_VISIBILITY
) -> tuple[Pose, np.ndarray]:
    """MediaPipe landmarks (33, 3) normalised -> (COCO-18 `Pose` in a height x width frame, confidence (18,))."""
    xy = np.zeros((NUM_JOINTS, 2))
    confidence = np.zeros(NUM_JOINTS)
    for coco, mp_index in MEDIAPIPE_FOR_COCO18.items():
        xy[coco] = marks[mp_index, :2] * (width, height)
        confidence[coco] = marks[mp_index, 2]
    xy[NECK] = (xy[R_SHOULDER] + xy[L_SHOULDER]) / 2
    confidence[NECK] = min(confidence[R_SHOULDER], confidence[L_SHOULDER])
    pose = Pose(xy, confidence >= visibility_threshold, height, width)
    visible = pose.inside()
    if is_back_view(pose):
        visible[list(FACE_JOINTS_HIDDEN_FROM_BEHIND)] = False
    pose = Pose(pose.xy, visible, height, width)
    return pose, np.where(pose.visible, confidence, 0.0)


def is_back_view(pose: Pose) -> bool:
    """True when both shoulders are seen and the person's right shoulder is on the image's right.

    The margin is `BACK_VIEW_MARGIN` of the shoulder-to-hip length (of the shoulder width when no hip is
    seen), so that a side view, whose shoulders overlap, is not taken for a back view by a pixel's noise.
    """
    if not (pose.visible[R_SHOULDER] and pose.visible[L_SHOULDER]):
        return False
    right, left = pose.xy[R_SHOULDER], pose.xy[L_SHOULDER]
    hips = [pose.xy[j] for j in (R_HIP, L_HIP) if pose.visible[j]]
    scale = float(np.linalg.norm((right + left) / 2 - np.mean(hips, axis=0))) if hips else float(np.linalg.norm(right - left))
    return float(right[0] - left[0]) > BACK_VIEW_MARGIN * scale


# ---------------------------------------------------------------------- batch job
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
    from pcdms.progress import Progress, resolve_mode

    from pcdms.data.formats import PairRecord, write_patn

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
