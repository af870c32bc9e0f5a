"""`pcdms app`: serve the web page for trying pose transfer in a browser."""

from __future__ import annotations

import argparse

from pcdms.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    from pcdms.app import DEMO_MODEL, MAX_UPLOAD, PER_CLIENT, QUEUE_SIZE
    from pcdms.validation import int_in

    parser = subparsers.add_parser(
        "app", help="a web page: your photo, a target pose (gallery, photo or editor), the result",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"""\
Serve a page where anyone tries pose transfer (Gradio), on the shipped demo model or --model:
  1. source photo: upload one (decoded by content, up to {MAX_UPLOAD}; large photos are downscaled with a
     note) or pick a demo input; its pose is extracted at once and drawn over it;
  2. target pose: from the gallery of ready poses, from a second photo, and in the editor (drag a joint,
     hide/show a joint, mirror, reset); the editor shows exactly the skeleton image the model gets;
  3. settings: stages (full / B2 / B1), steps, guidance, seed, samples (1-4), refine strength;
  Run: the page scrolls to the result; while the job runs (Run disabled) it shows per-stage progress and
  the predicted clean image, then the coarse and final images whole, sized to the window, and
  downloads: the image, the target pose (OpenPose JSON) and a settings file that
  `pcdms generate --settings FILE --source PHOTO --out DIR` replays.
One job runs at a time; others wait in a queue (--queue-size) and see their place; one client address may
have --per-client jobs waiting or running, more are refused with a message. Binds to 127.0.0.1 (this machine
only) unless --host says otherwise, e.g. --host 0.0.0.0 to serve your network. Requests from other sites
(another page open in the browser) are refused. An upload is deleted once read; a shown picture or a job's
downloads when the next replaces it or the page is closed; everything after an hour and when the app stops.""")
    parser.add_argument("--model", default=str(DEMO_MODEL), help="a PCDMs model folder (default: the shipped demo model)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--queue-size", type=int_in(1, 1000), default=QUEUE_SIZE, metavar="N",
                        help=f"jobs that may wait at once; more are refused with a message (default {QUEUE_SIZE})")
    parser.add_argument("--per-client", type=int_in(1, 1000), default=PER_CLIENT, metavar="N",
                        help="jobs one client address may have waiting or running at once; more are refused with a "
                             f"message (default {PER_CLIENT}; behind a proxy every user has the proxy's address)")
    parser.set_defaults(func=run_app)


def run_app(args: argparse.Namespace) -> int:
    from pcdms.validation import resolve_device

    if not 0 < args.port < 65536:
        raise UserError(f"--port must be between 1 and 65535, got {args.port}")
    try:
        import gradio  # noqa: F401
    except ImportError as err:
        raise UserError(f"the app needs gradio (pip install 'gradio==6.31.0'): {err}") from None
    from pcdms.app import serve

    serve(args.model, args.host, args.port, resolve_device(args.device), block=True, queue_size=args.queue_size,
          per_client=args.per_client)
    return 0
