"""`pcdms app` driven in a real browser (headless Chromium via Playwright) against the shipped demo model.

The page is served in-process on 127.0.0.1 and a free port. The jobs run in windows of a laptop (1366x768) and a
desktop (1920x1080): in both, Run brings the progress into view and stays disabled until the job ends, and the
coarse and final images are then on screen whole, at their own aspect ratio. Screenshots of both (what the
window shows, and the whole page) are kept in test-artifacts/; the README's docs/app.png is the desktop's
whole page (the upload, gallery and drag test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from app_browser import (ARTIFACTS, CHROMIUM, click_run, data_url_image, free_port, images_shown_whole,
                         in_viewport, pick_demo_input, run_and_wait, set_number, upload, wait_for_message,
                         wait_for_run, wait_in_viewport, wait_run_enabled)
from pcdms.pose import COLORS, JOINT

playwright_api = pytest.importorskip("playwright.sync_api")
STEPS = 8  # per stage: enough to see the process, quick on a CPU
LAPTOP, DESKTOP = (1366, 768), (1920, 1080)  # window sizes (width, height) the page is checked at


@pytest.fixture(scope="module")
def server():
    from pcdms.app import serve

    port = free_port()
    blocks = serve(host="127.0.0.1", port=port, device="cpu", block=False)
    yield f"http://127.0.0.1:{port}/"
    blocks.close()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM:  # `make test` installs it when run as root; CI fails on any skip
        pytest.skip("the browser tests need Debian's chromium: run `make test` as root, or `apt-get install chromium`")
    with playwright_api.sync_playwright() as play:
        chromium = play.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server, request):
    """A fresh tab at the window size the test is parametrized with (`indirect`), the laptop's by default."""
    width, height = getattr(request, "param", LAPTOP)
    context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    tab = context.new_page()
    tab.goto(server)
    tab.wait_for_selector("#pose-editor circle", timeout=60_000)
    set_number(tab, "steps", STEPS)
    yield tab
    context.close()


def _download(page, name: str, folder) -> str:
    with page.expect_download() as info:
        page.locator(f'#downloads a[download="{name}"]').click()
    path = folder / name
    info.value.save_as(path)
    return path


def _render(page) -> np.ndarray:
    return data_url_image(page.locator("#pose-editor img.render").get_attribute("src"))


def _drag_joint(page, name: str, dx: float, dy: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Drag a joint's handle by (dx, dy) screen pixels; return its model-frame position before and after."""
    handle = page.locator(f'#pose-editor circle[data-name="{name}"]')
    before = (float(handle.get_attribute("cx")), float(handle.get_attribute("cy")))
    page.locator("#pose-editor .stage").scroll_into_view_if_needed()
    box = handle.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    old_render = page.locator("#pose-editor img.render").get_attribute("src")
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y + dy, steps=6)
    page.mouse.up()
    page.wait_for_function(f"document.querySelector('#pose-editor img.render').src !== {json.dumps(old_render)}")
    handle = page.locator(f'#pose-editor circle[data-name="{name}"]')
    return before, (float(handle.get_attribute("cx")), float(handle.get_attribute("cy")))


def _near(render: np.ndarray, xy: tuple[float, float], colour: tuple[int, int, int], reach: int = 1) -> bool:
    """The joint's own colour is drawn within `reach` pixels of xy (model-frame pixel coordinates)."""
    col, row = int(xy[0]), int(xy[1])
    window = render[max(0, row - reach):row + reach + 1, max(0, col - reach):col + reach + 1].reshape(-1, 3)
    return bool((window == np.array(colour)).all(axis=1).any())


def _run_in_view(page, label: str) -> str:
    """Run and watch it as the user does: the status and the progress come into the window, Run is disabled
    while the job runs and enabled after; then the coarse and final images are on screen whole. The window
    is kept in test-artifacts/app-<label>.png (and the whole page in app-<label>-full.png)."""
    click_run(page)
    wait_in_viewport(page, "#run-msg")
    wait_in_viewport(page, "#stage-bars")
    message = wait_for_run(page)
    wait_run_enabled(page)
    seen = page.evaluate("window.pcdmsRunButtonWhileRunning")
    assert seen and all(seen), f"Run was enabled while the job ran: {seen}"
    assert in_viewport(page, "#run-msg") and in_viewport(page, "#stage-bars")
    page.wait_for_function("""() => [...document.querySelectorAll('#coarse img, #final img')]
        .every((img) => img.complete && img.naturalWidth > 0)""")
    for panel in ("#coarse", "#final"):
        images_shown_whole(page, f"{panel} img")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"app-{label}.png"))
    page.screenshot(path=str(ARTIFACTS / f"app-{label}-full.png"), full_page=True)
    return message


def _gallery_labels_are_legible(page) -> None:
    labels = page.evaluate("""() => [...document.querySelectorAll('#pose-gallery .pose-name')].map((label) => {
        const box = label.getBoundingClientRect(), card = label.closest('button').getBoundingClientRect();
        return {text: label.innerText, size: parseFloat(getComputedStyle(label).fontSize),
                whole: label.scrollWidth <= label.clientWidth && label.scrollHeight <= label.clientHeight
                    && box.left >= card.left && box.right <= card.right && box.bottom <= card.bottom};
    })""")
    assert len(labels) >= 12
    for label in labels:
        assert label["size"] >= 14 and label["whole"], label


def _portrait_copy(photo, folder, size=(880, 1280)):
    """The photo under its own name, at the top of a light portrait canvas of the model's aspect (44:64) and
    1280 px high: the page must downscale it, and the result has the room of a whole person."""
    image = Image.open(photo).convert("RGB")
    scale = min(size[0] / image.width, size[1] / image.height)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", size, (235, 235, 235))
    canvas.paste(image, ((size[0] - image.width) // 2, 0))
    canvas.save(folder / photo.name)
    used = 1024 / max(size)  # pcdms.app.poses.MAX_SIDE
    return folder / photo.name, (round(size[0] * used), round(size[1] * used))


@pytest.mark.parametrize("page", [DESKTOP], indirect=True)
def test_upload_gallery_drag_run_download_and_replay(page, samples_dir, tmp_path):
    (tmp_path / "in").mkdir()
    photo, used_size = _portrait_copy(samples_dir / "img1.png", tmp_path / "in")
    message = upload(page, "source-upload", photo, "Pose found|Problem", "source-msg")
    assert "Pose found in img1.png" in message and "downscaled" in message
    _gallery_labels_are_legible(page)
    page.locator("#pose-gallery button", has_text="front-arms-raised").first.click()
    assert "front-arms-raised" in wait_for_message(page, "target-msg", "front-arms-raised")

    before_render = _render(page)
    wrist = JOINT["r_wrist"]
    start, end = _drag_joint(page, "r_wrist", dx=40, dy=60)
    after_render = _render(page)
    assert end[0] - start[0] > 3 and end[1] - start[1] > 5  # moved right and down in the model frame
    # the render stage 2 gets now has the wrist where it was dropped, and no longer where it was
    assert _near(after_render, end, COLORS[wrist]) and not _near(before_render, end, COLORS[wrist])
    assert _near(before_render, start, COLORS[wrist]) and not _near(after_render, start, COLORS[wrist], reach=0)
    changed = np.argwhere((before_render != after_render).any(axis=2))
    assert len(changed) and abs(changed[:, 1].mean() - (start[0] + end[0]) / 2) < 12

    assert "Done: 1 sample" in _run_in_view(page, "{}x{}".format(*DESKTOP))
    assert page.locator("#stage-bars").inner_text().count("100%") == 3
    assert page.locator("#final img").count() == page.locator("#coarse img").count() == 1

    result = Image.open(_download(page, "result.png", tmp_path))
    used = Image.open(_download(page, "source_as_used.png", tmp_path))
    assert result.size == used.size == used_size  # the photo's size as used (downscaled to 1024 px)
    shown = page.evaluate("[...document.querySelectorAll('#final img')].map((i) => [i.naturalWidth, i.naturalHeight])")
    assert shown == [list(result.size)]  # the page shows the result itself, not a crop or thumbnail
    pose_file = _download(page, "target_pose.json", tmp_path)
    keypoints = json.loads(pose_file.read_text())["people"][0]["pose_keypoints_2d"]
    assert keypoints[3 * wrist:3 * wrist + 2] == pytest.approx(list(end), abs=0.01)
    settings = _download(page, "settings.json", tmp_path)
    assert json.loads(settings.read_text())["steps"] == STEPS

    replay = subprocess.run(
        [sys.executable, "-m", "pcdms.cli", "generate", "--settings", str(settings), "--source",
         str(tmp_path / "source_as_used.png"), "--out", str(tmp_path / "replay"), "--name", "again",
         "--device", "cpu", "--no-progress"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"}, timeout=300)
    assert replay.returncode == 0, replay.stderr[-2000:]
    again = np.asarray(Image.open(tmp_path / "replay" / "again.png"), dtype=np.int16)
    assert np.abs(again - np.asarray(result.convert("RGB"), dtype=np.int16)).max() <= 1


@pytest.mark.parametrize("page", [LAPTOP], indirect=True)
def test_bad_uploads_are_said_in_the_page_and_the_next_job_runs(page, samples_dir, tmp_path):
    text = tmp_path / "notes.png"  # an image's name, not an image's content
    text.write_text("not a photo")
    message = upload(page, "source-upload", text, "Pose found|Problem", "source-msg")
    assert "notes.png is not an image" in message
    assert "Give a source photo" in run_and_wait(page)
    wait_run_enabled(page)
    wait_in_viewport(page, "#run-msg")  # the refusal is said where the page took the user

    message = upload(page, "source-upload", samples_dir / "img3.png", "Pose found|Problem", "source-msg")
    assert "No person found in img3.png" in message  # an illustration MediaPipe finds nobody in
    assert "Give a source photo" in run_and_wait(page)

    page.get_by_role("tab", name="From a photo").click()
    message = upload(page, "pose-upload", samples_dir / "img5.png", "taken from|Problem", "target-msg")
    assert "No person found in img5.png" in message

    assert "Pose found" in pick_demo_input(page, "id00162_01_front-full.png")
    assert "Done: 1 sample" in _run_in_view(page, "{}x{}".format(*LAPTOP))


@pytest.mark.parametrize("page", [DESKTOP], indirect=True)
def test_a_pose_picture_as_target_and_a_source_pose_placed_by_hand(page, samples_dir, tmp_path):
    """Issue 27 in the page: a skeleton picture uploaded as the target is read into the editor (not sent to
    MediaPipe); a photo in which nobody is found takes the editor's pose as its own, by hand, and runs."""
    from pcdms.pose.gallery import gallery

    picture = tmp_path / "waving-render.png"  # a ControlNet-style render of a pose, at its own size
    Image.fromarray(gallery()["front-waving"].resized(512, 352).render(style="authors")).save(picture)
    message = upload(page, "source-upload", samples_dir / "img3.png", "Pose found|Problem|No person", "source-msg")
    assert "No person found in img3.png" in message

    page.get_by_role("tab", name="From a photo").click()
    before, old_src = _render(page), page.locator("#pose-editor img.render").get_attribute("src")
    message = upload(page, "pose-upload", picture, "read from|taken from|Problem", "target-msg")
    assert "Target pose read from the skeleton picture waving-render.png" in message
    page.wait_for_function("(old) => document.querySelector('#pose-editor img.render').src !== old", arg=old_src)
    after = _render(page)
    assert after.any() and not np.array_equal(before, after)  # the editor shows the picture's pose
    wrist = page.locator('#pose-editor circle[data-name="r_wrist"]')  # the waving hand, high
    shoulder = page.locator('#pose-editor circle[data-name="r_shoulder"]')
    assert float(wrist.get_attribute("cy")) < float(shoulder.get_attribute("cy"))

    page.locator("#editor-as-source").click()
    message = wait_for_message(page, "source-msg", "Source pose placed by hand|has no visible joint")
    assert "Source pose placed by hand" in message
    assert "Done: 1 sample" in run_and_wait(page)
    page.wait_for_function("""() => [...document.querySelectorAll('#final img')]
        .every((img) => img.complete && img.naturalWidth > 0)""")
    shown = images_shown_whole(page, "#final img", min_height_fraction=0.3)  # a landscape photo: wide, less tall
    assert shown[0]["natural"] == list(Image.open(samples_dir / "img3.png").size)  # at the source's size
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app-placed-by-hand.png"), full_page=True)


def test_two_jobs_submitted_together_both_finish(browser, server):
    tabs = []
    for demo in ("id00161_00_front-full.png", "id00165_00_front-full.png"):
        context = browser.new_context(viewport={"width": 1400, "height": 1800})
        tab = context.new_page()
        tab.goto(server)
        tab.wait_for_selector("#pose-editor circle", timeout=60_000)
        set_number(tab, "steps", 4)
        assert "Pose found" in pick_demo_input(tab, demo)
        tabs.append(tab)
    for tab in tabs:
        click_run(tab)
    for tab in tabs:
        assert "Done: 1 sample" in wait_for_run(tab, timeout=180_000)
        assert tab.locator("#final img").count() >= 1
    # the second job waited for the first, and its page said where it stood, with Run disabled meanwhile
    assert "queue" in tabs[1].evaluate("window.pcdmsQueueSeen")
    assert tabs[1].evaluate("window.pcdmsRunDisabledWhileQueued") is True
    for tab in tabs:
        tab.context.close()


@pytest.mark.parametrize("path", ["/etc/passwd", str(CHROMIUM or "/usr/bin/chromium")])
def test_no_server_path_can_be_fetched(server, path):
    url = f"{server}gradio_api/file={path}"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url, timeout=10)
    assert err.value.code in (403, 404)


def _call_api(server: str, endpoint: str, data: list) -> str:
    """Call one of the page's events the way a script would; return the final event's name."""
    request = urllib.request.Request(f"{server}gradio_api/call/{endpoint}", data=json.dumps({"data": data}).encode(),
                                     headers={"Content-Type": "application/json"})
    event_id = json.load(urllib.request.urlopen(request, timeout=30))["event_id"]
    with urllib.request.urlopen(f"{server}gradio_api/call/{endpoint}/{event_id}", timeout=60) as stream:
        events = [line.decode().split(":", 1)[1].strip() for line in stream if line.startswith(b"event:")]
    return events[-1]


def test_no_server_path_can_be_named_through_the_events(server, samples_dir):
    """Crafted requests: a server file as an 'upload', a path as a demo input; both are refused."""
    photo = {"path": str(samples_dir / "img1.png"), "meta": {"_type": "gradio.FileData"}}
    assert _call_api(server, "on_upload", [photo]) == "error"
    assert _call_api(server, "on_demo_input", [str(samples_dir / "img1.png")]) == "error"
    assert _call_api(server, "on_demo_input", ["id00161_00_front-full.png"]) == "complete"


def test_uploads_over_the_cap_are_refused(server):
    import httpx

    from pcdms.app import MAX_UPLOAD

    too_big = int(MAX_UPLOAD.removesuffix("mb")) * 1024 * 1024 + 1024
    refused = httpx.post(f"{server}gradio_api/upload", files={"files": ("big.png", b"\0" * too_big)}, timeout=60)
    assert refused.status_code == 413
    accepted = httpx.post(f"{server}gradio_api/upload", files={"files": ("small.png", b"\0" * 1024)}, timeout=60)
    assert accepted.status_code == 200


@pytest.mark.parametrize("origin, status", [
    ("http://attacker.example", 403),  # another site open in the user's browser (issue 28)
    ("null", 403),                     # a file:// page or a sandboxed frame
    (None, 200),                       # a script or gradio_client: no browser acting for another site
    ("SELF", 200),                     # the page itself
])
def test_requests_from_other_sites_are_refused_before_gradio(server, origin, status):
    import httpx

    headers = {} if origin is None else {"Origin": server.rstrip("/") if origin == "SELF" else origin}
    upload = httpx.post(f"{server}gradio_api/upload", files={"files": ("small.png", b"\0" * 1024)}, headers=headers,
                        timeout=60)
    assert upload.status_code == status, upload.text
    job = httpx.post(f"{server}gradio_api/call/on_demo_input", json={"data": ["id00161_00_front-full.png"]},
                     headers=headers, timeout=60)
    assert job.status_code == status, job.text


def test_the_app_binds_to_this_machine_only_by_default():
    from pcdms.cli import build_parser

    args = build_parser().parse_args(["app"])
    assert (args.host, args.port) == ("127.0.0.1", 7860)
