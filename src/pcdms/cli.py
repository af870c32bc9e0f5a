"""`pcdms` command line: one sub-command per job, each defined in `pcdms.commands.<name>`.

`main(argv)` is callable in-process (the tests use it). Heavy libraries (torch, diffusers) are
imported inside the command functions, so `pcdms --help` stays fast. A `UserError` is printed as
one line on stderr with exit status 2; nothing else is caught. Third-party libraries' log lines and
bars are hidden unless `--verbose` (`pcdms.progress.quiet_third_party`). A run that fails leaves no
empty `--out` folder behind that it created itself.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import pkgutil
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from pcdms.errors import InputWarning, UserError

VERBOSE = "--verbose"
# what a run writes before it does any work; a failed run's new --out folder holding only these is removed
BOOKKEEPING = {"config.yaml", "animation.json"}


def command_modules() -> list[str]:
    """Every module in `pcdms.commands` that defines `register(subparsers)` (adds a parser, sets `func`)."""
    import pcdms.commands

    return sorted(m.name for m in pkgutil.iter_modules(pcdms.commands.__path__) if m.name != "common")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pcdms",
        description=(
            "PCDMs: pose-guided person image synthesis with three progressive diffusion stages "
            "(prior -> inpaint -> refine). Run `pcdms <command> --help` for each command."
        ),
    )
    from pcdms import __version__

    parser.add_argument("--version", action="version", version=f"pcdms {__version__}")
    parser.add_argument(VERBOSE, action="store_true",
                        help="show third-party libraries' log lines and progress bars (MediaPipe/TensorFlow Lite, "
                             "absl, transformers' 'Loading weights'), hidden by default; also accepted after the "
                             "command, e.g. `pcdms generate ... --verbose`")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for name in command_modules():
        importlib.import_module(f"pcdms.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(list(argv) if argv is not None else None)
    if VERBOSE in extra:  # given after the command: its parser left it over
        args.verbose = True
        extra = [a for a in extra if a != VERBOSE]
    # key=value overrides may come after options too (argparse stops collecting positionals at an option)
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    if len(overrides) != len(extra) or (overrides and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(a for a in extra if a not in overrides or not hasattr(args, 'overrides'))}")
    if overrides:
        args.overrides = list(args.overrides) + overrides
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0 if args.command is None else 2
    from pcdms.progress import quiet_third_party

    try:
        with warnings.catch_warnings(), quiet_third_party(args.verbose), \
                _no_empty_output(getattr(args, "out", None)) as outcome:
            warnings.simplefilter("always", InputWarning)
            warnings.showwarning = _show_warning(args.command)
            status = args.func(args)
            outcome["ok"] = not status
    except UserError as err:
        print(f"pcdms {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pcdms {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


@contextlib.contextmanager
def _no_empty_output(out: str | Path | None) -> Iterator[dict[str, bool]]:
    """Unless the block sets `outcome["ok"]` (the command succeeded), remove the `--out` folder, with the
    parents it needed, when this run created them and wrote nothing there but `BOOKKEEPING` files and empty
    folders. A folder that existed before the run is never touched."""
    outcome = {"ok": False}
    created = None  # the topmost folder of `out` that does not exist yet
    if isinstance(out, (str, Path)) and str(out):
        path = Path(out).expanduser().absolute()
        for folder in (path, *path.parents):
            if folder.exists() or folder.is_symlink():
                break
            created = folder
    try:
        yield outcome
    finally:
        if not outcome["ok"] and created is not None:
            _remove_if_unused(created)


def _remove_if_unused(folder: Path) -> None:
    """Remove `folder` when it holds only `BOOKKEEPING` files and folders (deepest first); else leave it all."""
    if not folder.is_dir() or folder.is_symlink():
        return
    paths = sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True)
    if any(p.is_symlink() or not p.is_dir() and p.name not in BOOKKEEPING for p in paths):
        return
    with contextlib.suppress(OSError):  # something appeared meanwhile: keep what is left
        for path in paths:
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink()
        folder.rmdir()


def _show_warning(command: str):
    """InputWarnings as one line on stderr; any other warning as Python prints it."""
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, InputWarning):
            print(f"pcdms {command}: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)
    return show


def main_entry() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    main_entry()
