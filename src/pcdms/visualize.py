"""Image grids for people to look at: generation results, training samples, the diffusion process.

Text is drawn in a TrueType font at `LABEL_SIZE` / `CAPTION_SIZE` pixels: matplotlib's DejaVu Sans when
matplotlib is installed, else Pillow's own scalable default font, so labels read at any cell size.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pcdms.imageio import MAX_WRITE_PIXELS

LABEL_SIZE = 16  # px, column and row labels
CAPTION_SIZE = 14  # px, captions under cells
TEXT_PAD = 3  # px around a block of text
PROCESS_STAGES = {"inpaint": "stage 2: inpaint", "refine": "stage 3: refine"}
MIN_PROCESS_CELL = 96  # px: small model frames are enlarged to this width so their step labels fit
PROCESS_FRAMES = 6  # frames per stage in a process strip: pass it to the pipeline and to `process_steps`


@functools.lru_cache(maxsize=8)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A TrueType font `size` pixels high: DejaVu Sans from matplotlib if installed, else Pillow's default."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def wrap(text: str, width: float, face: Any) -> list[str]:
    """`text` in lines no wider than `width` pixels where word breaks allow (a long word stays whole)."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            trial = f"{line} {word}" if line else word
            if line and face.getlength(trial) > width:
                lines.append(line)
                line = word
            else:
                line = trial
        lines.append(line)
    return lines


def _line_height(face: Any) -> int:
    ascent, descent = face.getmetrics()
    return ascent + descent


def _text_block(draw: ImageDraw.ImageDraw, xy: tuple[int, int], lines: Sequence[str], face: Any) -> None:
    x, y = xy
    for i, line in enumerate(lines):
        draw.text((x, y + i * _line_height(face)), line, fill=(0, 0, 0), font=face)


def image_grid(rows: Sequence[Sequence[Image.Image]], labels: Sequence[str] | None = None,
               cell: tuple[int, int] | None = None, pad: int = 2,
               captions: Sequence[Sequence[str | None]] | None = None,
               row_labels: Sequence[str] | None = None) -> Image.Image:
    """Rows of images in cells of one size (`cell` = (w, h), default the first image's), white gaps;
    `labels` (one per column) are written above the first row, `row_labels` (one per row) left of each row,
    `captions` (per row, one per cell or None) under each cell; text wraps to its cell's width. Cells shrink
    (aspect kept) so the grid stays within `MAX_WRITE_PIXELS`, which every image library opens without
    complaint."""
    if not rows or not rows[0]:
        raise ValueError("image_grid needs at least one image")
    cw, ch = cell or rows[0][0].size
    columns = max(len(r) for r in rows)
    label_face, caption_face = font(LABEL_SIZE), font(CAPTION_SIZE)
    left = 0
    if row_labels:  # as wide as the widest label up to 140 px, and never narrower than its longest word
        widest = max(label_face.getlength(text) for text in row_labels)
        longest_word = max(label_face.getlength(word) for text in row_labels for word in text.split())
        left = math.ceil(max(longest_word, min(widest, 140))) + 2 * TEXT_PAD
    text_width = max(cw - 2 * TEXT_PAD, 1)
    label_lines = [wrap(label, text_width, label_face) for label in labels or ()]
    top = max((len(lines) for lines in label_lines), default=0) * _line_height(label_face) + 2 * TEXT_PAD \
        if labels else 0
    caption_lines = [[wrap(c, text_width, caption_face) if c else [] for c in row] for row in captions or ()]
    below = max((len(lines) for row in caption_lines for lines in row), default=0)
    below = below * _line_height(caption_face) + 2 * TEXT_PAD if below else 0
    scale = math.sqrt(MAX_WRITE_PIXELS / (columns * len(rows) * (cw + pad) * (ch + below + pad) + 1))
    if scale < 1:
        cw, ch = max(1, int(cw * scale * 0.99)), max(1, int(ch * scale * 0.99))
    row_h = ch + below + pad
    grid = Image.new("RGB", (left + columns * (cw + pad) + pad, top + len(rows) * row_h + pad), "white")
    draw = ImageDraw.Draw(grid)
    for c, lines in enumerate(label_lines):
        _text_block(draw, (left + pad + c * (cw + pad) + TEXT_PAD, TEXT_PAD), lines, label_face)
    for r, row in enumerate(rows):
        y = top + pad + r * row_h
        if row_labels and r < len(row_labels):
            lines = wrap(row_labels[r], left - 2 * TEXT_PAD, label_face)
            _text_block(draw, (TEXT_PAD, y + max(0, (ch - len(lines) * _line_height(label_face)) // 2)), lines,
                        label_face)
        for c, image in enumerate(row):
            fitted = image.convert("RGB").resize((cw, ch), Image.Resampling.BICUBIC) if image.size != (cw, ch) else image
            grid.paste(fitted, (left + pad + c * (cw + pad), y))
        for c, lines in enumerate(caption_lines[r] if captions else ()):
            _text_block(draw, (left + pad + c * (cw + pad) + TEXT_PAD, y + ch + TEXT_PAD), lines, caption_face)
    return grid


class StepLog:
    """A pipeline `callback` that notes which steps each stage ran: (step index, timestep) per stage, in order.
    Pass it as `callback=` beside `return_process=True`; `process_figure` labels the strip with it."""

    def __init__(self) -> None:
        self.steps: dict[str, list[tuple[int, int]]] = {}

    def __call__(self, stage: str, i: int, t: Any, latents: Any, x0: Any) -> None:
        self.steps.setdefault(stage, []).append((int(i), int(t)))


def process_steps(log: StepLog, num_inference_steps: int, frames: int = PROCESS_FRAMES) -> list[tuple[str, list[str]]]:
    """(row label, one caption per frame) for each stage of a process strip: the steps
    `PCDMsPipeline(..., return_process=True, process_frames=frames)` keeps of `num_inference_steps`."""
    keep = set(np.linspace(0, num_inference_steps - 1, frames).round().astype(int).tolist())
    rows = []
    for stage, title in PROCESS_STAGES.items():
        ran = log.steps.get(stage, [])
        if ran:
            rows.append((title, [f"step {i + 1}/{len(ran)}\nt = {t}" for i, t in ran if i in keep]))
    return rows


def process_figure(strip: Image.Image, frame_width: int, stages: Sequence[tuple[str, Sequence[str]]]) -> Image.Image:
    """The pipeline's process strip (frames of `frame_width` side by side: stage 2's, then stage 3's) as a grid:
    one row per stage, labelled by stage, each frame captioned by its step. `stages`: (row label, one caption
    per frame) as `process_steps` gives; when their count does not match the strip's frames, the frames are
    shown in one unlabelled row rather than mislabelled."""
    count = strip.width // frame_width
    frames = [strip.crop((k * frame_width, 0, (k + 1) * frame_width, strip.height)) for k in range(count)]
    if sum(len(captions) for _, captions in stages) != count:
        stages = [("stages 2-3", [f"frame {k + 1}" for k in range(count)])]
    rows, captions, labels, start = [], [], [], 0
    for label, texts in stages:
        rows.append(frames[start:start + len(texts)])
        captions.append(list(texts))
        labels.append(label)
        start += len(texts)
    zoom = max(1, -(-MIN_PROCESS_CELL // frame_width))
    return image_grid(rows, cell=(frame_width * zoom, strip.height * zoom), captions=captions, row_labels=labels)
