"""The on-page pose editor: the render stage 2 receives, with a draggable handle on each COCO-18 joint.

A `gr.HTML` component whose value is `pcdms.app.poses.editor_value(...)`. The picture is the server's
`Pose.render` at the model's size (shown enlarged, pixels kept sharp), so what the page shows is exactly what
the model gets. Dragging a handle moves it in the browser; on release the new joint positions are sent with
an `input` event and the server answers with the new render. Hidden joints are hollow handles (dragging one
shows it again). Hide/show, mirror and reset are buttons handled in Python (`pcdms.app.page`).
"""

from __future__ import annotations

import gradio as gr

TEMPLATE = """
<div class="pose-editor" data-testid="pose-editor">
${value && value.joints ? `
  <div class="stage" style="aspect-ratio: ${value.width} / ${value.height}">
    <img class="render" alt="target pose as the model gets it" src="${value.render}" draggable="false">
    <svg viewBox="0 0 ${value.width} ${value.height}">
      ${value.joints.map((j, i) => `<circle data-joint="${i}" data-name="${j.name}" cx="${j.x}" cy="${j.y}"
          r="${value.radius}" class="${j.visible ? 'shown' : 'hidden'}"><title>${j.name}</title></circle>`).join('')}
    </svg>
  </div>
  <p class="hint">Drag a joint. Hollow = hidden (not given to the model). ${value.height}x${value.width} px: the model's frame.</p>
` : `<p class="hint">Pick a gallery pose or a pose photo to edit it here.</p>`}
</div>
"""

CSS = """
.stage { position: relative; width: 264px; max-width: 100%; background: #000; touch-action: none; user-select: none; }
.stage img { display: block; width: 100%; height: 100%; image-rendering: pixelated; }
.stage svg { position: absolute; inset: 0; width: 100%; height: 100%; }
circle { cursor: grab; stroke-width: 0.35; }
circle.shown { fill: rgba(255, 255, 255, 0.25); stroke: #fff; }
circle.hidden { fill: none; stroke: #888; stroke-dasharray: 0.6 0.4; }
.hint { font-size: 0.85em; opacity: 0.8; margin: 4px 0; }
"""

# Runs once; the listeners sit on the component's root, so they survive the template's re-renders.
ON_LOAD = """
let drag = null;
element.addEventListener('pointerdown', (event) => {
  const circle = event.target.closest('circle[data-joint]');
  if (!circle) return;
  event.preventDefault();
  const svg = circle.ownerSVGElement;
  svg.setPointerCapture(event.pointerId);
  drag = {circle, svg, index: Number(circle.dataset.joint), point: null};
});
element.addEventListener('pointermove', (event) => {
  if (!drag) return;
  const screen = drag.svg.createSVGPoint();
  screen.x = event.clientX;
  screen.y = event.clientY;
  const point = screen.matrixTransform(drag.svg.getScreenCTM().inverse());
  drag.circle.setAttribute('cx', point.x);
  drag.circle.setAttribute('cy', point.y);
  drag.point = {x: point.x, y: point.y};
});
const release = () => {
  if (!drag) return;
  const done = drag;
  drag = null;
  if (!done.point) return;
  const joints = props.value.joints.map((joint, i) => i === done.index
      ? {...joint, x: Math.round(done.point.x * 1000) / 1000, y: Math.round(done.point.y * 1000) / 1000, visible: true}
      : joint);
  props.value = {...props.value, joints};
  trigger('input');
};
element.addEventListener('pointerup', release);
element.addEventListener('pointercancel', release);
"""


def pose_editor(value: dict | None = None, **kwargs) -> gr.HTML:
    """The editor component; its value is an `editor_value` dict (or None before a pose is picked)."""
    return gr.HTML(value=value, html_template=TEMPLATE, css_template=CSS, js_on_load=ON_LOAD,
                   elem_id="pose-editor", **kwargs)
