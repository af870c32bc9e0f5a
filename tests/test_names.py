"""Output names `<from>_to_<to>[_sample<k>].png`: written and read in `pcdms.names`, read the same way by refine,
evaluate and the training dataset, also when an image name itself holds `_to_` (issue #29)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pcdms.commands.generate import refine_source_lookup
from pcdms.data.dataset import PairDataset
from pcdms.data.formats import PairRecord, load_split, write_patn
from pcdms.errors import UserError
from pcdms.metrics.pairing import match_predictions
from pcdms.names import OutputName, image_stem, output_paths, output_stem, split_output_stem
from pcdms.pose import Pose

H, W = 64, 48


def test_sample_suffix_gives_the_index_and_no_suffix_is_sample_zero():
    assert split_output_stem("a_to_b.png") == OutputName("a", "b", 0)
    assert split_output_stem("a_to_b_sample3.png") == OutputName("a", "b", 3)
    assert split_output_stem("a_to_b_sample12") == OutputName("a", "b", 12)  # a stem works as well as a file name
    assert split_output_stem("a_to_b_sample3.png").stem == "a_to_b"


@pytest.mark.parametrize("name", ["a_to_b.png", "a_to_b.JPG", "a_to_b.jpeg", "a_to_b", "a.jpg_to_b.jpg.png",
                                  "a.png_to_b.webp"])
def test_extensions_of_the_file_and_of_each_side_are_dropped(name):
    assert split_output_stem(name) == OutputName("a", "b", 0)


@pytest.mark.parametrize("name", ["notes.png", "_to_b.png", "a_to_.png", "a_sample1.png", "to.png"])
def test_a_name_without_a_pair_reads_as_none(name):
    assert split_output_stem(name) is None


def test_without_known_names_the_last_to_splits_and_known_names_win_over_it():
    assert split_output_stem("a_to_go_to_b.png") == OutputName("a_to_go", "b", 0)  # the documented default
    assert split_output_stem("a_to_go_to_b.png", targets={"go_to_b"}) == OutputName("a", "go_to_b", 0)
    assert split_output_stem("a_to_go_to_b.png", sources={"a"}) == OutputName("a", "go_to_b", 0)
    # one side known on each reading: a tie, so the default; both sides known beats one
    assert split_output_stem("a_to_go_to_b.png", sources={"a"}, targets={"b"}) == OutputName("a_to_go", "b", 0)
    assert split_output_stem("a_to_go_to_b.png", sources={"a", "a_to_go"}, targets={"go_to_b"}) == \
        OutputName("a", "go_to_b", 0)
    # `_sample<k>` is the sample index unless a known target ends with it
    assert split_output_stem("a_to_b_sample1.png") == OutputName("a", "b", 1)
    assert split_output_stem("a_to_b_sample1.png", targets={"b_sample1"}) == OutputName("a", "b_sample1", 0)
    assert split_output_stem("a_to_b_sample1.png", targets={"b", "b_sample1"}) == OutputName("a", "b", 1)


@pytest.mark.parametrize("source, target", [("a.jpg", "b.jpg"), ("MEN/Denim/id_01.jpg", "MEN/Denim/id_02.jpg"),
                                            ("look_to_left.png", "b.png"), ("a.png", "go_to_b.png"),
                                            ("a.png", "b_sample1.png")])
@pytest.mark.parametrize("num_samples", [1, 3])
def test_what_is_written_reads_back_given_the_dataset_names(tmp_path, source, target, num_samples):
    known = {image_stem(source), image_stem(target)}
    for k, path in enumerate(output_paths(tmp_path, output_stem(source, target), num_samples)):
        read = split_output_stem(path.name, sources=known, targets=known)
        assert read == OutputName(image_stem(source), image_stem(target), k)


@pytest.fixture
def to_dataset(tmp_path) -> Path:
    """A PATN split whose image `look_to_left.png` holds `_to_`, beside a `look.png` that a first-`_to_` reader
    would take for its source."""
    root = tmp_path / "data"
    (root / "test").mkdir(parents=True)
    rng = np.random.default_rng(0)
    xy = np.stack([rng.uniform(4, W - 4, 18), rng.uniform(4, H - 4, 18)], axis=1)
    names = ["look_to_left.png", "b.png", "look.png"]
    for name in names:
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(root / "test" / name)
    pairs = [PairRecord("look_to_left.png", "b.png"), PairRecord("look.png", "b.png")]
    write_patn(root, "test", pairs, {name: Pose.from_pixels(xy, H, W) for name in names}, prefix="fashion")
    return root


def test_refine_evaluate_and_the_dataset_pair_a_name_holding_to_alike(tmp_path, to_dataset):
    coarse = tmp_path / "coarse"
    coarse.mkdir()
    for source in ("look_to_left", "look"):
        Image.new("RGB", (W, H)).save(coarse / f"{source}_to_b.png")
    file = coarse / "look_to_left_to_b.png"

    # training dataset (stage 3): the coarse image it reads for the pair (look_to_left.png, b.png)
    dataset = PairDataset(to_dataset, "test", H, W, coarse_dir=coarse)
    index = dataset.pairs.index(PairRecord("look_to_left.png", "b.png"))
    assert dataset.coarse_paths[index] == file
    # refine: the source photo it loads for that file
    source_entry = refine_source_lookup(load_split(to_dataset, "test"))
    assert source_entry(file).name == "look_to_left.png"
    assert source_entry(coarse / "look_to_b.png").name == "look.png"
    # evaluate: the pair and ground truth it scores that file as
    matching = match_predictions(sorted(coarse.iterdir()), sorted((to_dataset / "test").iterdir()))
    assert matching.problems() == {}
    [prediction] = matching.pairs["look_to_left_to_b"]
    assert (prediction.path, prediction.source, prediction.target) == (file, "look_to_left", "b")
    assert prediction.gt_path.name == "b.png"


def test_refine_names_the_file_it_cannot_pair(tmp_path, to_dataset):
    source_entry = refine_source_lookup(load_split(to_dataset, "test"))
    with pytest.raises(UserError, match=r"notes\.png: not named <from>_to_<to>\.png.*--source"):
        source_entry(tmp_path / "notes.png")
    with pytest.raises(UserError, match=r"stranger_to_b\.png: source 'stranger' is not an image of"):
        source_entry(tmp_path / "stranger_to_b.png")
    assert source_entry(tmp_path / "look_to_left_to_b_sample2.png").name == "look_to_left.png"
