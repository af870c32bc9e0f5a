"""How long jobs say what they are doing: a bar in a terminal, plain lines in a log file, JSON lines for scripts.

Every long job (train, export-coarse, generate, refine, evaluate, data check, ...) reports through `Progress`:

- `bar`: an interactive tqdm bar, when stdout and stderr are both terminals;
- `lines`: with `--no-progress`, or when output goes to a file or a pipe (a cluster job, `nohup`), one plain line
  every `every_steps` steps or `every_seconds` seconds, whichever comes first, and one at the end; no carriage
  returns, so a log file reads top to bottom;
- `off`: nothing (library calls that were not asked to report).

On multi-process runs only the main process reports (the others pass `enabled=False`). Each record a line
shows can also be appended, as one JSON object, to a file (training: `<run>/logs/progress.jsonl`). The
libraries' own bars (transformers' "Loading weights", diffusers, huggingface_hub) follow the same switch
through their public switches (`quiet_library_bars`).

Under the command line those bars stay hidden even in a terminal, with the rest of the libraries' chatter
(MediaPipe's TensorFlow Lite and absl lines, transformers' log warnings), unless `--verbose`:
`quiet_third_party` sets the libraries' own switches before they are imported, and filters what their C++
code writes straight to the process's stderr (MediaPipe's absl logs ignore every switch before
`absl::InitializeLog`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, TextIO

Mode = Literal["bar", "lines", "off"]
MODES = ("bar", "lines", "off")


# while `quiet_third_party` filters descriptor 2 through a pipe: whether the real stderr is a terminal
_filtered_stderr_is_terminal: bool | None = None


def _is_terminal(stream: Any) -> bool:
    if _filtered_stderr_is_terminal is not None and _descriptor(stream) == 2:
        return _filtered_stderr_is_terminal
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


def _descriptor(stream: Any) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, ValueError, OSError):  # streams without one (io.StringIO, pytest's capture)
        return None


def choose_mode(no_progress: bool = False) -> Mode:
    """The mode for a command: `lines` with --no-progress or when stdout or stderr is not a terminal, else `bar`."""
    if no_progress or not (_is_terminal(sys.stdout) and _is_terminal(sys.stderr)):
        return "lines"
    return "bar"


def resolve_mode(progress: bool | str) -> Mode:
    """A function's `progress` argument -> a mode: True = as the terminal allows, False = off, or a mode name."""
    if progress is True:
        return choose_mode()
    if progress is False:
        return "off"
    if progress not in MODES:
        raise ValueError(f"progress must be a bool or one of {', '.join(MODES)}, got {progress!r}")
    return progress  # type: ignore[return-value]


def quiet_library_bars(mode: Mode, is_main: bool = True) -> None:
    """Silence the bars of transformers, diffusers and huggingface_hub unless this process shows a `bar`.

    Only ever disables (enabling would override a user's HF_HUB_DISABLE_PROGRESS_BARS).
    """
    if mode == "bar" and is_main:
        return
    import diffusers.utils.logging
    import huggingface_hub.utils
    import transformers.utils.logging

    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()


def peak_memory(device: Any = None) -> tuple[int, str] | None:
    """(bytes, what) of this process's peak memory: the GPU's allocator on CUDA, else the peak resident set."""
    import torch

    if device is not None and torch.device(device).type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "peak GPU mem"
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return None
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return int(kib) * (1 if sys.platform == "darwin" else 1024), "peak RAM"


def format_duration(seconds: float) -> str:
    """3725 -> '1h02m05s', 65 -> '1m05s', 4.2 -> '4s'."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def format_bytes(count: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count / 2**10:.0f} KiB"


def _format_field(name: str, value: Any) -> str:
    if isinstance(value, float):
        if name == "loss":
            return f"{name} {value:.4f}"
        if name == "lr":
            return f"{name} {value:.2e}"
        return f"{name} {value:.4g}"
    return f"{name} {value}"


class Progress:
    """Progress of one job of `total` units (steps, pairs, images), in the chosen `mode`.

    `update(n, **fields)` advances by n and shows `fields` (e.g. loss, lr). In `lines` mode a line is printed
    at each multiple of `every_steps` (default: every 10%), when `every_seconds` have passed since the last one,
    on the first update and at the end. Wrap the data iterator with `timed(...)` to report the share of time spent waiting for data; pass
    `memory_device` to report peak memory. `jsonl`: also append each record to this file.
    """

    def __init__(self, total: int, desc: str, unit: str = "step", mode: Mode = "lines", initial: int = 0,
                 every_steps: int | None = None, every_seconds: float = 60.0, jsonl: str | Path | None = None,
                 enabled: bool = True, memory_device: Any = None, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.mode: Mode = mode if enabled else "off"
        self.every_steps = every_steps if every_steps is not None else max(1, math.ceil(total / 10))
        self.every_seconds = every_seconds
        self.memory_device, self.clock = memory_device, clock
        self.stream = stream
        self.n = self.initial = initial
        self.fields: dict[str, Any] = {}
        self.started = self.last_time = clock()
        self.last_n = initial
        self.waiting = 0.0  # seconds spent waiting for data since the last record
        self.tracks_waiting = False
        self.closed = False
        self.jsonl = Path(jsonl) if jsonl is not None and self.mode != "off" else None
        if self.jsonl is not None:
            self.jsonl.parent.mkdir(parents=True, exist_ok=True)
        self.bar = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)

    def timed(self, iterable: Iterable) -> Iterator:
        """Yield from `iterable`, counting the time spent inside its `next()` as waiting for data."""
        self.tracks_waiting = True
        iterator = iter(iterable)
        while True:
            start = self.clock()
            try:
                item = next(iterator)
            except StopIteration:
                return
            finally:
                self.waiting += self.clock() - start
            yield item

    def update(self, n: int = 1, **fields: Any) -> None:
        self.n += n
        self.fields.update(fields)
        if self.mode == "off":
            return
        if self.bar is not None:
            self.bar.update(n)
            if fields:
                self.bar.set_postfix({k: _format_field(k, v).split(" ", 1)[1] for k, v in self.fields.items()},
                                     refresh=False)
        now = self.clock()
        first = self.last_n == self.initial and self.n > self.initial
        crossed = self.n // self.every_steps > self.last_n // self.every_steps  # lines at multiples of it
        if first or crossed or now - self.last_time >= self.every_seconds or self.n >= self.total:
            self._report(now)

    def record(self, now: float | None = None) -> dict[str, Any]:
        """What a line shows, as numbers: units done, total, fields, rate, data-wait share, memory, ETA."""
        now = self.clock() if now is None else now
        window = max(now - self.last_time, 1e-9)
        done = self.n - self.initial
        elapsed = now - self.started
        eta = (self.total - self.n) * elapsed / done if done > 0 else math.inf
        record: dict[str, Any] = {self.unit: self.n, "total": self.total, **self.fields,
                                  f"{self.unit}s_per_s": (self.n - self.last_n) / window}
        if self.tracks_waiting:
            record["data_wait_share"] = min(1.0, self.waiting / window)
        memory = peak_memory(self.memory_device) if self.memory_device is not None else None
        if memory is not None:
            record["peak_memory_bytes"], record["memory_kind"] = memory
        record.update(elapsed_s=elapsed, eta_s=eta if math.isfinite(eta) else None)
        return record

    def line(self, record: dict[str, Any]) -> str:
        """One plain line for a record, e.g. 'train inpaint: step 20/2000 (1%) | loss 0.0312 | ... | ETA 21m43s'."""
        n, total = record[self.unit], record["total"]
        parts = [f"{self.desc}: {self.unit} {n}/{total} ({100 * n / max(total, 1):.0f}%)"]
        parts += [_format_field(k, v) for k, v in self.fields.items()]
        parts.append(f"{record[f'{self.unit}s_per_s']:.3g} {self.unit}/s")
        if "data_wait_share" in record:
            parts.append(f"data wait {100 * record['data_wait_share']:.0f}%")
        if "peak_memory_bytes" in record:
            parts.append(f"{record['memory_kind']} {format_bytes(record['peak_memory_bytes'])}")
        parts.append(f"elapsed {format_duration(record['elapsed_s'])}")
        parts.append(f"ETA {format_duration(record['eta_s'] if record['eta_s'] is not None else math.inf)}")
        return " | ".join(parts)

    def _report(self, now: float) -> None:
        record = self.record(now)
        if self.mode == "lines":
            print(self.line(record), file=self.stream or sys.stdout, flush=True)
        if self.jsonl is not None:
            with self.jsonl.open("a", encoding="utf-8") as file:
                file.write(json.dumps({"desc": self.desc, "time": time.time(), **record}) + "\n")
        self.last_time, self.last_n, self.waiting = now, self.n, 0.0

    def write(self, message: str) -> None:
        """A message that does not break the bar (nothing when this process does not report)."""
        if self.bar is not None:
            self.bar.write(message)
        elif self.mode != "off":
            print(message, file=self.stream or sys.stdout, flush=True)

    def close(self) -> None:
        """Finish: a last line when something happened since the previous one."""
        if self.closed:
            return
        self.closed = True
        if self.mode != "off" and self.n != self.last_n:
            self._report(self.clock())
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def say(text: str, mode: Mode, is_main: bool = True) -> None:
    """Print a job's own message (start-up summary, result) on the main process unless reporting is off."""
    if mode != "off" and is_main:
        print(text, flush=True)


# ---------------------------------------------------------------------- third-party noise
#: set (unless the user set them) before the libraries are imported, which read them then
QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # TensorFlow's C++ logs
    "GLOG_minloglevel": "2",  # glog: errors only
    "TRANSFORMERS_VERBOSITY": "error",
    "DIFFUSERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # huggingface_hub's bars, and transformers' "Loading weights"
}
#: whole lines of third-party noise: glog/absl info and warning lines, TensorFlow Lite's start-up notes
NOISE_LINE = re.compile(
    rb"[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^ \]]+:\d+\] "
    rb"|INFO: (?:Created|Initialized) TensorFlow Lite"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR")


def _may_become_noise(start: bytes) -> bool:
    """Whether an unfinished line could still turn out to be a `NOISE_LINE` (then it is held back)."""
    if len(start) > 4096:
        return False
    if any(word.startswith(start) or start.startswith(word) for word in (b"INFO: ", b"WARNING: ")):
        return True
    return bool(re.match(rb"[IW](?:\d|$)", start))  # a glog/absl line: severity letter, then the date


@contextlib.contextmanager
def quiet_third_party(verbose: bool = False) -> Iterator[None]:
    """Within the block, third-party libraries keep quiet (module docstring); nothing changes when `verbose`.

    The environment is restored afterwards; libraries already imported get their public switches instead
    (transformers, diffusers, huggingface_hub bars and warnings; absl's Python logger).
    """
    if verbose:
        yield
        return
    added = {key: value for key, value in QUIET_ENV.items() if key not in os.environ}
    os.environ.update(added)
    logging.getLogger("absl").setLevel(logging.ERROR)
    for name in ("transformers.utils.logging", "diffusers.utils.logging"):
        library = sys.modules.get(name)  # imported already: too late for the environment
        if library is not None:
            library.set_verbosity_error()
            library.disable_progress_bar()
    if "huggingface_hub.utils" in sys.modules:
        sys.modules["huggingface_hub.utils"].disable_progress_bars()
    try:
        with _filtered_stderr(NOISE_LINE):
            yield
    finally:
        for key in added:
            os.environ.pop(key, None)


@contextlib.contextmanager
def _filtered_stderr(noise: re.Pattern) -> Iterator[None]:
    """File descriptor 2 goes through a pipe whose reader drops lines matching `noise` and passes the rest on
    as they come (a progress bar's unfinished line included). No-op when stderr has no descriptor."""
    try:
        sys.stderr.flush()
        original = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    global _filtered_stderr_is_terminal
    outer, _filtered_stderr_is_terminal = _filtered_stderr_is_terminal, os.isatty(original)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    reader = threading.Thread(target=_pass_on, args=(read_end, original, noise), daemon=True)
    reader.start()
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        _filtered_stderr_is_terminal = outer
        os.dup2(original, 2)  # closes the pipe's last write end: the reader sees its end and finishes
        reader.join(timeout=2.0)
        if not reader.is_alive():  # else a child process still holds the pipe: the reader keeps `original`
            os.close(original)


def _pass_on(read_end: int, target: int, noise: re.Pattern) -> None:
    """Copy `read_end` to `target` until end of file, dropping whole lines that match `noise`. A line's start
    that cannot become noise is passed on at once (a progress bar redraws one line without ending it)."""
    held, passing = b"", False  # the current line so far; whether it was already judged not noise
    try:
        while chunk := os.read(read_end, 65536):
            pieces = re.split(rb"(?<=[\r\n])", held + chunk)
            held = pieces.pop()  # the unfinished line ('' when the chunk ended a line)
            for line in pieces:
                if passing or not noise.match(line):
                    _write(target, line)
                passing = False
            if held and (passing or not _may_become_noise(held)):
                _write(target, held)
                held, passing = b"", True
        if held and not noise.match(held):
            _write(target, held)
    except Exception:  # noqa: BLE001 - never leave the writers without a reader: pass the rest on as it is
        with contextlib.suppress(OSError):
            _write(target, held)
            while chunk := os.read(read_end, 65536):
                _write(target, chunk)
    finally:
        os.close(read_end)


def _write(target: int, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the real stderr is gone: the text is dropped, the pipe still drained
        os.write(target, data)
