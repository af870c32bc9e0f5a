"""Canvas layout and the inpainting mask polarity (pcdms.data.canvas is their one home)."""

from __future__ import annotations

import pytest
import torch

from pcdms.data.canvas import make_canvas, make_inpaint_mask, masked_canvas, split_canvas


def test_canvas_puts_left_then_right_and_splits_back():
    left, right = torch.rand(2, 3, 8, 6), torch.rand(2, 3, 8, 6)
    canvas = make_canvas(left, right)
    assert canvas.shape == (2, 3, 8, 12)
    a, b = split_canvas(canvas)
    assert torch.equal(a, left) and torch.equal(b, right)


def test_mask_is_one_on_the_known_source_half_and_zero_on_the_generated_target_half():
    mask = make_inpaint_mask(3, 4, 10)
    assert mask.shape == (3, 1, 4, 10)
    source_half, target_half = split_canvas(mask)
    assert torch.all(source_half == 1) and torch.all(target_half == 0)


def test_masked_canvas_keeps_the_source_and_blacks_out_the_target():
    source = torch.rand(1, 3, 8, 6) * 2 - 1
    canvas = masked_canvas(source)
    left, right = split_canvas(canvas)
    assert torch.equal(left, source)
    assert torch.all(right == -1.0)  # black in [-1, 1]


def test_canvas_mismatch_and_odd_widths_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        make_canvas(torch.zeros(1, 3, 8, 6), torch.zeros(1, 3, 8, 4))
    with pytest.raises(ValueError, match="even width"):
        split_canvas(torch.zeros(1, 3, 8, 7))
    with pytest.raises(ValueError, match="even width"):
        make_inpaint_mask(1, 8, 7)
