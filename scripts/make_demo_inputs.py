"""Copy a few test-split pairs of the demo's synthetic dataset (identities never seen in training) into
src/pcdms/assets/demo/inputs: source and ground-truth images, and both poses as OpenPose JSON.
Usage: python scripts/make_demo_inputs.py DATA_ROOT"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from pcdms.data.formats import load_split
from pcdms.names import output_stem
from pcdms.pose import Pose, write_openpose_json

PAIRS = [
    ("id00161_00_front-full.png", "id00161_02_three-quarter-full.png"),
    ("id00165_00_front-full.png", "id00165_03_back-full.png"),
    ("id00162_01_front-full.png", "id00162_00_front-full.png"),
    ("id00167_00_front-full.png", "id00167_02_front-full.png"),
]


def main(root: str) -> None:
    out = Path(__file__).resolve().parents[1] / "src" / "pcdms" / "assets" / "demo" / "inputs"
    out.mkdir(parents=True, exist_ok=True)
    data = load_split(root, "test")
    listed = []
    for source, target in PAIRS:
        for name in (source, target):
            entry = data.images[name]
            shutil.copy(entry.path, out / name)
            write_openpose_json(out / f"{Path(name).stem}.json", Pose.from_normalized(entry.keypoints, *entry.frame))
        listed.append({"source": source, "target": target, "name": output_stem(source, target)})
    (out / "pairs.json").write_text(json.dumps(listed, indent=1) + "\n")
    print(f"wrote {len(listed)} pairs to {out}")


if __name__ == "__main__":
    main(sys.argv[1])
