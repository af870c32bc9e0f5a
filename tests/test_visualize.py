"""Pictures people read: grid labels in a legible font, and the diffusion-process picture labelled by stage and step."""

from __future__ import annotations

import numpy as np
from PIL import Image

from pcdms.visualize import LABEL_SIZE, StepLog, image_grid, process_figure, process_steps


def _ink_rows(image: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray:
    """Indices of the rows of `box` that hold dark (text) pixels."""
    dark = np.asarray(image.crop(box).convert("L")) < 128
    return np.flatnonzero(dark.any(axis=1))


def test_grid_labels_and_captions_are_at_least_14_px_high():
    cell = Image.new("RGB", (60, 80), "white")
    grid = image_grid([[cell, cell]], ["Apg", "Apg"], captions=[["Apg", None]])
    ink = _ink_rows(grid, (0, 0, grid.width, grid.height))  # the white cells hold none: labels, then captions
    label, caption = np.split(ink, np.flatnonzero(np.diff(ink) > 1) + 1)
    assert LABEL_SIZE >= 14 and label.max() - label.min() + 1 >= 14  # 'A' top to 'p' bottom
    assert caption.max() - caption.min() + 1 >= 12 and caption.min() > 80


def test_a_label_wider_than_its_cell_wraps_instead_of_running_into_the_next():
    cell = Image.new("RGB", (40, 40), "white")
    one_line = image_grid([[cell]], ["ab"])
    wrapped = image_grid([[cell]], ["ground truth"])
    assert wrapped.height > one_line.height and wrapped.width == one_line.width


def _strip(count: int, width: int = 20, height: int = 30) -> Image.Image:
    """A process strip of `count` frames, frame k filled with grey level 20 * k."""
    strip = Image.new("RGB", (count * width, height))
    for k in range(count):
        strip.paste((20 * k,) * 3, (k * width, 0, (k + 1) * width, height))
    return strip


def test_process_picture_has_a_labelled_row_per_stage_and_a_step_under_each_frame():
    log = StepLog()
    for i, t in enumerate(range(999, 0, -100)):  # stage 2: ten steps
        log("inpaint", i, t, None, None)
    for i, t in enumerate((399, 199)):  # stage 3 from part-way up (refine strength < 1): two steps
        log("refine", i, t, None, None)
    log("prior", 0, 999, None, None)  # not in the strip
    stages = process_steps(log, 10, frames=6)
    assert [label for label, _ in stages] == ["stage 2: inpaint", "stage 3: refine"]
    assert stages[0][1] == ["step 1/10\nt = 999", "step 3/10\nt = 799", "step 5/10\nt = 599",
                            "step 6/10\nt = 499", "step 8/10\nt = 299", "step 10/10\nt = 99"]
    assert stages[1][1] == ["step 1/2\nt = 399"]
    figure = process_figure(_strip(7), 20, stages)
    pixels = np.asarray(figure.convert("L"))
    # two rows of frames enlarged to at least 96 px wide; stage labels in a column on the left
    assert figure.height > 2 * 30 * 5 and figure.width > 6 * 100
    assert (pixels[:, :40] < 128).any()  # the row labels' ink
    assert (pixels == 0).sum() >= 100 * 150  # frame 0 (black) zoomed five times (20 px -> at least 96)


def test_process_picture_without_matching_steps_is_one_unlabelled_row_not_a_wrong_label():
    figure = process_figure(_strip(4), 20, [("stage 2: inpaint", ["step 1/1"])])
    assert figure.height < 2 * 30 * 5
