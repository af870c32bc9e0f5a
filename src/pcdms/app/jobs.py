"""One generation job of the app: run the pipeline in a worker thread, report its progress while it runs.

Uses only the pipeline's public call (`pipe(..., callback=..., return_process=True)`). The callback sees
every step of every stage (paper Sec. 3): it counts steps for the per-stage progress bars and, every few
steps of stages 2 and 3, decodes the predicted clean image (x0) so the page shows the diffusion process
while it happens. The page runs one job at a time (Gradio's queue, concurrency 1); a job's sampling settings
go with its call (`PCDMsPipeline.with_sample`), never into the shared pipeline. A job given up (the page closed,
the event cancelled: its generator is closed) stops its worker at the next step. Closing does not wait for that
step (Gradio closes generators in its event loop, which a wait of one step would freeze for every page); instead
workers compute one at a time (`COMPUTE`), so a next job's worker starts once the given-up one has stopped.
Gradio can close a generator only between two of its updates: with `tick_s` the job also yields an unchanged
update (`JobUpdate.tick`) that often while a step takes longer, so a cancel never waits for a slow step.
"""

from __future__ import annotations

import queue
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from pcdms.data.canvas import split_canvas
from pcdms.framing import to_pil
from pcdms.sampling.pipeline import ABLATIONS, PCDMsPipeline
from pcdms.pose import Pose, write_openpose_json
from pcdms.jobs.replay import RunSettings, pixels_sha256, write_settings

PREVIEW_EVERY = 4  # decode x0 every this many steps of stages 2 and 3 (and on the last step)
COMPUTE = threading.Lock()  # held by the worker that runs the pipeline: one job computes at a time


class JobCancelled(Exception):
    """Raised in the worker, at its next step, once the job's generator has been closed."""


@dataclass
class JobRequest:
    source: Image.Image
    source_pose: Pose
    target_pose: Pose  # in the model frame
    stages: str = "full"
    steps: int = 20
    guidance: float = 2.0
    seed: int = 0
    num_samples: int = 1
    refine_strength: float = 1.0
    source_note: str = ""  # set when the photo was downscaled: the used photo is then offered for download


@dataclass
class JobUpdate:
    """What the page shows: per-stage fraction done, the newest x0 preview, and at the end the results."""

    progress: dict[str, float] = field(default_factory=dict)
    preview: Image.Image | None = None
    images: list[Image.Image] | None = None
    coarse_images: list[Image.Image] | None = None
    process: list[Image.Image] | None = None
    files: list[str] | None = None
    error: str | None = None
    tick: bool = False  # nothing new: only a chance to give the job up between two steps


def stages_run(pipe: PCDMsPipeline, stages: str) -> list[str]:
    """The stages a job with this Stages setting (an ablation name) runs on `pipe` (a missing stage is skipped)."""
    return [name for name in ABLATIONS.get(stages, ()) if getattr(pipe, name) is not None]


def stage_steps(pipe: PCDMsPipeline, request: JobRequest) -> dict[str, int]:
    """How many steps each stage of this job runs (stage 3 runs fewer when image-to-image): the pipeline's
    `plan` for the stages this model has."""
    return pipe.with_sample(refine_strength=request.refine_strength).plan(stages_run(pipe, request.stages),
                                                                         request.steps)


def run_job(pipe: PCDMsPipeline, request: JobRequest, model_name: str, downloads: Path | None = None,
            tick_s: float | None = None) -> Iterator[JobUpdate]:
    """Yield a `JobUpdate` on each step (and previews) while the job runs, then one with results or error, and
    with `tick_s` a `tick` update whenever that long passed without a step. The downloads are written into
    `downloads` (default: a new temporary folder). Closing the generator stops the worker at its next step."""
    totals = stage_steps(pipe, request)
    events: queue.Queue = queue.Queue()
    done = {name: 0 for name in totals}
    cancelled = threading.Event()

    def callback(stage: str, i: int, t: torch.Tensor, latents: torch.Tensor, x0: torch.Tensor) -> None:
        if cancelled.is_set():
            raise JobCancelled
        preview = None
        last = i + 1 >= totals.get(stage, 1)
        if stage != "prior" and (i % PREVIEW_EVERY == 0 or last):
            decoded = pipe.encoders.autoencoder.decode(x0[:1])
            preview = to_pil(split_canvas(decoded)[1] if stage == "inpaint" else decoded)[0]
        events.put(("step", stage, i + 1, preview))

    def work() -> None:
        with COMPUTE:
            if cancelled.is_set():  # given up while it waited for the pipeline
                return
            try:
                job = pipe.with_sample(refine_strength=request.refine_strength)  # never changes the shared pipeline
                result = job(request.source, request.target_pose, request.source_pose, stages=request.stages,
                              num_inference_steps=request.steps, guidance_scale=request.guidance,
                              generator=torch.Generator().manual_seed(request.seed), num_samples=request.num_samples,
                              callback=callback, return_process=True)
                events.put(("done", result))
            except JobCancelled:
                return
            except Exception as err:  # noqa: BLE001 - any failure is shown in the page; the server goes on
                events.put(("error", f"{type(err).__name__}: {err}" if not _is_user_error(err) else str(err)))

    worker = threading.Thread(target=work, name="pcdms-app-job", daemon=True)
    worker.start()
    try:
        while True:
            try:
                kind, *payload = events.get(timeout=tick_s)
            except queue.Empty:
                yield JobUpdate(progress=_fractions(done, totals), tick=True)
                continue
            if kind == "step":
                stage, count, preview = payload
                done[stage] = max(done.get(stage, 0), count)
                yield JobUpdate(progress=_fractions(done, totals), preview=preview)
            elif kind == "error":
                yield JobUpdate(progress=_fractions(done, totals), error=payload[0])
                return
            else:
                result = payload[0]
                files = save_downloads(result, request, model_name, downloads)
                yield JobUpdate(progress={name: 1.0 for name in totals}, images=result.images,
                                coarse_images=result.coarse_images, process=result.process, files=files)
                return
    finally:  # also when the generator is closed early: the worker stops at its next step (not waited for)
        cancelled.set()


def _fractions(done: dict[str, int], totals: dict[str, int]) -> dict[str, float]:
    return {name: min(1.0, done.get(name, 0) / max(1, total)) for name, total in totals.items()}


def _is_user_error(err: Exception) -> bool:
    from pcdms.errors import UserError

    return isinstance(err, UserError)


def save_downloads(result, request: JobRequest, model_name: str, folder: Path | None = None) -> list[str]:
    """The job's downloads in `folder` (default: a fresh temporary folder): each sample's image, the target pose
    (OpenPose JSON), the settings file `pcdms generate --settings` replays, and the photo as used when it was
    downscaled."""
    folder = folder if folder is not None else Path(tempfile.mkdtemp(prefix="pcdms-app-"))
    files = []
    for k, image in enumerate(result.images):
        path = folder / ("result.png" if len(result.images) == 1 else f"result_sample{k}.png")
        image.save(path)
        files.append(path)
    write_openpose_json(folder / "target_pose.json", request.target_pose)
    files.append(folder / "target_pose.json")
    settings = RunSettings(
        target_pose=request.target_pose, source_pose=request.source_pose, stages=request.stages,
        steps=request.steps, guidance=request.guidance, seed=request.seed, num_samples=request.num_samples,
        refine_strength=request.refine_strength, model=model_name, source_size=request.source.size,
        source_pixels_sha256=pixels_sha256(request.source))
    files.append(write_settings(folder / "settings.json", settings))
    if request.source_note:
        request.source.save(folder / "source_as_used.png")
        files.append(folder / "source_as_used.png")
    return [str(path) for path in files]
