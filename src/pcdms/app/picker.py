"""The gallery of ready target poses: a card per pose, its skeleton and its full name under it (legible, never
cut off), chosen by a click.

A `gr.HTML` whose value is `picker_value(...)`. A click marks the card chosen in the browser and sends a
`click` event carrying only the card's index; the page maps the index to a pose from its own list (no name or
path from the browser is trusted).
"""

from __future__ import annotations

import html

import gradio as gr
from PIL import Image

from pcdms.app.poses import png_data_url

TEMPLATE = """
<div class="pose-picker" role="group" aria-label="Ready poses">
${(value && value.poses || []).map((pose, i) => `
  <button type="button" class="pose-card${i === value.selected ? ' chosen' : ''}" data-index="${i}"
          aria-pressed="${i === value.selected}" title="${pose.name}">
    <img src="${pose.render}" alt="" draggable="false">
    <span class="pose-name">${pose.name.replaceAll('-', '-<wbr>')}</span>
  </button>`).join('')}
</div>
"""

CSS = """
.pose-picker { display: grid; grid-template-columns: repeat(auto-fill, minmax(92px, 1fr)); gap: 8px;
               max-height: 330px; overflow-y: auto; padding: 2px; }
.pose-card { display: flex; flex-direction: column; align-items: center; gap: 4px; padding: 6px 4px;
             border: 1px solid var(--border-color-primary); border-radius: 6px; cursor: pointer; color: inherit;
             background: var(--background-fill-secondary); }
.pose-card:hover { border-color: var(--color-accent); }
.pose-card.chosen { border-color: var(--color-accent); box-shadow: 0 0 0 2px var(--color-accent); }
.pose-card img { height: 96px; width: auto; background: #000; }
.pose-name { font-size: 14px; line-height: 1.25; text-align: center; overflow-wrap: anywhere; }
"""

# Delegated from the root, so the listener survives the template's re-renders.
ON_LOAD = """
element.addEventListener('click', (event) => {
  const card = event.target.closest('button[data-index]');
  if (!card) return;
  const index = Number(card.dataset.index);
  props.value = {...props.value, selected: index};
  trigger('click', {index});
});
"""


def picker_value(renders: dict[str, Image.Image], selected: int | None = None) -> dict:
    """The picker's value: each pose's name and skeleton render (PNG data URL), and the chosen card's index."""
    return {"poses": [{"name": html.escape(name), "render": png_data_url(image)} for name, image in renders.items()],
            "selected": selected}


def pose_picker(value: dict, **kwargs) -> gr.HTML:
    return gr.HTML(value=value, html_template=TEMPLATE, css_template=CSS, js_on_load=ON_LOAD, **kwargs)
