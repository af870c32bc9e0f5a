"""Synthetic people in the PATN layout: the CPU stand-in for DeepFashion (`shared/REFERENCE.md` Sec. 4).

Each identity has a body, skin, hair, and an outfit (top and bottom kinds, colours, and a pattern among
stripes, checks, dots, diagonals, zigzags, plaid) that stay the same in every image of that identity;
the images differ in pose, view (front, back, three-quarter), scale and crop (full body, knee-up,
waist-up, head cut off). Limbs are painted in depth order, so arms hide behind the body or cross in
front of it. A model must carry the outfit's colours and pattern into the new pose, as on DeepFashion.

Layout written by `generate` (read back by `pcdms.data.formats`, format `patn`):
`train/`, `test/` images; `synth-annotation-<split>.csv` (keypoints in the image frame, with `height` and
`width` columns); `synth-pairs-<split>.csv` (every ordered pair of images of one identity);
`<split>.lst`; `synth-identities.json` (each identity's look). Test identities are disjoint from training.
Deterministic given the seed: identity i and its pose k are drawn from `default_rng([seed, i(, k)])`.
"""

from __future__ import annotations

import colorsys
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pcdms.data.formats import PairRecord, write_patn
from pcdms.data.synth_draw import PATTERNS, SUPERSAMPLE, Fabric, Figure, Look, Painter, draw_person
from pcdms.errors import UserError
from pcdms.pose import Pose, render_skeleton

SKIN_TONES = ((0.98, 0.85, 0.74), (0.94, 0.77, 0.64), (0.87, 0.68, 0.53), (0.76, 0.57, 0.42),
              (0.62, 0.44, 0.31), (0.48, 0.33, 0.23), (0.36, 0.25, 0.18))  # fmt: skip
HAIR_COLOURS = ((0.08, 0.07, 0.07), (0.23, 0.15, 0.1), (0.42, 0.27, 0.15), (0.55, 0.25, 0.12),
                (0.86, 0.72, 0.45), (0.7, 0.7, 0.7), (0.8, 0.45, 0.6))  # fmt: skip
NEUTRALS = ((0.1, 0.1, 0.11), (0.95, 0.95, 0.93), (0.16, 0.2, 0.38), (0.55, 0.55, 0.56), (0.82, 0.74, 0.6),
            (0.27, 0.38, 0.58))  # fmt: skip
CROPS = {"full": 0.7, "knee-up": 0.13, "waist-up": 0.1, "head-cut": 0.07}
VIEWS = {"front": 0.55, "three-quarter": 0.25, "back": 0.2}
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Identity:
    """A synthetic person: id, split, look and body proportions (body units: standing height about 1)."""

    index: int
    split: str
    look: Look
    shoulder_half: float
    torso: float
    upper_arm: float
    forearm: float
    thigh: float
    shin: float


# ---------------------------------------------------------------------- sampling
def _colour(rng: np.random.Generator, avoid: tuple | None = None) -> tuple[float, float, float]:
    for _ in range(20):
        if rng.random() < 0.3:
            rgb = NEUTRALS[rng.integers(len(NEUTRALS))]
        else:
            sat = rng.uniform(0.15, 0.35) if rng.random() < 0.3 else rng.uniform(0.5, 0.9)
            rgb = colorsys.hsv_to_rgb(rng.random(), sat, rng.uniform(0.3, 0.95))
        if avoid is None or np.abs(np.subtract(rgb, avoid)).sum() > 0.6:
            break
    return tuple(round(float(c), 3) for c in rgb)


def _fabric(rng: np.random.Generator, plain_prob: float) -> Fabric:
    base = _colour(rng)
    pattern = "solid" if rng.random() < plain_prob else str(rng.choice(PATTERNS[1:]))
    return Fabric(base, _colour(rng, avoid=base), pattern, period=round(float(rng.uniform(0.03, 0.06)), 4))


def sample_identity(seed: int, index: int, split: str) -> Identity:
    """Identity `index`, the same for a seed whatever the dataset's counts."""
    rng = np.random.default_rng([seed, index])
    skin = np.clip(np.asarray(SKIN_TONES[rng.integers(len(SKIN_TONES))]) + rng.normal(0, 0.02, 3), 0, 1)
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))]
    top, bottom = _fabric(rng, 0.35), _fabric(rng, 0.55)
    bottom_kind = str(rng.choice(["trousers", "shorts", "skirt", "long_skirt"], p=[0.4, 0.2, 0.25, 0.15]))
    if bottom_kind in ("skirt", "long_skirt") and rng.random() < 0.35:
        bottom = top  # a dress: one fabric from neck to hem
    look = Look(
        skin=Fabric(tuple(round(float(c), 3) for c in skin), shine=0.18),
        hair=Fabric(hair, shine=0.3),
        hair_style=str(rng.choice(["short", "long", "bob", "bun"])),
        top=top,
        top_kind=str(rng.choice(["tee", "long", "tank", "jacket"], p=[0.35, 0.25, 0.2, 0.2])),
        inner=Fabric(_colour(rng, avoid=top.base)),
        bottom=bottom,
        bottom_kind=bottom_kind,
        shoes=Fabric(_colour(rng), shine=0.1),
        head_r=float(rng.uniform(0.052, 0.06)),
        arm_r=float(rng.uniform(0.024, 0.03)),
        leg_r=float(rng.uniform(0.038, 0.046)),
        hip_half=float(rng.uniform(0.048, 0.062)),
    )
    jitter = rng.uniform(0.95, 1.05, 5)
    return Identity(index, split, look, float(rng.uniform(0.085, 0.105)), 0.3 * jitter[0],
                    0.16 * jitter[1], 0.14 * jitter[2], 0.23 * jitter[3], 0.23 * jitter[4])  # fmt: skip


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


def build_figure(identity: Identity, rng: np.random.Generator) -> tuple[Figure, str, np.ndarray]:
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


def place(figure: Figure, look: Look, height: int, width: int, rng: np.random.Generator) -> tuple[Figure, str]:
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


def render_sample(identity: Identity, seed: int, number: int, height: int, width: int) -> Sample:
    """Image `number` of an identity, drawn from `default_rng([seed, identity.index, number])`."""
    rng = np.random.default_rng([seed, identity.index, number])
    figure, view, visible = build_figure(identity, rng)
    figure, crop = place(figure, identity.look, height, width, rng)
    return paint_figure(identity, figure, visible, height, width, rng, f"{view}-{crop}")


def paint_figure(identity: Identity, figure: Figure, visible: np.ndarray, height: int, width: int,
                 rng: np.random.Generator, tag: str = "") -> Sample:
    """Draw a figure placed in the supersampled canvas (`place`) on a studio backdrop drawn from `rng`;
    `visible` (18,) marks the joints an annotator would see. Also how a posed figure of one's own (a motion's
    frame) gets its true image."""
    feet = figure.joints[[10, 13]].mean(axis=0)
    painter = Painter(_background(height * SUPERSAMPLE, width * SUPERSAMPLE, rng, feet[1] + 0.02 * figure.scale, feet[0]))
    draw_person(painter, identity.look, figure)
    pose = Pose(figure.joints / SUPERSAMPLE, visible, height, width)
    pose = Pose(pose.xy, pose.inside(), height, width)  # a crop hides the joints outside the frame
    covered = (painter.ids > 0).reshape(height, SUPERSAMPLE, width, SUPERSAMPLE).any(axis=(1, 3))
    return Sample(painter.finish(), pose, tag, covered)


# ---------------------------------------------------------------------- the dataset
@dataclass
class SynthSummary:
    root: Path
    images: dict[str, int]  # per split
    pairs: dict[str, int]
    identities: dict[str, list[int]]


def generate(
    out: str | Path,
    train_identities: int = 24,
    test_identities: int = 8,
    poses_per_identity: int = 6,
    height: int = 256,
    width: int = 176,
    seed: int = 0,
    progress: bool | str = False,
) -> SynthSummary:
    """Write a synthetic dataset to `out` (layout in the module docstring) and return what was written.
    progress: True (a bar in a terminal, else lines), False (silent) or a `pcdms.progress` mode."""
    from pcdms.progress import Progress, resolve_mode

    if min(train_identities, test_identities) < 0 or poses_per_identity < 2:
        raise UserError("identity counts must be >= 0 and --poses >= 2 (a pair needs two images)")
    if height < 32 or width < 24:
        raise UserError(f"image size {height}x{width} is too small to draw a person; use at least 32x24")
    out = Path(out)
    _prepare_out(out)
    meta = {"seed": seed, "height": height, "width": width, "poses_per_identity": poses_per_identity, "identities": []}
    (out / "synth-identities.json").write_text(json.dumps(meta))  # marks the folder as ours even if interrupted
    counts = {"train": train_identities, "test": test_identities}
    first = {"train": 0, "test": train_identities}  # disjoint identity indices
    summary = SynthSummary(out, {}, {}, {})
    described = []
    total = (train_identities + test_identities) * poses_per_identity
    bar = Progress(total, "synth", "img", resolve_mode(progress))
    for split in SPLITS:
        (out / split).mkdir(parents=True, exist_ok=True)
        poses: dict[str, Pose] = {}
        pairs: list[PairRecord] = []
        ids = list(range(first[split], first[split] + counts[split]))
        for index in ids:
            identity = sample_identity(seed, index, split)
            described.append({"index": index, "split": split, **asdict(identity)})
            names = []
            for number in range(poses_per_identity):
                sample = render_sample(identity, seed, number, height, width)
                name = f"id{index:05d}_{number:02d}_{sample.tag}.png"
                Image.fromarray(sample.image).save(out / split / name, compress_level=1)
                poses[name] = sample.pose
                names.append(name)
                bar.update()
            pairs += [PairRecord(a, b) for a in names for b in names if a != b]
        write_patn(out, split, pairs, poses, prefix="synth")
        (out / f"{split}.lst").write_text("".join(f"{n}\n" for n in poses))
        summary.images[split], summary.pairs[split], summary.identities[split] = len(poses), len(pairs), ids
    bar.close()
    meta["identities"] = described
    (out / "synth-identities.json").write_text(json.dumps(meta, indent=1))
    return summary


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "synth-identities.json").is_file():
        raise UserError(f"--out {out} is not empty and is not a synthetic dataset; choose an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:  # regenerating: old images of other counts must not linger
        for old in (out / split).glob("*.png") if (out / split).is_dir() else []:
            old.unlink()


def contact_sheet(root: str | Path, path: str | Path, split: str = "train", columns: int = 8, rows: int = 4) -> Path:
    """A PNG grid of a split's first images, each with its keypoints drawn over it; returns `path`."""
    from pcdms.data.formats import load_split

    data = load_split(root, split, "patn")
    names = list(data.images)[: columns * rows]
    if not names:
        raise UserError(f"{root} split '{split}' has no images for a contact sheet")
    tiles = []
    for name in names:
        entry = data.images[name]
        image = np.asarray(Image.open(entry.path).convert("RGB"), dtype=np.float32)
        skeleton = render_skeleton(entry.keypoints, image.shape[0], image.shape[1]).astype(np.float32)
        drawn = skeleton.max(axis=2, keepdims=True) > 0
        tiles.append(np.where(drawn, 0.3 * image + 0.7 * skeleton, image).astype(np.uint8))
    h, w = tiles[0].shape[:2]
    rows = (len(tiles) + columns - 1) // columns
    sheet = np.full((rows * (h + 4) + 4, min(columns, len(tiles)) * (w + 4) + 4, 3), 255, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        y, x = 4 + (i // columns) * (h + 4), 4 + (i % columns) * (w + 4)
        sheet[y : y + h, x : x + w] = tile
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(path)
    return path
