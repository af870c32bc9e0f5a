"""The README's main job: `pcdms demo` on the shipped model, and `pcdms assemble` that builds such a folder."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image

from pcdms.cli import main
from pcdms.commands.demo import ASSETS
from pcdms.config import load_config
from pcdms.models.inpaint import InpaintModel
from pcdms.models.prior import PriorModel
from pcdms.models.refine import RefineModel

MARGIN = 0.03  # SSIM points by which every final image beats the source photo (the closest: 0.287)


def test_assemble_then_demo_writes_grid_and_process(tmp_path):
    torch.manual_seed(0)
    cfg = load_config("tiny")
    for name, cls in (("prior", PriorModel), ("inpaint", InpaintModel), ("refine", RefineModel)):
        cls(getattr(cfg, name)).save_pretrained(tmp_path / name)
    model = tmp_path / "model"
    assert main(["assemble", "--config", "tiny", "--prior", str(tmp_path / "prior"), "--inpaint",
                 str(tmp_path / "inpaint"), "--refine", str(tmp_path / "refine"), "--out", str(model)]) == 0
    assert (model / "encoders" / "clip" / "config.json").is_file()  # random encoders travel with the model
    out = tmp_path / "demo"
    assert main(["demo", "--model", str(model), "--out", str(out), "--steps", "1"]) == 0
    grid = Image.open(out / "grid.png")
    source = Image.open(ASSETS / "inputs" / "id00161_00_front-full.png")
    assert grid.width > 5 * 2 * source.width and grid.height > 4 * 2 * source.height  # 5 columns, 4 pairs
    assert (out / "process.png").is_file() and (out / "config.yaml").is_file()


def test_shipped_demo_model_moves_each_person_into_the_target_pose(tmp_path):
    # The README's promise for the shipped model, measured against the held-out ground truth of its 4 test
    # pairs (people it never saw) at the model's own sampling settings.
    model = ASSETS / "model"
    assert (model / "config.yaml").is_file(), "the demo model must ship with the repository"
    assert main(["demo", "--out", str(tmp_path)]) == 0
    assert Image.open(tmp_path / "grid.png").size[0] > 0
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert len(scores["pairs"]) == 4
    for row in scores["pairs"]:  # the person in the new pose, not the source photo again
        assert row["final"]["ssim"] > row["source"]["ssim"] + MARGIN, row
    mean = scores["mean"]  # shipped model: see the README's demo section
    assert mean["coarse"]["ssim"] > mean["source"]["ssim"] + 0.2, mean
    # Stage 3 improves on stage 2 (issue 17): the refiner trained 6,500 steps, sampled at strength 0.1, lifts the
    # mean of these 4 pairs from 0.743 to 0.744 and L1 from 0.0502 to 0.0484 (the first refiner lowered SSIM by 0.10;
    # on the 96-pair split it adds 0.001 SSIM and lowers L1 from 0.0624 to 0.0612: docs/results.md)
    assert mean["final"]["ssim"] > mean["coarse"]["ssim"], mean
    assert mean["final"]["l1"] < mean["coarse"]["l1"], mean
    assert mean["final"]["ssim"] > mean["source"]["ssim"] + 0.15, mean
    assert mean["final"]["l1"] < mean["source"]["l1"], mean


def test_missing_model_is_a_user_error(tmp_path, capsys):
    assert main(["demo", "--model", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "train_demo.sh" in capsys.readouterr().err


def test_shipped_demo_images_match_their_reference_images():
    """The shipped model's images stay what they were, to within one grey level (`tests/data/demo_reference`,
    this same call). Issue 19 checked against them that conditions computed once per sampling call (pose
    embedding, projected tokens, guidance batch) give the images the per-step code gave; when issue 17
    retrained the demo model (Inception embedding, new refiner) both columns were made again by this code,
    so the test now guards that and every later change. Issue 27 drew skeletons through OpenCV (the authors'
    `draw_bodypose`; sub-pixel under the project's "scaled" style, 3.7-15 % of a render's pixels changed) and
    made them again (demo mean SSIM: coarse 0.698 -> 0.694, final 0.705 -> 0.701). Issue 31 retrained stage 2
    (6,000 steps on recoloured pairs) and stage 3, and made them again (coarse 0.743, final 0.744 at 10 steps). All
    at 20 steps, the demo's default before the quality sweep (issue 16) made it 10."""
    import numpy as np

    from pcdms.imageio import load_image
    from pcdms.sampling.pipeline import PCDMsPipeline
    from pcdms.pose import read_openpose_json

    reference = Path(__file__).parent / "data" / "demo_reference"
    pipe = PCDMsPipeline.from_pretrained(ASSETS / "model")
    inputs = ASSETS / "inputs"
    for index, pair in enumerate(json.loads((inputs / "pairs.json").read_text())):
        out = pipe(load_image(inputs / pair["source"]), read_openpose_json(inputs / f"{Path(pair['target']).stem}.json"),
                   read_openpose_json(inputs / f"{Path(pair['source']).stem}.json"),
                   generator=torch.Generator().manual_seed(index), num_inference_steps=20)  # as the references
        for kind, image in (("final", out.images[0]), ("coarse", out.coarse_images[0])):
            expected = np.asarray(Image.open(reference / f"{index}_{kind}.png"), np.int16)
            assert np.abs(np.asarray(image, np.int16) - expected).max() <= 1, (index, kind)
