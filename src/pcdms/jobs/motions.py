"""Built-in motions: short pose sequences made from one person's own pose (for `pcdms animate`).

Each motion takes the source's COCO-18 `Pose` and returns `frames` poses in the same pixel frame, so the
person keeps their own proportions, place and size: limbs keep the lengths they have in the source pose
(read from it, or estimated from the torso when a joint is missing), only their angles change.

- `arms-up`: both arms rise from where they are to straight up, and come back down;
- `wave`: the right arm rises to the side, the forearm waves three times, the arm comes down;
- `walk`: walking on the spot seen from the front: the knees rise in turn, the arms swing against them;
- `turn`: one full turn about the body's vertical axis; the face's joints disappear while it looks away.

Angles follow `pcdms.data.synth`: measured from straight down, positive away from the body, so an arm at
angle a from a shoulder on image side s (-1 left, +1 right) points along (s sin a, cos a).
The motions are 2-D and may reach past the source pose's frame (arms raised over a head near the top edge);
`pcdms.jobs.sequences.from_motion` fits the whole motion back inside it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pcdms.errors import UserError
from pcdms.pose import JOINT, Pose

_ARMS = {"r": (JOINT["r_shoulder"], JOINT["r_elbow"], JOINT["r_wrist"]),
         "l": (JOINT["l_shoulder"], JOINT["l_elbow"], JOINT["l_wrist"])}
_LEGS = {"r": (JOINT["r_hip"], JOINT["r_knee"], JOINT["r_ankle"]),
         "l": (JOINT["l_hip"], JOINT["l_knee"], JOINT["l_ankle"])}
NECK = JOINT["neck"]
# depth in front of the body's vertical axis, in head radii, of the face's joints (for `turn`)
_FACE_DEPTH = {JOINT["nose"]: 1.0, JOINT["r_eye"]: 0.8, JOINT["l_eye"]: 0.8, JOINT["r_ear"]: 0.0, JOINT["l_ear"]: 0.0}


class Body:
    """A pose as a mutable (18, 2) array plus the measurements the motions use (pixels)."""

    def __init__(self, pose: Pose, motion: str) -> None:
        needed = [NECK, JOINT["r_shoulder"], JOINT["l_shoulder"]]
        if not pose.visible[needed].all():
            raise UserError(f"motion '{motion}' needs the source pose's neck and both shoulders; "
                            f"give a pose (--source-pose) where they are visible")
        self.pose, self.xy, self.visible = pose, pose.xy.astype(np.float64).copy(), pose.visible.copy()
        hips = [j for j in (JOINT["r_hip"], JOINT["l_hip"]) if pose.visible[j]]
        shoulders = np.linalg.norm(self.xy[JOINT["r_shoulder"]] - self.xy[JOINT["l_shoulder"]])
        torso = np.linalg.norm(self.xy[hips].mean(axis=0) - self.xy[NECK]) if hips else 0.0
        self.torso = float(torso) if torso > 1e-3 else max(2.5 * float(shoulders), 1.0)
        self.side = {k: self._side(k) for k in "rl"}

    def _side(self, k: str) -> float:
        """Image side (-1 left, +1 right) of the person's right/left arm."""
        dx = self.xy[_ARMS[k][0], 0] - self.xy[NECK, 0]
        if abs(dx) > 1e-3:
            return float(np.sign(dx))
        return -1.0 if k == "r" else 1.0  # a profile: assume a front view

    def length(self, a: int, b: int, default: float) -> float:
        """Bone length a -> b in the source pose, or `default` (in torso lengths) when either joint is missing."""
        if self.visible[a] and self.visible[b]:
            return float(np.linalg.norm(self.xy[b] - self.xy[a]))
        return default * self.torso

    def angle(self, a: int, b: int, side: float, default: float) -> float:
        """Angle of bone a -> b from straight down, positive away from the body; `default` when missing."""
        if not (self.visible[a] and self.visible[b]):
            return default
        dx, dy = self.xy[b] - self.xy[a]
        return float(np.arctan2(side * dx, dy))

    def limb(self, joints: tuple[int, int, int], side: float) -> tuple[float, float, float, float]:
        """(upper length, lower length, upper angle, lower angle) of an arm or leg in the source pose."""
        root, mid, end = joints
        upper = self.length(root, mid, 0.55)
        lower = self.length(mid, end, 0.5)
        a = self.angle(root, mid, side, 0.1)
        return upper, lower, a, self.angle(mid, end, side, a)

    def set_limb(self, xy: np.ndarray, joints: tuple[int, int, int], side: float,
                 lengths: tuple[float, float], angles: tuple[float, float]) -> None:
        """Place the middle and end joints of a limb from its root at the given angles; they become visible."""
        root, mid, end = joints
        if not self.visible[root]:
            return
        xy[mid] = xy[root] + lengths[0] * np.array([side * np.sin(angles[0]), np.cos(angles[0])])
        xy[end] = xy[mid] + lengths[1] * np.array([side * np.sin(angles[1]), np.cos(angles[1])])

    def pose_of(self, xy: np.ndarray, visible: np.ndarray | None = None, limbs: tuple = ()) -> Pose:
        shown = (self.visible if visible is None else visible).copy()
        for joints in limbs:  # a moved limb is shown whole when its root is
            if shown[joints[0]]:
                shown[list(joints)] = True
        return Pose(xy, shown, self.pose.height, self.pose.width)


def _ease(t: np.ndarray | float) -> np.ndarray | float:
    """0 -> 1 smoothly (zero speed at both ends)."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(t, 0.0, 1.0))


def _up_and_down(frames: int) -> np.ndarray:
    """(frames,) weights 0 -> 1 -> 0, eased, peaking in the middle third."""
    t = np.linspace(0.0, 1.0, frames)
    return np.minimum(_ease(t * 3.0), _ease((1.0 - t) * 3.0))


def arms_up(pose: Pose, frames: int = 24) -> list[Pose]:
    body = Body(pose, "arms-up")
    arms = {k: body.limb(_ARMS[k], body.side[k]) for k in "rl"}
    out = []
    for w in _up_and_down(frames):
        xy = body.xy.copy()
        for k, (upper, lower, a, b) in arms.items():
            body.set_limb(xy, _ARMS[k], body.side[k], (upper, lower), (a + w * (2.95 - a), b + w * (3.0 - b)))
        out.append(body.pose_of(xy, limbs=tuple(_ARMS.values())))
    return out


def wave(pose: Pose, frames: int = 24) -> list[Pose]:
    body = Body(pose, "wave")
    upper, lower, a, b = body.limb(_ARMS["r"], body.side["r"])
    t = np.linspace(0.0, 1.0, frames)
    raise_w = np.minimum(_ease(t * 4.0), _ease((1.0 - t) * 4.0))  # up in the first quarter, down in the last
    swing = 0.45 * np.sin(2 * np.pi * 3.0 * t) * raise_w  # three waves of the forearm about vertical
    out = []
    for w, s in zip(raise_w, swing):
        xy = body.xy.copy()
        angles = (a + w * (1.35 - a), b + w * (2.75 + s - b))
        body.set_limb(xy, _ARMS["r"], body.side["r"], (upper, lower), angles)
        out.append(body.pose_of(xy, limbs=(_ARMS["r"],)))
    return out


def walk(pose: Pose, frames: int = 24) -> list[Pose]:
    """Two strides per 24 frames; a raised knee comes up by 40 % of the thigh, its shin hangs below it."""
    body = Body(pose, "walk")
    legs = {k: body.limb(_LEGS[k], body.side[k]) for k in "rl"}
    arms = {k: body.limb(_ARMS[k], body.side[k]) for k in "rl"}
    phase = 2 * np.pi * np.arange(frames) / 12.0
    upper_body = [j for j in range(18) if j not in {x for leg in _LEGS.values() for x in leg[1:]}]
    out = []
    for p in phase:
        xy = body.xy.copy()
        xy[upper_body, 1] -= 0.04 * body.torso * abs(np.sin(p))  # the body rises a little at each stride
        for k, sign in (("r", 1.0), ("l", -1.0)):
            lift = max(0.0, sign * np.sin(p))  # this knee's share of the stride
            thigh, shin, a, _ = legs[k]
            hip, knee, ankle = _LEGS[k]
            if body.visible[hip]:
                xy[knee] = xy[hip] + np.array([body.side[k] * thigh * np.sin(a), thigh * np.cos(a) * (1 - 0.4 * lift)])
                xy[ankle] = xy[knee] + np.array([0.0, shin])
            upper, lower, ua, la = arms[k]
            swing = 0.5 * max(0.0, -sign * np.sin(p))  # the opposite arm swings forward: it looks shorter
            body.set_limb(xy, _ARMS[k], body.side[k], (upper * (1 - 0.3 * swing), lower * (1 - 0.5 * swing)),
                          (ua, la - swing * 0.6))
        out.append(body.pose_of(xy, limbs=tuple(_LEGS.values()) + tuple(_ARMS.values())))
    return out


def turn(pose: Pose, frames: int = 32) -> list[Pose]:
    """A full turn to the person's left, about the vertical through the neck; face joints behind the head hide."""
    body = Body(pose, "turn")
    centre = body.xy[NECK, 0]
    head = 0.55 * np.linalg.norm(body.xy[JOINT["r_shoulder"]] - body.xy[JOINT["l_shoulder"]]) / 2
    facing = body.side["r"] < 0  # a front view: the person's right on the image's left
    depth = np.zeros(18)
    for j, d in _FACE_DEPTH.items():
        depth[j] = d * head * (1.0 if facing else -1.0)
    dx = body.xy[:, 0] - centre
    out = []
    for theta in 2 * np.pi * np.arange(frames) / frames:
        xy = body.xy.copy()
        xy[:, 0] = centre + dx * np.cos(theta) + depth * np.sin(theta)
        seen = -dx * np.sin(theta) + depth * np.cos(theta)  # > 0: towards the camera
        visible = body.visible.copy()
        for j in _FACE_DEPTH:
            visible[j] &= bool(seen[j] > -0.2 * head)
        out.append(body.pose_of(xy, visible))
    return out


MOTIONS: dict[str, Callable[..., list[Pose]]] = {"arms-up": arms_up, "wave": wave, "walk": walk, "turn": turn}


def make_motion(name: str, pose: Pose, frames: int | None = None) -> list[Pose]:
    """The built-in motion `name` made from `pose`, over `frames` frames (default: the motion's own)."""
    if name not in MOTIONS:
        raise UserError(f"unknown motion '{name}': choose from {', '.join(MOTIONS)}")
    if frames is not None and frames < 1:
        raise UserError(f"--frames must be at least 1, got {frames}")
    return MOTIONS[name](pose) if frames is None else MOTIONS[name](pose, frames)
