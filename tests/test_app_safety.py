"""Issue 28 on the served page: a cancelled job stops within a step and frees its place, one client cannot hold
more than its share of the queue, and the files the page shows are deleted once they are no longer shown.

The page runs in-process (`pcdms.app.serve(block=False)`) on the shipped demo model, driven by `gradio_client`
as a script would; Gradio's cache is a folder of this test, so its files can be counted.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from app_browser import free_port
from pcdms.app.poses import editor_value, to_model_frame
from pcdms.pose.gallery import gallery

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")
DEMO = "id00161_00_front-full.png"
LONG = 100  # steps of a job that is cancelled long before its end (the Steps slider's maximum)


class Pipelines:
    """Counts the pipeline calls computing now (and the most at once) and the denoising steps done."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = self.most = self.steps = self.calls = 0

    def wrap(self, call):
        def counted(pipe, *args, callback=None, **kwargs):
            def step(*a):
                with self.lock:
                    self.steps += 1
                return callback(*a)

            with self.lock:
                self.calls += 1
                self.active += 1
                self.most = max(self.most, self.active)
            try:
                return call(pipe, *args, callback=step, **kwargs)
            finally:
                with self.lock:
                    self.active -= 1
        return counted


def wait_for(condition, timeout: float = 60.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from pcdms.app import serve
    from pcdms.sampling.pipeline import PCDMsPipeline

    cache = tmp_path_factory.mktemp("gradio-cache")
    pipelines = Pipelines()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(cache))
        patch.setattr(PCDMsPipeline, "__call__", pipelines.wrap(PCDMsPipeline.__call__))
        port = free_port()
        blocks = serve(port=port, device="cpu", block=False, per_client=2)
        pipelines.url, pipelines.cache = f"http://127.0.0.1:{port}/", cache
        yield pipelines
        blocks.close()


def client(app, source: str | None = DEMO):
    """A new client (a page session of its own), its source photo chosen among the demo inputs."""
    session = gradio_client.Client(app.url, verbose=False, download_files=False)
    if source:
        assert "Pose found" in session.predict(source, api_name="/on_demo_input")[1]
    return session


def run_args(steps: int) -> tuple:
    """/on_run's inputs after the session's source: editor, stages, steps, guidance, seed, samples, strength."""
    return editor_value(to_model_frame(gallery()["front-walking"], 64, 44)), "B1", steps, 2.0, 0, 1, 1.0


def test_a_cancelled_job_stops_within_a_step_and_the_next_one_runs(app):
    session = client(app)
    job = session.submit(*run_args(LONG), api_name="/on_run")
    wait_for(lambda: app.steps >= 3 and app.active == 1, what="the job to run")
    job.cancel()
    cancelled_at = app.steps
    wait_for(lambda: app.active == 0, timeout=30, what="the cancelled pipeline to stop")
    assert app.steps - cancelled_at <= 2  # at most the step under way and one more
    done = session.predict(*run_args(2), api_name="/on_run")
    assert done[-1].startswith("Done: 1 sample")
    assert app.most == 1


def test_submit_then_cancel_in_a_loop_never_runs_two_pipelines_at_once(app):
    session = client(app)
    for _ in range(6):
        calls = app.calls
        job = session.submit(*run_args(LONG), api_name="/on_run")
        wait_for(lambda: app.calls > calls, what="the job to start")  # noqa: B023 - waited for at once
        job.cancel()
    wait_for(lambda: app.active == 0, timeout=30, what="the last cancelled pipeline to stop")
    assert app.most == 1
    assert session.predict(*run_args(2), api_name="/on_run")[-1].startswith("Done: 1 sample")


def test_one_client_holds_at_most_its_share_of_the_queue(app):
    first, second = client(app), client(app)  # two pages of one client address (127.0.0.1)
    running = first.submit(*run_args(LONG), api_name="/on_run")
    wait_for(lambda: app.active == 1, what="the first job to start")
    waiting = second.submit(*run_args(LONG), api_name="/on_run")
    time.sleep(0.5)  # queued behind the first
    third = client(app)
    with pytest.raises(gradio_client.exceptions.ValidationError, match="already have 2 job"):
        third.predict(*run_args(2), api_name="/on_run")
    waiting.cancel()  # removed from the queue: it never starts
    running.cancel()
    wait_for(lambda: app.active == 0, timeout=30, what="the cancelled job to stop")
    # both places are free again: the running job's at once, the dropped one's once a job after it starts
    calls = app.calls
    jobs = [first.submit(*run_args(2), api_name="/on_run")]
    wait_for(lambda: app.calls > calls, what="the next job to start")
    jobs.append(third.submit(*run_args(2), api_name="/on_run"))
    assert all(job.result(timeout=120)[-1].startswith("Done: 1 sample") for job in jobs)
    assert app.most == 1


def files(folder: Path) -> set[Path]:
    """The files with content under `folder` (Gradio's multipart parser leaves an empty temporary file for each
    upload gradio_client sends; it holds nothing)."""
    return {path for path in folder.rglob("*") if path.is_file() and path.stat().st_size}


def test_files_no_longer_shown_are_deleted(app, samples_dir):
    session = client(app, source=None)
    before = files(app.cache)
    for name in ("img1.png", "img2.png"):  # a second upload replaces the first
        view, message = session.predict(gradio_client.handle_file(str(samples_dir / name)), api_name="/on_upload")
        assert f"Pose found in {name}" in message
        assert Path(view["path"]).is_file() and httpx.get(view["url"], timeout=30).status_code == 200  # served
    shown = files(app.cache) - before
    assert [path.name for path in shown] == ["source.png"]  # the uploads are gone, the last view stays
    for _ in range(2):  # a second job replaces the first one's downloads and process strip
        result = session.predict(*run_args(2), api_name="/on_run")
        assert result[-1].startswith("Done: 1 sample")
        assert all(httpx.get(file["url"], timeout=30).status_code == 200 for file in result[4])  # the downloads
    names = sorted(path.name for path in files(app.cache) - before)
    assert names == ["process.png", "process.png", "result.png", "settings.json", "source.png", "target_pose.json"]


def test_the_limit_counts_a_clients_jobs_until_they_end(monkeypatch):
    from pcdms.app.guard import ClientLimit, TooManyJobs

    limit = ClientLimit(2, stale_s=0.2)
    first = limit.admit("10.0.0.1", "page-1")
    limit.admit("10.0.0.1", "page-2")
    with pytest.raises(TooManyJobs, match="already have 2 job"):
        limit.admit("10.0.0.1", "page-3")  # a new page (session) of the same address is the same client
    limit.admit("10.0.0.2", "page-4")  # another address has its own share
    running = limit.start("10.0.0.1", "page-1")
    assert running is first and limit.held("10.0.0.1") == 2
    limit.end_session("page-2")  # closed while its job waited: Gradio drops the job, its place is free
    assert limit.held("10.0.0.1") == 1
    dropped = limit.admit("10.0.0.1", "page-5")  # then cancelled while it waited: it never starts
    limit.finish(running)
    limit.finish(running)  # finishing twice frees one place, not two
    later = limit.admit("10.0.0.1", "page-6")
    assert limit.start("10.0.0.1", "page-6") is later  # a job submitted after it started: it was dropped
    assert limit.held("10.0.0.1") == 1 and dropped.started is False
    limit.finish(later)
    limit.admit("10.0.0.1", "page-7")  # cancelled while waiting, and nothing runs: stale once idle that long
    limit.admit("10.0.0.1", "page-8")
    time.sleep(0.3)
    assert limit.held("10.0.0.1") == 0 and limit.held("10.0.0.2") == 0


def test_the_page_says_when_a_client_holds_its_limit_and_forgets_a_closed_page():
    import gradio as gr

    from pcdms.app import DEMO_MODEL
    from pcdms.app.page import Page
    from pcdms.sampling.pipeline import PCDMsPipeline
    from types import SimpleNamespace

    page = Page(PCDMsPipeline.from_pretrained(DEMO_MODEL), "demo", per_client=1)
    request = SimpleNamespace(session_hash="page-1", client=SimpleNamespace(host="10.0.0.9"))
    inputs = (None, None, "B1", 2, 2.0, 0, 1, 1.0)
    assert all(check["is_valid"] for check in page.admit(*inputs, request=request))
    refused = page.admit(*inputs, request=request)  # what Gradio asks before it queues the job
    assert refused[0]["is_valid"] is False and "already have 1 job(s)" in refused[0]["message"]
    assert all(check["is_valid"] for check in refused[1:]) and len(refused) == 8
    with pytest.raises(gr.Error, match="Not queued: you already have 1 job"):
        page.on_start("B1", request)  # Run is refused before anything is queued ...
    assert page.on_refused(request).startswith("**Not queued:** you already have 1 job(s)")  # ... the status says why
    shown = page.shown(request, "source", Image.new("RGB", (4, 4)))
    page.on_unload(request)  # the page was closed: its waiting job and its files go
    assert page.limit.held("10.0.0.9") == 0 and not Path(shown).exists()
    assert page.on_start("B1", request)[-1].startswith("Waiting")


@pytest.mark.parametrize("field, value", [
    ("seed", 2**70),       # ran, then failed in torch; and a settings file cannot hold it
    ("seed", -5),          # ran, and wrote a settings file that `generate --settings` refuses
    ("steps", 10**9),
    ("samples", 10**6),
    ("guidance", 1e9),
    ("strength", 0.0),
    ("stages", "all-of-them"),
])
def test_run_settings_out_of_range_are_refused_before_the_job(app, field, value):
    session = client(app)
    args = dict(zip(("editor", "stages", "steps", "guidance", "seed", "samples", "strength"), run_args(2)))
    calls = app.calls
    with pytest.raises(httpx.HTTPStatusError, match="400 Bad Request"):  # checked when the job is submitted
        session.predict(*{**args, field: value}.values(), api_name="/on_run")
    assert app.calls == calls  # no pipeline was called


@pytest.mark.parametrize("size, chunked, status", [
    (5 << 20, False, 413),   # 5 MiB of JSON was queued as an event's input
    (2 << 20, True, 413),    # the same without a Content-Length
    (1 << 10, False, 200),
])
def test_request_bodies_other_than_uploads_are_capped(app, size, chunked, status):
    body = b'{"data": ["' + b"x" * size + b'"], "fn_index": 0, "session_hash": "capped"}'
    content = iter([body[i:i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
    answer = httpx.post(f"{app.url}gradio_api/queue/join", content=content,
                        headers={"Content-Type": "application/json"}, timeout=60)
    assert answer.status_code == status, answer.text[:200]


def test_the_shown_files_go_when_the_app_exits(tmp_path):
    """The session folders are one temporary folder, removed when the process ends (also without a close)."""
    import subprocess
    import sys

    script = ("import sys; from PIL import Image; from pcdms.app.guard import SessionFiles; "
              "files = SessionFiles(sys.argv[1]); files.new('a', 'job'); "
              "print(files.image('a', 'source', Image.new('RGB', (4, 4))))")
    shown = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True,
                           timeout=120).stdout.strip()
    assert Path(shown).parent.parent.parent == tmp_path and not Path(shown).parent.parent.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("temp_dir", [None, "set"])
def test_the_page_files_are_in_gradios_own_cache(monkeypatch, tmp_path, temp_dir):
    """Files outside Gradio's cache would be copied into it to be served, and the copies kept (for an hour)."""
    import gradio as gr

    from pcdms.app.guard import gradio_cache

    if temp_dir:
        monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    else:
        monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    assert Path(gr.Blocks().GRADIO_CACHE).resolve() == gradio_cache().resolve()
