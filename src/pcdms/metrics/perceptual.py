"""LPIPS with the AlexNet backbone on [-1, 1] inputs, as PIDM/CFLD report it (REFERENCE.md Sec. 5).

The `lpips` package (0.1.4) provides the network and ships its calibrated linear layers; its AlexNet
trunk comes from torchvision's ImageNet weights, which we read from a local file (see `weights.py`)
instead of downloading. The PCDMs script fed [0, 1] images to LPIPS, which is not comparable: here the
[0, 1] image is mapped to [-1, 1] with the package's own `normalize=True`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from pcdms.metrics.weights import ALEXNET, check_keys, load_state_dict, resolve_weights

#: The calibrated linear layers shipped with lpips (v0.1 fixed v0.0's input-scaling bug).
_LINEAR_VERSION = "0.1"


def _linear_layers_path() -> Path:
    import lpips

    return Path(lpips.__file__).parent / "weights" / f"v{_LINEAR_VERSION}" / "alex.pth"


def build_lpips(backbone_path: Path) -> torch.nn.Module:
    """An `lpips.LPIPS(net='alex', version='0.1')` with its trunk read from `backbone_path`, in eval mode.

    `backbone_path` is torchvision's AlexNet state dict (only its `features.*` tensors are used), e.g.
    `alexnet-owt-7be5be79.pth`. Raises WeightsUnavailable naming the file when it does not fit.
    """
    import lpips

    # pretrained=False / pnet_rand=True: build the modules only, so nothing is downloaded; both weight
    # sets are then loaded here with weights_only=True.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # lpips passes torchvision's deprecated `pretrained=`
        model = lpips.LPIPS(net="alex", version=_LINEAR_VERSION, pretrained=False, pnet_rand=True, verbose=False)
    # lpips' AlexNet slices keep torchvision's `features` indices: "slice2.3.weight" is "features.3.weight"
    trunk = model.net.state_dict()
    expected = {f"features.{key.split('.', 1)[1]}": value.shape for key, value in trunk.items()}
    state = load_state_dict(backbone_path)
    check_keys(backbone_path, state, expected)
    model.net.load_state_dict({key: state[f"features.{key.split('.', 1)[1]}"] for key in trunk})
    linear = load_state_dict(_linear_layers_path())
    # strict=False because the file holds lin0..4 only; lins.0..4 are the same modules under a second name
    result = model.load_state_dict(linear, strict=False)
    if result.unexpected_keys or len(linear) != len(model.lins):
        raise RuntimeError(f"lpips linear layers do not fit the network: {sorted(linear)}")
    return model.eval().requires_grad_(False)


class LpipsMetric:
    """Batched LPIPS distance. Call with two (B, 3, H, W) float tensors in 0-255; returns (B,) on the CPU."""

    name = "lpips"

    def __init__(self, backbone: str | Path | None, device: torch.device) -> None:
        self.backbone_path = resolve_weights(ALEXNET, backbone)
        self.device = device
        self.model = build_lpips(self.backbone_path).to(device)

    @torch.inference_mode()
    def __call__(self, pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        pred01 = pred.to(self.device, torch.float32) / 255.0
        gt01 = gt.to(self.device, torch.float32) / 255.0
        distance = self.model(pred01, gt01, normalize=True)  # (B, 1, 1, 1)
        return distance.flatten().cpu()
