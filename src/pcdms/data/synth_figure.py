"""Posing and placing a synthetic person: shared by both styles of `pcdms data synth` (`pcdms.data.synth`).

A pose is drawn in body units (pelvis at the origin, y down, standing height about 1) as the 18 COCO-18
keypoints, then scaled into a supersampled canvas; both styles paint their bodies from those same joints, so
the keypoints a dataset records are exactly where the drawn limbs are (`shared/REFERENCE.md` Sec. 4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pcdms.data.synth_draw import SUPERSAMPLE, Figure, Painter
from pcdms.pose import Pose

CROPS = {"full": 0.7, "knee-up": 0.13, "waist-up": 0.1, "head-cut": 0.07}
VIEWS = {"front": 0.55, "three-quarter": 0.25, "back": 0.2}


class HeadAndHips(Protocol):
    head_r: float
    hip_half: float


class Proportions(Protocol):
    """What posing needs of an identity (body units): a `synth.Identity` or a `synth_wardrobe.WardrobeIdentity`."""

    look: HeadAndHips
    shoulder_half: float
    torso: float
    upper_arm: float
    forearm: float
    thigh: float
    shin: float


def _arm_angles(rng: np.random.Generator) -> tuple[float, float]:
    """(upper arm, forearm) angles from straight down, positive away from the body."""
    style = rng.choice(["relaxed", "hip", "raised", "across", "out", "face"], p=[0.35, 0.17, 0.1, 0.15, 0.13, 0.1])
    upper = {"relaxed": (0.05, 0.25), "hip": (0.5, 0.8), "raised": (1.9, 2.6), "across": (0.0, 0.25),
             "out": (1.1, 1.6), "face": (0.3, 0.55)}[style]  # fmt: skip
    bend = {"relaxed": (-0.1, 0.2), "hip": (-2.4, -1.9), "raised": (-0.4, 0.5), "across": (-1.75, -1.3),
            "out": (-0.3, 0.3), "face": (-3.2, -2.9)}[style]  # fmt: skip
    a = rng.uniform(*upper)
    return a, a + rng.uniform(*bend)


def _leg_angles(rng: np.random.Generator) -> tuple[float, float, float]:
    """(thigh angle, shin angle, shin foreshortening)."""
    style = rng.choice(["stand", "wide", "cross", "bent"], p=[0.45, 0.25, 0.15, 0.15])
    thigh = {"stand": (0.0, 0.12), "wide": (0.15, 0.33), "cross": (-0.16, -0.06), "bent": (0.05, 0.2)}[style]
    b = rng.uniform(*thigh)
    shin = b + (rng.uniform(-0.35, -0.2) if style == "bent" else rng.uniform(-0.08, 0.05))
    return b, shin, (rng.uniform(0.82, 0.92) if style == "bent" else 1.0)


def _direction(side_sign: float, angle: float) -> np.ndarray:
    return np.array([side_sign * np.sin(angle), np.cos(angle)])


def build_figure(identity: Proportions, rng: np.random.Generator) -> tuple[Figure, str, np.ndarray]:
    """A random pose in body units (pelvis at the origin, y down): the figure, its view, and joint visibility."""
    look = identity.look
    view = str(rng.choice(list(VIEWS), p=list(VIEWS.values())))
    turn = float(rng.choice([-1, 1]) * rng.uniform(0.3, 0.6)) if view == "three-quarter" else float(rng.normal(0, 0.05))
    back = view == "back"
    tilt = float(rng.normal(0, 0.03))
    down = np.array([-np.sin(tilt), np.cos(tilt)])
    across = np.array([down[1], -down[0]])
    sign = {"r": 1.0 if back else -1.0, "l": -1.0 if back else 1.0}  # image side of the person's right/left
    squash = {k: 1 - abs(turn) * (0.75 if sign[k] * turn > 0 else 0.2) for k in "rl"}
    j = np.zeros((18, 2))
    neck = -identity.torso * down
    for k, (sh, el, wr), (hp, kn, an) in (("r", (2, 3, 4), (8, 9, 10)), ("l", (5, 6, 7), (11, 12, 13))):
        j[sh] = neck + sign[k] * identity.shoulder_half * squash[k] * across
        j[hp] = sign[k] * look.hip_half * squash[k] * across
        upper, lower = _arm_angles(rng)
        j[el] = j[sh] + identity.upper_arm * _direction(sign[k], upper)
        j[wr] = j[el] + identity.forearm * _direction(sign[k], lower)
        thigh, shin, short = _leg_angles(rng)
        j[kn] = j[hp] + identity.thigh * _direction(sign[k], thigh)
        j[an] = j[kn] + identity.shin * short * _direction(sign[k], shin)
    j[1] = (j[2] + j[5]) / 2
    head_angle = tilt + float(rng.normal(0, 0.08))
    head_up = np.array([np.sin(head_angle), -np.cos(head_angle)])
    head_side = np.array([np.cos(head_angle), np.sin(head_angle)])
    centre = j[1] + (0.03 + 1.1 * look.head_r) * head_up
    face_shift = 0.0 if back else float(np.clip(turn * 1.2, -0.7, 0.7)) * (-1.0)  # face turns away from the far side
    rx, ry = look.head_r, 1.18 * look.head_r
    shift = face_shift * rx
    for k, (eye, ear) in (("r", (14, 16)), ("l", (15, 17))):
        j[eye] = centre + (sign[k] * 0.38 * rx + shift) * head_side + 0.05 * ry * head_up
        j[ear] = centre + (sign[k] * 0.95 * rx + 0.4 * shift) * head_side
    j[0] = centre + 1.3 * shift * head_side - 0.18 * ry * head_up
    visible = np.ones(18, dtype=bool)
    if back:
        visible[[0, 14, 15]] = False  # a face seen from behind
    for k, ear in (("r", 16), ("l", 17)):
        if not back and sign[k] * face_shift > 0.35:
            visible[ear] = False
    in_front = {}
    for k, (sh, wr) in (("r", (2, 4)), ("l", (5, 7))):
        inside_x = min(j[2, 0], j[5, 0]) < j[wr, 0] < max(j[2, 0], j[5, 0])
        in_front[k] = bool(inside_x and neck[1] < j[wr, 1] < 0.08)
    figure = Figure(j, centre, head_angle, 1.0, down, "back" if back else "front", turn, in_front, face_shift)
    return figure, view, visible


def place(figure: Figure, look: HeadAndHips, height: int, width: int, rng: np.random.Generator) -> tuple[Figure, str]:
    """Scale and move a body-unit figure into a supersampled canvas, choosing the crop: (figure, crop)."""
    j = figure.joints
    head_top = figure.head_centre[1] - 1.25 * look.head_r
    feet = j[[10, 13], 1].max() + 0.04
    crop = str(rng.choice(list(CROPS), p=list(CROPS.values())))
    top, bottom = {"full": (head_top, feet), "knee-up": (head_top, max(j[9, 1], j[12, 1]) + 0.04),
                   "waist-up": (head_top, 0.12), "head-cut": (j[1, 1] - 0.04, max(j[9, 1], j[12, 1]))}[crop]  # fmt: skip
    h, w = height * SUPERSAMPLE, width * SUPERSAMPLE
    margin = rng.uniform(0.03, 0.08) if crop == "full" else 0.02
    scale = h * (1 - 2 * margin) / (bottom - top)
    left, right = j[:, 0].min() - 0.05, j[:, 0].max() + 0.05
    if crop == "full":
        scale = min(scale, w * 0.97 / (right - left))
    x_offset = w / 2 - scale * (left + right) / 2 + rng.uniform(-0.05, 0.05) * w
    y_offset = h * margin - scale * top if crop != "full" else (h - scale * (bottom - top)) / 2 - scale * top
    offset = np.array([x_offset, y_offset])
    placed = Figure(j * scale + offset, figure.head_centre * scale + offset, figure.head_angle, scale,
                    figure.down, figure.view, figure.turn, figure.arms_in_front, figure.face_shift)  # fmt: skip
    return placed, crop


def _background(height: int, width: int, rng: np.random.Generator, feet_y: float, feet_x: float) -> np.ndarray:
    """A studio backdrop: light grey with a tint, darker towards the floor, a soft shadow under the feet."""
    level = rng.uniform(0.86, 0.97)
    tint = rng.normal(0, 0.012, 3)
    ramp = np.linspace(1.0, 0.94, height, dtype=np.float32)[:, None, None]
    colour = np.clip(level + tint, 0, 1).astype(np.float32)[None, None, :]
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    shadow = ((xs - feet_x) / (0.3 * width)) ** 2 + ((ys - feet_y) / (0.025 * height)) ** 2 < 1
    return colour * ramp * np.where(shadow, 0.9, 1.0).astype(np.float32)[:, :, None]


@dataclass
class Sample:
    """One drawn image: uint8 (H, W, 3), its keypoints in the HxW frame, a tag (view-crop), and a bool (H, W)
    mask of the pixels the person covers (at least partly)."""

    image: np.ndarray
    pose: Pose
    tag: str
    mask: np.ndarray


def paint_person(figure: Figure, visible: np.ndarray, height: int, width: int, rng: np.random.Generator,
                 draw: Callable[[Painter], None], tag: str = "", outline: float = 0.62) -> Sample:
    """A figure placed in the supersampled canvas (`place`) painted by `draw` on a studio backdrop drawn from
    `rng`, part boundaries darkened to `outline`; `visible` (18,) marks the joints an annotator would see. A
    crop hides the joints outside the frame."""
    feet = figure.joints[[10, 13]].mean(axis=0)
    painter = Painter(_background(height * SUPERSAMPLE, width * SUPERSAMPLE, rng, feet[1] + 0.02 * figure.scale, feet[0]))
    draw(painter)
    pose = Pose(figure.joints / SUPERSAMPLE, visible, height, width)
    pose = Pose(pose.xy, pose.inside(), height, width)
    covered = (painter.ids > 0).reshape(height, SUPERSAMPLE, width, SUPERSAMPLE).any(axis=(1, 3))
    return Sample(painter.finish(outline=outline), pose, tag, covered)
