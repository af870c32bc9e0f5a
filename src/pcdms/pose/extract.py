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

The batch job over a folder of photos (`pcdms pose extract`) is `pcdms.jobs.extract`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from pcdms.errors import UserError
from pcdms.pose import NUM_JOINTS, Pose

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
