"""The app's job runner and run handler on the shipped demo model, without a browser."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
from PIL import Image

from pcdms.app import DEMO_MODEL, model_name
from pcdms.app.jobs import JobRequest, run_job, stage_steps
from pcdms.app.poses import demo_inputs, to_model_frame
from pcdms.pose.gallery import gallery
from pcdms.cli import main
from pcdms.imageio import load_image
from pcdms.pose import Pose, read_openpose_json


@pytest.fixture(scope="module")
def pipe():
    from pcdms.sampling.pipeline import PCDMsPipeline

    return PCDMsPipeline.from_pretrained(DEMO_MODEL)


@pytest.fixture(scope="module")
def request_():
    name = "id00161_00_front-full.png"
    source = load_image(demo_inputs()[name])
    source_pose = read_openpose_json(demo_inputs()[name].with_suffix(".json"))
    target = to_model_frame(gallery()["front-walking"], 64, 44)
    return JobRequest(source, source_pose, target, stages="full", steps=4, guidance=2.0, seed=5, refine_strength=0.5)


def test_job_reports_every_step_previews_and_results_that_generate_replays(pipe, request_, tmp_path):
    updates = list(run_job(pipe, request_, model_name(DEMO_MODEL)))
    assert stage_steps(pipe, request_) == {"prior": 4, "inpaint": 4, "refine": 2}
    steps = updates[:-1]
    assert len(steps) == 4 + 4 + 2  # one update per denoising step of each stage, in order
    assert [u.progress for u in steps][4] == {"prior": 1.0, "inpaint": 0.25, "refine": 0.0}
    assert all(u.preview is None for u in steps[:4]) and steps[4].preview is not None  # no image for the prior
    assert steps[4].preview.size == (44, 64)
    final = updates[-1]
    assert final.error is None and final.progress == {"prior": 1.0, "inpaint": 1.0, "refine": 1.0}
    assert final.images[0].size == final.coarse_images[0].size == request_.source.size
    files = {name.rsplit("/", 1)[-1]: name for name in final.files}
    assert set(files) == {"result.png", "target_pose.json", "settings.json"}
    assert read_openpose_json(files["target_pose.json"]).allclose(request_.target_pose, atol=1e-3)

    source = tmp_path / "source.png"
    request_.source.save(source)
    assert main(["generate", "--settings", files["settings.json"], "--source", str(source), "--out",
                 str(tmp_path / "out"), "--name", "again", "--device", "cpu", "--no-progress"]) == 0
    again = np.asarray(Image.open(tmp_path / "out" / "again.png"), dtype=np.int16)
    assert np.abs(again - np.asarray(final.images[0], dtype=np.int16)).max() <= 1


def test_a_failed_job_is_reported_and_the_next_one_runs(pipe, request_, monkeypatch):
    gradio = pytest.importorskip("gradio")  # noqa: F841 - the page module needs it
    from pcdms.app.page import Page
    from pcdms.app.poses import editor_value

    page = Page(pipe, "demo")
    source = {"image": request_.source, "pose": request_.source_pose, "note": ""}
    editor = editor_value(request_.target_pose)
    args = (source, editor, "B1", 2, 2.0, 0, 1, 1.0)
    broken = type(pipe).__call__

    def fail(self, *a, **k):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(type(pipe), "__call__", fail)
    *_, last = page.on_run(*args)
    assert "The job failed" in last[-1] and "out of memory (simulated)" in last[-1]
    monkeypatch.setattr(type(pipe), "__call__", broken)
    strips = []  # the process strips shown while it runs (files of the page's own, opened as the browser does)
    for outputs in page.on_run(*args):
        if isinstance(outputs[1], str):
            strips.append(Image.open(outputs[1]))
    last = outputs
    assert last[-1].startswith("Done: 1 sample") and last[3]["label"].startswith("final (= coarse")
    assert [(image["width"], image["height"]) for image in last[3]["images"]] == [request_.source.size]
    assert len(strips) == 3 and strips[1].width == 2 * strips[0].width  # the process grows while it runs
    assert strips[2].size == strips[1].size  # the whole process at the end
    *_, nothing = page.on_run(None, editor, "B1", 2, 2.0, 0, 1, 1.0)
    assert "Give a source photo" in nothing[-1]


def test_pose_from_a_photo_goes_to_the_editor_in_the_model_frame_and_reset_returns_to_it(pipe, samples_dir):
    pytest.importorskip("gradio")
    from pcdms.app.page import Page
    from pcdms.app.poses import mirror, pose_from_editor

    page = Page(pipe, "demo")
    start = page.initial_editor()
    editor, picked, message = page.on_pose_photo(str(samples_dir / "img1.png"), start, None)
    assert "Target pose taken from img1.png" in message
    pose = pose_from_editor(editor)
    assert (pose.height, pose.width) == (pipe.height, pipe.width) and pose.visible.sum() >= 3
    assert picked.allclose(pose, atol=1e-3)
    assert pose_from_editor(page.on_reset(picked)).allclose(pose, atol=1e-3)
    assert not pose_from_editor(mirror(editor)).allclose(pose)
    unchanged, kept, message = page.on_pose_photo(str(samples_dir / "img3.png"), editor, picked)
    assert "No person found in img3.png" in message and unchanged is editor and kept is picked


def test_a_skeleton_picture_as_the_target_is_read_to_the_editor_in_the_model_frame(pipe, tmp_path, monkeypatch):
    # a ControlNet-size render of a gallery pose; MediaPipe must not be asked (it finds no person in one)
    pytest.importorskip("gradio")
    from pcdms.app import page as page_module
    from pcdms.app.page import Page
    from pcdms.app.poses import pose_from_editor

    def no_mediapipe(image):
        raise AssertionError("a skeleton picture went to MediaPipe")

    monkeypatch.setattr(page_module, "_extract", no_mediapipe)
    drawn = gallery()["front-waving"].resized(512, 352)
    Image.fromarray(drawn.render()).save(tmp_path / "waving.png")
    page = Page(pipe, "demo")
    editor, picked, message = page.on_pose_photo(str(tmp_path / "waving.png"), page.initial_editor(), None)
    assert message == "Target pose read from the skeleton picture waving.png."
    pose = pose_from_editor(editor)
    want = page.in_model_frame(drawn)
    assert (pose.height, pose.width) == (pipe.height, pipe.width) and np.array_equal(pose.visible, want.visible)
    # 1.5 px at 512 is 0.2 px in the 64x44 model frame
    assert np.abs(pose.xy - want.xy)[want.visible].max() < 1.5 * pipe.height / 512
    assert picked.allclose(pose, atol=1e-3)
    # a skeleton picture with limbs but no joint dots: the problem is said in the page, the editor unchanged
    from pcdms.pose import render_skeleton

    limbs = render_skeleton(drawn.normalized(), 512, 352, joint_radius=0.3)
    Image.fromarray(limbs).save(tmp_path / "limbs<b>.png")
    unchanged, kept, message = page.on_pose_photo(str(tmp_path / "limbs<b>.png"), editor, picked)
    assert unchanged is editor and kept is picked
    assert message.startswith("**Problem:** limbs&lt;b&gt;.png: no joint dot of the OpenPose colours found")


def test_a_source_photo_with_nobody_found_takes_the_editors_pose_as_its_own_and_runs(pipe, samples_dir):
    pytest.importorskip("gradio")
    from pcdms.app.page import EDITOR_AS_SOURCE, Page
    from pcdms.app.poses import editor_value, overlay
    from pcdms.framing import Fit

    page = Page(pipe, "demo")
    view, message, source = page.on_upload(str(samples_dir / "img3.png"))  # an illustration: MediaPipe finds nobody
    assert "No person found in img3.png" in message and EDITOR_AS_SOURCE in message
    assert source["pose"] is None and np.array_equal(np.asarray(Image.open(view)), np.asarray(source["image"]))
    assert (samples_dir / "img3.png").is_file()  # only an upload in Gradio's cache is deleted after reading
    settings = ("B2", 1, 2.0, 0, 1, 0.5)  # stages, steps, guidance, seed, samples, refine strength
    refused = list(page.on_run(source, page.initial_editor(), *settings))
    assert "Give a source photo with a person first" in refused[-1][-1]

    placed = page.in_model_frame(gallery()["three-quarter"])
    view, message, source = page.on_editor_as_source(source, editor_value(placed))
    assert message.startswith("Source pose placed by hand: the editor's 18 of 18 joints (no person was found)")
    image, pose = source["image"], source["pose"]
    view = Image.open(view)
    assert (pose.height, pose.width) == (image.height, image.width) and view.size == image.size
    # in the photo's own frame: the pipeline's mapping into the model frame gives back the editor's pose
    fit = Fit.of(image.width, image.height, pipe.height, pipe.width, pipe.stretch)
    assert fit.offset != (0, 0)  # a photo of another aspect than the model's: the padding is taken off
    assert fit.pose_in(pose, pipe.height, pipe.width).allclose(placed, atol=1e-3)
    assert np.array_equal(np.asarray(view), np.asarray(overlay(image, pose)))  # drawn over the photo
    updates = list(page.on_run(source, editor_value(page.in_model_frame(gallery()["front-walking"])), *settings))
    assert updates[-1][-1] == "Done: 1 sample(s), seed 0."
    # no photo yet, or an editor with no joint shown: said, nothing changed
    assert "Give a source photo first" in page.on_editor_as_source(None, editor_value(placed))[1]
    hidden = editor_value(Pose(placed.xy, np.zeros(18, bool), placed.height, placed.width), placed)
    assert page.on_editor_as_source(source, hidden)[1:] == ("**Problem:** The editor's pose has no visible joint.",
                                                             source)


def test_a_closed_job_stops_its_worker_at_its_next_step_and_the_next_job_waits_for_it(pipe, request_):
    """A job given up (page closed, event cancelled) must not keep sampling beside the next one; closing does not
    wait for the step under way (Gradio closes generators in its event loop)."""
    import threading
    import time

    from pcdms.app.jobs import COMPUTE

    def workers() -> list[threading.Thread]:
        return [thread for thread in threading.enumerate() if thread.name == "pcdms-app-job" and thread.is_alive()]

    long = dataclasses.replace(request_, steps=100)
    job = run_job(pipe, long, model_name(DEMO_MODEL))
    first = next(job)
    assert first.images is None and first.error is None
    job.close()  # what Gradio does to a cancelled generator
    for worker in workers():
        worker.join(timeout=30)
    assert not workers() and not COMPUTE.locked()
    # a job that never yields a step for `tick_s` still yields (a cancel can close it meanwhile)
    with COMPUTE:  # the pipeline is busy: this job's worker waits
        waiting = run_job(pipe, request_, model_name(DEMO_MODEL), tick_s=0.05)
        start = time.monotonic()
        tick = next(waiting)
        assert tick.tick and tick.images is None and time.monotonic() - start < 5
        waiting.close()
    for worker in workers():
        worker.join(timeout=30)
    assert not workers()


def test_run_disables_the_button_until_the_job_ends_and_gallery_picks_are_checked(pipe):
    gr = pytest.importorskip("gradio")
    from pcdms.app.page import Page

    page = Page(pipe, "demo")
    button, bars, _, coarse, final, downloads, message = page.on_start("full")
    assert button.interactive is False and page.on_end().interactive is True
    assert bars.count("<progress") == 3 and coarse["images"] == final["images"] == [] and downloads is None
    assert "Waiting" in message
    editor, pose, message = page.on_gallery(gr.EventData(None, {"index": 0}))
    assert pose is not None and "from the gallery" in message
    for data in ({"index": len(page.gallery)}, {"index": "../../etc/passwd"}, {"index": -1}, {}, None):
        *_, message = page.on_gallery(gr.EventData(None, data))
        assert "no such gallery pose" in message, data


@pytest.mark.parametrize("change", [
    lambda v: v.update(height=14000, width=14000),  # issue 28: one ~1 KB request rendered GBs
    lambda v: v.update(height=6000),
    lambda v: v.update(joints=v["joints"][:5]),
    lambda v: v.update(joints="x"),
])
def test_editor_events_accept_only_the_model_frame(pipe, change):
    gr = pytest.importorskip("gradio")
    from pcdms.app.page import Page

    page = Page(pipe, "demo")
    good = page.initial_editor()
    assert page.on_refresh(dict(good))["height"] == pipe.height  # the page's own value passes
    forged = json.loads(json.dumps(good))
    change(forged)
    for event in (page.on_refresh, page.on_mirror, lambda v: page.on_toggle(v, "nose")):
        with pytest.raises(gr.Error, match=f"model's {pipe.height}x{pipe.width} frame"):
            event(forged)


def test_session_files_are_deleted_when_replaced_when_the_page_closes_when_old_and_at_close(tmp_path):
    import os
    import time

    from pcdms.app.guard import SessionFiles

    files = SessionFiles(tmp_path, keep_s=60)
    assert files.root.parent == tmp_path and files.root.name.startswith("pcdms-app-")
    first = files.new("a", "job")
    (first / "result.png").write_bytes(b"x")
    other = files.new("b", "job")  # another page's job is not this page's
    second = files.new("a", "job")  # this page's next job replaces its downloads
    assert not first.exists() and second.is_dir() and other.is_dir()
    strips = [files.image("a", "process", Image.new("RGB", (4, 4)), keep=2) for _ in range(3)]
    assert [os.path.isfile(path) for path in strips] == [False, True, True]
    files.end("a")  # the page was closed
    assert not second.exists() and not any(os.path.exists(path) for path in strips) and other.is_dir()
    old = time.time() - 120
    os.utime(other, (old, old))
    files.new("c", "job")  # any new folder sweeps those older than keep_s
    assert not other.exists()
    files.close()
    assert not files.root.exists()


def test_only_uploads_in_gradios_cache_are_deleted(tmp_path):
    from pcdms.app.guard import SessionFiles, delete_upload

    cache = tmp_path / "cache"
    upload = cache / "0123abcd" / "photo.png"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"x")
    files = SessionFiles(cache)
    shown = files.image("a", "source", Image.new("RGB", (4, 4)))
    outside = tmp_path / "photo.png"
    outside.write_bytes(b"x")
    for kept in (outside, shown, cache / "0123abcd" / ".." / ".." / "photo.png"):  # a path a request could name
        assert not delete_upload(kept, cache) and os.path.isfile(kept)
    assert delete_upload(upload, cache) and not upload.parent.exists()


def test_a_job_passes_its_settings_with_its_call_and_leaves_the_shared_pipeline_alone(pipe, request_):
    """Issue 28: a job set `pipe.sample` in its worker thread, so two jobs could run with each other's settings."""
    before = pipe.sample
    job = pipe.with_sample(refine_strength=0.5)
    assert job.sample.refine_strength == 0.5 and job.config.sample.refine_strength == 0.5
    assert job.inpaint is pipe.inpaint and job.encoders is pipe.encoders  # the networks are shared, not copied
    updates = list(run_job(pipe, dataclasses.replace(request_, refine_strength=0.5, steps=2), model_name(DEMO_MODEL)))
    assert updates[-1].images is not None
    assert pipe.sample is before and pipe.config.sample is before
