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
    const message = document.querySelector('#run-msg');
    new MutationObserver(() => {
        if (/processing|queue/.test(message.innerText)) window.pcdmsRunSeen = true;
        if (/queue/.test(message.innerText)) window.pcdmsQueueSeen = message.innerText;
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
