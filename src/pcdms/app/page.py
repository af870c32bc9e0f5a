"""The page of `pcdms app`: source photo, target pose (gallery, photo, editor), settings, run, result.

Layout and wiring only; pose logic lives in `pcdms.app.poses`, the editor in `pcdms.app.editor`, the pose
gallery in `pcdms.app.picker`, progress and result panels in `pcdms.app.results`, the job in
`pcdms.app.jobs`. On Run the page scrolls to the result section (status, progress, process and downloads
beside the coarse and final images, sized to fit the window) and Run stays disabled until this page's job
has ended. Nothing on the page names a server path: demo inputs and gallery poses are chosen by name or
index from lists built here, uploads are decoded by content into memory (and their files deleted at once),
what the page shows is written to the session's own folders (`pcdms.app.guard.SessionFiles`: a replaced picture
or job's downloads are deleted, a closed page's all). A client may hold a few jobs queued or running at once
(`pcdms.app.guard.ClientLimit`, checked when a job is submitted). Every user mistake (not an image, no person,
no pose, too many jobs) becomes a message in the page.
"""

from __future__ import annotations

import contextlib
import html
from pathlib import Path

import gradio as gr
from PIL import Image

from pcdms.app import PER_CLIENT, poses
from pcdms.app.editor import pose_editor
from pcdms.app.guard import ClientLimit, SessionFiles, TooManyJobs, client_of, delete_upload, session_of
from pcdms.app.jobs import JobRequest, run_job, stages_run
from pcdms.app.picker import picker_value, pose_picker
from pcdms.app.results import WAITING, panel_value, process_strip, result_panel, stage_bars
from pcdms.pose.gallery import gallery
from pcdms.errors import UserError
from pcdms.sampling.pipeline import PCDMsPipeline
from pcdms.pose import JOINTS, Pose
from pcdms.pose.picture import is_skeleton_picture, read_skeleton_picture
from pcdms.validation import SEED

STAGE_CHOICES = [("full: prior + inpaint + refine", "full"), ("B2: prior + inpaint", "B2"), ("B1: inpaint only", "B1")]
INTRO = """# PCDMs: a person in a new pose
Give a photo of a person (**1**), choose the pose they should take (**2**), then **Run**. The model: {model}
({height}x{width} px). Its pose detector is MediaPipe mapped to COCO-18; the skeleton in the editor is exactly
the image the model receives."""
EDITOR_AS_SOURCE = "Use the target editor's pose as the source pose"
READY = "Press **Run**: the progress and the result show here."
TICK_S = 0.5  # a job's longest silence: a cancel waits at most this long, not for a slow step
COARSE, FINAL, FINAL_NO_REFINE = "coarse (stage 2)", "final", "final (= coarse: no stage 3)"
# Client-side, on Run: bring the result section to the top of the window (where status and result appear).
SCROLL_TO_RESULTS = """() => {
    document.getElementById('results')?.scrollIntoView({behavior: 'smooth', block: 'start'});
}"""


def _extract(image: Image.Image) -> Pose | None:
    from pcdms.pose.extract import PoseExtractor

    with PoseExtractor() as extractor:
        found = extractor(image)
    return None if found is None else found[0]


def _name(path: str | None) -> str:
    return html.escape(Path(path).name) if path else "the file"


class Page:
    """The page's event handlers, bound to one pipeline (the model frame comes from it)."""

    def __init__(self, pipe: PCDMsPipeline, model_name: str, per_client: int = PER_CLIENT) -> None:
        self.pipe, self.model_name = pipe, model_name
        self.height, self.width = pipe.height, pipe.width
        self.files = SessionFiles()
        self.limit = ClientLimit(per_client)
        self.gallery = gallery()
        self.demo_inputs = poses.demo_inputs()
        self.standing = self.in_model_frame(self.gallery[poses.DEFAULT_GALLERY_POSE])

    def in_model_frame(self, pose: Pose) -> Pose:
        return poses.to_model_frame(pose, self.height, self.width, self.pipe.stretch)

    def initial_editor(self) -> dict:
        return poses.editor_value(self.standing, self.standing)

    def checked_editor(self, value: object) -> dict:
        """An editor value the browser sent, refused unless it is in the model's frame with 18 joints: its
        height and width size the render, so a request must not choose them (14000x14000 took GBs)."""
        ok = (isinstance(value, dict) and value.get("height") == self.height and value.get("width") == self.width
              and isinstance(value.get("joints"), list) and len(value["joints"]) == len(JOINTS))
        if not ok:
            raise gr.Error(f"the pose editor's value must be 18 joints in the model's {self.height}x{self.width} "
                           "frame; reload the page", print_exception=False)
        return value

    def on_refresh(self, editor: object) -> dict:
        return poses.refresh(self.checked_editor(editor))

    def on_toggle(self, editor: object, joint: str) -> dict:
        return poses.toggle_joint(self.checked_editor(editor), joint)

    def on_mirror(self, editor: object) -> dict:
        return poses.mirror(self.checked_editor(editor))

    def picker_items(self) -> dict:
        return picker_value({name: Image.fromarray(pose.render()) for name, pose in self.gallery.items()})

    def stages_run(self, stages: str) -> list[str]:
        """The stages a job with this Stages setting runs on this model (a missing refiner is skipped)."""
        return stages_run(self.pipe, stages)

    # ------------------------------------------------------------ source
    def shown(self, request: gr.Request | None, kind: str, image: Image.Image, keep: int = 1) -> str:
        """`image` as a file of this page session, replacing its `kind` shown before (see `SessionFiles`)."""
        return self.files.image(session_of(request), kind, image, keep)

    def load_source(self, path: str | None, display_name: str, request: gr.Request | None = None):
        """-> (photo with its pose drawn (a file of the session), message, state). The state is None unless the
        photo was read, and its pose None when no person was found in it (Run refuses it until one is placed by
        hand)."""
        if not path:
            return None, "", None
        try:
            photo = poses.read_photo(path, display_name)
        except poses.PhotoError as err:
            return None, f"**Problem:** {err}", None
        pose = _extract(photo.image)
        if pose is None:  # the photo is kept: its pose can be placed by hand (`on_editor_as_source`)
            message = (f"**Problem:** No person found in {display_name}: try a photo where one person is seen whole, "
                       f"or place the person's pose in the editor of step 2 and press *{EDITOR_AS_SOURCE}*.")
            view = photo.image
        else:
            note = f" ({photo.note})" if photo.note else ""
            message = f"Pose found in {display_name}{note}: {int(pose.visible.sum())} of 18 joints."
            view = poses.overlay(photo.image, pose)
        return self.shown(request, "source", view), message, {"image": photo.image, "pose": pose, "note": photo.note}

    def on_upload(self, path: str | None, request: gr.Request = None):
        """An uploaded photo: read into memory, then its file is deleted (nothing keeps it on the server)."""
        try:
            return self.load_source(path, _name(path), request)
        finally:
            if path:
                delete_upload(path)

    def on_editor_as_source(self, source: dict | None, editor: object, request: gr.Request = None):
        """The editor's pose, mapped from the model frame into the source photo's, as the source pose: for a
        photo MediaPipe finds nobody in (a drawn character), or one whose found pose is wrong.
        -> (photo with the pose drawn, message, state), as `load_source`."""
        if source is None:
            return gr.skip(), "**Problem:** Give a source photo first (step 1).", None
        placed = poses.pose_from_editor(self.checked_editor(editor))
        if not placed.visible.any():
            return gr.skip(), "**Problem:** The editor's pose has no visible joint.", source
        image = source["image"]
        pose = poses.from_model_frame(placed, image.height, image.width, self.pipe.stretch)
        replaced = "no person was found" if source["pose"] is None else "it replaces the pose found"
        message = (f"Source pose placed by hand: the editor's {int(pose.visible.sum())} of 18 joints ({replaced}); "
                   "now choose the target pose.")
        return self.shown(request, "source", poses.overlay(image, pose)), message, {**source, "pose": pose}

    def on_demo_input(self, name: str | None, request: gr.Request = None):
        if name not in self.demo_inputs:  # only names from the list are accepted, never a path
            return None, "", None
        return self.load_source(str(self.demo_inputs[name]), html.escape(name), request)

    # ------------------------------------------------------------ target
    def on_gallery(self, event: gr.EventData):
        try:  # the index the picker's click sends; anything else is refused
            index = event.index
        except (AttributeError, TypeError):  # no such field, or no data at all
            index = None
        if type(index) is not int or not 0 <= index < len(self.gallery):  # only indices of the list
            return gr.skip(), gr.skip(), "**Problem:** no such gallery pose."
        name = list(self.gallery)[index]
        pose = self.in_model_frame(self.gallery[name])
        return poses.editor_value(pose, self.standing), pose, f"Target pose: **{name}** from the gallery."

    def on_pose_photo(self, path: str | None, editor: dict, reset: Pose | None):
        """A photo or skeleton picture for the target pose: read, then its file is deleted."""
        if not path:
            return editor, reset, ""
        try:
            return self._pose_photo(path, editor, reset)
        finally:
            delete_upload(path)

    def _pose_photo(self, path: str, editor: dict, reset: Pose | None):
        try:
            photo = poses.read_photo(path, _name(path))
        except poses.PhotoError as err:
            return editor, reset, f"**Problem:** {err}"
        if is_skeleton_picture(photo.image):  # an OpenPose/ControlNet render is read, not sent to MediaPipe
            try:
                pose = read_skeleton_picture(photo.image, Path(path).name).pose
            except UserError as err:
                return editor, reset, f"**Problem:** {html.escape(str(err))}: the target pose is unchanged."
            found = f"Target pose read from the skeleton picture {_name(path)}."
        else:
            pose = _extract(photo.image)
            if pose is None:
                return editor, reset, f"**Problem:** No person found in {_name(path)}: the target pose is unchanged."
            found = f"Target pose taken from {_name(path)}."
        pose = self.in_model_frame(pose)
        return poses.editor_value(pose, self.standing), pose, found

    def on_reset(self, reset: Pose | None) -> dict:
        return poses.editor_value(reset or self.standing, self.standing)

    # ------------------------------------------------------------ run
    def on_start(self, stages: str, request: gr.Request = None):
        """Run clicked (before the job is queued): disable Run, clear the last result, say the job waits.
        Outputs: (run button, bars, live preview, coarse, final, downloads, message). A client holding its limit
        of jobs is told so (`gr.Error`) and nothing follows."""
        try:
            self.limit.check(client_of(request))
        except TooManyJobs as err:
            raise gr.Error(f"Not queued: {err}.", print_exception=False) from None
        idle = {name: 0.0 for name in self.stages_run(stages)}
        return (gr.Button(interactive=False), stage_bars(idle), None, panel_value(COARSE, hint=WAITING),
                panel_value(FINAL, hint=WAITING), None, "Waiting for the model ...")

    def on_refused(self, request: gr.Request = None) -> str:
        """Run was refused before anything was queued (`on_start` raised): the status says why."""
        if self.limit.held(client_of(request)) >= self.limit.per_client:
            return f"**Not queued:** {html.escape(self.limit.refusal)}."
        return "**Not queued:** the page's settings were refused; reload the page."

    @staticmethod
    def on_end() -> gr.Button:
        """The job ended, whichever way (result, error, cancelled): Run can be pressed again."""
        return gr.Button(interactive=True)

    def admit(self, source: object, editor: object, stages: object, steps: object, guidance: object, seed: object,
              samples: object, strength: object, request: gr.Request = None) -> list[dict]:
        """The run's validator: Gradio calls it when the job is submitted, before it is queued. A client holding
        its limit of queued or running jobs is refused (nothing is queued); else the job takes a place, freed when
        it ends (`on_run`). -> a `gr.validate` per input."""
        try:
            self.limit.admit(client_of(request), session_of(request))
        except TooManyJobs as err:
            return [gr.validate(False, f"Not queued: {err}.")] + [gr.validate(True, "")] * 7
        return [gr.validate(True, "")] * 8

    def on_unload(self, request: gr.Request = None) -> None:
        """The page was closed or reloaded: its files are deleted, its jobs not yet started free their places."""
        self.files.end(session_of(request))
        self.limit.end_session(session_of(request))

    def on_run(self, source: dict | None, editor: dict, stages: str, steps: float, guidance: float, seed: float,
               samples: float, strength: float, request: gr.Request = None):
        """Generator for the run outputs: (bars, live preview, coarse, final, downloads, message). The job's place
        (`ClientLimit`) is freed when it ends, also when it is given up (the generator closed)."""
        ticket = self.limit.start(client_of(request), session_of(request))
        try:
            yield from self._run(source, editor, stages, steps, guidance, seed, samples, strength, request)
        finally:
            self.limit.finish(ticket)

    def _run(self, source: dict | None, editor: dict, stages: str, steps: float, guidance: float, seed: float,
             samples: float, strength: float, request: gr.Request | None):
        final_label = FINAL if "refine" in self.stages_run(stages) else FINAL_NO_REFINE
        empty = (panel_value(COARSE), panel_value(final_label), None)
        if source is None or source["pose"] is None:
            yield stage_bars({}), None, *empty, ("**Problem:** Give a source photo with a person first (step 1), "
                                                 f"or place its pose by hand with *{EDITOR_AS_SOURCE}*.")
            return
        target = poses.pose_from_editor(self.checked_editor(editor))
        if not target.visible.any():
            yield stage_bars({}), None, *empty, "**Problem:** The target pose has no visible joint."
            return
        job = JobRequest(source["image"], source["pose"], target, stages, int(steps), float(guidance),
                         int(seed), int(samples), float(strength), source["note"])
        # Said before the job starts computing: Gradio can close (cancel) a generator only once it has yielded
        yield stage_bars({name: 0.0 for name in self.stages_run(stages)}), None, *(gr.skip(),) * 3, "Starting ..."
        frames: list[Image.Image] = []  # the predicted clean images so far, shown as a growing strip
        # the job's downloads replace the session's last ones; the strip shown keeps the one before (still loading)
        downloads = self.files.new(session_of(request), "job")
        with contextlib.closing(run_job(self.pipe, job, self.model_name, downloads, tick_s=TICK_S)) as updates:
            for update in updates:
                if update.tick:  # nothing new; Gradio may close (cancel) the job here
                    yield (gr.skip(),) * 6
                    continue
                if update.preview is not None:
                    frames.append(update.preview)
                strip = (self.shown(request, "process", process_strip(frames), keep=2) if update.preview is not None
                         else gr.skip())
                if update.error:
                    yield stage_bars(update.progress), strip, *empty, f"**The job failed:** {html.escape(update.error)}"
                    return
                if update.images is None:
                    yield stage_bars(update.progress), strip, gr.skip(), gr.skip(), gr.skip(), "Running ..."
                    continue
                process = update.process[0] if update.process else process_strip(frames)
                yield (stage_bars(update.progress), self.shown(request, "process", process, keep=2),
                       panel_value(COARSE, update.coarse_images), panel_value(final_label, update.images),
                       update.files, f"Done: {len(update.images)} sample(s), seed {int(seed)}.")


CSS = """
.stage-bar { display: grid; grid-template-columns: 5em 1fr 3em; gap: 8px; align-items: center; }
.stage-bar progress { width: 100%; }
#process img { image-rendering: pixelated; }
/* Room below the result section, so that scrolling it to the top of the window always works. */
#results { min-height: calc(100vh - 16px); align-content: flex-start; scroll-margin-top: 8px; }
"""


def _settings_column(pipe: PCDMsPipeline) -> list[gr.components.Component]:
    """Stages, steps, guidance, seed, samples, refine strength (in `Page.on_run`'s order), defaults from the model."""
    sample = pipe.sample
    gr.Markdown("### 3. Settings")
    return [
        gr.Radio(STAGE_CHOICES, value="full" if pipe.refine is not None else "B2", label="Stages"),
        gr.Slider(1, 100, value=sample.num_inference_steps, step=1, label="Steps per stage", elem_id="steps"),
        gr.Slider(1.0, 10.0, value=sample.inpaint_guidance_scale, step=0.1, label="Guidance scale"),
        gr.Number(0, precision=0, minimum=SEED.low, maximum=SEED.high, label="Seed", elem_id="seed"),
        gr.Slider(1, 4, value=1, step=1, label="Samples", elem_id="samples"),
        gr.Slider(0.05, 1.0, value=sample.refine_strength, step=0.05,
                  label="Refine strength (1 = stage 3 from noise, as the paper)"),
    ]


def _result_section(page: Page) -> dict[str, gr.components.Component]:
    """Status, progress, process and downloads beside the coarse and final panels, in one window-high row."""
    with gr.Row(elem_id="results", equal_height=False):
        with gr.Column(scale=1, min_width=280):
            gr.Markdown("### 4. Result")
            parts = {"message": gr.Markdown(READY, elem_id="run-msg"),
                     "bars": gr.HTML(stage_bars({name: 0.0 for name in page.stages_run("full")}),
                                     elem_id="stage-bars"),
                     "process": gr.Image(label="Diffusion process: predicted clean image", interactive=False,
                                         height=120, elem_id="process"),
                     "downloads": gr.File(label="Downloads: image, target pose (OpenPose JSON), settings for "
                                          "`pcdms generate`", file_count="multiple", interactive=False,
                                          elem_id="downloads")}
        for name, label in (("coarse", COARSE), ("final", FINAL)):
            with gr.Column(scale=1, min_width=240):  # a column each, so narrow windows stack them
                parts[name] = result_panel(label, elem_id=name)
    return parts


CACHE_SWEEP_S, CACHE_KEEP_S = 600, 3600


def build_page(pipe: PCDMsPipeline, model_name: str, per_client: int = PER_CLIENT) -> gr.Blocks:
    """The gr.Blocks page for one loaded pipeline; a client may hold `per_client` jobs queued or running."""
    page = Page(pipe, model_name, per_client)
    # Gradio's cache (uploads, served copies of results): files older than an hour go every ten minutes, all
    # of it when the server stops
    with gr.Blocks(title="PCDMs pose transfer", analytics_enabled=False,
                   delete_cache=(CACHE_SWEEP_S, CACHE_KEEP_S)) as blocks:
        gr.Markdown(INTRO.format(model=html.escape(model_name), height=page.height, width=page.width))
        source_state, reset_state = gr.State(None), gr.State(None)
        with gr.Row():
            with gr.Column():
                gr.Markdown("### 1. Source photo")
                upload = gr.File(label="Upload a photo", type="filepath", elem_id="source-upload")
                demo_pick = gr.Dropdown(list(page.demo_inputs), value=None, label="... or a shipped demo input", elem_id="demo-input")
                source_view = gr.Image(label="Source and its pose", interactive=False, elem_id="source-view")
                source_msg = gr.Markdown(elem_id="source-msg")
                editor_as_source = gr.Button(EDITOR_AS_SOURCE, size="sm", elem_id="editor-as-source")
            with gr.Column():
                gr.Markdown("### 2. Target pose")
                with gr.Tab("Gallery"):
                    gallery = pose_picker(page.picker_items(), elem_id="pose-gallery")
                with gr.Tab("From a photo"):
                    pose_upload = gr.File(label="Photo, or skeleton picture (OpenPose/ControlNet render), to take "
                                          "the pose from", type="filepath", elem_id="pose-upload")
                editor = pose_editor(page.initial_editor())
                with gr.Row():
                    joint = gr.Dropdown(list(JOINTS), value="nose", label="Joint", scale=2, elem_id="joint")
                    toggle = gr.Button("Hide / show joint", scale=1, elem_id="toggle")
                with gr.Row():
                    mirror = gr.Button("Mirror left/right", elem_id="mirror")
                    reset = gr.Button("Reset", elem_id="reset")
                target_msg = gr.Markdown(elem_id="target-msg")
            with gr.Column():
                settings = _settings_column(pipe)
                run = gr.Button("Run", variant="primary", elem_id="run")
        result = _result_section(page)

        source_out = [source_view, source_msg, source_state]
        upload.change(page.on_upload, upload, source_out)
        demo_pick.change(page.on_demo_input, demo_pick, source_out)
        editor_as_source.click(page.on_editor_as_source, [source_state, editor], source_out)
        gallery.click(page.on_gallery, None, [editor, reset_state, target_msg])
        pose_upload.change(page.on_pose_photo, [pose_upload, editor, reset_state], [editor, reset_state, target_msg])
        editor.input(page.on_refresh, editor, editor)
        toggle.click(page.on_toggle, [editor, joint], editor)
        mirror.click(page.on_mirror, editor, editor)
        reset.click(page.on_reset, reset_state, editor)
        _wire_run(page, run, [source_state, editor, *settings], result)
        blocks.unload(page.on_unload)
    return blocks


def _wire_run(page: Page, run: gr.Button, inputs: list, result: dict) -> None:
    """Run: scroll to the result and disable Run at once (not queued), then the job (queued, one at a time),
    then enable Run again; `.then` follows the job however it ended (result, error or cancelled). The job's
    validator (`Page.admit`) counts it against its client's limit when it is submitted, before Gradio queues it."""
    outputs = [result[name] for name in ("bars", "process", "coarse", "final", "downloads", "message")]
    run.click(None, js=SCROLL_TO_RESULTS)
    started = run.click(page.on_start, inputs[2], [run, *outputs], queue=False, show_progress="hidden")
    started.failure(page.on_refused, None, result["message"], queue=False, show_progress="hidden")
    job = started.success(page.on_run, inputs, outputs, concurrency_limit=1, concurrency_id="pipeline",
                          validator=page.admit)
    job.then(page.on_end, None, run, queue=False, show_progress="hidden")
