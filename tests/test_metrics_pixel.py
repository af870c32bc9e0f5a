"""SSIM (three variants), PSNR, L1 and the evaluation-size resize agree with the libraries called directly."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from pcdms.metrics.images import EvalSize, load_for_eval, resize_for_eval
from pcdms.metrics.pixel import pixel_metrics

SIZE = EvalSize(176, 256)


@pytest.fixture(scope="module")
def photo(samples_dir) -> np.ndarray:
    """A real photo (the astronaut) at the evaluation size, float32 0-255."""
    return load_for_eval(samples_dir / "img1.png", SIZE)


def test_identical_images_score_perfectly(photo):
    scores = pixel_metrics(photo, photo.copy())
    assert scores["ssim_pidm"] == pytest.approx(1.0)
    assert scores["ssim_dptn"] == pytest.approx(1.0)
    assert scores["ssim_w51"] == pytest.approx(1.0)
    assert scores["l1"] == 0.0 and scores["mae"] == 0.0
    assert scores["psnr"] == float("inf")


def test_known_distortion_gives_what_scikit_image_gives_called_directly(photo):
    rng = np.random.default_rng(0)
    blurred = cv2.GaussianBlur(photo, (7, 7), 2.0)
    noisy = np.clip(blurred + rng.normal(0, 12, photo.shape), 0, 255).astype(np.float32)
    scores = pixel_metrics(noisy, photo)

    gt01, pred01 = photo / 255.0, noisy / 255.0
    gt256, pred256 = gt01 * 255.0, pred01 * 255.0
    common = dict(gaussian_weights=True, use_sample_covariance=False, channel_axis=2,
                  data_range=pred256.max() - pred256.min())
    assert scores["ssim_pidm"] == pytest.approx(structural_similarity(gt256, pred256, sigma=1.2, **common), abs=1e-12)
    assert scores["ssim_dptn"] == pytest.approx(structural_similarity(gt256, pred256, sigma=1.5, **common), abs=1e-12)
    assert scores["ssim_w51"] == pytest.approx(
        structural_similarity(gt01, pred01, data_range=1, win_size=51, channel_axis=2), abs=1e-12)
    assert scores["psnr"] == pytest.approx(peak_signal_noise_ratio(gt01, pred01, data_range=1), abs=1e-9)
    assert scores["l1"] == pytest.approx(float(np.mean(np.abs(gt01 - pred01))), rel=1e-6)
    # the variants really differ: reporting one under another's name would be visible
    assert 0.2 < scores["ssim_pidm"] < 0.95 and scores["ssim_pidm"] != pytest.approx(scores["ssim_dptn"], abs=1e-4)
    assert scores["ssim_w51"] != pytest.approx(scores["ssim_pidm"], abs=1e-3)


def test_resize_is_cv2_bicubic_on_float_without_clipping(samples_dir):
    original = np.asarray(Image.open(samples_dir / "img2.png").convert("RGB"))
    resized = resize_for_eval(original, SIZE)
    expected = cv2.resize(original.astype(np.float32), (176, 256), interpolation=cv2.INTER_CUBIC)
    assert resized.shape == (256, 176, 3) and resized.dtype == np.float32
    np.testing.assert_array_equal(resized, expected)

    edge = np.zeros((40, 40, 3), np.uint8)
    edge[:, 20:] = 255  # a hard edge: bicubic overshoots, and the scripts keep the overshoot
    up = resize_for_eval(edge, EvalSize(64, 64))
    assert up.max() > 255.0 and up.min() < 0.0
    same = resize_for_eval(resized, SIZE)
    np.testing.assert_array_equal(same, resized)  # already at size: untouched
