"""What the page shows of a job: the per-stage progress bars and the result panels (coarse, final).

A result panel is a `gr.HTML` whose value is `panel_value(...)`: each image is sent whole (a PNG data URL at
the job's output size) and drawn at its own aspect ratio, never cropped, as large as the panel's width and the
window's height allow (`--result-max-height`), so that with the page scrolled to the result on Run the whole
person is on screen. Several samples share that height in a grid of two columns. Images smaller than shown
(the demo model's 44x64 px) are enlarged with sharp pixels, as the editor shows the pose.
"""

from __future__ import annotations

import html

import gradio as gr
from PIL import Image

from pcdms.app.poses import png_data_url

PLACEHOLDER = "The result appears here after Run."
WAITING = "Waiting for this job ..."

TEMPLATE = """
<div class="result-panel" data-testid="result-panel">
  <h4>${value.label}</h4>
  ${value.images && value.images.length ? `
  <div class="result-grid" style="--columns: ${Math.min(2, value.images.length)};
       --rows: ${Math.ceil(value.images.length / 2)}">
    ${value.images.map((image, k) => `<img src="${image.src}" width="${image.width}" height="${image.height}"
        style="--ratio: ${image.width / image.height}" class="${image.small ? 'small' : ''}"
        alt="${value.label}, sample ${k + 1}" draggable="false">`).join('')}
  </div>` : `<p class="hint">${value.hint}</p>`}
</div>
"""

# An image's width is the smaller of its cell's width and (cell height x its aspect ratio); its height follows
# from its own ratio (height auto), and object-fit contain guards the ratio should a browser ever size the box
# otherwise. Nothing clips (no overflow hidden, no fixed panel height).
CSS = """
.result-panel { --result-max-height: calc(100vh - 120px); }
.result-panel h4 { margin: 0 0 6px; font-size: 16px; }
.result-grid { --cell-height: calc((var(--result-max-height) - (var(--rows) - 1) * 8px) / var(--rows));
               display: grid; grid-template-columns: repeat(var(--columns), minmax(0, 1fr)); gap: 8px;
               justify-items: center; align-items: start; }
.result-grid img { display: block; width: min(100%, calc(var(--cell-height) * var(--ratio))); height: auto;
                   max-width: 100%; object-fit: contain; background: #fff; }
.result-grid img.small { image-rendering: pixelated; }
.hint { font-size: 14px; opacity: 0.8; margin: 4px 0; }
"""
SMALL = 256  # px, longer side: an image this small is shown enlarged, so its pixels are kept sharp


def panel_value(label: str, images: list[Image.Image] | None = None, hint: str = PLACEHOLDER) -> dict:
    """A result panel's value: its title and the images (PNG data URLs), or a hint while there are none."""
    shown = [{"src": png_data_url(image), "width": image.width, "height": image.height,
              "small": max(image.size) < SMALL} for image in images or []]
    return {"label": html.escape(label), "images": shown, "hint": html.escape(hint)}


def result_panel(label: str, **kwargs) -> gr.HTML:
    return gr.HTML(value=panel_value(label), html_template=TEMPLATE, css_template=CSS, js_on_load=None, **kwargs)


def stage_bars(progress: dict[str, float]) -> str:
    """One labelled bar per stage of the job, `progress` in [0, 1] per stage (the page's progress display)."""
    rows = "".join(
        f'<div class="stage-bar" data-stage="{name}"><span>{name}</span>'
        f'<progress max="100" value="{round(100 * value)}"></progress><span>{round(100 * value)}%</span></div>'
        for name, value in progress.items())
    return f'<div class="stage-bars">{rows}</div>'


def process_strip(frames: list[Image.Image]) -> Image.Image | None:
    """The predicted clean images so far side by side, left to right (all the model's size): the process panel."""
    if not frames:
        return None
    strip = Image.new("RGB", (sum(f.width for f in frames), max(f.height for f in frames)))
    x = 0
    for frame in frames:
        strip.paste(frame, (x, 0))
        x += frame.width
    return strip
