"""Helpers for the app's browser tests: serve the page on a free local port, drive headless Chromium.

Chromium is Debian's `chromium` package (`.ci/run` installs it); Playwright's own browser download does
not work on these machines, so its Python API is pointed at that executable.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import socket
from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM = os.environ.get("PCDMS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("PCDMS_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
RESULT_TIMEOUT_MS = 120_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def data_url_image(url: str) -> np.ndarray:
    """The pixels of a `data:image/png;base64,...` URL as uint8 (H, W, 3)."""
    header, payload = url.split(",", 1)
    assert header == "data:image/png;base64", header
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB"))


def wait_for_message(page, elem_id: str, pattern: str, timeout: int = 60_000) -> str:
    """Wait until the Markdown `#elem_id` matches the regex `pattern` and is not loading; return its text."""
    check = f"""() => {{ const el = document.querySelector('#{elem_id}');
        return new RegExp({json.dumps(pattern)}).test(el.innerText) && !/processing|queue/.test(el.innerText); }}"""
    page.wait_for_function(check, timeout=timeout)
    return page.locator(f"#{elem_id}").inner_text()


def set_number(page, elem_id: str, value: int) -> None:
    """Type a value into a slider's or number's input box and commit it."""
    box = page.locator(f"#{elem_id} input[type=number]").first
    box.fill(str(value))
    box.press("Enter")
    box.blur()


def upload(page, elem_id: str, path: Path, pattern: str, message_id: str) -> str:
    """Upload a file into the gr.File `#elem_id` (clearing the previous one) and wait for its message."""
    field = page.locator(f"#{elem_id} input[type=file]")
    if field.count() == 0:
        page.locator(f"#{elem_id} button[aria-label='Clear'], #{elem_id} button[aria-label='Remove this file']").first.click()
        field.wait_for(state="attached")
        page.wait_for_function(f"document.querySelector('#{message_id}').innerText.trim() === ''")
    field.set_input_files(str(path))
    return wait_for_message(page, message_id, f"({pattern}).*{re.escape(path.name)}|{re.escape(path.name)}.*({pattern})")


def pick_demo_input(page, name: str) -> str:
    page.locator("#demo-input input").click()
    page.get_by_role("option", name=name).click()
    return wait_for_message(page, "source-msg", re.escape(name))


WATCH_RUN = """() => {
    window.pcdmsRunSeen = false;
    window.pcdmsQueueSeen = '';
    window.pcdmsRunButtonWhileRunning = [];  // Run's `disabled` each time the message changed while running
    const message = document.querySelector('#run-msg');
    new MutationObserver(() => {
        if (/processing|queue/.test(message.innerText)) window.pcdmsRunSeen = true;
        if (/queue/.test(message.innerText)) {
            window.pcdmsQueueSeen = message.innerText;
            window.pcdmsRunDisabledWhileQueued = document.querySelector('#run').disabled;
        }
        if (/Running/.test(message.innerText))
            window.pcdmsRunButtonWhileRunning.push(document.querySelector('#run').disabled);
    })
        .observe(message, {subtree: true, childList: true, characterData: true, attributes: true});
}"""
RUN_FINISHED = """() => {
    const text = document.querySelector('#run-msg').innerText;
    return window.pcdmsRunSeen && !/processing|queue/.test(text) && /Done:|Problem:|job failed/.test(text);
}"""


def click_run(page) -> None:
    """Click Run, watching the message so that a stale one from the previous job is not taken as the answer."""
    page.evaluate(WATCH_RUN)
    page.locator("#run").click()


def wait_for_run(page, timeout: int = RESULT_TIMEOUT_MS) -> str:
    page.wait_for_function(RUN_FINISHED, timeout=timeout)
    return page.locator("#run-msg").inner_text()


def run_and_wait(page, timeout: int = RESULT_TIMEOUT_MS) -> str:
    click_run(page)
    return wait_for_run(page, timeout)


def _in_viewport_js(selector: str) -> str:
    return f"""() => {{ const box = document.querySelector({json.dumps(selector)}).getBoundingClientRect();
        return box.height > 0 && box.top >= 0 && box.left >= 0 && box.bottom <= innerHeight + 1
            && box.right <= innerWidth + 1; }}"""


def in_viewport(page, selector: str) -> bool:
    """The element's whole box lies inside the window (it is where the user is looking)."""
    return page.evaluate(_in_viewport_js(selector))


def wait_in_viewport(page, selector: str, timeout: int = 5_000) -> None:
    page.wait_for_function(_in_viewport_js(selector), timeout=timeout)


def wait_run_enabled(page, timeout: int = 10_000) -> None:
    page.wait_for_function("() => !document.querySelector('#run').disabled", timeout=timeout)


# For each <img>: its natural size, its box, the picture as painted in that box (object-fit and
# object-position applied) and the part of the window its scrolling/clipping ancestors leave visible.
IMAGE_GEOMETRY = """(selector) => [...document.querySelectorAll(selector)].map((img) => {
    const rect = (r) => ({left: r.left, top: r.top, right: r.right, bottom: r.bottom});
    const style = getComputedStyle(img);
    const px = (name) => parseFloat(style[name]) || 0;
    const outer = img.getBoundingClientRect();
    const box = {left: outer.left + px('borderLeftWidth') + px('paddingLeft'),
                 top: outer.top + px('borderTopWidth') + px('paddingTop'),
                 right: outer.right - px('borderRightWidth') - px('paddingRight'),
                 bottom: outer.bottom - px('borderBottomWidth') - px('paddingBottom')};
    const [bw, bh, nw, nh] = [box.right - box.left, box.bottom - box.top, img.naturalWidth, img.naturalHeight];
    const fit = style.objectFit;
    let [sx, sy] = [bw / nw, bh / nh];
    if (fit === 'contain') sx = sy = Math.min(sx, sy);
    if (fit === 'cover') sx = sy = Math.max(sx, sy);
    if (fit === 'none') sx = sy = 1;
    if (fit === 'scale-down') sx = sy = Math.min(1, sx, sy);
    const [pw, ph] = [nw * sx, nh * sy];
    const [px0, py0] = style.objectPosition.split(' ');
    const offset = (v, free) => v.endsWith('%') ? free * parseFloat(v) / 100 : parseFloat(v);
    const [left, top] = [box.left + offset(px0, bw - pw), box.top + offset(py0, bh - ph)];
    let visible = {left: 0, top: 0, right: innerWidth, bottom: innerHeight};
    for (let el = img.parentElement; el; el = el.parentElement) {
        const s = getComputedStyle(el);
        if (s.overflowX !== 'visible' || s.overflowY !== 'visible') {
            const r = el.getBoundingClientRect();
            visible = {left: Math.max(visible.left, r.left), top: Math.max(visible.top, r.top),
                       right: Math.min(visible.right, r.right), bottom: Math.min(visible.bottom, r.bottom)};
        }
    }
    return {natural: [nw, nh], fit, box: rect(box), visible,
            painted: {left, top, right: left + pw, bottom: top + ph}, window: [innerWidth, innerHeight]};
})"""


def images_shown_whole(page, selector: str, min_height_fraction: float = 0.4) -> list[dict]:
    """Assert every image `selector` matches is drawn at its own aspect ratio, uncropped by its box, its
    containers or the window, and at least `min_height_fraction` of the window high; return the geometry."""
    shown = page.evaluate(IMAGE_GEOMETRY, selector)
    assert shown, f"no image matches {selector}"
    for image in shown:
        painted, natural = image["painted"], image["natural"]
        width, height = painted["right"] - painted["left"], painted["bottom"] - painted["top"]
        assert natural[0] > 0 and natural[1] > 0, image
        assert abs(width / height - natural[0] / natural[1]) <= 0.01 * natural[0] / natural[1], image  # no distortion
        for bound in (image["box"], image["visible"]):  # uncropped by its box, its containers, the window
            assert painted["left"] >= bound["left"] - 1 and painted["right"] <= bound["right"] + 1, image
            assert painted["top"] >= bound["top"] - 1 and painted["bottom"] <= bound["bottom"] + 1, image
        assert height >= min_height_fraction * image["window"][1], image  # a person seen, not a thumbnail
    return shown
