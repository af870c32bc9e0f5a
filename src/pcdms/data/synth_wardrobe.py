"""A second way of making synthetic people, `pcdms data synth --style wardrobe`: a validation set the demo recipe
is not tuned on (issue #31).

The same poses, views, crops and backdrop as the classic style (`synth_figure`), so a score gap between the two
styles comes from the people and their clothes, not from the framing. What differs:
- bodies: shoulder and hip widths, limb thickness, head size, torso and leg lengths over wider ranges, a waist
  narrower or wider than the straight line from shoulders to hips, and a stature (in full-body images short
  people stand shorter in the frame instead of all being scaled to fill it);
- outfits, one family of `FAMILIES` per identity: dress, coat (a long coat over trousers), jumpsuit,
  sleeveless (a sleeveless top over trousers or a skirt), shorts, suit, skirt;
- cloths: `CLOTH_PATTERNS` at three scales (`SCALES`), colours uniform over the RGB cube (the whole gamut),
  up to three per cloth (`synth_wardrobe_draw`);
- drawing: flatter shading, darker outlines, a waist seam, hair as caps, tails or long panels, two-eye faces.

Held-out outfits (`held_out`): names of families or patterns that only test identities wear. A training identity
never draws one, on any garment; a test identity's family is drawn from the held-out families (when any are
named) and its main garment's pattern from the held-out patterns (when any are named). A model then scores on the
test split only by carrying the source's clothes into the new pose, not by remembering its training outfits.

Deterministic: identity i is drawn from `default_rng([SALT, seed, i])`, its image k from
`default_rng([SALT, seed, i, k])`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from pcdms.data.synth_draw import Fabric, Figure
from pcdms.data.synth_figure import Sample, build_figure, paint_person, place
from pcdms.data.synth_wardrobe_draw import CLOTH_PATTERNS, SCALES, Cloth, WardrobeLook, draw_wardrobe_person
from pcdms.errors import UserError

#: Keeps this style's random streams apart from the classic style's ("WARD").
SALT = 0x57415244
#: Outfit families: sleeves, legwear, skirt lengths (one drawn), whether the main garment is a long coat.
FAMILIES = {
    "dress": {"sleeves": ("none", "short"), "legwear": "none", "skirt": ("knee", "ankle"), "coat": False},
    "coat": {"sleeves": ("long",), "legwear": "trousers", "skirt": ("none",), "coat": True},
    "jumpsuit": {"sleeves": ("long",), "legwear": "trousers", "skirt": ("none",), "coat": False},
    "sleeveless": {"sleeves": ("none",), "legwear": "trousers", "skirt": ("none", "knee"), "coat": False},
    "shorts": {"sleeves": ("short",), "legwear": "shorts", "skirt": ("none",), "coat": False},
    "suit": {"sleeves": ("long",), "legwear": "trousers", "skirt": ("none",), "coat": False},
    "skirt": {"sleeves": ("short",), "legwear": "none", "skirt": ("mini", "knee"), "coat": False},
}
ONE_CLOTH = ("dress", "jumpsuit")  # the main cloth from neck to hem
SKIN_LIGHT, SKIN_DARK = np.array([0.99, 0.86, 0.76]), np.array([0.3, 0.2, 0.14])


@dataclass(frozen=True)
class WardrobeIdentity:
    """A wardrobe person: id, split, look and body proportions (body units: standing height about 1)."""

    index: int
    split: str
    look: WardrobeLook
    shoulder_half: float
    torso: float
    upper_arm: float
    forearm: float
    thigh: float
    shin: float


def check_held_out(held_out: Sequence[str], train_identities: int = 1) -> tuple[str, ...]:
    """The held-out names, validated: each a family or a pattern; training must keep a family and a pattern."""
    names = tuple(dict.fromkeys(held_out))
    unknown = [name for name in names if name not in FAMILIES and name not in CLOTH_PATTERNS]
    if unknown:
        raise UserError(f"--held-out: unknown {', '.join(unknown)}; families: {', '.join(FAMILIES)}; "
                        f"patterns: {', '.join(CLOTH_PATTERNS)}")  # fmt: skip
    if train_identities and (set(FAMILIES) <= set(names) or set(CLOTH_PATTERNS) <= set(names)):
        raise UserError("--held-out names every family or every pattern: training identities would have none left")
    return names


def _rgb(rng: np.random.Generator, avoid: Sequence[tuple] = ()) -> tuple[float, float, float]:
    """A colour uniform over the RGB cube, redrawn (a few times) while too close to one of `avoid`."""
    for _ in range(20):
        rgb = rng.random(3)
        if all(np.abs(rgb - np.asarray(other)).sum() > 0.6 for other in avoid):
            break
    return tuple(round(float(c), 3) for c in rgb)


def _cloth(rng: np.random.Generator, patterns: Sequence[str]) -> Cloth:
    pattern = "solid" if "solid" in patterns and rng.random() < 0.2 else str(rng.choice(list(patterns)))
    scale = str(rng.choice(list(SCALES)))
    base = _rgb(rng)
    accent = _rgb(rng, [base])
    third = _rgb(rng, [base, accent])
    return Cloth((base, accent, third), pattern, round(float(rng.uniform(*SCALES[scale])), 4), scale)


def sample_wardrobe_identity(seed: int, index: int, split: str, held_out: Sequence[str] = ()) -> WardrobeIdentity:
    """Identity `index` of the wardrobe style; the same for a seed (and held-out names) whatever the counts."""
    rng = np.random.default_rng([SALT, seed, index])
    held = set(held_out)
    kept_families = [f for f in FAMILIES if f not in held]
    kept_patterns = [p for p in CLOTH_PATTERNS if p not in held]
    if split == "train":
        families, main_patterns, other_patterns = kept_families, kept_patterns, kept_patterns
    else:
        held_families = [f for f in FAMILIES if f in held]
        held_patterns = [p for p in CLOTH_PATTERNS if p in held]
        families, main_patterns, other_patterns = held_families or list(FAMILIES), held_patterns or list(CLOTH_PATTERNS), CLOTH_PATTERNS
    family = str(rng.choice(families))
    spec = FAMILIES[family]
    main = _cloth(rng, main_patterns)
    second = main if family in ONE_CLOTH else _cloth(rng, other_patterns)
    inner = _cloth(rng, other_patterns)
    tone = np.clip(SKIN_LIGHT + rng.random() * (SKIN_DARK - SKIN_LIGHT) + rng.normal(0, 0.025, 3), 0, 1)
    hair = _rgb(rng) if rng.random() < 0.3 else tuple(round(float(c), 3) for c in rng.uniform(0.03, 0.45) * np.array([1, 0.8, 0.6]))
    look = WardrobeLook(
        family=family,
        sleeves=str(rng.choice(spec["sleeves"])),
        legwear=spec["legwear"],
        skirt=str(rng.choice(spec["skirt"])),
        coat=spec["coat"],
        main=main,
        second=second,
        inner=inner,
        skin=Fabric(tuple(round(float(c), 3) for c in tone), shine=0.1),
        hair=Fabric(hair, shine=0.15),
        hair_style=str(rng.choice(["crop", "long", "tail", "bald"], p=[0.35, 0.3, 0.25, 0.1])),
        shoes=Fabric(_rgb(rng), shine=0.05),
        head_r=float(rng.uniform(0.046, 0.07)),
        arm_r=float(rng.uniform(0.017, 0.038)),
        leg_r=float(rng.uniform(0.03, 0.062)),
        hip_half=float(rng.uniform(0.04, 0.085)),
        waist=float(rng.uniform(0.8, 1.25)),
        stature=float(rng.uniform(0.72, 1.0)),
    )
    legs, arms = rng.uniform(0.85, 1.15), rng.uniform(0.88, 1.12)
    jitter = rng.uniform(0.97, 1.03, 4)
    return WardrobeIdentity(index, split, look, float(rng.uniform(0.07, 0.13)), 0.3 * float(rng.uniform(0.86, 1.12)),
                            0.16 * arms * jitter[0], 0.14 * arms * jitter[1], 0.23 * legs * jitter[2],
                            0.23 * legs * jitter[3])  # fmt: skip


def _shorter(figure: Figure, stature: float) -> Figure:
    """The figure scaled by `stature` about the point between its feet on the floor."""
    j = figure.joints
    pivot = np.array([j[[10, 13], 0].mean(), j[[10, 13], 1].max()])
    return Figure(pivot + stature * (j - pivot), pivot + stature * (figure.head_centre - pivot), figure.head_angle,
                  figure.scale * stature, figure.down, figure.view, figure.turn, figure.arms_in_front,
                  figure.face_shift)  # fmt: skip


def render_wardrobe_sample(identity: WardrobeIdentity, seed: int, number: int, height: int, width: int) -> Sample:
    """Image `number` of a wardrobe identity, drawn from `default_rng([SALT, seed, identity.index, number])`."""
    rng = np.random.default_rng([SALT, seed, identity.index, number])
    figure, view, visible = build_figure(identity, rng)
    figure, crop = place(figure, identity.look, height, width, rng)
    if crop == "full":
        figure = _shorter(figure, identity.look.stature)
    return paint_person(figure, visible, height, width, rng,
                        lambda painter: draw_wardrobe_person(painter, identity.look, figure), f"{view}-{crop}",
                        outline=0.45)  # fmt: skip


def describe_wardrobe_identity(identity: WardrobeIdentity) -> dict:
    """What `synth-identities.json` records: every field, and an `outfit` summary (family, patterns, colours)."""
    look = identity.look
    worn = {"main": look.main}
    if look.family not in ONE_CLOTH:
        worn["second"] = look.second
    if look.coat:
        worn["inner"] = look.inner
    outfit = {"family": look.family, **{f"{k}_pattern": c.pattern for k, c in worn.items()},
              "main_scale": look.main.scale, "main_colours": [list(c) for c in look.main.colours]}  # fmt: skip
    return {"outfit": outfit, **asdict(identity)}
