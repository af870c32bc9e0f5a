"""Write the app's gallery of ready target poses: `src/pcdms/assets/poses/<name>.json` (OpenPose COCO-18 JSON).

Each pose is built from joint angles on one body of DeepFashion proportions in its 256x176 frame, so the
files are reproducible and each one says what it is. Views follow OpenPose's labels: a front view has the
person's right on the image's left; a back view mirrors that and has no nose or eyes; a side view shows the
near eye and ear only. Run: `python scripts/make_pose_gallery.py` (add `--sheet sheet.png` to look at them).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from pcdms.pose import JOINT, Pose, write_openpose_json

HEIGHT, WIDTH = 256, 176
OUT = Path(__file__).resolve().parents[1] / "src" / "pcdms" / "assets" / "poses"
CENTRE_X, NECK_Y, HIP_Y = 88.0, 54.0, 128.0
UPPER_ARM, FOREARM, THIGH, SHIN = 40.0, 36.0, 46.0, 46.0


def _limb(start: np.ndarray, angle: float, length: float, outward: float) -> np.ndarray:
    """The end of a limb leaving `start` at `angle` degrees from straight down, towards `outward` (-1/+1 in x)."""
    a = math.radians(angle)
    return start + length * np.array([outward * math.sin(a), math.cos(a)])


def figure(view: str = "front", arms=((10, 0), (10, 0)), legs=((4, 0), (4, 0)), width_scale: float = 1.0,
           face_shift: float = 0.0, lower: float = 0.0) -> Pose:
    """A pose from (shoulder angle, elbow bend) per arm and (hip angle, knee bend) per leg, right side first.

    view: front / back (mirrored sides, no face) / side (facing the image's left: angles swing forward).
    lower: move the whole figure down this many pixels (room for raised arms).
    """
    xy = np.zeros((18, 2))
    visible = np.ones(18, dtype=bool)
    side = view == "side"
    half_shoulder, half_hip = (2.0, 2.0) if side else (21.0 * width_scale, 12.0 * width_scale)
    outward = {"r": -1.0, "l": 1.0} if view in ("front", "side") else {"r": 1.0, "l": -1.0}
    neck = np.array([CENTRE_X, NECK_Y])
    xy[JOINT["neck"]] = neck
    for s, (angle, bend) in zip("rl", arms):
        direction = -1.0 if side else outward[s]  # in a side view both arms swing forward (image left)
        shoulder = neck + [outward[s] * half_shoulder, 2.0]
        elbow = _limb(shoulder, angle, UPPER_ARM, direction)
        xy[JOINT[f"{s}_shoulder"]], xy[JOINT[f"{s}_elbow"]] = shoulder, elbow
        xy[JOINT[f"{s}_wrist"]] = _limb(elbow, angle + bend, FOREARM, direction)
    for s, (angle, bend) in zip("rl", legs):
        direction = -1.0 if side else outward[s]
        hip = np.array([CENTRE_X + outward[s] * half_hip, HIP_Y])
        knee = _limb(hip, angle, THIGH, direction)
        xy[JOINT[f"{s}_hip"]], xy[JOINT[f"{s}_knee"]] = hip, knee
        xy[JOINT[f"{s}_ankle"]] = _limb(knee, angle - bend, SHIN, direction)
    head_x = CENTRE_X + face_shift
    if side:  # the person's right side faces the camera, the face looks to the image's left
        xy[JOINT["nose"]], xy[JOINT["r_eye"]], xy[JOINT["r_ear"]] = (head_x - 11, 33), (head_x - 6, 27), (head_x + 4, 30)
        visible[[JOINT["l_eye"], JOINT["l_ear"]]] = False
    else:
        xy[JOINT["nose"]] = (head_x, 32)
        for s in "rl":
            xy[JOINT[f"{s}_eye"]] = (head_x + outward[s] * 6 * width_scale, 27)
            xy[JOINT[f"{s}_ear"]] = (CENTRE_X + outward[s] * 12 * width_scale, 30)
        if view == "back":
            visible[[JOINT["nose"], JOINT["r_eye"], JOINT["l_eye"]]] = False
    return Pose(xy + [0.0, lower], visible, HEIGHT, WIDTH)


GALLERY: dict[str, Pose] = {
    "front-standing": figure(),
    "front-arms-raised": figure(arms=((140, 0), (140, 0)), lower=24),
    "front-arms-out": figure(arms=((60, -15), (60, -15))),
    "front-hands-on-hips": figure(arms=((40, -85), (40, -85))),
    "front-waving": figure(arms=((80, 80), (10, 0))),
    "front-one-arm-up": figure(arms=((10, 0), (165, 5)), lower=24),
    "front-wide-stance": figure(legs=((16, 0), (16, 0)), arms=((25, 0), (25, 0))),
    "front-walking": figure(arms=((15, 10), (5, 0)), legs=((2, 0), (10, 25))),
    "three-quarter": figure(arms=((12, 5), (8, 0)), width_scale=0.6, face_shift=-6),
    "back-standing": figure("back"),
    "back-arms-raised": figure("back", arms=((140, 0), (140, 0)), lower=24),
    "back-walking": figure("back", arms=((8, 0), (15, 10)), legs=((10, 25), (2, 0))),
    "side-standing": figure("side", arms=((5, 10), (-5, 10)), legs=((2, 0), (-2, 0))),
    "side-walking": figure("side", arms=((-25, 20), (30, 35)), legs=((22, 10), (-18, 25))),
    "side-reaching": figure("side", arms=((85, 0), (70, 10)), legs=((2, 0), (-2, 0))),
    "side-standing-mirrored": figure("side", arms=((5, 10), (-5, 10)), legs=((2, 0), (-2, 0))).flipped(),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--sheet", help="also write a contact sheet of the renders here")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, pose in GALLERY.items():
        assert pose.inside().sum() == pose.visible.sum(), f"{name} leaves the frame"
        write_openpose_json(out / f"{name}.json", pose)
    if args.sheet:
        from PIL import Image

        tiles = [Image.fromarray(pose.render()) for pose in GALLERY.values()]
        sheet = Image.new("RGB", (WIDTH * 8, HEIGHT * ((len(tiles) + 7) // 8)))
        for i, tile in enumerate(tiles):
            sheet.paste(tile, ((i % 8) * WIDTH, (i // 8) * HEIGHT))
        sheet.save(args.sheet)
    print(f"wrote {len(GALLERY)} poses to {out}")


if __name__ == "__main__":
    main()
