"""Poses on the app's page: the shipped gallery, photos' poses, the editor's state, overlays.

The editor works in the MODEL frame (the model's height x width): a target pose is mapped there the way
`PCDMsPipeline` maps it (`pcdms.framing.Fit`, identity for a pose already in that frame), and its render
(`Pose.render`) at that size is exactly the skeleton image stage 2 receives. Every joint keeps a position
even while hidden, so "show" puts it back where it was (or where a standing person has it).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pcdms.framing import Fit
from pcdms.imageio import ImageReadError, load_image
from pcdms.pose import JOINTS, NUM_JOINTS, Pose

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEMO_INPUTS = ASSETS / "demo" / "inputs"
DEFAULT_GALLERY_POSE = "front-standing"
MAX_UPLOAD_PIXELS = 40_000_000  # refused above this (a decompression bomb or a scan, not a photo)
MAX_SIDE = 1024  # longer side kept on the page; larger photos are downscaled with a note


class PhotoError(ValueError):
    """A photo the page cannot use; the message is shown in the page as is."""


@dataclass(frozen=True)
class Photo:
    """An uploaded photo as the page uses it, and the note to show about it (downscaled, ...)."""

    image: Image.Image
    note: str = ""


def read_photo(path: str | Path, display_name: str, max_side: int = MAX_SIDE) -> Photo:
    """Decode an upload by content, refuse huge or non-image files, downscale a large one (with a note)."""
    try:
        with Image.open(path) as header:
            width, height = header.size
    except Image.DecompressionBombError:  # PIL refuses to open it at all: far above the page's own cap
        raise PhotoError(f"{display_name} is too large (over {2 * Image.MAX_IMAGE_PIXELS // 1_000_000} MP); photos "
                         f"up to {MAX_UPLOAD_PIXELS // 1_000_000} MP are accepted") from None
    except Exception:  # noqa: BLE001 - PIL raises many types for non-images; all mean "not an image"
        raise PhotoError(f"{display_name} is not an image this page can read (PNG, JPEG, WebP, BMP, TIFF ...)") from None
    if width * height > MAX_UPLOAD_PIXELS:
        raise PhotoError(f"{display_name} is {width}x{height} px; photos up to {MAX_UPLOAD_PIXELS // 1_000_000} MP are accepted")
    try:  # read at full size (uploads are capped above): the note below names the photo's own size
        image = load_image(path, max_side=max(width, height))
    except ImageReadError:
        raise PhotoError(f"{display_name} is not an image this page can read") from None
    if max(image.size) <= max_side:
        return Photo(image)
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    note = f"{display_name} was downscaled from {image.width}x{image.height} to {size[0]}x{size[1]} px"
    return Photo(image.resize(size, Image.Resampling.LANCZOS), note)


def demo_inputs() -> dict[str, Path]:
    """The shipped demo photos by file name (the page offers names, never paths)."""
    return {path.name: path for path in sorted(DEMO_INPUTS.glob("*.png"))}


def to_model_frame(pose: Pose, height: int, width: int, stretch: bool = False) -> Pose:
    """The pose as the pipeline maps a target pose into its height x width frame."""
    return Fit.of(pose.width, pose.height, height, width, stretch).pose_in(pose, height, width)


def from_model_frame(pose: Pose, height: int, width: int, stretch: bool = False) -> Pose:
    """A pose in the model frame back in a `height` x `width` photo's frame: the inverse of `to_model_frame`
    for that photo (the padding `Fit` adds is taken off again; a joint placed in it lands outside the photo)."""
    fit = Fit.of(width, height, pose.height, pose.width, stretch)
    padded = pose.resized(fit.padded[1], fit.padded[0])
    return Pose(padded.xy - np.asarray(fit.offset, dtype=np.float32), padded.visible, height, width)


def overlay(image: Image.Image, pose: Pose) -> Image.Image:
    """The photo with its skeleton drawn over it (the pose must be in the photo's frame)."""
    render = pose.render(image.height, image.width)
    drawn = render.any(axis=2, keepdims=True)
    return Image.fromarray(np.where(drawn, render, np.asarray(image.convert("RGB"))).astype(np.uint8))


def png_data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


# ---------------------------------------------------------------------- editor state
def editor_value(pose: Pose, fallback: Pose | None = None) -> dict:
    """The editor's value: the frame, every joint (hidden ones at their last or a default place) and the
    render stage 2 will receive, as a PNG data URL at the model's size."""
    pose = Pose(np.round(pose.xy, 3), pose.visible, pose.height, pose.width)  # the page's JSON precision
    xy = pose.xy.copy()
    if fallback is not None:
        xy[~pose.visible] = fallback.resized(pose.height, pose.width).xy[~pose.visible]
    joints = [{"name": name, "x": float(x), "y": float(y), "visible": bool(seen)}
              for name, (x, y), seen in zip(JOINTS, xy, pose.visible)]
    render = Image.fromarray(pose.render())
    return {"height": pose.height, "width": pose.width, "joints": joints, "render": png_data_url(render),
            "radius": round(max(pose.height, pose.width) / 40, 3)}


def pose_from_editor(value: dict) -> Pose:
    """The editor's value -> the Pose the model gets; joints dragged outside the frame become missing."""
    joints = value["joints"]
    if len(joints) != NUM_JOINTS:
        raise ValueError(f"editor sent {len(joints)} joints, expected {NUM_JOINTS}")
    height, width = int(value["height"]), int(value["width"])
    xy = np.array([[float(j["x"]), float(j["y"])] for j in joints], dtype=np.float64)
    visible = np.array([bool(j["visible"]) for j in joints])
    pose = Pose(xy, visible, height, width)
    return Pose(pose.xy, pose.inside(), height, width)


def _keep_positions(value: dict) -> Pose:
    """All joints of the editor's value as if visible (their stored places), for hidden-joint recall."""
    joints = value["joints"]
    xy = np.array([[float(j["x"]), float(j["y"])] for j in joints], dtype=np.float64)
    return Pose(xy, np.ones(NUM_JOINTS, dtype=bool), int(value["height"]), int(value["width"]))


def toggle_joint(value: dict, joint: str) -> dict:
    """Hide a shown joint, or show a hidden one at its stored place."""
    if joint not in JOINTS:
        raise ValueError(f"unknown joint {joint!r}")
    pose = pose_from_editor(value)
    visible = pose.visible.copy()
    index = JOINTS.index(joint)
    visible[index] = not bool(value["joints"][index]["visible"])
    stored = _keep_positions(value)
    return editor_value(Pose(stored.xy, visible, pose.height, pose.width), stored)


def mirror(value: dict) -> dict:
    """Mirror left/right (x -> width - x, left and right joints swap), hidden joints included."""
    stored = _keep_positions(value).flipped()
    visible = pose_from_editor(value).flipped().visible
    return editor_value(Pose(stored.xy, visible, stored.height, stored.width), stored)


def refresh(value: dict) -> dict:
    """Re-render after a drag: the stored positions stay, the render follows them."""
    return editor_value(pose_from_editor(value), _keep_positions(value))
