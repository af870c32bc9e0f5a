"""Make the README's first picture, docs/hero.png: source photo | target pose | result, two people a row.

Every result comes from the command a user runs, `pcdms generate`, on the shipped demo model (its default 10
steps per stage, seed 0) with a shipped demo input as the source and a ready pose of the app's gallery
(`src/pcdms/assets/poses/`) as the target. The 64x44 images are enlarged 3x (nearest neighbour, so the
pixels stay as the model made them). Run: `.venv/bin/python scripts/make_readme_figure.py` (about a minute
on 2 cores).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from pcdms.pose import read_openpose_json
from pcdms.visualize import image_grid

ROOT = Path(__file__).resolve().parents[1]
INPUTS = ROOT / "src" / "pcdms" / "assets" / "demo" / "inputs"
POSES = ROOT / "src" / "pcdms" / "assets" / "poses"
# (source person, gallery pose): people the demo model never saw in training
ROWS = [
    ("id00161_00_front-full", "front-arms-raised"),
    ("id00165_00_front-full", "back-standing"),
    ("id00162_01_front-full", "front-walking"),
    ("id00167_00_front-full", "three-quarter"),
]
SCALE = 3


def generate(source: str, pose: str, out: Path) -> Image.Image:
    """The final image of `pcdms generate` for one source photo and one gallery pose."""
    pcdms = Path(sys.executable).parent / "pcdms"
    subprocess.run([str(pcdms), "generate", "--source", str(INPUTS / f"{source}.png"),
                    "--source-pose", str(INPUTS / f"{source}.json"), "--target-pose", str(POSES / f"{pose}.json"),
                    "--name", f"{source}_to_{pose}", "--out", str(out), "--no-progress"], check=True)
    return Image.open(out / f"{source}_to_{pose}.png").convert("RGB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "hero.png"))
    args = parser.parse_args()
    triplets = []
    with tempfile.TemporaryDirectory() as tmp:
        for source, pose in ROWS:
            result = generate(source, pose, Path(tmp))
            photo = Image.open(INPUTS / f"{source}.png").convert("RGB")
            width, height = photo.size
            size = (width * SCALE, height * SCALE)
            # the gallery pose drawn at the picture's size (same aspect as the model's frame)
            skeleton = Image.fromarray(read_openpose_json(POSES / f"{pose}.json").render(size[1], size[0]))
            triplets.append([photo.resize(size, Image.Resampling.NEAREST), skeleton,
                             result.resize(size, Image.Resampling.NEAREST)])
    rows = [triplets[i] + triplets[i + 1] for i in range(0, len(triplets), 2)]
    grid = image_grid(rows, ["source photo", "target pose", "result"] * 2, cell=size, pad=4)
    grid.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
