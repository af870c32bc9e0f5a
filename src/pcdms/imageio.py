"""Reading images the one way every module uses: by content, in any mode, upright.

Photos reach this project from many sources (DeepFashion JPEGs, PNG exports with alpha, 16-bit scans,
phone pictures with EXIF rotation), and the pose frame of an image must be the frame its pixels are
shown in. `load_image` therefore decodes by content (not by the file extension), applies the EXIF
orientation, and returns 8-bit RGB. See `shared/REFERENCE.md` Sec. 4 for the datasets it serves.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pcdms.errors import UserError, warn

#: Transparent pixels become this colour: the studio-white backgrounds of DeepFashion.
BACKGROUND = (255, 255, 255)

#: Working size: a photo whose longer side exceeds this is downscaled on read (aspect kept), once, with a
#: warning. The models work at 256-512 px; DeepFashion's high-resolution images (750x1101) pass unchanged.
MAX_SIDE = 2048

#: No file this project writes exceeds this many pixels: PIL's default limit (it warns above it and refuses
#: twice that), so every image library opens our outputs without changing its settings.
MAX_WRITE_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485

_said_downscaled = False


class ImageReadError(UserError):
    """A file that is missing, not an image, or a truncated/corrupt image."""


def load_image(path: str | Path, max_side: int = MAX_SIDE) -> Image.Image:
    """Decode `path` by content and return an upright 8-bit RGB PIL image.

    - EXIF orientation is applied, so width/height are those a viewer shows.
    - Alpha (RGBA, LA, palette transparency) is composited over white.
    - 16-bit and 32-bit integer images are scaled to 0..255 by their bit depth; float images are taken
      as [0, 1] when their maximum is <= 1, else as [0, 255].
    - A longer side above `max_side` (default `MAX_SIDE`) is downscaled to it, aspect kept (JPEGs are decoded
      at reduced size directly); the first time, an `InputWarning` says so.
    Raises `ImageReadError` (a `UserError`) naming the file when it cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: image file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # big photos are downscaled below
            with Image.open(path) as opened:
                original = opened.size
                if max(opened.size) > max_side:
                    opened.draft("RGB", _fit_side(opened.size, max_side))  # JPEG: decode at 1/2, 1/4 or 1/8
                opened.load()
                image = ImageOps.exif_transpose(opened)
    except Image.DecompressionBombError as err:
        raise ImageReadError(f"{path}: too large to decode safely ({err})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"{path}: not a readable image ({err})") from None
    return _downscaled(to_rgb(image), path, max_side, original)


def save_atomic(image: Image.Image, path: Path) -> None:
    """Write a PNG to a temporary name beside `path`, then rename: a reader (or a resumed job that skips
    finished files) never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)


def _fit_side(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    scale = max_side / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _downscaled(image: Image.Image, path: Path, max_side: int, original: tuple[int, int]) -> Image.Image:
    if max(image.size) <= max_side:
        return image
    global _said_downscaled
    if not _said_downscaled:
        _said_downscaled = True
        warn(f"{path} is {original[0]}x{original[1]}: photos larger than {max_side} px on the longer side are "
             f"downscaled on read to {max_side} px (said once; outputs come back at the downscaled size)")
    return image.resize(_fit_side(image.size, max_side), Image.Resampling.LANCZOS)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB (see `load_image` for the rules)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return Image.fromarray(_wide_to_uint8(np.asarray(image), mode)).convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def _wide_to_uint8(array: np.ndarray, mode: str) -> np.ndarray:
    values = array.astype(np.float64)
    if mode == "F":
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
    elif mode.startswith("I;16"):
        scale = 255.0 / 65535.0
    else:
        # mode "I" holds 16-bit PNGs (values up to 65535) as well as 8-bit data widened by PIL
        peak = values.max() if values.size else 0.0
        scale = 255.0 / 65535.0 if peak > 255 else 1.0
    return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)


def is_image_file(path: str | Path) -> bool:
    """True when PIL recognises the file's content as an image (the extension is not consulted)."""
    try:
        with Image.open(path) as opened:
            opened.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return False
    return True


def center_crop_to_aspect(image: Image.Image, height: int, width: int, tolerance: float = 0.01) -> Image.Image:
    """Crop the centre of `image` to the aspect width/height of a `height` x `width` frame.

    This is how an annotation frame maps onto an image file whose aspect differs from it: the GFLA
    DeepFashion images are 256x256 with 40-pixel white bars, and their keypoints, moved 40 px left,
    describe the centre 176 columns. Aspects within `tolerance` (relative) are left alone.
    """
    img_w, img_h = image.size
    target = width / height
    current = img_w / img_h
    if abs(current - target) <= tolerance * target:
        return image
    if current > target:  # too wide: keep the centre columns
        new_w = round(img_h * target)
        left = (img_w - new_w) // 2
        return image.crop((left, 0, left + new_w, img_h))
    new_h = round(img_w / target)
    top = (img_h - new_h) // 2
    return image.crop((0, top, img_w, top + new_h))
