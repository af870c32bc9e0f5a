"""Garment colour error (pcdms.metrics.garment, issue #31): 'right clothes?', not 'right pose?'.

Synthetic figures: three stacked rectangles (top, middle, legs) of flat colours on a flat background, drawn
with numpy at the DeepFashion evaluation size (176x256), so the bands of the person mask are exactly the
rectangles and the expected numbers follow from skimage alone.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image
from skimage.color import deltaE_cie76, rgb2lab

from pcdms.cli import main
from pcdms.metrics.garment import (
    background_colour,
    garment_colour_error,
    other_identity_image,
    person_bands,
    person_mask,
)

BACKGROUND = (235, 235, 235)
TOP, MIDDLE, LEGS = (200, 30, 30), (30, 120, 200), (40, 40, 60)


def figure(colours=(TOP, MIDDLE, LEGS), left: int = 60, top: int = 40, width: int = 50, band: int = 50,
           background=BACKGROUND) -> np.ndarray:
    """(256, 176, 3) uint8: three `band`-row rectangles of `colours`, from row `top`, column `left`."""
    image = np.empty((256, 176, 3), np.uint8)
    image[:] = background
    for k, colour in enumerate(colours):
        image[top + k * band: top + (k + 1) * band, left: left + width] = colour
    return image


def lab(colour) -> np.ndarray:
    return rgb2lab(np.array([[colour]], np.uint8))[0, 0]


def test_mask_and_bands_follow_the_definition():
    image = figure()
    assert tuple(background_colour(image)) == BACKGROUND
    mask = person_mask(image)
    assert mask.sum() == 3 * 50 * 50 and mask[40:190, 60:110].all()
    bands = person_bands(mask)
    assert [int(b.sum()) for b in bands] == [2500, 2500, 2500]
    assert bands[0][40:90, 60:110].all() and not bands[0][90:].any()  # head and top: the first third of the rows
    assert all(not b.any() for b in person_bands(np.zeros((8, 8), bool)))


def test_identical_images_score_zero():
    assert garment_colour_error(figure(), figure()) == 0.0


def test_one_recoloured_band_scores_its_delta_e_over_three():
    new_middle = (40, 170, 60)
    expected = float(deltaE_cie76(lab(MIDDLE), lab(new_middle))) / 3
    error = garment_colour_error(figure((TOP, new_middle, LEGS)), figure())
    assert expected > 10 and error == pytest.approx(expected, rel=1e-9)


def test_moving_the_person_leaves_the_error_near_zero():
    """Same clothes elsewhere on the canvas, another shape (a 'pose'), another background: still ~0."""
    moved = figure(left=10, top=90, width=30, band=40, background=(10, 10, 10))
    assert garment_colour_error(moved, figure()) == pytest.approx(0.0, abs=1e-9)
    # and a pose error does not hide a clothes error
    assert garment_colour_error(figure((LEGS, MIDDLE, TOP), left=10), figure()) > 10


def test_no_person_gives_nan_not_zero():
    empty = np.full((256, 176, 3), 235, np.uint8)
    assert math.isnan(garment_colour_error(empty, figure()))
    assert math.isnan(garment_colour_error(figure(), empty))


def test_other_identity_is_the_next_in_sorted_order_wrapping():
    names = ["id00002_a", "id00001_b", "id00001_a", "id00003_a"]
    assert other_identity_image("id00001_b", names) == "id00002_a"
    assert other_identity_image("id00003_a", names) == "id00001_a"
    assert other_identity_image("id00001_a", ["id00001_a", "id00001_b"]) is None


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # SSIM of the blank image
def test_cli_writes_garment_colour_error_and_baselines(tmp_path, capsys):
    gt, pred, out = tmp_path / "gt", tmp_path / "pred", tmp_path / "report"
    gt.mkdir(), pred.mkdir()
    other_clothes = (LEGS, TOP, MIDDLE)
    Image.fromarray(figure()).save(gt / "id00001_front.png")
    Image.fromarray(figure(left=90, width=30)).save(gt / "id00001_side.png")
    Image.fromarray(figure(other_clothes)).save(gt / "id00002_front.png")
    Image.fromarray(figure(other_clothes, left=20)).save(gt / "id00002_side.png")
    Image.fromarray(figure(left=70)).save(pred / "id00001_front_to_id00001_side.png")  # right clothes
    Image.fromarray(np.full((256, 176, 3), 235, np.uint8)).save(pred / "id00002_front_to_id00002_side.png")  # nobody
    status = main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--out", str(out), "--size", "176x256",
                   "--skip", "lpips", "--skip", "fid_gfla", "--skip", "fid_tf", "--workers", "0",
                   "--no-progress", "--garment-baselines"])
    printed = capsys.readouterr().out
    assert status == 0
    with (out / "per_image.csv").open() as handle:
        rows = {row["prediction"]: row for row in csv.DictReader(handle)}
    assert float(rows["id00001_front_to_id00001_side.png"]["garment_colour_error"]) == pytest.approx(0.0, abs=1e-9)
    assert rows["id00002_front_to_id00002_side.png"]["garment_colour_error"] == "nan"
    report = json.loads((out / "report.json").read_text())
    single = report["results"]["single_sample"]
    assert single["garment_colour_error"] == pytest.approx(0.0, abs=1e-9)  # the pair with no person is left out
    assert single["images_garment"] == 1 and single["images"] == 2
    assert "garment_colour_error" in report["variants"]
    baselines = report["garment_baselines"]
    assert baselines["source_photo"] == pytest.approx(0.0, abs=1e-9)  # same clothes, other pose
    assert baselines["pairs"] == {"source_photo": 2, "other_identity": 2}
    swapped = np.mean([deltaE_cie76(lab(a), lab(b)) for a, b in zip(other_clothes, (TOP, MIDDLE, LEGS))])
    assert baselines["other_identity"] == pytest.approx(swapped, rel=1e-9)  # someone else's clothes
    assert "garment_colour_error" in printed and "baselines" in printed
