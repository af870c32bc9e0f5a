"""Painting the `wardrobe` style's people: its cloths (patterns at three scales, up to three colours) and cuts.

Support for `pcdms.data.synth_wardrobe`. Uses the classic style's rasteriser (`synth_draw.Painter`: parts painted
back to front at 2x, outlined, box-filtered down) but its own bodies and garments: a waist of its own width,
long coats, dresses, jumpsuits, sleeveless tops, hair as caps or tails, a face of two eyes. Every limb is
painted from the figure's COCO-18 joints, so the recorded keypoints lie on the drawn person.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pcdms.data.synth_draw import Fabric, Figure, Painter

#: Patterns of a cloth, evaluated in each body part's own coordinates (along, across the bone) in periods.
CLOTH_PATTERNS = ("solid", "stripes", "pinstripes", "checks", "dots", "diagonal", "gingham", "bands", "diamonds")
#: A pattern's period, in body heights (standing height about 1), for each scale.
SCALES = {"fine": (0.025, 0.04), "medium": (0.05, 0.08), "large": (0.1, 0.16)}


@dataclass(frozen=True)
class Cloth:
    """A garment's material: `colours` (base, accent, third: RGB in [0, 1]), a pattern of `CLOTH_PATTERNS`,
    its period in body heights and the scale it was drawn at."""

    colours: tuple[tuple[float, float, float], ...]
    pattern: str
    period: float
    scale: str
    shine: float = 0.1  # flatter than the classic style's fabrics

    def colour(self, along: np.ndarray, across: np.ndarray, period_px: float) -> np.ndarray:
        """RGB (N, 3) at body-part coordinates `along`, `across` (pixels)."""
        index = pattern_index(self.pattern, along / period_px, across / period_px)
        return np.asarray(self.colours, dtype=np.float64)[index]


def pattern_index(pattern: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Which of a cloth's colours (0 base, 1 accent, 2 third) shows at (u, v) in periods: int (N,)."""
    fu, fv = np.mod(u, 1.0), np.mod(v, 1.0)
    if pattern == "solid":
        mark = np.zeros(u.shape, dtype=bool)
    elif pattern == "stripes":
        mark = fu < 0.5
    elif pattern == "pinstripes":
        mark = fv < 0.22
    elif pattern == "checks":
        mark = np.mod(np.floor(u) + np.floor(v), 2.0) > 0
    elif pattern == "dots":
        shift = 0.5 * np.mod(np.floor(u), 2.0)  # staggered rows
        mark = (fu - 0.5) ** 2 + (np.mod(v + shift, 1.0) - 0.5) ** 2 < 0.08
    elif pattern == "diagonal":
        mark = np.mod(u - v, 1.0) < 0.5
    elif pattern == "gingham":  # both bars: accent; one bar: the third colour
        bars = (fu < 0.5).astype(np.int64) + (fv < 0.5)
        return np.where(bars == 2, 1, np.where(bars == 1, 2, 0))
    elif pattern == "bands":  # wide bands of the three colours in turn
        return np.mod(np.floor(u), 3.0).astype(np.int64)
    elif pattern == "diamonds":
        mark = np.abs(fu - 0.5) + np.abs(fv - 0.5) < 0.3
    else:
        raise ValueError(f"unknown pattern '{pattern}'")
    return mark.astype(np.int64)


@dataclass(frozen=True)
class WardrobeLook:
    """Everything about a wardrobe person that stays the same across their images (body units: height 1).

    `main` is the outfit's first garment (the dress, coat, jumpsuit or top), `second` the legwear or skirt
    (the main cloth again for a dress or jumpsuit), `inner` the top under an open coat."""

    family: str
    sleeves: str  # none | short | long
    legwear: str  # trousers | shorts | none
    skirt: str  # none | mini | knee | ankle
    coat: bool
    main: Cloth
    second: Cloth
    inner: Cloth
    skin: Fabric
    hair: Fabric
    hair_style: str  # crop | long | tail | bald
    shoes: Fabric
    head_r: float
    arm_r: float
    leg_r: float
    hip_half: float
    waist: float  # waist width / the straight line's from shoulders to hips
    stature: float  # full-body images: the person's height / the frame's usual


_ARM, _LEG = {"r": (2, 3, 4), "l": (5, 6, 7)}, {"r": (8, 9, 10), "l": (11, 12, 13)}


def draw_wardrobe_person(painter: Painter, look: WardrobeLook, fig: Figure) -> None:
    """Paint `fig` dressed as `look`, back to front: hair behind, far limbs, legs, skirt, torso, arms, head."""
    j = fig.joints
    image_side = {k: np.sign(j[_ARM[k][0], 0] - j[1, 0]) or (1.0 if k == "l" else -1.0) for k in "rl"}
    far = None if abs(fig.turn) < 0.15 else ("l" if image_side["l"] * fig.turn > 0 else "r")
    back = fig.view == "back"
    if look.hair_style == "long" and not back:
        _hair_behind(painter, look, fig)
    behind = [k for k in "rl" if (back and fig.arms_in_front[k]) or (k == far and not fig.arms_in_front[k])]
    for k in behind:
        _arm(painter, look, fig, k)
    for k in sorted("rl", key=lambda k: k != far):
        _leg(painter, look, fig, k)
    _lower(painter, look, fig)
    neck_top = fig.head_centre + 0.6 * look.head_r * fig.scale * (-fig.down)
    r = look.head_r * fig.scale
    painter.paint(painter.capsule(neck_top, j[1], 0.4 * r, 0.48 * r), look.skin, fig.scale, painter.new_part())
    _torso(painter, look, fig)
    for k in "rl":
        if k not in behind:
            _arm(painter, look, fig, k)
    _head(painter, look, fig)
    if look.hair_style == "long" and back:
        _hair_behind(painter, look, fig)


def _period(cloth: Cloth, fig: Figure) -> float:
    return cloth.period * fig.scale


def _across(fig: Figure) -> np.ndarray:
    return np.array([fig.down[1], -fig.down[0]])


def _arm(painter: Painter, look: WardrobeLook, fig: Figure, side: str) -> None:
    s, (sh, el, wr) = fig.scale, (fig.joints[i] for i in _ARM[side])
    r = look.arm_r * s
    part = painter.new_part()
    painter.paint(painter.capsule(sh, el, r, 0.9 * r), look.skin, s, part)
    painter.paint(painter.capsule(el, wr, 0.9 * r, 0.75 * r), look.skin, s, part)
    painter.paint(painter.ellipse(wr + 0.4 * r * (wr - el) / max(np.hypot(*(wr - el)), 1e-6), 0.9 * r, 0.9 * r),
                  look.skin, s, part)  # fmt: skip
    if look.sleeves == "none":
        return
    cloth, sleeve = look.main, painter.new_part()
    wide = 1.35 if look.coat else 1.18
    if look.sleeves == "short":
        painter.paint(painter.capsule(sh, sh + 0.45 * (el - sh), wide * r, 1.15 * r), cloth, _period(cloth, fig), sleeve)
        return
    painter.paint(painter.capsule(sh, el, wide * r, 1.08 * r), cloth, _period(cloth, fig), sleeve)
    painter.paint(painter.capsule(el, wr - 0.12 * (wr - el), 1.08 * r, 0.95 * r), cloth, _period(cloth, fig), sleeve)


def _leg(painter: Painter, look: WardrobeLook, fig: Figure, side: str) -> None:
    s, (hip, knee, ankle) = fig.scale, (fig.joints[i] for i in _LEG[side])
    r = look.leg_r * s
    part = painter.new_part()
    painter.paint(painter.capsule(hip, knee, r, 0.72 * r), look.skin, s, part)
    painter.paint(painter.capsule(knee, ankle, 0.72 * r, 0.48 * r), look.skin, s, part)
    outward = np.sign(ankle[0] - fig.joints[1, 0]) or 1.0
    painter.paint(painter.ellipse(ankle + np.array([0.35 * r * outward, 0.4 * r]), 0.9 * r, 0.45 * r), look.shoes, s,
                  painter.new_part())  # fmt: skip
    cloth = look.second
    if look.legwear == "trousers":
        cover = painter.new_part()
        painter.paint(painter.capsule(hip, knee, 1.2 * r, 0.98 * r), cloth, _period(cloth, fig), cover)
        painter.paint(painter.capsule(knee, ankle - 0.1 * (ankle - knee), 0.98 * r, 0.85 * r), cloth, _period(cloth, fig), cover)
    elif look.legwear == "shorts":
        painter.paint(painter.capsule(hip, hip + 0.38 * (knee - hip), 1.25 * r, 1.2 * r), cloth, _period(cloth, fig),
                      painter.new_part())  # fmt: skip


def _lower(painter: Painter, look: WardrobeLook, fig: Figure) -> None:
    """What covers the pelvis: a waistband block for legwear, a skirt (a dress's lower half) otherwise."""
    s, j, down, across = fig.scale, fig.joints, fig.down, _across(fig)
    pelvis = (j[8] + j[11]) / 2
    half = abs(np.dot(j[8] - j[11], across)) / 2 + 0.95 * look.leg_r * s
    top = pelvis - 0.06 * s * down
    cloth = look.second
    if look.skirt == "none":
        if look.legwear == "none":
            return
        bottom = pelvis + 0.06 * s * down
        points = [top - half * across, top + half * across, bottom + 0.85 * half * across, bottom - 0.85 * half * across]
        painter.paint(painter.polygon(points, j[1], down, half), cloth, _period(cloth, fig), painter.new_part())
        return
    knees = max(j[9, 1], j[12, 1])
    hem = {"mini": pelvis[1] + 0.55 * (knees - pelvis[1]), "knee": knees + 0.02 * s,
           "ankle": max(j[10, 1], j[13, 1]) - 0.03 * s}[look.skirt]  # fmt: skip
    length = max(hem - top[1], 0.08 * s)
    flare = half + 0.18 * length + 0.4 * abs(j[10, 0] - j[13, 0]) * (look.skirt != "mini")
    bottom = top + length * np.array([0.0, 1.0])
    points = [top - half * across, top + half * across, bottom + np.array([flare, 0]), bottom - np.array([flare, 0])]
    painter.paint(painter.polygon(points, j[1], down, flare), cloth, _period(cloth, fig), painter.new_part())


def _torso(painter: Painter, look: WardrobeLook, fig: Figure) -> None:
    """The top (or dress bodice, coat, jumpsuit) in two convex pieces, chest and belly, meeting at the waist."""
    s, j, down, across = fig.scale, fig.joints, fig.down, _across(fig)
    left, right = (2, 5) if j[2, 0] < j[5, 0] else (5, 2)
    hip_left, hip_right = (8, 11) if j[8, 0] < j[11, 0] else (11, 8)
    pad = look.arm_r * s * (0.35 if look.sleeves == "none" else 0.75)
    hip_pad = 0.8 * look.leg_r * s
    shoulders = [j[left] - pad * across - 0.02 * s * down, j[right] + pad * across - 0.02 * s * down]
    hem = 0.05 * s * down
    hips = [j[hip_left] - hip_pad * across + hem, j[hip_right] + hip_pad * across + hem]
    straight = [shoulders[0] + 0.6 * (hips[0] - shoulders[0]), shoulders[1] + 0.6 * (hips[1] - shoulders[1])]
    middle = (straight[0] + straight[1]) / 2
    waist = [middle + look.waist * (point - middle) for point in straight]
    half = abs(np.dot(shoulders[1] - shoulders[0], across)) / 2
    cloth, part = look.main, painter.new_part()
    period = _period(cloth, fig)
    painter.paint(painter.polygon([shoulders[0], shoulders[1], waist[1], waist[0]], j[1], down, half), cloth, period, part)
    if look.coat:  # the coat's skirt runs from the waist to below the knees, over the legs
        knees = max(j[9, 1], j[12, 1])
        hem_y = knees + 0.35 * (max(j[10, 1], j[13, 1]) - knees)
        spread = max(abs(np.dot(hips[1] - hips[0], across)) / 2, half) + 0.1 * (hem_y - waist[0][1])
        centre = (waist[0] + waist[1]) / 2
        bottom = np.array([centre[0], hem_y])
        hips = [bottom - spread * across, bottom + spread * across]
    painter.paint(painter.polygon([waist[0], waist[1], hips[1], hips[0]], j[1], down, half), cloth, period, part)
    if fig.view == "back":
        return
    centre = j[1] + 0.25 * fig.face_shift * look.head_r * s * across
    if look.coat:
        belly = (waist[0] + waist[1]) / 2
        strip = [centre - 0.6 * pad * across, centre + 0.6 * pad * across, belly + 0.4 * pad * across,
                 belly - 0.4 * pad * across]  # fmt: skip
        painter.paint(painter.polygon(strip, j[1], down, pad), look.inner, _period(look.inner, fig), painter.new_part())
    else:  # a V neckline
        r = look.head_r * s
        neck = [centre - 0.5 * r * across - 0.03 * s * down, centre + 0.5 * r * across - 0.03 * s * down, centre + 0.6 * r * down]
        painter.paint(painter.polygon(neck, j[1], down, r), look.skin, s, part)


def _head(painter: Painter, look: WardrobeLook, fig: Figure) -> None:
    s, c, angle = fig.scale, fig.head_centre, fig.head_angle
    rx, ry = look.head_r * s, 1.18 * look.head_r * s
    up = np.array([np.sin(angle), -np.cos(angle)])
    side = np.array([np.cos(angle), np.sin(angle)])
    period = look.hair.period * s
    if look.hair_style == "tail":  # a ponytail behind the head
        painter.paint(painter.capsule(c + 0.5 * ry * up - 0.9 * rx * side, c - 1.1 * ry * up - 1.2 * rx * side,
                                      0.32 * rx, 0.22 * rx), look.hair, period, painter.new_part())  # fmt: skip
    shift = fig.face_shift * rx
    for ear in (-1, 1):
        if fig.view == "back" or ear * fig.face_shift <= 0.35:
            painter.paint(painter.ellipse(c + (ear * 0.95 * rx + 0.4 * shift) * side, 0.18 * rx, 0.28 * rx), look.skin,
                          s, painter.new_part())  # fmt: skip
    head = painter.new_part()
    painter.paint(painter.ellipse(c, rx, ry, angle), look.skin, s, head)
    hair = painter.new_part()
    if fig.view == "back":
        if look.hair_style != "bald":
            painter.paint(painter.ellipse(c - 0.05 * ry * up, 1.05 * rx, 1.03 * ry, angle), look.hair, period, hair)
        return
    eye = Fabric((0.05, 0.05, 0.08), shine=0.0)
    for k in (-1, 1):
        spot = c + (k * 0.38 * rx + shift) * side + 0.05 * ry * up
        painter.paint(painter.ellipse(spot, 0.11 * rx, 0.11 * rx, angle), eye, s, head)
    if look.hair_style != "bald":
        cut = -0.45 * ry if look.hair_style == "crop" else -0.3 * ry
        cap = painter.ellipse(c + 0.08 * ry * up + 0.3 * shift * side, 1.07 * rx, 1.0 * ry, angle, keep_above=cut)
        painter.paint(cap, look.hair, period, hair)


def _hair_behind(painter: Painter, look: WardrobeLook, fig: Figure) -> None:
    """Long hair: a panel from the crown to below the shoulders."""
    rx = look.head_r * fig.scale
    top = fig.head_centre - 0.4 * rx * fig.down
    bottom = fig.head_centre + 3.0 * rx * fig.down
    painter.paint(painter.capsule(top, bottom, 1.1 * rx, 1.3 * rx), look.hair, look.hair.period * fig.scale,
                  painter.new_part())  # fmt: skip
