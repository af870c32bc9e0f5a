"""Skeleton pictures back to COCO-18 keypoints: OpenPose / ControlNet / DWPose renders read by their joint colours.

A skeleton picture (`pose.render_skeleton`, the authors' `draw_bodypose`, DWPose with hands and face) is mostly
black with a few saturated colours of the OpenPose palette (`pose.COLORS`): 17 limbs at 60 % brightness, then
each joint a disc in full colour, later joints over earlier ones. So a joint is found as the thickest disc of
bright pixels nearest its colour (a colour tolerance and connected components, so JPEG copies and resized
pictures read too), located at its centroid, or, when later joints cover part of it, at the centre of the disc
of the picture's own dot radius that best explains what is left. DWPose's hand lines (2 px) and hand and face
dots (smaller than the body's, or white) are thinner than the body's dots and are ignored.

Pixel coordinates follow `pose.py`: pixel column i spans [i, i+1), so a dot drawn at integer centre i reads i + 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from pcdms.errors import UserError
from pcdms.pose import COLORS, LIMB_BRIGHTNESS, LIMBS, NUM_JOINTS, Pose

#: a pixel this bright (max channel, 0-255) is a joint dot's; limbs are at 60 % (153)
BRIGHT = 204
#: a pixel at most this bright is background
DARK = 48
#: largest distance (RGB, brightness-normalised) from a palette colour that still counts as that colour
COLOR_TOLERANCE = 60.0
#: a picture is a skeleton picture when at least this share of it is background ...
MIN_BACKGROUND = 0.5
#: ... and at least this share of what is not background has palette colours (joints or limbs)
MIN_PALETTE = 0.5
#: a joint dot is at least this share of the picture's dot radius thick, unless a later dot covers part of it
SOLID = 0.55

_PALETTE = np.asarray(COLORS, dtype=np.float32)  # (18, 3)


@dataclass(frozen=True)
class PictureCheck:
    """What a picture looks like: `is_skeleton` and, for the messages, why (`description`)."""

    is_skeleton: bool
    description: str


@dataclass(frozen=True)
class SkeletonReading:
    """A skeleton picture read back: the pose in the picture's frame and the radius of its joint dots in pixels
    (that of a disc of the same area: about 4.6 for OpenCV's `cv2.circle` of radius 4)."""

    pose: Pose
    joint_radius: float


def _rgb(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] < 3:
        raise UserError(f"a picture must be (H, W, 3) RGB, got shape {array.shape}")
    return array[..., :3].astype(np.float32)


def palette_labels(rgb: np.ndarray, brightness: tuple[float, float], count: int) -> np.ndarray:
    """int (H, W): index of the nearest of the first `count` palette colours for pixels whose max channel is in
    `brightness` [low, high] and whose colour, scaled to full brightness, is within `COLOR_TOLERANCE`; else -1."""
    peak = rgb.max(axis=2)
    inside = (peak >= brightness[0]) & (peak <= brightness[1])
    labels = np.full(peak.shape, -1, dtype=np.int16)
    if not inside.any():
        return labels
    colours = rgb[inside] * (255.0 / peak[inside])[:, None]  # (N, 3) at full brightness
    distance = np.linalg.norm(colours[:, None, :] - _PALETTE[None, :count, :], axis=2)  # (N, count)
    nearest = distance.argmin(axis=1)
    labels[inside] = np.where(distance[np.arange(len(nearest)), nearest] <= COLOR_TOLERANCE, nearest, -1)
    return labels


def joint_labels(rgb: np.ndarray) -> np.ndarray:
    """int (H, W): the joint whose dot colour a bright pixel has, -1 for any other pixel."""
    return palette_labels(rgb, (BRIGHT, 255), NUM_JOINTS)


def limb_labels(rgb: np.ndarray) -> np.ndarray:
    """int (H, W): the limb whose 60 % colour a pixel has (max channel about 153), -1 for any other pixel."""
    level = 255 * LIMB_BRIGHTNESS
    return palette_labels(rgb, (level - 40, level + 40), len(LIMBS))


def check_picture(image: Image.Image | np.ndarray) -> PictureCheck:
    """Tell a skeleton picture from a photo by content: mostly black, the rest mostly in OpenPose colours."""
    rgb = _rgb(image)
    height, width = rgb.shape[:2]
    if rgb.size == 0 or min(height, width) < 8:
        return PictureCheck(False, f"a {width}x{height} image, too small for a skeleton")
    spread = float(rgb.reshape(-1, 3).std(axis=0).max())
    if spread < 2.0:
        colour = tuple(int(round(c)) for c in rgb.reshape(-1, 3).mean(axis=0))
        return PictureCheck(False, f"a flat image of one colour (RGB {colour}), no skeleton in it")
    background = rgb.max(axis=2) <= DARK
    share_background = float(background.mean())
    lit = ~background
    if not lit.any():
        return PictureCheck(False, "an all-dark image with nothing drawn on it")
    palette = (joint_labels(rgb) >= 0) | (limb_labels(rgb) >= 0)
    share_palette = float(palette[lit].mean()) if lit.any() else 0.0
    found = f"{share_background:.0%} black background, {share_palette:.0%} of the rest in OpenPose colours"
    if share_background < MIN_BACKGROUND:
        kind = "noise or a photo" if _looks_like_noise(rgb) else "a photo"
        return PictureCheck(False, f"{kind} ({found}; a skeleton picture is at least "
                                   f"{MIN_BACKGROUND:.0%} black)")
    if share_palette < MIN_PALETTE:
        return PictureCheck(False, f"a dark image ({found}; a skeleton picture has at "
                                   f"least {MIN_PALETTE:.0%} of its lit pixels in OpenPose colours)")
    return PictureCheck(True, f"a skeleton picture ({found})")


def _looks_like_noise(rgb: np.ndarray) -> bool:
    """Neighbouring pixels as different as random ones: noise rather than a photo."""
    grey = rgb.mean(axis=2)
    step = np.abs(np.diff(grey, axis=1)).mean()
    return bool(step > 0.5 * grey.std() * np.sqrt(2) * 0.8)


def is_skeleton_picture(image: Image.Image | np.ndarray) -> bool:
    """True for an OpenPose/ControlNet/DWPose skeleton render (any size, JPEG too), False for a photo or anything else."""
    return check_picture(image).is_skeleton


def read_skeleton_picture(image: Image.Image | np.ndarray, what: str = "the picture") -> SkeletonReading:
    """The COCO-18 pose drawn in a skeleton picture, in the picture's own pixel frame.

    Raises UserError naming `what` when the picture is not a skeleton picture (saying what it looks like) or
    holds no joint dot.
    """
    rgb = _rgb(image)
    check = check_picture(rgb)
    if not check.is_skeleton:
        raise UserError(f"{what} is not a skeleton picture: it looks like {check.description}")
    labels = joint_labels(rgb)
    dots = _candidate_dots(labels)
    if not dots:
        raise UserError(f"{what}: no joint dot of the OpenPose colours found ({check.description})")
    radius = float(np.median([dot.thickness for dot in dots.values()]))
    height, width = rgb.shape[:2]
    xy = np.zeros((NUM_JOINTS, 2), dtype=np.float32)
    visible = np.zeros(NUM_JOINTS, dtype=bool)
    solid = np.full(labels.shape, -1, dtype=np.int16)  # pixels of dots as thick as a body joint's
    for joint, dot in dots.items():
        if dot.thickness >= SOLID * radius:
            solid[dot.ys, dot.xs] = joint
    template = _dot_template(dots, solid, radius)
    whole_area = len(template[0])
    for joint, dot in dots.items():
        if dot.thickness < SOLID * radius and not _is_covered(dot, solid, joint):
            continue  # a hand dot or a hand line's colour, not a body joint
        if dot.ys.size < max(5.0, 0.15 * whole_area):
            continue  # a JPEG fringe where two dots meet, not what is left of a covered dot
        xy[joint] = _centre(dot, labels, solid, joint, template)
        visible[joint] = True
    if not visible.any():
        raise UserError(f"{what}: no body joint dot found ({check.description})")
    picture = np.clip(rgb, 0, 255).astype(np.uint8)  # kept for models that take a picture as given
    return SkeletonReading(Pose(xy, visible, height, width, picture=picture), float(np.sqrt(whole_area / np.pi)))


@dataclass(frozen=True)
class _Dot:
    ys: np.ndarray
    xs: np.ndarray
    thickness: float  # the largest disc inside the component: its radius in pixels
    box: tuple[slice, slice]


def _candidate_dots(labels: np.ndarray) -> dict[int, _Dot]:
    """Per joint colour, its thickest connected component (hand lines are 2 px thick, body dots 4-8 px)."""
    dots: dict[int, _Dot] = {}
    for joint in range(NUM_JOINTS):
        mask = labels == joint
        if not mask.any():
            continue
        components, count = ndimage.label(mask, structure=np.ones((3, 3)))
        boxes = ndimage.find_objects(components)
        best: _Dot | None = None
        for index, box in enumerate(boxes, start=1):
            part = np.pad(components[box] == index, 1)
            thickness = float(ndimage.distance_transform_edt(part).max())
            if best is None or thickness > best.thickness or (thickness == best.thickness and part.sum() > best.ys.size):
                ys, xs = np.nonzero(components[box] == index)
                best = _Dot(ys + box[0].start, xs + box[1].start, thickness, box)
        if best is not None and best.ys.size >= 3:
            dots[joint] = best
    return dots


def _is_covered(dot: _Dot, solid: np.ndarray, joint: int) -> bool:
    """The dot touches a later joint's dot (`solid`: the thick dots' joints, -1 elsewhere), drawn over it."""
    return bool(_later_neighbours(dot, solid, joint).any())


def _later_neighbours(dot: _Dot, labels: np.ndarray, joint: int) -> np.ndarray:
    height, width = labels.shape
    ys = np.clip(np.concatenate([dot.ys + dy for dy in (-1, 0, 1) for dx in (-1, 0, 1)]), 0, height - 1)
    xs = np.clip(np.concatenate([dot.xs + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1)]), 0, width - 1)
    return labels[ys, xs] > joint


def _dot_template(dots: dict[int, _Dot], solid: np.ndarray, radius: float) -> tuple[np.ndarray, bool]:
    """One whole joint dot as (N, 2) pixel-centre offsets (dx, dy) from its centre, and whether dots sit on
    whole-pixel centres (OpenCV's `cv2.circle` draws at integer centres: every whole dot's centroid is then
    i + 0.5 exactly, and a covered dot's centre is searched on those positions only)."""
    whole = [dot for joint, dot in dots.items() if not _is_covered(dot, solid, joint) and dot.thickness >= SOLID * radius]
    if not whole:
        offsets = np.mgrid[-radius:radius + 1, -radius:radius + 1].reshape(2, -1).T
        return offsets[(offsets**2).sum(axis=1) <= radius**2][:, ::-1].astype(np.float64), False
    sizes = np.array([dot.ys.size for dot in whole])
    dot = whole[int(np.argmin(np.abs(sizes - np.median(sizes))))]
    centroids = np.array([[d.xs.mean(), d.ys.mean()] for d in whole])
    on_grid = bool(np.all(np.abs(centroids - np.round(centroids)) < 0.02))
    offsets = np.stack([dot.xs - dot.xs.mean(), dot.ys - dot.ys.mean()], axis=1)
    return offsets, on_grid


def _centre(dot: _Dot, labels: np.ndarray, solid: np.ndarray, joint: int, template: tuple[np.ndarray, bool]) -> np.ndarray:
    """(x, y) of a dot: its centroid, or where the picture's whole dot (`template`) best explains a covered dot:
    every visible pixel of the dot inside it, every pixel of it either the dot's or a later joint's."""
    centroid = np.array([dot.xs.mean(), dot.ys.mean()])
    if not _is_covered(dot, solid, joint):
        return centroid + 0.5
    offsets, on_grid = template
    reach = int(np.ceil(np.abs(offsets).max())) + 1
    step = 1.0 if on_grid else 0.25
    start = np.round(centroid) if on_grid else centroid
    own = set(zip(dot.xs.tolist(), dot.ys.tolist()))
    height, width = labels.shape
    best, chosen = None, []
    for ty in np.arange(start[1] - reach, start[1] + reach + 1e-6, step):
        for tx in np.arange(start[0] - reach, start[0] + reach + 1e-6, step):
            cells = np.round(offsets + [tx, ty]).astype(int)
            cells = cells[(cells[:, 0] >= 0) & (cells[:, 0] < width) & (cells[:, 1] >= 0) & (cells[:, 1] < height)]
            inside = set(zip(cells[:, 0].tolist(), cells[:, 1].tolist()))
            covered = labels[cells[:, 1], cells[:, 0]] > joint
            mine = np.array([(x, y) in own for x, y in zip(cells[:, 0].tolist(), cells[:, 1].tolist())], dtype=bool)
            cost = len(own - inside) + int((~mine & ~covered).sum())
            if best is None or cost < best:
                best, chosen = cost, [(tx, ty)]
            elif cost == best:
                chosen.append((tx, ty))
    return np.mean(np.asarray(chosen), axis=0) + 0.5
