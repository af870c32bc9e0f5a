"""Image grids for people to look at: generation results, training samples, the diffusion process."""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image, ImageDraw

from pcdms.imageio import MAX_WRITE_PIXELS

CAPTION_HEIGHT = 12


def image_grid(rows: Sequence[Sequence[Image.Image]], labels: Sequence[str] | None = None,
               cell: tuple[int, int] | None = None, pad: int = 2,
               captions: Sequence[Sequence[str | None]] | None = None) -> Image.Image:
    """Rows of images in cells of one size (`cell` = (w, h), default the first image's), white gaps;
    `labels` (one per column) are written above the first row; `captions` (per row, one per cell or None)
    under each cell. Cells shrink (aspect kept) so the grid stays within `MAX_WRITE_PIXELS`, which every image
    library opens without complaint."""
    if not rows or not rows[0]:
        raise ValueError("image_grid needs at least one image")
    cw, ch = cell or rows[0][0].size
    columns = max(len(r) for r in rows)
    top = 14 if labels else 0
    below = CAPTION_HEIGHT if captions else 0
    scale = math.sqrt(MAX_WRITE_PIXELS / (columns * len(rows) * (cw + pad) * (ch + below + pad) + 1))
    if scale < 1:
        cw, ch = max(1, int(cw * scale * 0.99)), max(1, int(ch * scale * 0.99))
    row_h = ch + below + pad
    grid = Image.new("RGB", (columns * (cw + pad) + pad, top + len(rows) * row_h + pad), "white")
    draw = ImageDraw.Draw(grid)
    for c, label in enumerate(labels or ()):
        draw.text((pad + c * (cw + pad) + 2, 1), label, fill=(0, 0, 0))
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            fitted = image.convert("RGB").resize((cw, ch), Image.Resampling.BICUBIC) if image.size != (cw, ch) else image
            grid.paste(fitted, (pad + c * (cw + pad), top + pad + r * row_h))
        for c, caption in enumerate(captions[r] if captions else ()):
            if caption:
                draw.text((pad + c * (cw + pad) + 2, top + pad + r * row_h + ch), caption, fill=(0, 0, 0))
    return grid
