"""`pcdms app`: a web page to try pose transfer on your own photo (Gradio).

`serve` loads a model folder with `PCDMsPipeline.from_pretrained` and starts the page (`pcdms.app.page`)
with safe defaults: bound to 127.0.0.1 unless told otherwise, uploads capped, one job at a time with a
queue that tells waiting users their place, a few queued or running jobs per client address, and the files it
shows deleted once they are no longer shown (`pcdms.app.guard`).
"""

from __future__ import annotations

from pathlib import Path

DEMO_MODEL = Path(__file__).resolve().parents[1] / "assets" / "demo" / "model"
MAX_UPLOAD = "20mb"
QUEUE_SIZE = 32
PER_CLIENT = 2  # jobs one client address may have queued or running at once (pcdms.app.guard.ClientLimit)


def model_name(folder: str | Path) -> str:
    """'demo' for the shipped model, else the folder's name (settings files record it; no full path)."""
    folder = Path(folder).resolve()
    return "demo" if folder == DEMO_MODEL.resolve() else folder.name


def serve(model: str | Path = DEMO_MODEL, host: str = "127.0.0.1", port: int = 7860, device: str = "cpu",
          block: bool = True, queue_size: int = QUEUE_SIZE, per_client: int = PER_CLIENT):
    """Load the model and serve the page; returns the Gradio Blocks (running) when `block` is False.
    `queue_size`: jobs that may wait at once (more are refused with a message); `per_client`: jobs one client
    address may have queued or running at once (more are refused with a message); requests from other sites
    are refused (`pcdms.app.guard.SameOrigin`), and request bodies other than uploads over 1 MiB
    (`pcdms.app.guard.BodyLimit`)."""
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from starlette.middleware import Middleware

    from pcdms.app.guard import BodyLimit, SameOrigin
    from pcdms.app.page import CSS, build_page
    from pcdms.sampling.pipeline import PCDMsPipeline

    from pcdms.errors import UserError

    if queue_size < 1 or per_client < 1:
        raise UserError(f"the queue size and the jobs per client must be at least 1, got {queue_size} and {per_client}")
    pipe = PCDMsPipeline.from_pretrained(model, device=device)
    blocks = build_page(pipe, model_name(model), per_client)
    blocks.queue(default_concurrency_limit=1, max_size=queue_size)
    try:
        blocks.launch(server_name=host, server_port=port, max_file_size=MAX_UPLOAD, prevent_thread_lock=not block,
                      show_error=False, ssr_mode=False, quiet=not block, css=CSS, footer_links=[],
                      app_kwargs={"middleware": [Middleware(SameOrigin), Middleware(BodyLimit)]})
    finally:
        if block:  # stopped (Ctrl-C): the downloads go with it; Gradio empties its own cache
            blocks.close()
    return blocks
