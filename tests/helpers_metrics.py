"""Shared pieces of the metrics tests: a calibrated random Inception and isolation from local weights."""

from __future__ import annotations

import torch
import torchvision

from pcdms.metrics.weights import ALEXNET, INCEPTION


def random_inception_state() -> dict[str, torch.Tensor]:
    """torchvision Inception-v3 tensors with random convolutions (classifier heads left out).

    The batch-norm statistics are measured on random inputs, so activations stay O(1) through the
    network (with the default statistics the features vanish, and any FID of them is trivially 0).
    """
    torch.manual_seed(0)
    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batch
    net.train()
    with torch.no_grad():
        net(torch.rand(2, 3, 299, 299) * 2 - 1)
    return {k: v.contiguous() for k, v in net.state_dict().items() if not k.startswith(("fc.", "AuxLogits."))}


def isolate_from_local_weights(tmp_path, monkeypatch) -> None:
    """Whatever this machine has in its torch hub cache or environment must not change the tests."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(ALEXNET.env_var, raising=False)
    monkeypatch.delenv(INCEPTION.env_var, raising=False)
