"""Settings files: what one generation used, so that `pcdms generate --settings FILE` makes it again.

`pcdms app` writes one beside every result. It holds the sampling settings (stages, steps, guidance, seed,
samples, refine strength), both poses exactly as the pipeline received them and the model's name; the
source photo is not inside (`--source` names it) but its size and a hash of its pixels are, so a replay on
another photo is refused rather than silently different. JSON, versioned, every field checked on reading.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pcdms.configio import shown
from pcdms.errors import UserError
from pcdms.pose import NUM_JOINTS, Pose
from pcdms.validation import FRAME_SIDE as SIDE
from pcdms.validation import RUN_SETTING_RANGES

FORMAT = "pcdms-settings"
VERSION = 1
STAGE_CHOICES = ("full", "B1", "B2", "B3")


@dataclass(frozen=True)
class RunSettings:
    """One generation's settings. steps/guidance/refine_strength None = the model's config."""

    target_pose: Pose
    source_pose: Pose | None = None
    stages: str = "full"
    steps: int | None = None
    guidance: float | None = None
    seed: int = 0
    num_samples: int = 1
    refine_strength: float | None = None
    model: str = "demo"
    source_size: tuple[int, int] | None = None  # (width, height)
    source_pixels_sha256: str | None = None


def pixels_sha256(image: Image.Image) -> str:
    """Hash of an image's 8-bit RGB pixels and size (not of its file: PNG/JPEG bytes may differ)."""
    rgb = image.convert("RGB")
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(np.asarray(rgb, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def pose_to_dict(pose: Pose) -> dict:
    points = [[round(float(x), 4), round(float(y), 4)] if seen else None
              for (x, y), seen in zip(pose.xy, pose.visible)]
    return {"height": pose.height, "width": pose.width, "keypoints": points}


def pose_from_dict(data: object, where: str) -> Pose:
    try:
        points = data["keypoints"]  # type: ignore[index]
        if len(points) != NUM_JOINTS:
            raise ValueError(f"{len(points)} keypoints, expected {NUM_JOINTS}")
        visible = np.array([p is not None for p in points])
        xy = np.array([p if p is not None else (0.0, 0.0) for p in points], dtype=np.float32).reshape(NUM_JOINTS, 2)
        height, width = data["height"], data["width"]  # type: ignore[index]
        if not (SIDE.allows(height) and SIDE.allows(width)):
            raise ValueError(f"height and width must each be {SIDE.describe()}, got {shown(height)} x {shown(width)}")
        return Pose(xy, visible, int(height), int(width))
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"{where}: expected {{height, width, keypoints: 18 x [x, y] or null}} ({err})") from None


def write_settings(path: str | Path, settings: RunSettings) -> Path:
    data = {
        "format": FORMAT, "version": VERSION, "model": settings.model, "stages": settings.stages,
        "steps": settings.steps, "guidance": settings.guidance, "seed": settings.seed,
        "num_samples": settings.num_samples, "refine_strength": settings.refine_strength,
        "target_pose": pose_to_dict(settings.target_pose),
        "source_pose": None if settings.source_pose is None else pose_to_dict(settings.source_pose),
        "source_size": None if settings.source_size is None else list(settings.source_size),
        "source_pixels_sha256": settings.source_pixels_sha256,
        "replay": "pcdms generate --settings THIS_FILE --source YOUR_PHOTO --out OUT_DIR",
    }
    path = Path(path)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def read_settings(path: str | Path) -> RunSettings:
    """Parse and check a settings file; any problem is a UserError naming the file and the field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as err:  # RecursionError: nested deeper than Python's stack
        raise UserError(f"{path}: not a readable settings JSON file ({shown(str(err))})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{path}: not a pcdms settings file (expected \"format\": \"{FORMAT}\")")
    if data.get("version") != VERSION:
        raise UserError(f"{path}: settings version {data.get('version')!r}; this pcdms reads version {VERSION}")

    def field(name: str, kind: type | tuple, optional: bool = False):
        value = data.get(name)
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, kind):
            raise UserError(f"{path}: field '{name}' should be {getattr(kind, '__name__', 'a number')}, got "
                            f"{shown(value)}")
        return value

    def number(name: str):  # the ranges `pcdms generate` applies to the same settings
        value, rule = data.get(name), RUN_SETTING_RANGES[name]
        if not rule.allows(value):
            raise UserError(f"{path}: field '{name}' must be {rule.describe()}, got {shown(value)}")
        return value

    stages = field("stages", str)
    if stages not in STAGE_CHOICES:
        raise UserError(f"{path}: field 'stages' is {stages!r}; expected one of {', '.join(STAGE_CHOICES)}")
    size = data.get("source_size")
    if size is not None and not (isinstance(size, list) and len(size) == 2 and all(SIDE.allows(v) for v in size)):
        raise UserError(f"{path}: field 'source_size' must be null or [width, height], each {SIDE.describe()}, "
                        f"got {shown(size)}")
    return RunSettings(
        target_pose=pose_from_dict(data.get("target_pose"), f"{path}: field 'target_pose'"),
        source_pose=None if data.get("source_pose") is None else pose_from_dict(data["source_pose"], f"{path}: field 'source_pose'"),
        stages=stages, steps=number("steps"), guidance=number("guidance"), seed=number("seed"),
        num_samples=number("num_samples"), refine_strength=number("refine_strength"), model=field("model", str),
        source_size=None if size is None else (int(size[0]), int(size[1])),
        source_pixels_sha256=field("source_pixels_sha256", str, True),
    )


def check_source(settings: RunSettings, image: Image.Image, what: str) -> None:
    """Refuse a source photo other than the one the settings were made with (when the file records it)."""
    if settings.source_pixels_sha256 is None or pixels_sha256(image) == settings.source_pixels_sha256:
        return
    made = f"{settings.source_size[0]}x{settings.source_size[1]}" if settings.source_size else "another"
    raise UserError(f"{what} ({image.width}x{image.height}) is not the photo these settings were made with "
                    f"({made} px, as the app used it: download it from the app or pass the same file)")
