"""Per-image pixel metrics, each variant exactly as one lineage of the field computes it (REFERENCE.md Sec. 5).

All come from scikit-image (`structural_similarity`, `peak_signal_noise_ratio`) with the arguments the
published scripts pass; only L1 and the scripts' "MAE" ratio are one-line numpy, as in those scripts.
Inputs are the unclipped float32 0-255 arrays of `images.resize_for_eval`; the [0, 1] arrays are made
as the PCDMs script makes them (`x / 255.0`), and the "SSIM_256" inputs as `(x / 255.0) * 255.0`, so
float32 rounding matches too.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

#: Name -> what the number is. Every per-image metric this module returns, in report order.
PIXEL_METRICS = {
    "ssim_pidm": "SSIM_256 as the PIDM and PCDMs scripts compute it: skimage structural_similarity on 0-255 "
    "float RGB, gaussian_weights=True, sigma=1.2, use_sample_covariance=False, data_range = prediction max - min "
    "(the PCDMs paper's SSIM; GFLA's own script/metrics.py uses sigma=1.5, i.e. ssim_dptn)",
    "ssim_dptn": "SSIM_256 with sigma=1.5 (GFLA's own script, DPTN, CFLD), otherwise as ssim_pidm",
    "ssim_w51": "plain SSIM of the GFLA/PCDMs scripts: [0,1] RGB, uniform 51x51 window, data_range=1",
    "psnr": "skimage peak_signal_noise_ratio on [0,1] RGB, data_range=1 (dB; inf for identical images)",
    "l1": "mean |prediction - ground truth| on [0,1] RGB",
    "mae": "the scripts' 'MAE': sum |prediction - ground truth| / sum (prediction + ground truth), [0,1] RGB",
}


SSIM_W51_WINDOW = 51  # the uniform window of the scripts' plain SSIM: evaluation sizes need both sides >= this


def ssim_256(gt: np.ndarray, pred: np.ndarray, sigma: float) -> float:
    """SSIM_256 (GFLA sigma 1.2, DPTN sigma 1.5) of two (H, W, 3) float 0-255 arrays."""
    return float(
        structural_similarity(
            gt,
            pred,
            gaussian_weights=True,
            sigma=sigma,
            use_sample_covariance=False,
            channel_axis=2,
            data_range=float(pred.max() - pred.min()),
        )
    )


def ssim_window51(gt01: np.ndarray, pred01: np.ndarray) -> float:
    """Plain SSIM of two (H, W, 3) [0, 1] arrays: uniform 51x51 window, data_range 1."""
    return float(structural_similarity(gt01, pred01, data_range=1, win_size=SSIM_W51_WINDOW, channel_axis=2))


def pixel_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Every metric of PIXEL_METRICS for one prediction.

    pred, gt: (H, W, 3) float32 0-255 at the evaluation size (may exceed [0, 255] after bicubic resize).
    Returns floats keyed as PIXEL_METRICS (psnr is inf when the images are equal).
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    pred01, gt01 = pred.astype(np.float32) / 255.0, gt.astype(np.float32) / 255.0
    pred256, gt256 = pred01 * 255.0, gt01 * 255.0
    if np.array_equal(pred01, gt01):
        psnr = float("inf")  # skimage divides by zero here; the limit is what a reader expects
    else:
        psnr = float(peak_signal_noise_ratio(gt01, pred01, data_range=1))
    diff = np.abs(gt01 - pred01)
    return {
        "ssim_pidm": ssim_256(gt256, pred256, sigma=1.2),
        "ssim_dptn": ssim_256(gt256, pred256, sigma=1.5),
        "ssim_w51": ssim_window51(gt01, pred01),
        "psnr": psnr,
        "l1": float(np.mean(diff)),
        "mae": float(np.sum(diff) / np.sum(gt01 + pred01)),
    }
