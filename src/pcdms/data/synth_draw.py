"""Rasterising synthetic people: shaded, patterned body parts painted back to front, then outlined.

Support for `pcdms.data.synth` (the synthetic stand-in for DeepFashion, `shared/REFERENCE.md` Sec. 4). A
person is painted at `SUPERSAMPLE` x the output size and box-filtered down, which antialiases the edges.
Patterns are evaluated in each body part's own coordinates (along and across the bone), so a striped
sleeve keeps its stripes around the arm whatever the pose: the texture a model must carry to a new pose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SUPERSAMPLE = 2
PATTERNS = ("solid", "hstripes", "vstripes", "checks", "dots", "diagonal", "zigzag", "plaid")


@dataclass(frozen=True)
class Fabric:
    """A material: base and accent RGB in [0, 1], a pattern from `PATTERNS`, its period in body heights."""

    base: tuple[float, float, float]
    accent: tuple[float, float, float] = (0.0, 0.0, 0.0)
    pattern: str = "solid"
    period: float = 0.05
    shine: float = 0.22  # how much darker the sides of a rounded part are

    def colour(self, along: np.ndarray, across: np.ndarray, period_px: float) -> np.ndarray:
        """RGB (N, 3) at body-part coordinates `along`, `across` (pixels)."""
        base, accent = np.asarray(self.base), np.asarray(self.accent)
        u, v = along / period_px, across / period_px
        weight = _pattern_weight(self.pattern, u, v)
        return base[None, :] * (1.0 - weight[:, None]) + accent[None, :] * weight[:, None]


def _pattern_weight(pattern: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Accent weight in [0, 1] of a pattern at (u, v) in periods."""
    frac = np.mod
    if pattern == "solid":
        return np.zeros_like(u)
    if pattern == "hstripes":
        return (frac(u, 1.0) < 0.45).astype(np.float64)
    if pattern == "vstripes":
        return (frac(v, 1.0) < 0.4).astype(np.float64)
    if pattern == "checks":
        return (np.mod(np.floor(u) + np.floor(v), 2.0)).astype(np.float64)
    if pattern == "dots":
        shift = 0.5 * np.mod(np.floor(u), 2.0)  # staggered rows
        du, dv = frac(u, 1.0) - 0.5, frac(v + shift, 1.0) - 0.5
        return ((du**2 + dv**2) < 0.07).astype(np.float64)
    if pattern == "diagonal":
        return (frac(u + v, 1.0) < 0.4).astype(np.float64)
    if pattern == "zigzag":
        tri = np.abs(frac(v, 1.0) - 0.5)
        return (frac(u + tri, 1.0) < 0.35).astype(np.float64)
    if pattern == "plaid":
        lines = (frac(u, 1.0) < 0.18).astype(np.float64) + (frac(v, 1.0) < 0.18)
        return np.minimum(1.0, 0.55 * lines)
    raise ValueError(f"unknown pattern '{pattern}'")


@dataclass
class Region:
    """Pixels a primitive covers inside its bounding box, with part coordinates for patterns and shading."""

    y0: int
    x0: int
    mask: np.ndarray  # bool (h, w)
    along: np.ndarray  # pixels along the part's axis (flat, masked)
    across: np.ndarray  # pixels across it (flat, masked)
    side: np.ndarray  # across / half-width in [-1, 1] (flat, masked), for shading


class Painter:
    """An RGB canvas plus a part-id buffer; parts painted later cover earlier ones (painter's algorithm)."""

    def __init__(self, background: np.ndarray) -> None:
        self.rgb = np.array(background, dtype=np.float32)  # (H, W, 3) in [0, 1]
        self.ids = np.zeros(self.rgb.shape[:2], dtype=np.int32)
        self._next = 1

    @property
    def shape(self) -> tuple[int, int]:
        return self.rgb.shape[0], self.rgb.shape[1]

    def new_part(self) -> int:
        """A fresh id: boundaries between different ids get an outline."""
        self._next += 1
        return self._next - 1

    def _box(self, lo: np.ndarray, hi: np.ndarray):
        height, width = self.shape
        x0, y0 = max(0, int(np.floor(lo[0]))), max(0, int(np.floor(lo[1])))
        x1, y1 = min(width, int(np.ceil(hi[0])) + 1), min(height, int(np.ceil(hi[1])) + 1)
        if x0 >= x1 or y0 >= y1:
            return None
        ys, xs = np.mgrid[y0:y1, x0:x1]
        return y0, x0, xs + 0.5, ys + 0.5

    def capsule(self, p, q, r_p: float, r_q: float) -> Region | None:
        """A bone p -> q of radius r_p at p tapering to r_q at q (both ends rounded)."""
        p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
        reach = max(r_p, r_q) + 1
        box = self._box(np.minimum(p, q) - reach, np.maximum(p, q) + reach)
        if box is None:
            return None
        y0, x0, xs, ys = box
        axis = q - p
        length = max(float(np.hypot(*axis)), 1e-6)
        d = axis / length
        dx, dy = xs - p[0], ys - p[1]
        along = dx * d[0] + dy * d[1]
        across = -dx * d[1] + dy * d[0]
        t = np.clip(along / length, 0.0, 1.0)
        radius = r_p + (r_q - r_p) * t
        dist = np.hypot(along - t * length, across)
        mask = dist <= radius
        return Region(y0, x0, mask, along[mask], across[mask], np.clip(across / radius, -1, 1)[mask])

    def polygon(self, points, origin, down, half_width: float) -> Region | None:
        """A convex polygon; part coordinates from `origin` along the unit vector `down`."""
        pts = np.asarray(points, dtype=np.float64)
        box = self._box(pts.min(axis=0), pts.max(axis=0))
        if box is None:
            return None
        y0, x0, xs, ys = box
        area = np.sum(pts[:, 0] * np.roll(pts[:, 1], -1) - np.roll(pts[:, 0], -1) * pts[:, 1])
        mask = np.ones(xs.shape, dtype=bool)
        for a, b in zip(pts, np.roll(pts, -1, axis=0)):
            cross = (b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0])
            mask &= cross * np.sign(area) >= 0
        down = np.asarray(down, dtype=np.float64) / np.hypot(*down)
        dx, dy = xs - origin[0], ys - origin[1]
        along = dx * down[0] + dy * down[1]
        across = -dx * down[1] + dy * down[0]
        side = np.clip(across / max(half_width, 1e-6), -1, 1)
        return Region(y0, x0, mask, along[mask], across[mask], side[mask])

    def ellipse(self, centre, rx: float, ry: float, angle: float = 0.0, keep_above: float | None = None) -> Region | None:
        """An ellipse rotated by `angle` (radians); `keep_above`: keep only local y below this (its top part)."""
        c = np.asarray(centre, dtype=np.float64)
        reach = max(rx, ry) + 1
        box = self._box(c - reach, c + reach)
        if box is None:
            return None
        y0, x0, xs, ys = box
        cos, sin = np.cos(angle), np.sin(angle)
        dx, dy = xs - c[0], ys - c[1]
        lx, ly = dx * cos + dy * sin, -dx * sin + dy * cos
        mask = (lx / rx) ** 2 + (ly / ry) ** 2 <= 1.0
        if keep_above is not None:
            mask &= ly <= keep_above
        return Region(y0, x0, mask, ly[mask], lx[mask], np.clip(lx / rx, -1, 1)[mask])

    def paint(self, region: Region | None, fabric: Fabric, period_px: float, part: int) -> None:
        """Fill a region with a fabric, shaded darker towards its sides, and tag it with `part`."""
        if region is None or not region.mask.any():
            return
        colour = fabric.colour(region.along, region.across, period_px)
        light = 1.0 - fabric.shine * region.side**2 - 0.06 * region.side  # light from the viewer's left
        h, w = region.mask.shape
        window = self.rgb[region.y0 : region.y0 + h, region.x0 : region.x0 + w]
        window[region.mask] = np.clip(colour * light[:, None], 0.0, 1.0).astype(np.float32)
        self.ids[region.y0 : region.y0 + h, region.x0 : region.x0 + w][region.mask] = part

    def finish(self, factor: int = SUPERSAMPLE, outline: float = 0.62) -> np.ndarray:
        """Darken part boundaries, box-filter down by `factor`: uint8 (H / factor, W / factor, 3)."""
        ids = self.ids
        edge = np.zeros(ids.shape, dtype=bool)
        for axis in (0, 1):
            differs = np.diff(ids, axis=axis) != 0
            lo = [slice(None), slice(None)]
            hi = [slice(None), slice(None)]
            lo[axis], hi[axis] = slice(0, -1), slice(1, None)
            edge[tuple(lo)] |= differs
            edge[tuple(hi)] |= differs
        edge &= ids > 0  # the line sits on the person, not on the background
        rgb = self.rgb.copy()
        rgb[edge] *= outline
        height, width = ids.shape
        small = rgb.reshape(height // factor, factor, width // factor, factor, 3).mean(axis=(1, 3))
        return np.clip(np.rint(small * 255.0), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------- a person
@dataclass(frozen=True)
class Look:
    """Everything about a synthetic person that stays the same across their images (body units: height 1)."""

    skin: Fabric
    hair: Fabric
    hair_style: str  # short | long | bob | bun
    top: Fabric
    top_kind: str  # tee | long | tank | jacket
    inner: Fabric  # the shirt under a jacket
    bottom: Fabric
    bottom_kind: str  # trousers | shorts | skirt | long_skirt
    shoes: Fabric
    head_r: float
    arm_r: float
    leg_r: float
    hip_half: float


@dataclass
class Figure:
    """One posed person in canvas pixels (supersampled): joints (18, 2) in COCO-18 order and the rest to draw it."""

    joints: np.ndarray
    head_centre: np.ndarray
    head_angle: float
    scale: float  # pixels per body unit
    down: np.ndarray  # unit vector neck -> pelvis
    view: str  # front | back
    turn: float  # > 0: the image-right side is turned away
    arms_in_front: dict[str, bool]  # "r"/"l": the forearm crosses the front of the body
    face_shift: float  # facing direction offset, in head radii


_ARM, _LEG = {"r": (2, 3, 4), "l": (5, 6, 7)}, {"r": (8, 9, 10), "l": (11, 12, 13)}


def draw_person(painter: Painter, look: Look, fig: Figure) -> None:
    """Paint `fig` dressed as `look`, back to front: far limbs, legs, skirt, torso, arms, head."""
    s, j = fig.scale, fig.joints
    image_side = {k: np.sign(j[_ARM[k][0], 0] - j[1, 0]) or (1.0 if k == "l" else -1.0) for k in "rl"}
    far = None if abs(fig.turn) < 0.15 else ("l" if image_side["l"] * fig.turn > 0 else "r")
    back = fig.view == "back"
    if look.hair_style in ("long", "bob") and not back:
        _hair_panel(painter, look, fig)
    behind = [k for k in "rl" if (back and fig.arms_in_front[k]) or (k == far and not fig.arms_in_front[k])]
    for k in behind:
        _arm(painter, look, fig, k)
    for k in sorted("rl", key=lambda k: k != far):  # the far leg first
        _leg(painter, look, fig, k)
    _hips(painter, look, fig)
    neck_top = fig.head_centre + 0.6 * look.head_r * s * (-fig.down)
    painter.paint(painter.capsule(neck_top, j[1], 0.45 * look.head_r * s, 0.5 * look.head_r * s), look.skin, s, painter.new_part())
    _torso(painter, look, fig)
    for k in "rl":
        if k not in behind:
            _arm(painter, look, fig, k)
    _head(painter, look, fig)
    if look.hair_style in ("long", "bob") and back:
        _hair_panel(painter, look, fig)


def _period(fabric: Fabric, fig: Figure) -> float:
    return fabric.period * fig.scale


def _arm(painter: Painter, look: Look, fig: Figure, side: str) -> None:
    s, (sh, el, wr) = fig.scale, (fig.joints[i] for i in _ARM[side])
    r = look.arm_r * s
    part = painter.new_part()
    hand = wr + 0.35 * r * (wr - el) / max(np.hypot(*(wr - el)), 1e-6)
    painter.paint(painter.capsule(sh, el, r, 0.85 * r), look.skin, s, part)
    painter.paint(painter.capsule(el, wr, 0.85 * r, 0.7 * r), look.skin, s, part)
    painter.paint(painter.ellipse(hand, 0.95 * r, 0.95 * r), look.skin, s, part)
    kind, fabric = look.top_kind, look.top
    if kind == "tank":
        return
    sleeve = painter.new_part()
    if kind == "tee":
        cuff = sh + 0.6 * (el - sh)
        painter.paint(painter.capsule(sh, cuff, 1.22 * r, 1.12 * r), fabric, _period(fabric, fig), sleeve)
        return
    painter.paint(painter.capsule(sh, el, 1.18 * r, 1.05 * r), fabric, _period(fabric, fig), sleeve)
    painter.paint(painter.capsule(el, wr - 0.1 * (wr - el), 1.05 * r, 0.92 * r), fabric, _period(fabric, fig), sleeve)


def _leg(painter: Painter, look: Look, fig: Figure, side: str) -> None:
    s, (hip, knee, ankle) = fig.scale, (fig.joints[i] for i in _LEG[side])
    r = look.leg_r * s
    part = painter.new_part()
    painter.paint(painter.capsule(hip, knee, r, 0.75 * r), look.skin, s, part)
    painter.paint(painter.capsule(knee, ankle, 0.75 * r, 0.5 * r), look.skin, s, part)
    outward = np.sign(ankle[0] - fig.joints[1, 0]) or 1.0
    foot = ankle + np.array([0.3 * r * outward, 0.45 * r])
    painter.paint(painter.ellipse(foot, 0.95 * r, 0.5 * r), look.shoes, s, painter.new_part())
    fabric, kind = look.bottom, look.bottom_kind
    if kind == "trousers":
        cloth = painter.new_part()
        painter.paint(painter.capsule(hip, knee, 1.15 * r, 0.95 * r), fabric, _period(fabric, fig), cloth)
        painter.paint(painter.capsule(knee, ankle - 0.15 * (ankle - knee), 0.95 * r, 0.8 * r), fabric, _period(fabric, fig), cloth)
    elif kind == "shorts":
        painter.paint(painter.capsule(hip, hip + 0.5 * (knee - hip), 1.2 * r, 1.1 * r), fabric, _period(fabric, fig), painter.new_part())


def _across(fig: Figure) -> np.ndarray:
    """Unit vector across the body towards the image's right (perpendicular to `down`)."""
    return np.array([fig.down[1], -fig.down[0]])


def _hips(painter: Painter, look: Look, fig: Figure) -> None:
    """The garment over the pelvis: a waistband block for trousers/shorts, a flared skirt otherwise."""
    s, j, down, across = fig.scale, fig.joints, fig.down, _across(fig)
    pelvis = (j[8] + j[11]) / 2
    half = abs(np.dot(j[8] - j[11], across)) / 2 + 0.9 * look.leg_r * s
    top = pelvis - 0.05 * s * down
    fabric, period = look.bottom, _period(look.bottom, fig)
    if look.bottom_kind in ("trousers", "shorts"):
        bottom = pelvis + 0.07 * s * down
        points = [top - half * across, top + half * across, bottom + 0.8 * half * across, bottom - 0.8 * half * across]
        painter.paint(painter.polygon(points, j[1], down, half), fabric, period, painter.new_part())
        return
    knees_y = max(j[9, 1], j[12, 1]) if look.bottom_kind == "skirt" else max(j[10, 1], j[13, 1]) - 0.04 * s
    length = max(knees_y - top[1], 0.1 * s) + 0.03 * s
    flare = half + 0.12 * length + 0.5 * abs(j[9, 0] - j[12, 0]) * (look.bottom_kind == "skirt")
    bottom = top + length * np.array([0.0, 1.0])
    points = [top - half * across, top + half * across, bottom + np.array([flare, 0]), bottom - np.array([flare, 0])]
    painter.paint(painter.polygon(points, j[1], down, flare), fabric, period, painter.new_part())


def _torso(painter: Painter, look: Look, fig: Figure) -> None:
    s, j, down, across = fig.scale, fig.joints, fig.down, _across(fig)
    left, right = (2, 5) if j[2, 0] < j[5, 0] else (5, 2)
    hip_left, hip_right = (8, 11) if j[8, 0] < j[11, 0] else (11, 8)
    pad = look.arm_r * s * (0.3 if look.top_kind == "tank" else 0.7)
    hem = 0.045 * s * down
    hip_pad = 0.75 * look.leg_r * s
    chest = 0.3 * (j[hip_left] + j[hip_right] - j[left] - j[right]) / 2  # 30 % of the way down
    points = [
        j[left] - pad * across - 0.02 * s * down, j[right] + pad * across - 0.02 * s * down,
        j[right] + chest + 0.96 * pad * across, j[hip_right] + hip_pad * across + hem,
        j[hip_left] - hip_pad * across + hem, j[left] + chest - 0.96 * pad * across,
    ]  # fmt: skip
    half = abs(np.dot(j[right] - j[left], across)) / 2 + pad
    part = painter.new_part()
    painter.paint(painter.polygon(points, j[1], down, half), look.top, _period(look.top, fig), part)
    if fig.view == "back":
        return
    centre = j[1] + 0.25 * fig.face_shift * look.head_r * s * across
    if look.top_kind == "jacket":
        pelvis = (j[8] + j[11]) / 2 + hem
        strip = [centre - 0.5 * pad * across, centre + 0.5 * pad * across, pelvis + 0.25 * pad * across, pelvis - 0.25 * pad * across]
        painter.paint(painter.polygon(strip, j[1], down, pad), look.inner, _period(look.inner, fig), painter.new_part())
    else:  # a round neckline shows some skin
        neck = painter.ellipse(centre - 0.02 * s * down, 0.55 * look.head_r * s, 0.5 * look.head_r * s, keep_above=0.0)
        painter.paint(neck, look.skin, s, part)


def _head(painter: Painter, look: Look, fig: Figure) -> None:
    s, c, angle = fig.scale, fig.head_centre, fig.head_angle
    rx, ry = look.head_r * s, 1.18 * look.head_r * s
    up = np.array([np.sin(angle), -np.cos(angle)])
    side = np.array([np.cos(angle), np.sin(angle)])
    hair_period = _period(look.hair, fig)
    if look.hair_style == "bun":
        painter.paint(painter.ellipse(c + 1.0 * ry * up, 0.5 * rx, 0.45 * rx), look.hair, hair_period, painter.new_part())
    shift = fig.face_shift * rx
    for ear in (-1, 1):
        if fig.view == "back" or ear * fig.face_shift <= 0.35:  # the far ear hides behind the head
            painter.paint(painter.ellipse(c + (ear * 0.95 * rx + 0.4 * shift) * side, 0.2 * rx, 0.3 * rx), look.skin, s, painter.new_part())
    head = painter.new_part()
    painter.paint(painter.ellipse(c, rx, ry, angle), look.skin, s, head)
    hair = painter.new_part()
    if fig.view == "back":
        painter.paint(painter.ellipse(c - 0.04 * ry * up, 1.06 * rx, 1.04 * ry, angle), look.hair, hair_period, hair)
        return
    dark = Fabric((0.12, 0.09, 0.08), shine=0.0)
    for eye in (-1, 1):
        spot = c + (eye * 0.38 * rx + shift) * side + 0.05 * ry * up
        painter.paint(painter.ellipse(spot, 0.13 * rx, 0.09 * ry, angle), dark, s, head)
    mouth = Fabric((0.62, 0.25, 0.25), shine=0.0)
    painter.paint(painter.ellipse(c + 1.1 * shift * side - 0.5 * ry * up, 0.24 * rx, 0.07 * ry, angle), mouth, s, head)
    cut = -0.28 * ry if look.hair_style != "short" else -0.42 * ry
    cap = painter.ellipse(c + 0.06 * ry * up + 0.3 * shift * side, 1.08 * rx, 1.02 * ry, angle, keep_above=cut)
    painter.paint(cap, look.hair, hair_period, hair)


def _hair_panel(painter: Painter, look: Look, fig: Figure) -> None:
    """Long hair or a bob: a rounded panel from the crown down to the chest (long) or the chin (bob)."""
    rx = look.head_r * fig.scale
    top = fig.head_centre - 0.45 * rx * fig.down
    reach = 2.4 * rx if look.hair_style == "long" else 0.55 * rx
    bottom = fig.head_centre + reach * fig.down
    region = painter.capsule(top, bottom, 1.12 * rx, (1.2 if look.hair_style == "long" else 1.1) * rx)
    painter.paint(region, look.hair, _period(look.hair, fig), painter.new_part())
