"""`train.gradient_checkpointing`: the same loss and gradients with less memory (issue 16)."""

from __future__ import annotations

import pytest
import torch

from pcdms.config import load_config
from pcdms.models import InpaintModel, PriorModel, RefineModel

CLASSES = {"prior": PriorModel, "inpaint": InpaintModel, "refine": RefineModel}


def inputs(stage: str, cfg):
    g = torch.Generator().manual_seed(0)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    if stage == "prior":
        d = cfg.prior.embed_dim
        return r(2, d), torch.tensor([10, 500]), r(2, d), torch.rand(2, 18, 2, generator=g), torch.rand(2, 18, 2, generator=g)
    c, h, w = cfg.inpaint.latent_channels, 8, 4
    if stage == "inpaint":
        return (r(2, c, h, 2 * w), torch.tensor([3, 700]), torch.ones(2, 1, h, 2 * w), r(2, c, h, 2 * w),
                torch.rand(2, 3, 4 * h, 8 * w, generator=g), r(2, 5, cfg.inpaint.image_token_dim),
                r(2, cfg.inpaint.global_embed_dim))
    return r(2, c, h, w), torch.tensor([3, 700]), r(2, c, h, w), r(2, 5, cfg.refine.image_token_dim)


@pytest.mark.parametrize("stage", list(CLASSES))
def test_checkpointing_gives_the_same_loss_and_gradients(stage):
    cfg = load_config("tiny")
    torch.manual_seed(0)
    plain = CLASSES[stage](getattr(cfg, stage)).train()
    checkpointed = CLASSES[stage](getattr(cfg, stage)).train()
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.enable_gradient_checkpointing()
    grads = []
    for model in (plain, checkpointed):
        model.zero_grad()
        model(*inputs(stage, cfg)).square().mean().backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for key in grads[0]:
        assert torch.allclose(grads[0][key], grads[1][key], atol=1e-6), key
    if stage == "prior":
        assert checkpointed.checkpointing
    else:
        assert checkpointed.unet.is_gradient_checkpointing
