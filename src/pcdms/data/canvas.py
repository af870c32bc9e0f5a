"""Side-by-side canvases and the inpainting mask of stage 2 (paper Sec. 3.3, Fig. 4; REFERENCE.md Sec. 1).

Stage 2 works on a canvas twice as wide as one image: the source on the LEFT half, the target on the RIGHT
half. The same layout holds for the pose canvas ([source pose | target pose]) and the masked canvas
([source | black]).

Mask polarity (the one place it is defined): the mask is 1 on the known SOURCE half and 0 on the TARGET half
that the model generates, as in the paper ("0 and 1 represent masked and unmasked pixels") and the authors'
code. This is the reverse of diffusers' inpainting pipelines, where 1 marks the region to repaint.
"""

from __future__ import annotations

import torch

BLACK = -1.0  # black in the [-1, 1] image range used by every image tensor of a batch


def make_canvas(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """[left | right] side by side: two (B, C, H, W) tensors -> (B, C, H, 2W), any value range."""
    if left.shape != right.shape:
        raise ValueError(f"canvas halves must have the same shape, got {tuple(left.shape)} and {tuple(right.shape)}")
    return torch.cat([left, right], dim=-1)


def split_canvas(canvas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, H, 2W) -> (left, right), each (B, C, H, W): the inverse of `make_canvas`."""
    width = canvas.shape[-1]
    if width % 2:
        raise ValueError(f"a canvas has an even width (two images side by side), got {width}")
    return canvas[..., : width // 2], canvas[..., width // 2 :]


def make_inpaint_mask(
    batch: int,
    height: int,
    width: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Mask for a canvas of `height` x `width` (the CANVAS width, 2 x one image): (batch, 1, height, width).

    1 = known source (left half), 0 = target to generate (right half); see the module docstring.
    """
    if width % 2:
        raise ValueError(f"a canvas has an even width (two images side by side), got {width}")
    mask = torch.zeros(batch, 1, height, width, device=device, dtype=dtype)
    mask[..., : width // 2] = 1.0
    return mask


def masked_canvas(source: torch.Tensor) -> torch.Tensor:
    """[source | black]: (B, 3, H, W) source in [-1, 1] -> (B, 3, H, 2W), the right half all -1."""
    return make_canvas(source, torch.full_like(source, BLACK))
