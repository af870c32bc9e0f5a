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

This is the `classic` style, the people the shipped demo model trained on. `generate(style="wardrobe")` writes
the same layout with other people (`synth_wardrobe`: other bodies, garment cuts and patterns, and outfit
families or patterns held out of training), a validation set no recipe here was tuned on (issue #31). Posing
and placing, shared by both styles, live in `synth_figure`.
"""

from __future__ import annotations

import colorsys
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from pcdms.data.formats import PairRecord, write_patn
from pcdms.data.synth_draw import PATTERNS, Fabric, Figure, Look, draw_person
from pcdms.data.synth_figure import Sample, build_figure, paint_person, place
from pcdms.errors import UserError
from pcdms.pose import Pose, render_skeleton

SKIN_TONES = ((0.98, 0.85, 0.74), (0.94, 0.77, 0.64), (0.87, 0.68, 0.53), (0.76, 0.57, 0.42),
              (0.62, 0.44, 0.31), (0.48, 0.33, 0.23), (0.36, 0.25, 0.18))  # fmt: skip
HAIR_COLOURS = ((0.08, 0.07, 0.07), (0.23, 0.15, 0.1), (0.42, 0.27, 0.15), (0.55, 0.25, 0.12),
                (0.86, 0.72, 0.45), (0.7, 0.7, 0.7), (0.8, 0.45, 0.6))  # fmt: skip
NEUTRALS = ((0.1, 0.1, 0.11), (0.95, 0.95, 0.93), (0.16, 0.2, 0.38), (0.55, 0.55, 0.56), (0.82, 0.74, 0.6),
            (0.27, 0.38, 0.58))  # fmt: skip
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
    return paint_person(figure, visible, height, width, rng, lambda painter: draw_person(painter, identity.look, figure), tag)


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
    style: str = "classic",
    held_out: Sequence[str] = (),
) -> SynthSummary:
    """Write a synthetic dataset to `out` (layout in the module docstring) and return what was written.
    progress: True (a bar in a terminal, else lines), False (silent) or a `pcdms.progress` mode.
    style: `classic` (this module's people, what the demo model trained on) or `wardrobe`
    (`synth_wardrobe`: other bodies, cuts and patterns); held_out: wardrobe families or patterns that only
    test identities wear."""
    from pcdms.progress import Progress, resolve_mode

    held_out = tuple(dict.fromkeys(held_out))
    sample, render, describe = _style(style, held_out, train_identities)
    if min(train_identities, test_identities) < 0 or poses_per_identity < 2:
        raise UserError("identity counts must be >= 0 and --poses >= 2 (a pair needs two images)")
    if height < 32 or width < 24:
        raise UserError(f"image size {height}x{width} is too small to draw a person; use at least 32x24")
    out = Path(out)
    _prepare_out(out)
    meta = {"seed": seed, "height": height, "width": width, "poses_per_identity": poses_per_identity, "identities": []}
    if style != "classic":  # a classic dataset's file stays as it always was
        meta = {"style": style, "held_out": list(held_out), **meta}
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
            identity = sample(seed, index, split)
            described.append({"index": index, "split": split, **describe(identity)})
            names = []
            for number in range(poses_per_identity):
                drawn = render(identity, seed, number, height, width)
                name = f"id{index:05d}_{number:02d}_{drawn.tag}.png"
                Image.fromarray(drawn.image).save(out / split / name, compress_level=1)
                poses[name] = drawn.pose
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


def _style(style: str, held_out: Sequence[str], train_identities: int) -> tuple[Callable, Callable, Callable]:
    """(sample identity, render image, describe identity) of a style."""
    if style == "classic":
        if held_out:
            raise UserError("--held-out needs --style wardrobe (the classic style has no held-out outfits)")
        return sample_identity, render_sample, asdict
    if style != "wardrobe":
        raise UserError(f"unknown --style '{style}'; choose classic or wardrobe")
    from pcdms.data import synth_wardrobe as wardrobe

    names = wardrobe.check_held_out(held_out, train_identities)
    return (partial(wardrobe.sample_wardrobe_identity, held_out=names), wardrobe.render_wardrobe_sample,
            wardrobe.describe_wardrobe_identity)  # fmt: skip


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
