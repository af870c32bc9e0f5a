"""Video in and out through imageio-ffmpeg (its wheel ships an ffmpeg binary): frames of a video file, H.264 MP4
and GIF writers. No frame is encoded by hand here; the GIF is Pillow's."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pcdms.errors import UserError

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif", ".mpg", ".mpeg")


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    size: tuple[int, int]  # (width, height)
    frames: int  # as counted by decoding


def _why(err: BaseException) -> str:
    """ffmpeg's last line of complaint (its messages carry the whole banner)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1].rstrip(")") if lines else type(err).__name__


def _ffmpeg():
    import imageio_ffmpeg

    return imageio_ffmpeg


def read_frames(path: str | Path, limit: int | None = None) -> Iterator[np.ndarray]:
    """The frames of a video as uint8 (H, W, 3) RGB arrays, the first `limit` of them when given."""
    path = Path(path)
    try:
        reader = _ffmpeg().read_frames(str(path), pix_fmt="rgb24")
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration) as err:
        raise UserError(f"{path}: not a video ffmpeg can read ({_why(err)})") from None
    width, height = meta["size"]
    try:
        for index, data in enumerate(reader):
            if limit is not None and index >= limit:
                break
            yield np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)
    finally:
        reader.close()


def video_info(path: str | Path) -> VideoInfo:
    """Frame rate and size from the header, frame count by decoding (exact, where headers may not be)."""
    path = Path(path)
    try:
        reader = _ffmpeg().read_frames(str(path))
        meta = next(reader)
        reader.close()
        frames, _ = _ffmpeg().count_frames_and_secs(str(path))
    except (OSError, RuntimeError, StopIteration) as err:
        raise UserError(f"{path}: not a video ffmpeg can read ({_why(err)})") from None
    return VideoInfo(float(meta.get("fps") or 0.0), tuple(meta["size"]), int(frames))


def _even(frame: np.ndarray) -> np.ndarray:
    """H.264 in yuv420p needs even sides: repeat the last row/column where one is odd."""
    height, width = frame.shape[:2]
    return np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")


def write_mp4(frames: Sequence[Image.Image], path: str | Path, fps: float, crf: int = 18) -> Path:
    """H.264 MP4 (yuv420p, plays everywhere) via a temporary file renamed when complete. Odd sides are padded
    by one repeated pixel row/column."""
    path = Path(path)
    if not frames:
        raise ValueError("no frames to encode")
    arrays = [_even(np.asarray(f.convert("RGB"))) for f in frames]
    height, width = arrays[0].shape[:2]
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    writer = _ffmpeg().write_frames(str(tmp), (width, height), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                    quality=None, macro_block_size=1, output_params=["-crf", str(crf)])
    writer.send(None)
    for array in arrays:
        writer.send(np.ascontiguousarray(array))
    writer.close()
    os.replace(tmp, path)
    return path


def write_gif(frames: Sequence[Image.Image], path: str | Path, fps: float) -> Path:
    """A looping GIF (Pillow), each frame shown 1/fps s (GIF counts in 10 ms units)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    first, *rest = [f.convert("RGB") for f in frames]
    first.save(tmp, format="GIF", save_all=True, append_images=rest, duration=max(20, round(1000 / fps)), loop=0)
    os.replace(tmp, path)
    return path
