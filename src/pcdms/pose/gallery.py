"""The shipped gallery of ready target poses: `assets/poses/<name>.json`, looked up by name.

The poses are OpenPose COCO-18 JSON in DeepFashion's 256x176 frame (`scripts/make_pose_gallery.py` writes
them). The command line (`--target-pose NAME`, `pcdms pose gallery`) and the app find them here, so a name
means the same pose everywhere. A pose argument is a gallery name first, else a file path
(`resolve_pose_file`).
"""

from __future__ import annotations

import difflib
from pathlib import Path

from pcdms.errors import UserError
from pcdms.pose import Pose, read_openpose_json

GALLERY_DIR = Path(__file__).resolve().parents[1] / "assets" / "poses"
LIST_HINT = "`pcdms pose gallery` lists the gallery's pose names"
VIEWS = ("front", "back", "side", "three-quarter")

#: what each shipped pose shows; "right"/"left" are the person's own, as in OpenPose
DESCRIPTIONS = {
    "front-standing": "standing, arms at the sides",
    "front-arms-raised": "both arms raised overhead",
    "front-arms-out": "arms held out to the sides",
    "front-hands-on-hips": "hands on hips",
    "front-waving": "right forearm up, waving",
    "front-one-arm-up": "left arm straight up",
    "front-wide-stance": "feet apart, arms a little out",
    "front-walking": "mid-stride, one knee bent",
    "three-quarter": "standing, turned partly to the side",
    "back-standing": "standing, seen from behind",
    "back-arms-raised": "both arms raised, seen from behind",
    "back-walking": "mid-stride, seen from behind",
    "side-standing": "standing in profile, facing the image's left",
    "side-walking": "walking in profile, facing the image's left",
    "side-reaching": "arms reaching forward, facing the image's left",
    "side-standing-mirrored": "standing in profile, facing the image's right",
}


def gallery_names() -> list[str]:
    """The names of the gallery's poses, in name order."""
    return sorted(path.stem for path in GALLERY_DIR.glob("*.json"))


def gallery_path(name: str) -> Path | None:
    """The JSON file of gallery pose `name`, or None when there is no such pose."""
    path = GALLERY_DIR / f"{name}.json"
    return path if name in gallery_names() else None


def gallery() -> dict[str, Pose]:
    """Every gallery pose by name, in name order (files that list no person are left out)."""
    poses = {name: read_openpose_json(GALLERY_DIR / f"{name}.json") for name in gallery_names()}
    return {name: pose for name, pose in poses.items() if pose is not None}


def view(name: str) -> str:
    """The view a gallery pose is seen from, read from its name (front, back, side, three-quarter)."""
    return next((v for v in VIEWS if name == v or name.startswith(f"{v}-")), "")


def describe(name: str) -> str:
    """A short description of a gallery pose (its name's words when it has none of its own)."""
    return DESCRIPTIONS.get(name) or name.removeprefix(view(name)).strip("-").replace("-", " ") or "-"


def resolve_pose_file(value: str, what: str) -> Path:
    """A pose argument -> its file: a gallery pose by name, else the path as given.

    Raises a one-line UserError naming `what` (the option) when it is neither, with the nearest gallery
    names and how to list them all.
    """
    found = gallery_path(value)
    if found is not None:
        return found
    path = Path(value).expanduser()
    if path.is_file():
        return path
    near = difflib.get_close_matches(value, gallery_names(), n=3)
    hint = f"did you mean {' or '.join(near)}? " if near else ""
    raise UserError(f"{what} '{value}' is neither a file nor a gallery pose name; {hint}{LIST_HINT}")
