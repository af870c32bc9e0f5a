"""What the page refuses or removes at its edge (issue 28): requests from other sites, more jobs from one client
than it may hold, and files no longer shown.

- `SameOrigin`: an ASGI middleware. A browser sends an `Origin` header with every cross-site POST; Gradio's CORS
  handling only hides the answer from the other site, the upload or job still happens. Here a request whose
  Origin is not the address the page is served from (`Host`) is refused with 403 before Gradio sees it, so
  another page open in the user's browser can neither upload files nor queue jobs. Requests without an Origin
  (scripts, `gradio_client`, the same page's GETs) pass: they are not a browser acting for another site.
- `BodyLimit`: an ASGI middleware. A request body other than an upload (JSON: an event's inputs, a cancel) is
  read up to `MAX_BODY` and refused with 413 beyond it, before Gradio parses it; uploads have Gradio's own
  cap (`max_file_size`), checked while they stream to disk.
- `ClientLimit`: at most N jobs queued or running per client address. A job is admitted when it is submitted
  (before Gradio queues it) and its place is freed when it ends, however it ends.
- `SessionFiles`: the files the page shows one browser session (its job's downloads, the process strip, the
  source photo with its pose), in folders of their own inside Gradio's cache, so Gradio serves them without a
  copy. A session's older folder of a kind is deleted when a newer one replaces it, all of a session's folders
  when its page is closed, folders older than `keep_s` when any new one is made, and everything when the app
  exits. Gradio's `delete_cache` sweep (`pcdms.app.page`) stays as the backstop for what Gradio writes itself.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from PIL import Image
from starlette.responses import PlainTextResponse

from pcdms.app import PER_CLIENT
from pcdms.errors import UserError

DOWNLOADS_KEPT_S = 3600  # backstop: a session's files are never kept longer than this
MAX_BODY = 1 << 20  # bytes of a request body other than an upload (an event's inputs are a few KiB)
STALE_S = 10.0  # an admitted job that has not started while the pipeline sat idle this long was dropped


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


class BodyLimit:
    """Refuse (413) an HTTP request body over `max_bytes`, uploads excepted; the body is read before the app
    sees it, so nothing parses a larger one."""

    def __init__(self, app, max_bytes: int = MAX_BODY) -> None:  # noqa: ANN001 - an ASGI app
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 - the ASGI interface
        if scope["type"] != "http" or scope["path"].rstrip("/").endswith("/upload"):
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        chunks, size = [], 0
        while True:  # also a body without a Content-Length (chunked) is counted as it comes
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body"):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send) -> None:  # noqa: ANN001
        response = PlainTextResponse(f"request body over {self.max_bytes // 1024} KiB refused by pcdms app",
                                     status_code=413)
        await response(scope, receive, send)


def same_origin(headers: dict[bytes, bytes]) -> bool:
    """True when there is no Origin header, or its host:port is the request's Host."""
    origin = headers.get(b"origin")
    if origin is None:
        return True
    host = headers.get(b"host", b"").decode("latin-1").lower()
    return bool(host) and urlsplit(origin.decode("latin-1")).netloc.lower() == host


# ---------------------------------------------------------------------- jobs per client
LOCAL = "in-process"  # the session and client of a handler called without a page (tests, scripts)


def session_of(request: object | None) -> str:
    """The page session a Gradio event came from (`gr.Request.session_hash`; a page view: files are kept per
    session)."""
    return getattr(request, "session_hash", None) or LOCAL


def client_of(request: object | None) -> str:
    """The address a Gradio event came from (`gr.Request.client.host`): jobs are limited per address, since a
    session is the client's own choice."""
    return getattr(getattr(request, "client", None), "host", None) or LOCAL


class TooManyJobs(UserError):
    """A client submitted a job while it already holds its limit of queued or running jobs."""


@dataclass(eq=False)  # each ticket is one job: compared by identity
class Ticket:
    """One admitted job: its client address, its page session, and whether its run has started."""

    client: str
    session: str
    admitted: float
    started: bool = False


class ClientLimit:
    """Count each client's queued and running jobs; refuse a job beyond `per_client`.

    `admit` when a job is submitted, `start` when its run begins, `finish` when it ends (however). A job Gradio
    drops before it runs (cancelled while waiting, its page closed) never starts; its ticket is stale once a job
    submitted after it starts (the queue is first in, first out), once its session ends (`end_session`), or once
    the pipeline has been idle for `stale_s` (an idle queue starts a job at once).
    """

    def __init__(self, per_client: int = PER_CLIENT, stale_s: float = STALE_S) -> None:
        if per_client < 1:
            raise UserError(f"the jobs per client must be at least 1, got {per_client}")
        self.per_client, self.stale_s = per_client, stale_s
        self._lock = threading.Lock()
        self._tickets: list[Ticket] = []  # in the order admitted, which is the queue's order
        self._idle_since = time.monotonic()

    def held(self, client: str) -> int:
        """The client's jobs now queued or running."""
        with self._lock:
            self._drop_stale()
            return sum(ticket.client == client for ticket in self._tickets)

    def check(self, client: str) -> None:
        """Raise `TooManyJobs` when the client holds its limit now (nothing is admitted)."""
        if self.held(client) >= self.per_client:
            raise TooManyJobs(self.refusal)

    def admit(self, client: str, session: str) -> Ticket:
        """Admit a job of this client (its `session`: the page it came from), or raise `TooManyJobs`."""
        with self._lock:
            self._drop_stale()
            if sum(ticket.client == client for ticket in self._tickets) >= self.per_client:
                raise TooManyJobs(self.refusal)
            ticket = Ticket(client, session, time.monotonic())
            self._tickets.append(ticket)
            return ticket

    def start(self, client: str, session: str) -> Ticket:
        """The run of this client's oldest admitted job of this session begins; jobs admitted before it that
        have not started were dropped from the queue. A run never admitted (called in-process) gets a ticket."""
        with self._lock:
            waiting = [t for t in self._tickets if not t.started]
            mine = next((t for t in waiting if (t.client, t.session) == (client, session)), None)
            if mine is None:
                mine = Ticket(client, session, time.monotonic())
                self._tickets.append(mine)
            else:
                dropped = waiting[:waiting.index(mine)]
                self._tickets = [t for t in self._tickets if t not in dropped]
            mine.started = True
            return mine

    def finish(self, ticket: Ticket) -> None:
        """The job has ended (result, error or cancelled): its place is free. Finishing twice is harmless."""
        with self._lock:
            self._tickets = [t for t in self._tickets if t is not ticket]
            if not any(t.started for t in self._tickets):
                self._idle_since = time.monotonic()

    def end_session(self, session: str) -> None:
        """The page of this session was closed: its jobs that have not started are dropped (Gradio drops them)."""
        with self._lock:
            self._tickets = [t for t in self._tickets if t.started or t.session != session]

    @property
    def refusal(self) -> str:
        """What a client over its limit is told."""
        return (f"you already have {self.per_client} job(s) waiting or running on this server (the limit per "
                "client): wait until one has finished")

    def _drop_stale(self) -> None:
        now = time.monotonic()
        if not any(t.started for t in self._tickets) and now - self._idle_since > self.stale_s:
            self._tickets = [t for t in self._tickets if now - t.admitted <= self.stale_s]


# ---------------------------------------------------------------------- files shown
def gradio_cache() -> Path:
    """Gradio's cache folder, as its docs define it: $GRADIO_TEMP_DIR, else <system temp>/gradio."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")


class SessionFiles:
    """Folders of the files shown to each page session (see the module docstring)."""

    def __init__(self, cache: Path | None = None, keep_s: float = DOWNLOADS_KEPT_S) -> None:
        cache = gradio_cache() if cache is None else Path(cache)
        cache.mkdir(parents=True, exist_ok=True)
        self._root = tempfile.TemporaryDirectory(prefix="pcdms-app-", dir=cache)  # removed at exit, whatever happens
        self.root = Path(self._root.name)
        self.keep_s = keep_s
        self._lock = threading.Lock()
        self._shown: dict[tuple[str, str], list[Path]] = {}  # (session, kind) -> its folders, newest last

    def new(self, session: str, kind: str, keep: int = 1) -> Path:
        """A fresh folder for a `kind` of file shown to `session` ("job", "process", ...); that session's folders of
        the kind beyond the newest `keep` (this one included) are deleted, and any folder older than `keep_s`."""
        folder = Path(tempfile.mkdtemp(dir=self.root, prefix=f"{kind}-"))
        with self._lock:
            shown = self._shown.setdefault((session, kind), [])
            shown.append(folder)
            replaced, shown[:] = shown[:-keep], shown[-keep:]
        for old in replaced:
            shutil.rmtree(old, ignore_errors=True)
        self._sweep()
        return folder

    def image(self, session: str, kind: str, image: Image.Image, keep: int = 1) -> str:
        """Save `image` as a PNG in a new folder of this kind (as `new`); -> its path, for a `gr.Image` output."""
        path = self.new(session, kind, keep) / f"{kind}.png"
        image.save(path)
        return str(path)

    def end(self, session: str) -> None:
        """Delete every folder of this session (its page was closed)."""
        with self._lock:
            gone = [key for key in self._shown if key[0] == session]
            folders = [folder for key in gone for folder in self._shown.pop(key)]
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)

    def _sweep(self) -> None:
        now = time.time()
        for folder in self.root.iterdir():
            try:
                if now - folder.stat().st_mtime > self.keep_s:
                    shutil.rmtree(folder, ignore_errors=True)
            except FileNotFoundError:  # removed by another thread meanwhile
                continue

    def close(self) -> None:
        self._root.cleanup()


def delete_upload(path: str | Path, cache: Path | None = None) -> bool:
    """Delete an upload the page has read into memory, and its folder when that is empty; only a file inside
    Gradio's cache is touched (never a path a request named elsewhere). -> whether it was deleted."""
    cache = (gradio_cache() if cache is None else Path(cache)).resolve()
    path = Path(path).resolve()
    if not path.is_file() or not path.is_relative_to(cache) or path.parent == cache:
        return False
    if path.relative_to(cache).parts[0].startswith("pcdms-app-"):  # a file this app shows, not an upload
        return False
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()  # Gradio keeps each upload in a folder named by its content's hash
    except OSError:  # not empty: another upload of the same content is there
        pass
    return True
