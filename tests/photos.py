"""Real photos for the tests, taken from what the installed dependencies ship, so a bare clone has them.

`make_samples(folder)` writes the files the tests know by name:
- img1.png: scikit-image's `astronaut()` (Eileen Collins, NASA, public domain): a person seen from the front,
  head to chest; MediaPipe finds head and shoulders, no hips or legs.
- img2.png: scikit-image's `camera()` (the "cameraman", grey, saved as RGB): a person seen to the knees; MediaPipe
  finds the hips and one knee.
- img4.png: matplotlib's `grace_hopper.jpg` (public domain): a portrait, head and shoulders.
- img3.png, img5.png: scikit-image's `chelsea()` (a cat) and `coffee()` (a cup): photos with no person in them.
- pose1.png .. pose6.png: skeleton renders of six poses of the gallery the package ships (`assets/poses`), drawn by
  the project's renderer at 256x176, as a dataset's pose images are.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.cbook
import numpy as np
import skimage.data
from PIL import Image

from pcdms.pose import read_openpose_json

GALLERY = Path(__file__).resolve().parents[1] / "src" / "pcdms" / "assets" / "poses"
POSES = ("front-standing", "front-walking", "side-walking", "back-standing", "front-arms-raised", "three-quarter")
PEOPLE = ("img1", "img2", "img4")  # photos in which MediaPipe finds a person
NO_PERSON = ("img3", "img5")


def _photos() -> dict[str, Image.Image]:
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = Image.open(f).convert("RGB")
    return {
        "img1": Image.fromarray(skimage.data.astronaut()),
        "img2": Image.fromarray(skimage.data.camera()).convert("RGB"),
        "img3": Image.fromarray(skimage.data.chelsea()),
        "img4": hopper,
        "img5": Image.fromarray(skimage.data.coffee()),
    }


def make_samples(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in _photos().items():
        image.save(folder / f"{name}.png")
    for i, name in enumerate(POSES, start=1):
        pose = read_openpose_json(GALLERY / f"{name}.json", 256, 176)
        assert pose is not None, name
        Image.fromarray(np.asarray(pose.render(256, 176))).save(folder / f"pose{i}.png")
    return folder
