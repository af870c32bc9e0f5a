"""`pcdms generate` / `pcdms refine`: one pair, whole splits that resume, per-item failures, output names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pcdms.cli import main
from pcdms.config import load_config
from pcdms.data.synth import generate as synth
from pcdms.models.encoders import build_encoders
from pcdms.errors import UserError
from pcdms.names import output_stem
from pcdms.models.inpaint import InpaintModel
from pcdms.models.prior import PriorModel
from pcdms.models.refine import RefineModel
from pcdms.sampling.pipeline import PCDMsPipeline
from pcdms.pose import Pose, write_openpose_json

FAST = ["--steps", "1", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    cfg = load_config("tiny")
    pipe = PCDMsPipeline(build_encoders(cfg.encoders), InpaintModel(cfg.inpaint), PriorModel(cfg.prior),
                         RefineModel(cfg.refine), cfg.data.height, cfg.data.width, cfg.sample)
    return pipe.save_pretrained(tmp_path_factory.mktemp("model"), cfg)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    synth(root, train_identities=1, test_identities=1, poses_per_identity=3, height=64, width=48, seed=2)
    return root


def test_saved_pipeline_reloads_with_identical_outputs(model_dir, samples_dir):
    source = Image.open(samples_dir / "img2.png").convert("RGB")
    pose = Pose.from_normalized(np.clip(np.random.default_rng(0).random((18, 2)), 0.1, 0.9), 256, 176)
    outputs = []
    for _ in range(2):
        pipe = PCDMsPipeline.from_pretrained(model_dir)
        outputs.append(pipe(source, pose, pose, num_inference_steps=2, generator=torch.Generator().manual_seed(1)))
    assert np.array_equal(np.asarray(outputs[0].images[0]), np.asarray(outputs[1].images[0]))


def test_one_pair_from_json_pose_writes_image_and_grid(tmp_path, model_dir, samples_dir):
    pose = Pose.from_normalized(np.clip(np.random.default_rng(1).random((18, 2)), 0.1, 0.9), 256, 176)
    write_openpose_json(tmp_path / "target.json", pose)
    out = tmp_path / "out"
    code = main(["generate", "--model", str(model_dir), "--source", str(samples_dir / "img1.png"),
                 "--target-pose", str(tmp_path / "target.json"), "--source-pose", str(tmp_path / "target.json"),
                 "--out", str(out), "--name", "me", "--process", *FAST])
    assert code == 0
    source = Image.open(samples_dir / "img1.png")
    assert Image.open(out / "me.png").size == source.size  # back at the input's size
    assert Image.open(out / "me_coarse.png").size == source.size
    assert (out / "me_grid.png").is_file() and (out / "me_process.png").is_file()


def test_a_source_with_nobody_found_says_which_file_and_how_to_give_its_pose(tmp_path, samples_dir, capsys,
                                                                              monkeypatch):
    """Before the model loads (a missing model would be the first error otherwise), the photo's pose is
    extracted, and the error names the file and both ways to give the pose."""
    monkeypatch.setattr(PCDMsPipeline, "from_pretrained", lambda *a, **k: pytest.fail("the model was loaded"))
    code = main(["generate", "--source", str(samples_dir / "img3.png"), "--target-pose", "front-waving",
                 "--out", str(tmp_path / "out"), *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"no person found in --source '{samples_dir / 'img3.png'}'" in err
    assert "COCO-18 JSON" in err and "skeleton picture" in err


def test_split_generation_names_resumes_and_skips_finished_pairs(tmp_path, model_dir, data_root, monkeypatch):
    out = tmp_path / "gen"
    args = ["generate", "--model", str(model_dir), "--dataset", str(data_root), "--split", "test",
            "--out", str(out), "--batch-size", "2", *FAST]
    calls = []  # one entry per pair generated
    killed = []
    original = PCDMsPipeline.batch

    def interrupted(self, sources, *a, **k):
        calls.extend(sources)
        if len(calls) > 2 and not killed:
            killed.append(1)
            raise KeyboardInterrupt  # the job is killed during its second batch (pairs 3 and 4)
        return original(self, sources, *a, **k)

    monkeypatch.setattr(PCDMsPipeline, "batch", interrupted)
    assert main(args) == 130
    finished = sorted(out.glob("*_to_*.png"))
    assert len(finished) == 2 and not list(out.glob(".*.tmp"))
    stamps = {p: p.stat().st_mtime_ns for p in finished}
    calls.clear()
    assert main(args) == 0
    assert len(calls) == 4  # 6 pairs: only the 4 unfinished ones are generated
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    names = {p.name for p in out.glob("*_to_*.png")}
    from pcdms.data.formats import load_split

    expected = {f"{output_stem(pr.source, pr.target)}.png" for pr in load_split(data_root, "test").pairs}
    assert names == expected
    assert (out / "config.yaml").is_file()  # the resolved config beside the outputs


def test_num_samples_writes_sample_suffixes(tmp_path, model_dir, data_root):
    out = tmp_path / "gen"
    assert main(["generate", "--model", str(model_dir), "--dataset", str(data_root), "--split", "test",
                 "--limit", "1", "--num-samples", "2", "--out", str(out), *FAST]) == 0
    assert sorted(p.name.rsplit("_", 1)[1] for p in out.glob("*.png")) == ["sample0.png", "sample1.png"]


def test_refine_other_methods_images_reports_bad_items(tmp_path, model_dir, data_root, capsys):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    from pcdms.data.formats import load_split

    pairs = load_split(data_root, "test").pairs[:2]
    for pair in pairs:
        Image.new("RGB", (48, 64), (200, 30, 30)).save(theirs / f"{output_stem(pair.source, pair.target)}.png")
    Image.new("RGB", (48, 64)).save(theirs / "stranger_to_nobody.png")
    out = tmp_path / "refined"
    code = main(["refine", "--model", str(model_dir), "--images", str(theirs), "--dataset", str(data_root),
                 "--split", "test", "--out", str(out), *FAST])
    printed = capsys.readouterr().out
    assert code == 1  # one bad item, reported by name; the others are done
    assert "FAILED stranger_to_nobody.png" in printed and "2 written" in printed
    assert len(list(out.glob("*.png"))) == 2


def test_user_mistakes_are_one_line_errors(tmp_path, model_dir, capsys):
    assert main(["generate", "--model", str(model_dir), "--out", str(tmp_path), *FAST]) == 2
    assert main(["generate", "--model", str(tmp_path / "none"), "--source", "x.png", "--target-pose", "y.json",
                 "--out", str(tmp_path), *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "config.yaml" in err[1]


def test_refine_strength_keeps_more_of_the_input_and_is_saved_with_the_outputs(tmp_path, model_dir, data_root,
                                                                              capsys):
    # Image-to-image refinement of another method's result: a low strength stays closer to that image.
    from pcdms.config import load_config
    from pcdms.data.formats import load_split

    pair = load_split(data_root, "test").pairs[0]
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    red = Image.new("RGB", (48, 64), (200, 30, 30))
    red.save(theirs / f"{output_stem(pair.source, pair.target)}.png")
    distance = {}
    for strength in ("1.0", "0.25"):
        out = tmp_path / strength
        assert main(["refine", "--model", str(model_dir), "--images", str(theirs), "--dataset", str(data_root),
                     "--split", "test", "--out", str(out), "--refine-strength", strength, "--steps", "4"]) == 0
        assert load_config(str(out / "config.yaml")).sample.refine_strength == float(strength)
        result = np.asarray(Image.open(next(out.glob("*_to_*.png"))).convert("RGB"), np.float32)
        distance[strength] = np.abs(result - np.asarray(red, np.float32)).mean()
    assert distance["0.25"] < distance["1.0"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:  # refused when parsed, by argparse
        main(["refine", "--model", str(model_dir), "--images", str(theirs), "--dataset", str(data_root),
              "--split", "test", "--out", str(tmp_path / "bad"), "--refine-strength", "0"])
    assert exit_info.value.code == 2
    assert "argument --refine-strength: expected a finite number in (0, 1]" in capsys.readouterr().err


def test_batch_size_changes_speed_and_at_most_rounding(tmp_path, model_dir, data_root):
    """What the README promises: byte-identical at the same batch size (same device, dtype, versions); across
    batch sizes the networks sum in another order, so a value may differ by 1 of 255, in few pixels."""
    outs = {}
    for run in ("1", "4", "4-again"):
        outs[run] = tmp_path / run
        assert main(["generate", "--model", str(model_dir), "--dataset", str(data_root), "--split", "test",
                     "--out", str(outs[run]), "--batch-size", run.split("-")[0], "--steps", "2", "--no-progress",
                     "--device", "cpu"]) == 0
    files = sorted(p.name for p in outs["1"].glob("*_to_*.png"))
    assert len(files) == 6 and files == sorted(p.name for p in outs["4"].glob("*_to_*.png"))
    differing = total = 0
    for name in files:
        one, four = (np.asarray(Image.open(outs[s] / name), np.int16) for s in ("1", "4"))
        assert np.abs(one - four).max() <= 1, name
        differing, total = differing + int((one != four).sum()), total + one.size
        assert (outs["4"] / name).read_bytes() == (outs["4-again"] / name).read_bytes(), name
    assert differing <= 0.01 * total


def test_a_failing_batch_is_retried_pair_by_pair_so_only_the_bad_pair_fails(tmp_path):
    from pcdms.errors import UserError
    from pcdms.jobs.generate import Item, Job, run_items

    def render(inputs):
        if any(x["bad"] for x in inputs):
            raise UserError("this pose has no visible joint")
        return [[Image.new("RGB", (4, 4), (x["value"], 0, 0))] for x in inputs]

    items = [Item(f"p{i}", [tmp_path / f"p{i}.png"], lambda i=i: {"bad": i == 2, "value": i}) for i in range(5)]
    report = run_items(Job(items, render), "test", progress=False, batch_size=4)
    assert report.failed == [("p2", "this pose has no visible joint")]
    assert sorted(report.done) == ["p0", "p1", "p3", "p4"]
    assert Image.open(tmp_path / "p3.png").getpixel((0, 0)) == (3, 0, 0)  # each image went to its own pair
    assert not (tmp_path / "p2.png").exists()


def test_target_pose_by_gallery_name_and_a_process_picture_labelled_by_stage(tmp_path, model_dir, samples_dir):
    out = tmp_path / "out"
    assert main(["generate", "--model", str(model_dir), "--source", str(samples_dir / "img1.png"),
                 "--target-pose", "front-arms-raised", "--source-pose", "front-standing", "--out", str(out),
                 "--process", "--steps", "2", "--no-progress", "--device", "cpu"]) == 0
    assert (out / "img1_to_front-arms-raised.png").is_file()
    process = Image.open(out / "img1_to_front-arms-raised_process.png")
    cfg = load_config("tiny")
    # a row of frames per stage (2 and 3), each frame enlarged to at least 96 px wide, stage names on the left
    zoom = -(-96 // cfg.data.width)
    assert process.height > 2 * cfg.data.height * zoom
    assert process.width > 2 * cfg.data.width * zoom + 60


def test_a_failed_run_removes_the_output_folder_it_made_but_not_one_the_user_had(tmp_path, model_dir, samples_dir,
                                                                                  monkeypatch):
    def fails(self, *args, **kwargs):
        raise UserError("no person found in the source image")

    monkeypatch.setattr(PCDMsPipeline, "batch", fails)
    pose = Pose.from_normalized(np.clip(np.random.default_rng(1).random((18, 2)), 0.1, 0.9), 256, 176)
    write_openpose_json(tmp_path / "target.json", pose)
    args = ["--model", str(model_dir), "--source", str(samples_dir / "img1.png"), "--target-pose",
            str(tmp_path / "target.json"), *FAST]
    made = tmp_path / "new" / "out"  # fails after the model loaded (its config.yaml was written there)
    assert main(["generate", *args, "--out", str(made)]) == 2
    assert not (tmp_path / "new").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    assert main(["generate", *args, "--out", str(mine)]) == 2
    assert mine.is_dir()
    assert main(["generate", *args[:4], "--target-pose", "no-such-pose", "--out", str(made)]) == 2
    assert not (tmp_path / "new").exists()
