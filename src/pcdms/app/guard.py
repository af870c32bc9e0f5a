"""What the page refuses at its edge (issue 28): requests from other sites, and temporary files kept forever.

- `SameOrigin`: an ASGI middleware. A browser sends an `Origin` header with every cross-site POST; Gradio's CORS
  handling only hides the answer from the other site, the upload or job still happens. Here a request whose
  Origin is not the address the page is served from (`Host`) is refused with 403 before Gradio sees it, so
  another page open in the user's browser can neither upload files nor queue jobs. Requests without an Origin
  (scripts, `gradio_client`, the same page's GETs) pass: they are not a browser acting for another site.
- `DownloadFolders`: each job's downloads in a folder of its own under one temporary folder; folders older than
  `keep` seconds go when a new one is made, and the whole folder when the app exits. Gradio's own cache (uploads
  and the copies of results it serves) is bounded by `delete_cache` in `pcdms.app.page`.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from starlette.responses import PlainTextResponse

DOWNLOADS_KEPT_S = 3600  # a job's downloads stay this long (the page offers them until the next run)


class SameOrigin:
    """Refuse HTTP requests and websockets whose `Origin` is not the server's own address."""

    def __init__(self, app) -> None:  # noqa: ANN001 - an ASGI app
        self.app = app

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 - the ASGI interface
        if scope["type"] in ("http", "websocket") and not same_origin(dict(scope.get("headers") or [])):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            response = PlainTextResponse("cross-origin requests are refused by pcdms app", status_code=403)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def same_origin(headers: dict[bytes, bytes]) -> bool:
    """True when there is no Origin header, or its host:port is the request's Host."""
    origin = headers.get(b"origin")
    if origin is None:
        return True
    host = headers.get(b"host", b"").decode("latin-1").lower()
    return bool(host) and urlsplit(origin.decode("latin-1")).netloc.lower() == host


class DownloadFolders:
    """One temporary folder for the app's downloads, a subfolder per job (see the module docstring)."""

    def __init__(self, keep_s: float = DOWNLOADS_KEPT_S) -> None:
        self._root = tempfile.TemporaryDirectory(prefix="pcdms-app-")  # removed at exit, whatever happens
        self.root = Path(self._root.name)
        self.keep_s = keep_s

    def new(self) -> Path:
        """A fresh folder for one job, after removing the folders of jobs older than `keep_s`."""
        now = time.time()
        for folder in self.root.iterdir():
            if now - folder.stat().st_mtime > self.keep_s:
                shutil.rmtree(folder, ignore_errors=True)
        return Path(tempfile.mkdtemp(dir=self.root, prefix="job-"))

    def close(self) -> None:
        self._root.cleanup()
