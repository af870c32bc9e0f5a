"""COCO-18 body keypoints: frames, the one normalised encoding, flipping, OpenPose JSON, skeleton renders.

The package around it reads poses in: `picture` (skeleton pictures back to keypoints), `extract` (mediapipe on
a photo) and `gallery` (the shipped ready target poses, by name).

PCDMs conditions every stage on 18 OpenPose/COCO-18 keypoints (paper Sec. 3; `shared/REFERENCE.md` Sec. 1
and Sec. 4): the prior takes their coordinates, the inpainting UNet a rendered skeleton.

Conventions, each with one home here:

- Order: `JOINTS` (nose, neck, right arm, left arm, right leg, left leg, eyes, ears). "Right" is the
  person's right, as in OpenPose: in a front view the right shoulder is on the image's left.
- Pixel coordinates are continuous, x to the right and y down; pixel column i spans [i, i+1). A frame of
  `height` x `width` contains x in [0, width] and y in [0, height]. The datasets' integer annotations are
  read as such values.
- Normalised keypoints (the prior's input, the training batches): float32 (18, 2) of (x / width,
  y / height) in [0, 1]. A missing joint is (`MISSING`, `MISSING`) = (-1, -1). `Pose` keeps a
  separate visibility mask, so -1 never has to be told apart from a real coordinate inside this module.
- Frames: DeepFashion PATN keypoints are in 256x176 (h x w), Market-1501 in 128x64, the GFLA/PIDM files in
  a 256x256 frame whose image has 40-pixel white bars left and right (`from_gfla` removes them).
- Renders follow ControlNet's OpenPose annotator: 17 limbs as filled ellipses in `COLORS`, dimmed to
  60 %, then a dot in full colour on each joint; black background.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pcdms.errors import UserError, warn
from pcdms.validation import FRAME_SIDE

JOINTS: tuple[str, ...] = (
    "nose", "neck",
    "r_shoulder", "r_elbow", "r_wrist",
    "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle",
    "l_hip", "l_knee", "l_ankle",
    "r_eye", "l_eye", "r_ear", "l_ear",
)  # fmt: skip
NUM_JOINTS = 18
MISSING = -1.0
JOINT = {name: i for i, name in enumerate(JOINTS)}

#: joint i of a mirrored person is joint FLIP_ORDER[i] of the original (left <-> right)
FLIP_ORDER: tuple[int, ...] = (0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16)

#: the 17 limbs of the OpenPose/ControlNet body render, in drawing order; limb i has colour COLORS[i]
LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip

#: OpenPose colours (RGB): joint i is drawn in COLORS[i], limb i in 60 % of COLORS[i]
COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip
LIMB_BRIGHTNESS = 0.6

DEEPFASHION_FRAME = (256, 176)  # (height, width) of the PATN DeepFashion annotations
MARKET_FRAME = (128, 64)
GFLA_FRAME = (256, 256)
GFLA_CROP_LEFT = 40  # white bar width on each side of the GFLA/PIDM 256x256 DeepFashion images

# OpenPose BODY_25 -> COCO-18 (BODY_25 adds mid-hip at 8 and six foot points after the ears)
_BODY25_TO_COCO18 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)


@dataclass(frozen=True, eq=False)
class Pose:
    """18 COCO-18 joints in a pixel frame of `height` x `width`.

    xy: float64 (18, 2) continuous pixel coordinates (x, y), as read (a file's 60.054 stays 60.054, so a render
    truncates it as the authors' code does); values of missing joints are meaningless.
    visible: bool (18,), False for a missing joint.
    picture: the skeleton picture this pose was read from (`pcdms.pose.picture`), uint8 (height, width, 3), or None.
    A model drawn the authors' way takes it as given instead of drawing the keypoints again; the geometric
    transforms below return poses without it.
    """

    xy: np.ndarray
    visible: np.ndarray
    height: int
    width: int
    picture: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        xy = np.asarray(self.xy, dtype=np.float64).reshape(NUM_JOINTS, 2)
        visible = np.asarray(self.visible, dtype=bool).reshape(NUM_JOINTS) & np.isfinite(xy).all(axis=1)
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"pose frame must be positive, got {self.height}x{self.width}")
        if self.picture is not None and (self.picture.shape != (self.height, self.width, 3)
                                         or self.picture.dtype != np.uint8):
            raise ValueError(f"a pose's picture is uint8 ({self.height}, {self.width}, 3), got "
                             f"{self.picture.dtype} {self.picture.shape}")
        object.__setattr__(self, "xy", np.where(visible[:, None], xy, 0.0))
        object.__setattr__(self, "visible", visible)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_pixels(cls, xy: np.ndarray, height: int, width: int) -> Pose:
        """(18, 2) pixel (x, y) with -1 in either coordinate for a missing joint (PATN/GFLA files)."""
        xy = np.asarray(xy, dtype=np.float64).reshape(NUM_JOINTS, 2)
        return cls(xy, ~(xy == MISSING).any(axis=1), height, width)

    @classmethod
    def from_normalized(cls, keypoints: np.ndarray, height: int, width: int) -> Pose:
        """The normalised encoding (module docstring) -> a pose in a `height` x `width` frame."""
        kp = np.asarray(keypoints, dtype=np.float32).reshape(NUM_JOINTS, 2)
        visible = ~is_missing(kp)
        return cls(kp * np.array([width, height], dtype=np.float32), visible, height, width)

    @classmethod
    def from_gfla(cls, xy: np.ndarray) -> Pose:
        """GFLA/PIDM keypoints (256x256 frame, -1 missing) -> the 256x176 DeepFashion frame (x - 40)."""
        pose = cls.from_pixels(xy, *GFLA_FRAME)
        height, width = DEEPFASHION_FRAME
        return pose.cropped(GFLA_CROP_LEFT, 0, height, width, drop_outside=False)

    # ------------------------------------------------------------------ encodings
    def pixels(self) -> np.ndarray:
        """float32 (18, 2) pixel (x, y), -1 for a missing joint."""
        return np.where(self.visible[:, None], self.xy, MISSING).astype(np.float32)

    def normalized(self) -> np.ndarray:
        """float32 (18, 2) (x / width, y / height), (-1, -1) for a missing joint."""
        return self._unit_xy().astype(np.float32)

    def _unit_xy(self) -> np.ndarray:
        """`normalized` in float64, as the authors' code keeps it (what a render truncates)."""
        scaled = self.xy / np.array([self.width, self.height], dtype=np.float64)
        return np.where(self.visible[:, None], scaled, MISSING)

    def to_gfla(self) -> np.ndarray:
        """Inverse of `from_gfla` for a pose in any frame of DeepFashion's aspect: (18, 2) in 256x256, -1 missing."""
        pose = self.resized(*DEEPFASHION_FRAME)
        xy = pose.xy + np.array([GFLA_CROP_LEFT, 0], dtype=np.float64)
        return np.where(pose.visible[:, None], xy, MISSING).astype(np.float32)

    # ------------------------------------------------------------------ geometry
    def resized(self, height: int, width: int) -> Pose:
        """The same pose in a frame rescaled to `height` x `width` (an image resize, aspect may change)."""
        scale = np.array([width / self.width, height / self.height], dtype=np.float64)
        return Pose(self.xy * scale, self.visible, height, width)

    def cropped(self, left: float, top: float, height: int, width: int, drop_outside: bool = True) -> Pose:
        """The pose in the window [left, left + width] x [top, top + height] of this frame.

        drop_outside: joints outside the window become missing (what an annotator sees in the crop).
        """
        xy = self.xy - np.array([left, top], dtype=np.float64)
        pose = Pose(xy, self.visible, height, width)
        return Pose(xy, pose.inside(), height, width) if drop_outside else pose

    def flipped(self) -> Pose:
        """Mirror left-right: x -> width - x, and left and right joints swap names."""
        xy = self.xy.copy()
        xy[:, 0] = self.width - xy[:, 0]
        order = list(FLIP_ORDER)
        return Pose(xy[order], self.visible[order], self.height, self.width)

    def inside(self) -> np.ndarray:
        """bool (18,): visible and within the frame (x in [0, width], y in [0, height])."""
        x, y = self.xy[:, 0], self.xy[:, 1]
        return self.visible & (x >= 0) & (x <= self.width) & (y >= 0) & (y <= self.height)

    def allclose(self, other: Pose, atol: float = 1e-4) -> bool:
        """Same frame, same visible joints, coordinates within `atol` pixels."""
        return (
            (self.height, self.width) == (other.height, other.width)
            and bool((self.visible == other.visible).all())
            and bool(np.allclose(self.xy[self.visible], other.xy[other.visible], atol=atol))
        )

    def render(self, height: int | None = None, width: int | None = None, style: str = "scaled") -> np.ndarray:
        """uint8 (H, W, 3) skeleton render (`render_skeleton`); defaults to this pose's own frame. Normalised in
        float64, as the authors' code does, so that a joint on a whole pixel stays on it at its own size."""
        return render_skeleton(self._unit_xy(), height or self.height, width or self.width, style)


# ---------------------------------------------------------------------- normalised arrays
def is_missing(keypoints: np.ndarray) -> np.ndarray:
    """bool (..., 18): the joint is encoded as missing (either coordinate < 0, i.e. MISSING)."""
    kp = np.asarray(keypoints)
    return (kp < 0).any(axis=-1) | ~np.isfinite(kp).all(axis=-1)


def flip_normalized(keypoints: np.ndarray) -> np.ndarray:
    """Mirror normalised keypoints (..., 18, 2): x -> 1 - x, left/right joints swapped, missing kept."""
    kp = np.asarray(keypoints, dtype=np.float32)
    missing = is_missing(kp)
    flipped = kp.copy()
    flipped[..., 0] = 1.0 - kp[..., 0]
    flipped = np.where(missing[..., None], MISSING, flipped)
    return flipped[..., list(FLIP_ORDER), :].astype(np.float32)


# ---------------------------------------------------------------------- rendering
#: how a skeleton is drawn for a model: "authors" exactly as their `draw_bodypose` (whole pixels: limb half-width
#: and joint radius 4 px at every canvas size); "scaled" the same drawing at sub-pixel precision with both
#: scaled to the canvas (4 px at 512, 2 px at 256, at least 1), what the project's presets train with
SKELETON_STYLES: tuple[str, ...] = ("scaled", "authors")
AUTHORS_STICK_WIDTH = 4
_SHIFT = 4  # sub-pixel bits of the "scaled" geometry (1/16 px), OpenCV's `shift`


def default_stick_width(height: int, width: int, style: str = "scaled") -> float:
    """Half-width of a limb (and radius of a joint dot) in pixels for a `height` x `width` canvas."""
    if style not in SKELETON_STYLES:
        raise ValueError(f"skeleton style '{style}' is not one of {SKELETON_STYLES}")
    if style == "authors":
        return AUTHORS_STICK_WIDTH
    return max(1.0, AUTHORS_STICK_WIDTH * max(height, width) / 512)


def render_skeleton(
    keypoints: np.ndarray,
    height: int,
    width: int,
    style: str = "scaled",
    stick_width: float | None = None,
    joint_radius: float | None = None,
) -> np.ndarray:
    """Render normalised keypoints (18, 2) as an OpenPose/ControlNet skeleton with the drawing of the authors'
    `draw_bodypose` (OpenCV): under `style="authors"` their renders come out pixel for pixel.

    Returns uint8 (height, width, 3) RGB on black. Each limb whose two joints are visible is a
    `cv2.ellipse2Poly` between them of half-width `stick_width`, filled in its colour (later limbs over earlier
    ones); the canvas is then dimmed to 60 %, and each visible joint a `cv2.circle` of `joint_radius` in full
    colour (none below half a pixel). Both default to `default_stick_width(height, width, style)`.

    "authors" truncates centres, half-lengths, angles and widths to whole pixels, as their code does. "scaled"
    keeps 1/16 px (OpenCV's `shift`) and draws each outline half a pixel inside, because OpenCV fills every
    pixel its outline touches: a pixel is then lit about when its centre lies inside the shape, the rule the
    project's models were trained on before drawing went through OpenCV. Deterministic, any size.
    """
    import cv2  # OpenCV comes with MediaPipe; imported here so that reading poses does not load it

    exact = style == "authors"
    stick = default_stick_width(height, width, style) if stick_width is None else float(stick_width)
    radius = stick if joint_radius is None else float(joint_radius)
    kp = np.asarray(keypoints, dtype=np.float64).reshape(NUM_JOINTS, 2)
    visible = ~is_missing(kp)
    xy = kp * np.array([float(width), float(height)])
    scale, inset, shift = (1, 0.0, 0) if exact else (1 << _SHIFT, 0.5, _SHIFT)

    def point(x: float, y: float) -> tuple[int, int]:  # OpenCV's pixel centres are whole coordinates
        return (int(x), int(y)) if exact else (round((x - 0.5) * scale), round((y - 0.5) * scale))

    def size(value: float) -> int:
        return int(value) if exact else round(max(value - inset, 0.0) * scale)

    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for limb, (a, b) in enumerate(LIMBS):
        if visible[a] and visible[b]:
            (xa, ya), (xb, yb) = xy[a], xy[b]
            half_length = math.hypot(xa - xb, ya - yb) / 2
            angle = math.degrees(math.atan2(ya - yb, xa - xb))
            axes = (size(half_length), size(stick)) if exact else (size(max(half_length, stick)), size(stick))
            polygon = cv2.ellipse2Poly(point((xa + xb) / 2, (ya + yb) / 2), axes, int(angle) if exact else round(angle),
                                       0, 360, 1)
            cv2.fillConvexPoly(canvas, polygon, COLORS[limb], cv2.LINE_8, shift)
    canvas = (canvas * LIMB_BRIGHTNESS).astype(np.uint8)
    if radius - inset >= 0.5:
        for joint in np.flatnonzero(visible):
            cv2.circle(canvas, point(*xy[joint]), size(radius), COLORS[joint], -1, cv2.LINE_8, shift)
    return canvas


# ---------------------------------------------------------------------- OpenPose JSON
def write_openpose_json(
    path: str | Path, pose: Pose | None, confidence: np.ndarray | None = None
) -> None:
    """Write OpenPose's JSON (`people[0].pose_keypoints_2d` = 18 x (x, y, c)); `pose=None` writes no person.

    Missing joints are (0, 0, 0) as OpenPose writes them. `canvas_height`/`canvas_width` (the
    ControlNet editor's keys) record the frame, so the file can be read back without the image.
    """
    data: dict = {"version": 1.3, "people": []}
    if pose is not None:
        conf = np.ones(NUM_JOINTS) if confidence is None else np.asarray(confidence, dtype=np.float64)
        values: list[float] = []
        for j in range(NUM_JOINTS):
            if pose.visible[j]:
                values += [round(float(pose.xy[j, 0]), 3), round(float(pose.xy[j, 1]), 3), round(float(conf[j]), 4)]
            else:
                values += [0.0, 0.0, 0.0]
        data["people"].append({"pose_keypoints_2d": values})
        data["canvas_height"], data["canvas_width"] = pose.height, pose.width
    Path(path).write_text(json.dumps(data, indent=1) + "\n")


def read_openpose_json(path: str | Path, height: int | None = None, width: int | None = None) -> Pose | None:
    """First person of an OpenPose JSON (COCO-18 or BODY_25) as a Pose, or None when it lists nobody.

    The frame is `height` x `width` when given, else the file's `canvas_height`/`canvas_width`.
    Joints of confidence 0 are missing. Raises UserError naming the file for anything malformed.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        people = data["people"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as err:
        raise UserError(f"{path}: not an OpenPose JSON file with a 'people' list ({str(err)[:200]})") from None
    if not people:
        return None
    height = height or data.get("canvas_height")
    width = width or data.get("canvas_width")
    if not height or not width:
        raise UserError(f"{path}: no canvas_height/canvas_width in the file; pass the image's height and width")
    if not (FRAME_SIDE.allows(height) and FRAME_SIDE.allows(width)):  # before anything is drawn at that size
        raise UserError(f"{path}: canvas_height and canvas_width must each be {FRAME_SIDE.describe()}, got "
                        f"{str(height)[:20]} x {str(width)[:20]}")
    values = np.asarray(people[0].get("pose_keypoints_2d", []), dtype=np.float64)
    if values.size == 25 * 3:
        values = values.reshape(25, 3)[list(_BODY25_TO_COCO18)]
    elif values.size == NUM_JOINTS * 3:
        values = values.reshape(NUM_JOINTS, 3)
    else:
        raise UserError(
            f"{path}: people[0].pose_keypoints_2d has {values.size} numbers; expected 54 (COCO-18) or 75 (BODY_25)"
        )
    return checked_pose(values[:, :2], values[:, 2], int(height), int(width), str(path))


def checked_pose(xy: np.ndarray, confidence: np.ndarray, height: int, width: int, where: str) -> Pose:
    """A pose from a file's (18, 2) pixel coordinates and (18,) confidences, every joint accounted for.

    OpenPose's (0, 0, 0) is a joint not detected and passes quietly. A joint whose values are NaN/inf, whose
    confidence is 0 although it has coordinates, or that lies outside the `height` x `width` canvas is
    dropped with an `InputWarning` naming it; a pose left without any usable joint is a UserError (it
    would give a blob, not a person). `where` names the file in both messages.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(NUM_JOINTS, 2)
    conf = np.asarray(confidence, dtype=np.float64).reshape(NUM_JOINTS)
    listed = ~((xy == 0).all(axis=1) & (conf == 0))
    not_numbers = listed & ~(np.isfinite(xy).all(axis=1) & np.isfinite(conf))
    zero_conf = listed & ~not_numbers & (conf <= 0)
    pose = Pose(np.nan_to_num(xy), listed & ~not_numbers & ~zero_conf, height, width)
    outside = pose.visible & ~pose.inside()
    reasons = [("NaN/inf", not_numbers), ("confidence 0", zero_conf), (f"outside the {height}x{width} canvas", outside)]
    detail = "; ".join(f"{why}: {', '.join(JOINTS[j] for j in np.flatnonzero(mask))}"
                       for why, mask in reasons if mask.any())
    usable = pose.inside()
    if not usable.any():
        raise UserError(f"{where}: no usable joint ({detail or 'every joint is missing'}); a pose needs at least "
                        "one joint inside its canvas with confidence > 0")
    if detail:
        warn(f"{where}: ignoring joints ({detail})")
    return Pose(pose.xy, usable, height, width)
