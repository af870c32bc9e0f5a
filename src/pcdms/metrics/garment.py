"""Garment colour error: "right clothes?", not "right pose?" (issue #31).

Definition (one home; docs/evaluation.md quotes it):
- images: the evaluation-size arrays every other metric compares (`images.load_for_eval`: bicubic to
  --size, float 0-255 unclipped), rounded and clipped to uint8 RGB before this metric sees them;
- background: per channel, the median of the image's border pixels, the border being its outermost
  row and column on each side (each image has its own background);
- person mask: the pixels that differ from that background by more than `PERSON_THRESHOLD` (30) grey
  levels in at least one channel;
- bands: the mask's rows from its first to its last row with a person pixel (inclusive), split into
  three equal parts (edges `round(linspace(first, last + 1, 4))`): head and top, middle, legs. A band is
  the mask restricted to its rows;
- per band, the mean CIELAB colour of the generated image's person pixels is compared with the ground
  truth's by Delta E 1976 (`skimage.color.rgb2lab`, D65, then `skimage.color.deltaE_cie76`); a band
  where either image has no person pixel is skipped;
- a pair's error is the mean over the bands kept; NaN when none is kept (no person found in one image),
  never 0. A method's number is the mean over the pairs that have one (`images_garment` counts them).

Where the pixels are does not matter (only each band's mean colour does), so a person drawn in the right
clothes but the wrong pose or place scores ~0. Lower is better; 0 for identical images.

Baselines (`garment_baselines`): the same error for the source photo itself against the target (same
clothes, other pose: what a perfect garment transfer scores), and for another identity's photo against the
target (someone else's clothes: what ignoring the source scores). Identity is the part of an image name
before its first `_` (the synthetic PATN names `idNNNNN_...`); the other identity is the next one in sorted
order (wrapping round), and its photo that identity's first image in sorted name order.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from skimage.color import deltaE_cie76, rgb2lab

if TYPE_CHECKING:
    from pcdms.metrics.images import EvalSize
    from pcdms.metrics.pairing import Matching

#: Grey levels (0-255) by which a person pixel differs from the background in at least one channel.
PERSON_THRESHOLD = 30
#: Bands of the person's rows: head and top, middle, legs.
BANDS = 3

GARMENT_METRICS = {
    "garment_colour_error": "mean over 3 row bands (head/top, middle, legs) of the person mask (pixels > 30 grey "
    "levels from the median border colour in any channel) of Delta E 1976 between the mean CIELAB colours of the "
    "generated and ground-truth person (skimage rgb2lab, deltaE_cie76); bands empty in either image skipped, NaN "
    "when none is left; ignores where the pixels are: 'right clothes?', not 'right pose?' (lower is better)",
}


def _check_rgb(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {array.dtype} {array.shape}")
    return array


def background_colour(image: np.ndarray) -> np.ndarray:
    """(3,) per-channel median of the outermost row and column on each side of an (H, W, 3) uint8 image."""
    image = _check_rgb(image)
    border = np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])  # each border pixel once
    return np.median(border, axis=0)


def person_mask(image: np.ndarray, threshold: int = PERSON_THRESHOLD) -> np.ndarray:
    """(H, W) bool: pixels differing from `background_colour` by more than `threshold` in any channel."""
    image = _check_rgb(image)
    difference = np.abs(image.astype(np.float64) - background_colour(image))
    return (difference > threshold).any(axis=2)


def person_bands(mask: np.ndarray, bands: int = BANDS) -> list[np.ndarray]:
    """`bands` (H, W) bool masks: `mask` restricted to equal parts of its rows, top first; all empty when
    the mask is."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return [np.zeros_like(mask, dtype=bool) for _ in range(bands)]
    edges = np.round(np.linspace(rows[0], rows[-1] + 1, bands + 1)).astype(int)
    parts = []
    for top, bottom in zip(edges[:-1], edges[1:], strict=True):
        band = np.zeros_like(mask, dtype=bool)
        band[top:bottom] = mask[top:bottom]
        parts.append(band)
    return parts


def band_errors(generated: np.ndarray, ground_truth: np.ndarray) -> list[float]:
    """Delta E 1976 of each band's mean CIELAB person colour; NaN for a band empty in either image."""
    lab_generated, lab_truth = rgb2lab(_check_rgb(generated)), rgb2lab(_check_rgb(ground_truth))
    errors = []
    for band_generated, band_truth in zip(person_bands(person_mask(generated)), person_bands(person_mask(ground_truth)),
                                          strict=True):
        if not band_generated.any() or not band_truth.any():
            errors.append(float("nan"))
            continue
        mean_generated, mean_truth = lab_generated[band_generated].mean(axis=0), lab_truth[band_truth].mean(axis=0)
        errors.append(float(deltaE_cie76(mean_generated, mean_truth)))
    return errors


def garment_colour_error(generated: np.ndarray, ground_truth: np.ndarray) -> float:
    """The garment colour error of one pair (module docstring): two (H, W, 3) uint8 RGB arrays, any sizes
    (usually both at the evaluation size). Delta E units, >= 0; NaN when no band has a person in both."""
    kept = [error for error in band_errors(generated, ground_truth) if not np.isnan(error)]
    return float(np.mean(kept)) if kept else float("nan")


def to_uint8(image: np.ndarray) -> np.ndarray:
    """An evaluation-size float 0-255 array (bicubic overshoot included) -> uint8: rounded, clipped."""
    return np.clip(np.rint(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.uint8)


def identity_of(name: str) -> str:
    """The identity of an image name: the part before the first `_` (the synthetic PATN `idNNNNN_...`)."""
    return name.split("_", 1)[0]


def other_identity_image(target: str, names: list[str]) -> str | None:
    """Another identity's photo for `target`: the first name (sorted) of the identity after the target's in
    sorted order, wrapping round; None when every name has the target's identity."""
    by_identity: dict[str, list[str]] = {}
    for name in sorted(names):
        by_identity.setdefault(identity_of(name), []).append(name)
    identities = sorted(by_identity)
    own = identity_of(target)
    others = [i for i in identities if i != own]
    if not others:
        return None
    after = [i for i in others if i > own]
    return by_identity[(after or others)[0]][0]


def _mean_or_nan(values: list[float]) -> float:
    kept = [value for value in values if not np.isnan(value)]
    return float(np.mean(kept)) if kept else float("nan")


def garment_baselines(matching: Matching, gt_files: list[Path], size: EvalSize) -> dict:
    """The two baselines of the module docstring over the matched pairs (one per pair), images from the --gt
    folder at the evaluation size `size`.

    `matching`: a `pairing.Matching`; `gt_files`: the --gt image paths. Returns {'source_photo': mean error,
    'other_identity': mean error (NaN when unavailable), 'pairs': {...: how many pairs each used}, 'notes': [...]}.
    A pair whose source photo is not in --gt is left out of source_photo (counted in the notes).
    """
    from pcdms.errors import UserError
    from pcdms.metrics.images import load_for_eval

    by_stem: dict[str, Path] = {}
    for path in sorted(gt_files, key=lambda p: (p.stem, p.suffix.lower() != ".png", p.name)):
        by_stem.setdefault(path.stem, path)  # as pairing's ground-truth index: .png first
    cache: dict[str, np.ndarray] = {}

    def image(stem: str) -> np.ndarray:
        if stem not in cache:
            cache[stem] = to_uint8(load_for_eval(by_stem[stem], size))
        return cache[stem]

    source_errors, other_errors, notes = [], [], []
    missing_source = 0
    names = sorted(by_stem)
    for key in sorted(matching.pairs):
        prediction = matching.pairs[key][0]
        other = other_identity_image(prediction.target, names)
        try:
            target = image(prediction.target)
            if prediction.source in by_stem:
                source_errors.append(garment_colour_error(image(prediction.source), target))
            else:
                missing_source += 1
            if other is not None:
                other_errors.append(garment_colour_error(image(other), target))
        except (UserError, OSError, ValueError) as err:  # an unreadable image is listed, never fatal
            notes.append(f"{key}: {err}")
    if missing_source:
        notes.append(f"source_photo: {missing_source} pair(s) whose source image is not in --gt, left out")
    if not other_errors:
        notes.append("other_identity: every --gt image has the same identity (the name part before the first '_')")
    return {
        "source_photo": _mean_or_nan(source_errors),
        "other_identity": _mean_or_nan(other_errors),
        "pairs": {"source_photo": len(source_errors), "other_identity": len(other_errors)},
        "identity": "image name part before the first '_'; other identity = next identity in sorted order (wrapping),"
                    " its first image by name",
        "notes": notes,
    }
